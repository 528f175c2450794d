"""The decoders MOSTRA is compared with (paper Table 1): sort by one score, and the weighted sum
of relevance and objectives sorted (WtSUM). Split from ``beam_search.py``."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from larp_jax.decoding import beam_search

Array = jax.Array


@functools.partial(jax.jit, static_argnames=('length',))
def _sort_decode_jit(scores: Array, valid: Array, *, length: int) -> Array:
  num_candidates = scores.shape[-1]
  # lexsort: last key is primary; valid first, then score descending, then index (stable).
  order = jnp.lexsort((-scores.astype(jnp.float32), ~valid.astype(bool)), axis=-1)
  order = order.astype(jnp.int32)
  if length <= num_candidates:
    order = order[:, :length]
  else:
    order = jnp.pad(order, ((0, 0), (0, length - num_candidates)), constant_values=-1)
  num_valid = jnp.sum(valid, axis=-1, dtype=jnp.int32)
  return jnp.where(jnp.arange(length)[None, :] < num_valid[:, None], order, -1)


def sort_decode(scores: Array, valid: Array, *, length: int) -> Array:
  """Sorts candidates by score (descending, ties to the lower index); SetRank's decoder.

  Args:
    scores: float [B, N].
    valid: bool [B, N]; invalid candidates are never chosen.
    length: number of positions (static).

  Returns:
    int32 [B, length] candidate indices, -1 past the number of valid candidates.
  """
  if scores.ndim != 2:
    raise ValueError(f'scores must be [B, N], got shape {scores.shape}')
  if valid.shape != scores.shape:
    raise ValueError(f'valid must have the shape of scores {scores.shape}, got {valid.shape}')
  if not isinstance(length, (int, np.integer)) or length < 1:
    raise ValueError(f'length must be a positive int, got {length!r}')
  return _sort_decode_jit(scores, valid, length=int(length))


def weighted_sum_scores(
    relevance: Array, objectives: Array, *, alpha: float | Array, relevance_threshold: float = 0.5
) -> Array:
  """MOSTRA-WtSUM scores (App. A): s_i = r_i + 1{r_i > threshold} * alpha * sum_j E_ij.

  Args:
    relevance: float [B, N].
    objectives: float [B, N, J].
    alpha: scalar weight, or float [J] per-objective weights.
    relevance_threshold: 0.5 in the paper.

  Returns:
    float32 [B, N].
  """
  relevance = jnp.asarray(relevance, jnp.float32)
  weighted = jnp.sum(
      jnp.asarray(objectives, jnp.float32) * jnp.asarray(alpha, jnp.float32), axis=-1
  )
  return relevance + jnp.where(relevance > relevance_threshold, weighted, 0.0)


def weighted_sum_decode(
    relevance: Array,
    objectives: Array,
    valid: Array,
    *,
    alpha: float | Array,
    length: int,
    relevance_threshold: float = 0.5,
) -> Array:
  """MOSTRA-WtSUM: sort by `weighted_sum_scores` (non-counterfactual online baseline).

  Args:
    relevance: float [B, N]; objectives: float [B, N, J]; valid: bool [B, N].
    alpha: scalar or [J] weights; length: positions (static); relevance_threshold: 0.5 (paper).

  Returns:
    int32 [B, length], -1 past the number of valid candidates.
  """
  relevance, objectives, valid = (
      np.asarray(x) if not isinstance(x, jax.Array) else x for x in (relevance, objectives, valid)
  )
  beam_search.check_shapes(relevance, objectives, valid, length)
  scores = weighted_sum_scores(
      relevance, objectives, alpha=alpha, relevance_threshold=relevance_threshold
  )
  return sort_decode(scores, valid, length=length)
