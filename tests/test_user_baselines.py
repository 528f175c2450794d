"""Baselines of issue 11 (NMF, LightFM, demographic popularity, average vectors) vs references."""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.decomposition import NMF

from larp_jax.recommenders import user_baselines as ub


def _counts(seed=0, users=40, tracks=30):
  rng = np.random.default_rng(seed)
  dense = rng.poisson(0.6, size=(users, tracks)) * (rng.random((users, tracks)) < 0.5)
  dense[:, 0] += 1  # no empty user row
  return sp.csr_matrix(dense.astype(np.float64))


def test_nmf_equals_sklearn_on_log1p():
  counts = _counts()
  got = ub.nmf_user_vectors(counts, n_components=6, seed=3, max_iter=300)
  ref = NMF(n_components=6, init='nndsvda', random_state=3, max_iter=300).fit_transform(
      np.log1p(counts.toarray())
  )
  assert got.shape == (40, 6) and got.dtype == np.float32
  np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
  with pytest.raises(ValueError, match='n_components=31'):
    ub.nmf_user_vectors(counts, n_components=31)
  with pytest.raises(ValueError, match='non-negative'):
    ub.nmf_user_vectors(-counts, n_components=2)


def test_lightfm_deterministic_with_one_thread():
  counts = _counts(1)
  rng = np.random.default_rng(0)
  side = sp.csr_matrix((rng.random((40, 5)) < 0.3).astype(np.float32))
  user_features = ub.with_identity(side)
  item_features = ub.with_identity(sp.csr_matrix(np.eye(30, 4, dtype=np.float32)))
  assert user_features.shape == (40, 45) and item_features.shape == (30, 34)
  kw = dict(no_components=8, epochs=3, seed=5)
  a = ub.lightfm_user_vectors(counts, user_features, item_features, **kw)
  b, model = ub.lightfm_user_vectors(counts, user_features, item_features, return_model=True, **kw)
  assert a.shape == (40, 8) and a.dtype == np.float32 and np.isfinite(a).all()
  np.testing.assert_array_equal(a, b)
  scores = ub.lightfm_scores(model, [0, 1, 2], [3, 4, 5], user_features, item_features)
  assert scores.shape == (3,) and np.isfinite(scores).all()
  with pytest.raises(ValueError, match='user_features has 39 rows'):
    ub.lightfm_user_vectors(counts, user_features[:39], item_features, **kw)


def test_demographic_popularity_vs_groupby():
  rng = np.random.default_rng(0)
  groups = rng.integers(-1, 4, 50)
  groups[groups == 3] = 2  # group 3 has no user -> global share
  play_user = rng.integers(0, 50, 2000)
  play_track = rng.integers(0, 25, 2000)
  got = ub.demographic_popularity(groups, play_user, play_track, num_groups=4, num_tracks=25)
  train = groups[play_user] >= 0
  global_counts = np.zeros(25)
  for t in play_track[train]:
    global_counts[t] += 1
  for g in range(4):
    counts = np.zeros(25)
    for u, t in zip(play_user, play_track):
      if groups[u] == g:
        counts[t] += 1
    want = counts / counts.sum() if counts.sum() else global_counts / global_counts.sum()
    np.testing.assert_allclose(got[g], want, rtol=1e-6)
  np.testing.assert_allclose(got.sum(1), 1.0, rtol=1e-6)
  with pytest.raises(ValueError, match='play_track must lie'):
    ub.demographic_popularity(groups, play_user, play_track + 25, num_groups=4, num_tracks=25)


def test_average_vectors_vs_loop():
  rng = np.random.default_rng(0)
  lengths = np.array([3, 0, 1, 5, 2])
  offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
  items = rng.integers(0, 7, offsets[-1]).astype(np.int32)
  weights = rng.integers(0, 4, offsets[-1]).astype(np.float64)
  weights[offsets[4] : offsets[5]] = 0  # total weight 0 -> no vector
  vecs = rng.normal(size=(7, 3)).astype(np.float32)
  for w in (weights, None):
    means, has = ub.average_vectors(offsets, items, w, vecs)
    for u in range(5):
      sl = slice(offsets[u], offsets[u + 1])
      ww = np.ones(lengths[u]) if w is None else w[sl]
      if ww.sum() == 0:
        assert not has[u] and np.all(means[u] == 0)
      else:
        assert has[u]
        want = sum(ww[j] * vecs[items[sl][j]] for j in range(lengths[u])) / ww.sum()
        np.testing.assert_allclose(means[u], want, rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match='rows_offsets'):
    ub.average_vectors(offsets[:-1], items, None, vecs)
