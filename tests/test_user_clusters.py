"""Intrinsic cluster evaluation (issue 11, Table 4) against a NumPy brute force of the formula."""

import numpy as np
import pytest

from larp_jax.evaluation import user_clusters as uc


def _ndcg_brute_force(vectors, labels, queries, k, metric):
  """nDCG@k: binary gains (same label), 1/log2(r+1), IDCG over min(k, n_c - 1); self excluded."""
  x = vectors.astype(np.float64)
  if metric == 'cosine':
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    dist = -(x @ x.T)
  else:
    dist = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
  values = []
  for q in queries:
    d = dist[q].copy()
    d[q] = np.inf
    nn = np.argsort(d, kind='stable')[:k]
    rel = (labels[nn] == labels[q]).astype(float)
    n_c = int((labels == labels[q]).sum())
    disc = 1 / np.log2(np.arange(2, k + 2))
    values.append((rel * disc).sum() / disc[: min(k, n_c - 1)].sum())
  return float(np.mean(values))


def _data(seed=0, num=300, dim=6):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 12, num)
  centres = rng.normal(size=(12, dim))
  vectors = (centres[labels] + 0.8 * rng.normal(size=(num, dim))).astype(np.float32)
  labels[:30] = -1  # unlabelled: neighbours, never queries, never relevant
  labels[30:33] = [100, 101, 102]  # singleton clusters: skipped and counted
  return vectors, labels


@pytest.mark.parametrize('metric', ['cosine', 'l2'])
def test_cluster_ndcg_matches_brute_force(metric):
  vectors, labels = _data()
  result = uc.cluster_ndcg(vectors, labels, k=20, num_queries=80, seed=1, metric=metric)
  assert result.num_queries == 80 and result.skipped == 3
  # The same seeded sample the function draws.
  eligible = [u for u in range(len(labels)) if labels[u] >= 0 and (labels == labels[u]).sum() >= 2]
  queries = np.sort(np.random.default_rng(1).choice(eligible, 80, replace=False))
  assert result.ndcg == pytest.approx(
      _ndcg_brute_force(vectors, labels, queries, 20, metric), abs=1e-6
  )
  assert 0.2 < result.ndcg < 1.0
  # Every eligible user once when num_queries exceeds them.
  full = uc.cluster_ndcg(vectors, labels, k=20, num_queries=10_000, metric=metric)
  assert full.num_queries == len(eligible)
  assert full.ndcg == pytest.approx(
      _ndcg_brute_force(vectors, labels, eligible, 20, metric), abs=1e-6
  )


def test_self_excluded_and_idcg_capped_by_cluster_size():
  # Two tight pairs far apart: each user's nearest other user is its partner -> nDCG 1.
  vectors = np.array([[1, 0], [0.99, 0.01], [0, 1], [0.01, 0.99], [-1, -1]], np.float32)
  labels = np.array([0, 0, 1, 1, -1])
  ids = uc.neighbours(vectors, np.arange(5), 4)
  assert all(q not in ids[q] for q in range(5))
  result = uc.cluster_ndcg(vectors, labels, k=3, num_queries=10)
  assert result == uc.ClusterResult(1.0, 4, 0)


def test_bad_inputs_raise():
  vectors, labels = _data(num=50)
  with pytest.raises(ValueError, match='k must be'):
    uc.cluster_ndcg(vectors, labels, k=50)
  bad = vectors.copy()
  bad[3, 0] = np.nan
  with pytest.raises(ValueError, match='NaN'):
    uc.cluster_ndcg(bad, labels, k=5)
  with pytest.raises(ValueError, match='labels must be'):
    uc.cluster_ndcg(vectors, labels[:-1], k=5)
  with pytest.raises(ValueError, match='at least 2 members'):
    uc.cluster_ndcg(vectors, np.arange(50), k=5)


def test_projection_2d():
  vectors, _ = _data(num=60)
  for method in ('pca', 'tsne'):
    out = uc.projection_2d(vectors, method=method, seed=0, max_iter=250)
    assert out.shape == (60, 2) and out.dtype == np.float32 and np.isfinite(out).all()
  again = uc.projection_2d(vectors, method='tsne', seed=0, max_iter=250)
  np.testing.assert_array_equal(again, out)  # seeded
