"""Top-K ranking metrics for playlist continuation: jittable, batched, with candidate masks.

Every function takes `scores [B, N]` (higher = better), `relevant [B, N]` (bool, the held-out ground
truth) and an optional `candidate_mask [B, N]` (False = never recommended and not counted, e.g. the
seed tracks). Non-candidates get score -inf and are removed from the relevant set, so
|gt| = #(relevant & candidate). Ranks come from one `jax.lax.top_k` (ties: lower index first).

Definitions (LARP `evaluation/continuation_full.py` for Recall and NDCG):
  hits_r        = 1 if the item at rank r (1-based) is relevant
  Recall@K      = sum_{r<=K} hits_r / |gt|
  Precision@K   = sum_{r<=K} hits_r / K
  HitRate@K     = 1 if any hit in the top K
  F1@K          = 2 P R / (P + R)   (0 when there is no hit)
  NDCG@K        = sum_{r<=K} hits_r / log2(r + 1)  /  sum_{r<=min(|gt|, K)} 1 / log2(r + 1)
  AP@K (mAP@K)  = sum_{r<=K} hits_r * Precision@r / min(|gt|, K)
  AUC           = P(score(relevant) > score(irrelevant candidate)), ties count 1/2 (all candidates)

Rows with no relevant candidate (and, for AUC, rows without an irrelevant candidate) are invalid:
every metric returns NaN there, so a plain mean fails loudly; average with `mean_over_valid` or
accumulate with `sum_and_count` (the LARP code likewise drops playlists without ground truth).

rax (`rax.recall_metric`, `precision_metric`, `ndcg_metric` with binary labels, `topn=K`,
`where=candidate_mask`) agrees with Recall, NDCG and Precision here whenever a row has at least K
candidates (rax's precision divides by min(K, #candidates)); the tests check this. rax's `ap_metric`
divides by |gt| rather than min(|gt|, K), and it returns 0 rather than marking rows without relevant
items, so AP@K and the NaN convention are own code. All metrics are computed from one top-K instead of
one full sort per metric call, which is what `ranking_metrics` (used by the continuation protocol)
exploits for several metrics and cut-offs at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

Array = jax.Array

METRIC_NAMES = ('recall', 'precision', 'hit_rate', 'f1', 'ndcg', 'map')


def _prepare(scores: Array, relevant: Array, candidate_mask: Array | None) -> tuple[Array, Array]:
  scores = jnp.asarray(scores, jnp.float32)
  relevant = jnp.asarray(relevant).astype(bool)
  if scores.ndim != 2:
    raise ValueError(f'scores must be [B, N], got {scores.shape}.')
  if relevant.shape != scores.shape:
    raise ValueError(
        f'relevant must have the shape of scores {scores.shape}, got {relevant.shape}.'
    )
  if candidate_mask is not None:
    candidate_mask = jnp.asarray(candidate_mask).astype(bool)
    if candidate_mask.shape != scores.shape:
      raise ValueError(
          f'candidate_mask must have the shape of scores {scores.shape}, got '
          f'{candidate_mask.shape}.'
      )
    scores = jnp.where(candidate_mask, scores, -jnp.inf)
    relevant = relevant & candidate_mask
  return scores, relevant


def _check_k(k: int, n: int) -> None:
  if not isinstance(k, int) or k < 1 or k > n:
    raise ValueError(f'k must be an int in [1, N = {n}], got {k!r}.')


def top_k_hits(
    scores: Array, relevant: Array, k: int, candidate_mask: Array | None = None
) -> tuple[Array, Array]:
  """Hit indicators of the top-k ranked items.

  Args:
    scores: float [B, N].
    relevant: bool [B, N].
    k: cut-off, 1 <= k <= N.
    candidate_mask: optional bool [B, N].

  Returns:
    (hits float32 [B, k] in rank order, num_relevant float32 [B] = |relevant & candidate|).
  """
  scores, relevant = _prepare(scores, relevant, candidate_mask)
  _check_k(k, scores.shape[1])
  _, idx = jax.lax.top_k(scores, k)
  hits = jnp.take_along_axis(relevant, idx, axis=1).astype(jnp.float32)
  return hits, jnp.sum(relevant, axis=1).astype(jnp.float32)


def _discounts(k: int) -> Array:
  return 1.0 / jnp.log2(jnp.arange(2, k + 2, dtype=jnp.float32))


def _metrics_from_hits(
    hits: Array, num_relevant: Array, k: int, names: Sequence[str]
) -> dict[str, Array]:
  """Per-row metrics at cut-off k from the first k hit columns (NaN for rows without relevant items)."""
  hits = hits[:, :k]
  valid = num_relevant > 0
  safe_rel = jnp.where(valid, num_relevant, 1.0)
  num_hits = jnp.sum(hits, axis=1)
  recall = num_hits / safe_rel
  precision = num_hits / k
  out = {}
  for name in names:
    if name == 'recall':
      value = recall
    elif name == 'precision':
      value = precision
    elif name == 'hit_rate':
      value = (num_hits > 0).astype(jnp.float32)
    elif name == 'f1':
      denom = precision + recall
      value = jnp.where(denom > 0, 2.0 * precision * recall / jnp.where(denom > 0, denom, 1.0), 0.0)
    elif name == 'ndcg':
      disc = _discounts(k)
      dcg = jnp.sum(hits * disc, axis=1)
      ideal_len = jnp.minimum(num_relevant, k)
      idcg = jnp.sum(
          jnp.where(jnp.arange(k)[None, :] < ideal_len[:, None], disc[None, :], 0.0), axis=1
      )
      value = dcg / jnp.where(idcg > 0, idcg, 1.0)
    elif name == 'map':
      prec_at_r = jnp.cumsum(hits, axis=1) / jnp.arange(1, k + 1, dtype=jnp.float32)
      value = jnp.sum(prec_at_r * hits, axis=1) / jnp.maximum(jnp.minimum(num_relevant, k), 1.0)
    else:
      raise ValueError(f'unknown metric {name!r}; choose from {METRIC_NAMES}.')
    out[name] = jnp.where(valid, value, jnp.nan)
  return out


def ranking_metrics(
    scores: Array,
    relevant: Array,
    ks: Sequence[int] = (10, 20, 40),
    names: Sequence[str] = ('recall', 'ndcg'),
    candidate_mask: Array | None = None,
) -> dict[str, Array]:
  """Several metrics at several cut-offs from a single top-max(ks).

  Args:
    scores: float [B, N]; relevant: bool [B, N]; candidate_mask: optional bool [B, N].
    ks: cut-offs (each in [1, N]).
    names: subset of METRIC_NAMES.

  Returns:
    {f'{name}@{k}': float32 [B]} (NaN for rows without relevant candidates).
  """
  for name in names:
    if name not in METRIC_NAMES:
      raise ValueError(f'unknown metric {name!r}; choose from {METRIC_NAMES}.')
  if not ks:
    raise ValueError('ks must not be empty.')
  hits, num_rel = top_k_hits(scores, relevant, max(ks), candidate_mask)
  out = {}
  for k in ks:
    _check_k(k, jnp.shape(scores)[1])
    for name, value in _metrics_from_hits(hits, num_rel, k, names).items():
      out[f'{name}@{k}'] = value
  return out


def _single(name: str, scores, relevant, k, candidate_mask) -> Array:
  hits, num_rel = top_k_hits(scores, relevant, k, candidate_mask)
  return _metrics_from_hits(hits, num_rel, k, (name,))[name]


def recall_at_k(
    scores: Array, relevant: Array, k: int, candidate_mask: Array | None = None
) -> Array:
  """Recall@K = hits in top K / |gt|. float32 [B], NaN where |gt| = 0."""
  return _single('recall', scores, relevant, k, candidate_mask)


def precision_at_k(
    scores: Array, relevant: Array, k: int, candidate_mask: Array | None = None
) -> Array:
  """Precision@K = hits in top K / K. float32 [B], NaN where |gt| = 0."""
  return _single('precision', scores, relevant, k, candidate_mask)


def hit_rate_at_k(
    scores: Array, relevant: Array, k: int, candidate_mask: Array | None = None
) -> Array:
  """HitRate@K = 1 if any relevant item is in the top K. float32 [B], NaN where |gt| = 0."""
  return _single('hit_rate', scores, relevant, k, candidate_mask)


def f1_at_k(scores: Array, relevant: Array, k: int, candidate_mask: Array | None = None) -> Array:
  """F1@K = harmonic mean of Precision@K and Recall@K (0 without hits). float32 [B], NaN where |gt| = 0."""
  return _single('f1', scores, relevant, k, candidate_mask)


def ndcg_at_k(scores: Array, relevant: Array, k: int, candidate_mask: Array | None = None) -> Array:
  """NDCG@K with binary gains; IDCG over min(|gt|, K) ideal hits. float32 [B], NaN where |gt| = 0."""
  return _single('ndcg', scores, relevant, k, candidate_mask)


def average_precision_at_k(
    scores: Array, relevant: Array, k: int, candidate_mask: Array | None = None
) -> Array:
  """AP@K = sum_r hit_r * Precision@r / min(|gt|, K); its row mean is mAP@K.

  Returns float32 [B], NaN where |gt| = 0.
  """
  return _single('map', scores, relevant, k, candidate_mask)


def auc(scores: Array, relevant: Array, candidate_mask: Array | None = None) -> Array:
  """Per-row ROC AUC over candidates: P(relevant scored above irrelevant), ties = 1/2.

  O(N log N) per row (sort + binary search), no [N, N] pair matrix.

  Args:
    scores: float [B, N] (finite for candidates); relevant: bool [B, N];
    candidate_mask: optional bool [B, N].

  Returns:
    float32 [B]; NaN for rows without a relevant or without an irrelevant candidate.
  """
  scores = jnp.asarray(scores, jnp.float32)
  relevant = jnp.asarray(relevant).astype(bool)
  if scores.ndim != 2 or relevant.shape != scores.shape:
    raise ValueError(
        f'scores and relevant must both be [B, N]; got {scores.shape}, {relevant.shape}.'
    )
  cand = (
      jnp.ones_like(relevant)
      if candidate_mask is None
      else jnp.asarray(candidate_mask).astype(bool)
  )
  if cand.shape != scores.shape:
    raise ValueError(
        f'candidate_mask must have the shape of scores {scores.shape}, got {cand.shape}.'
    )
  pos = relevant & cand
  neg = ~relevant & cand
  num_pos = jnp.sum(pos, axis=1).astype(jnp.float32)
  num_neg = jnp.sum(neg, axis=1).astype(jnp.float32)
  neg_sorted = jnp.sort(jnp.where(neg, scores, jnp.inf), axis=1)  # real negatives first

  def row(neg_row, score_row, n_neg):
    below = jnp.searchsorted(neg_row, score_row, side='left').astype(jnp.float32)
    below_or_equal = jnp.minimum(jnp.searchsorted(neg_row, score_row, side='right'), n_neg)
    return below + 0.5 * (below_or_equal.astype(jnp.float32) - below)

  wins = jax.vmap(row)(neg_sorted, scores, num_neg)  # [B, N] for every item; keep positives only
  total = jnp.sum(jnp.where(pos, wins, 0.0), axis=1)
  valid = (num_pos > 0) & (num_neg > 0)
  return jnp.where(valid, total / jnp.where(valid, num_pos * num_neg, 1.0), jnp.nan)


def sum_and_count(values: Array) -> tuple[Array, Array]:
  """(sum of non-NaN entries, number of non-NaN entries) as float32 scalars, for chunked averaging."""
  values = jnp.asarray(values, jnp.float32)
  ok = ~jnp.isnan(values)
  return jnp.sum(jnp.where(ok, values, 0.0)), jnp.sum(ok.astype(jnp.float32))


def mean_over_valid(values: Array) -> Array:
  """Mean over non-NaN entries (NaN if there are none)."""
  total, count = sum_and_count(values)
  return jnp.where(count > 0, total / jnp.maximum(count, 1.0), jnp.nan)
