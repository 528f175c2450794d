"""Ranking metrics vs NumPy loop references, hand-computed examples and rax (where definitions match)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import rax

from larp_jax.evaluation import metrics as M


def _reference_row(scores, relevant, k, candidates):
  """LARP-style definitions, one row, in float64 (ties: lower index first, like lax.top_k)."""
  relevant = relevant & candidates
  n_rel = relevant.sum()
  if n_rel == 0:
    return {name: np.nan for name in M.METRIC_NAMES}
  order = [i for i in np.argsort(-scores, kind='stable') if candidates[i]]
  order += [i for i in range(len(scores)) if not candidates[i]]
  hits = relevant[order[:k]].astype(np.float64)
  recall = hits.sum() / n_rel
  precision = hits.sum() / k
  dcg = sum(h / np.log2(r + 2) for r, h in enumerate(hits))
  idcg = sum(1 / np.log2(r + 2) for r in range(min(n_rel, k)))
  ap = sum(hits[r] * hits[: r + 1].sum() / (r + 1) for r in range(k)) / min(n_rel, k)
  f1 = 0.0 if hits.sum() == 0 else 2 * precision * recall / (precision + recall)
  return {
      'recall': recall,
      'precision': precision,
      'hit_rate': float(hits.sum() > 0),
      'f1': f1,
      'ndcg': dcg / idcg,
      'map': ap,
  }


def _reference_auc(scores, relevant, candidates):
  pos = scores[relevant & candidates]
  neg = scores[~relevant & candidates]
  if len(pos) == 0 or len(neg) == 0:
    return np.nan
  wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
  return wins / (len(pos) * len(neg))


FUNCTIONS = {
    'recall': M.recall_at_k,
    'precision': M.precision_at_k,
    'hit_rate': M.hit_rate_at_k,
    'f1': M.f1_at_k,
    'ndcg': M.ndcg_at_k,
    'map': M.average_precision_at_k,
}


def _random_problem(seed, b=12, n=60):
  rng = np.random.default_rng(seed)
  scores = rng.normal(size=(b, n)).astype(np.float32)
  scores[:, :5] = np.round(scores[:, :5])  # some ties
  relevant = rng.random((b, n)) < 0.15
  candidates = rng.random((b, n)) < 0.8
  relevant[0] = False  # a row without ground truth
  return scores, relevant, candidates


@pytest.mark.parametrize('k', [1, 5, 10, 40])
def test_metrics_match_numpy_reference(k):
  scores, relevant, candidates = _random_problem(k)
  for name, fn in FUNCTIONS.items():
    got = np.asarray(jax.jit(fn, static_argnums=2)(scores, relevant, k, candidates))
    want = np.array(
        [_reference_row(s, r, k, c)[name] for s, r, c in zip(scores, relevant, candidates)]
    )
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=name)
    assert np.isnan(got[0])  # no relevant items -> NaN, never a silent 0
  got = np.asarray(M.auc(scores, relevant, candidates))
  want = np.array([_reference_auc(s, r, c) for s, r, c in zip(scores, relevant, candidates)])
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_ranking_metrics_equals_the_single_metric_functions():
  scores, relevant, candidates = _random_problem(3)
  out = M.ranking_metrics(scores, relevant, (10, 20, 40), tuple(FUNCTIONS), candidates)
  assert set(out) == {f'{n}@{k}' for n in FUNCTIONS for k in (10, 20, 40)}
  for name, fn in FUNCTIONS.items():
    for k in (10, 20, 40):
      np.testing.assert_allclose(
          np.asarray(out[f'{name}@{k}']), np.asarray(fn(scores, relevant, k, candidates)), rtol=1e-6
      )


def test_hand_example():
  scores = jnp.array([[0.9, 0.8, 0.7, 0.6, 0.5]])
  relevant = jnp.array([[False, True, False, True, False]])
  assert float(M.recall_at_k(scores, relevant, 2)[0]) == 0.5
  assert float(M.precision_at_k(scores, relevant, 2)[0]) == 0.5
  assert float(M.hit_rate_at_k(scores, relevant, 1)[0]) == 0.0
  np.testing.assert_allclose(float(M.f1_at_k(scores, relevant, 2)[0]), 0.5)
  ndcg2 = (1 / np.log2(3)) / (1 + 1 / np.log2(3))
  np.testing.assert_allclose(float(M.ndcg_at_k(scores, relevant, 2)[0]), ndcg2, rtol=1e-6)
  np.testing.assert_allclose(float(M.average_precision_at_k(scores, relevant, 2)[0]), 0.25)
  # AP@4: hits at ranks 2 and 4 -> (1/2 + 2/4) / 2.
  np.testing.assert_allclose(float(M.average_precision_at_k(scores, relevant, 4)[0]), 0.5)
  # AUC: positives 0.8 (beats 0.7, 0.5) and 0.6 (beats 0.5) -> 3 of 6 pairs.
  np.testing.assert_allclose(float(M.auc(scores, relevant)[0]), 0.5)
  np.testing.assert_allclose(float(M.auc(jnp.zeros((1, 4)), jnp.array([[1, 0, 0, 1]]))[0]), 0.5)
  # Masking the top item out of the candidates promotes the rest.
  cand = jnp.array([[False, True, True, True, True]])
  assert float(M.precision_at_k(scores, relevant, 1, cand)[0]) == 1.0
  # A masked relevant item leaves |gt|: recall@1 becomes 1 / 1.
  cand2 = jnp.array([[True, True, True, False, True]])
  assert float(M.recall_at_k(scores, relevant, 2, cand2)[0]) == 1.0


def test_matches_rax_where_definitions_agree():
  scores, relevant, candidates = _random_problem(5, n=80)
  scores = scores + np.arange(80)[None, :] * 1e-4  # no ties (rax breaks ties differently)
  candidates[:, :50] = True  # >= K candidates per row
  valid = (relevant & candidates).sum(1) > 0
  for k in (5, 20):
    for ours, theirs in (
        (M.recall_at_k, rax.recall_metric),
        (M.precision_at_k, rax.precision_metric),
        (M.ndcg_at_k, rax.ndcg_metric),
    ):
      got = np.asarray(ours(scores, relevant, k, candidates))
      want = np.asarray(
          theirs(
              jnp.asarray(scores),
              jnp.asarray(relevant, jnp.float32),
              where=jnp.asarray(candidates),
              topn=k,
              reduce_fn=None,
          )
      )
      np.testing.assert_allclose(got[valid], want[valid], rtol=1e-5, atol=1e-6)


def test_mean_helpers_and_errors():
  values = jnp.array([1.0, jnp.nan, 3.0])
  total, count = M.sum_and_count(values)
  assert float(total) == 4.0 and float(count) == 2.0
  assert float(M.mean_over_valid(values)) == 2.0
  assert np.isnan(float(M.mean_over_valid(jnp.array([jnp.nan]))))
  with pytest.raises(ValueError, match='k must'):
    M.recall_at_k(jnp.zeros((1, 3)), jnp.ones((1, 3), bool), 4)
  with pytest.raises(ValueError, match='relevant'):
    M.recall_at_k(jnp.zeros((1, 3)), jnp.ones((1, 2), bool), 1)
  with pytest.raises(ValueError, match='unknown metric'):
    M.ranking_metrics(jnp.zeros((1, 3)), jnp.ones((1, 3), bool), (1,), ('mrr',))
