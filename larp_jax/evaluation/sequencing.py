"""Evaluation of decoded track sequences per objective (MOSTRA Table 1 and Fig. 5).

A decoder returns `sequences int32 [B, L]`: indices into the candidate axis N, best first, -1 past
the session's valid tracks (see `larp_jax.decoding.beam_search`). The metrics score that order
against binary labels `[B, N]` of one objective (SAT, BOOST, EXPOSURE or DISCOVERY).

Order to scores: the track at position p (0-based) gets score L - p; tracks the decoder did not
choose get -inf, which rax treats as unranked (never retrieved). Metrics come from rax with
`where=valid`, so padded candidates never count, while valid tracks the decoder did not choose
still count in the ideal ranking.

Definitions (K the cut-off, rel_r = 1 if the track at rank r is relevant, |gt| the number of
relevant valid tracks of the session):
  NDCG@K = sum_{r<=K} rel_r / log2(r + 1)  /  sum_{r<=min(|gt|, K)} 1 / log2(r + 1)
           (`rax.ndcg_metric`, topn=K: gain 2^y - 1 = y for binary labels, discount 1/log2(r+1),
           ideal DCG over all valid tracks of the session sorted by label).
  AP@K   = sum_{r<=K} rel_r * Precision@r / min(|gt|, K)
           (`rax.ap_metric`, topn=K, divides by |gt|; it is rescaled here by |gt| / min(|gt|, K)
           so a perfect top K scores 1 even when the session holds more than K relevant tracks).
  mAP@K  = mean of AP@K over sessions. For Fig. 5 ("we only consider tracks that are streamed")
           the relevant tracks of objective j are those with E_j = 1 AND SAT = 1
           (`streamed_only=True`); for SAT itself that is just SAT.

A session without any relevant valid track has no defined NDCG/AP for that objective: its
per-session value is NaN and it is left out of the mean (as in `larp_jax.evaluation.metrics`),
and `count/<objective>` reports how many sessions entered each mean. Sessions without any valid
track (batch padding) are NaN for every objective.
"""

from __future__ import annotations

from collections.abc import Sequence
import functools

import jax
import jax.numpy as jnp
import numpy as np
import rax

Array = jax.Array

DEFAULT_OBJECTIVES = ('SAT', 'BOOST', 'EXPOSURE', 'DISCOVERY')


def order_scores(sequences: Array, num_candidates: int) -> Array:
  """Scores float32 [B, N] that rank candidates in the decoded order.

  Args:
    sequences: int [B, L] candidate indices, best first; -1 entries are ignored.
    num_candidates: N.

  Returns:
    float32 [B, N]: L - p for the candidate at position p, -inf for candidates not in the sequence.
  """
  sequences = jnp.asarray(sequences)
  if sequences.ndim != 2:
    raise ValueError(f'sequences must be [B, L], got shape {sequences.shape}')
  length = sequences.shape[1]
  chosen = jax.nn.one_hot(sequences, num_candidates, dtype=jnp.float32)  # -1 -> all zeros
  weights = (length - jnp.arange(length, dtype=jnp.float32))[None, :, None]
  score = jnp.sum(chosen * weights, axis=1)
  return jnp.where(jnp.sum(chosen, axis=1) > 0, score, -jnp.inf)


def _check(sequences: Array, labels: Array, valid: Array, k: int) -> None:
  if sequences.ndim != 2:
    raise ValueError(f'sequences must be [B, L], got shape {sequences.shape}')
  if labels.ndim != 2 or labels.shape[0] != sequences.shape[0]:
    raise ValueError(
        f'labels must be [B, N] with B = {sequences.shape[0]}, ' f'got shape {labels.shape}'
    )
  if valid.shape != labels.shape:
    raise ValueError(f'valid must have the shape of labels {labels.shape}, got {valid.shape}')
  if not isinstance(k, (int, np.integer)) or k < 1:
    raise ValueError(f'k must be a positive int, got {k!r}')


def _prepare(sequences, labels, valid):
  valid = valid.astype(bool)
  relevant = (labels > 0) & valid
  scores = jnp.where(valid, order_scores(sequences, labels.shape[1]), -jnp.inf)
  return scores, relevant.astype(jnp.float32), valid, jnp.sum(relevant, axis=-1)


def ndcg_at_k(sequences: Array, labels: Array, valid: Array, k: int) -> Array:
  """Per-session NDCG@k of the decoded order (module docstring).

  Args:
    sequences: int [B, L] decoded candidate indices (-1 = none).
    labels: [B, N] binary labels of one objective (> 0 = relevant).
    valid: bool [B, N], False for padded candidates.
    k: cut-off.

  Returns:
    float32 [B]; NaN for sessions without a relevant valid track.
  """
  _check(jnp.asarray(sequences), jnp.asarray(labels), jnp.asarray(valid), k)
  return _ndcg_jit(sequences, labels, valid, int(k))


@functools.partial(jax.jit, static_argnums=3)
def _ndcg_jit(sequences, labels, valid, k):
  scores, relevant, valid, num_relevant = _prepare(sequences, labels, valid)
  value = rax.ndcg_metric(scores, relevant, where=valid, topn=k, reduce_fn=None)
  return jnp.where(num_relevant > 0, value, jnp.nan).astype(jnp.float32)


def ap_at_k(sequences: Array, labels: Array, valid: Array, k: int) -> Array:
  """Per-session AP@k of the decoded order, normalised by min(|gt|, k) (module docstring).

  Args:
    sequences: int [B, L]; labels: [B, N] binary (> 0 = relevant); valid: bool [B, N]; k: cut-off.

  Returns:
    float32 [B]; NaN for sessions without a relevant valid track.
  """
  _check(jnp.asarray(sequences), jnp.asarray(labels), jnp.asarray(valid), k)
  return _ap_jit(sequences, labels, valid, int(k))


@functools.partial(jax.jit, static_argnums=3)
def _ap_jit(sequences, labels, valid, k):
  scores, relevant, valid, num_relevant = _prepare(sequences, labels, valid)
  value = rax.ap_metric(scores, relevant, where=valid, topn=k, reduce_fn=None)
  num_relevant = num_relevant.astype(jnp.float32)
  rescale = num_relevant / jnp.maximum(jnp.minimum(num_relevant, float(k)), 1.0)
  return jnp.where(num_relevant > 0, value * rescale, jnp.nan).astype(jnp.float32)


def per_session_metrics(
    sequences: Array,
    labels: Array,
    valid: Array,
    *,
    ndcg_ks: Sequence[int] = (5, 10),
    map_ks: Sequence[int] = (5,),
    objective_names: Sequence[str] = DEFAULT_OBJECTIVES,
    sat_index: int = 0,
    streamed_only: bool = True,
) -> dict[str, np.ndarray]:
  """Per-session metrics of one decoder's output for every objective.

  Args:
    sequences: int [B, L] decoded candidate indices.
    labels: [B, N, J] binary labels, J = len(objective_names).
    valid: bool [B, N].
    ndcg_ks: NDCG cut-offs; map_ks: AP cut-offs.
    objective_names: names of the J label columns.
    sat_index: column of SAT (for `streamed_only`).
    streamed_only: AP counts a track as relevant for objective j only if it was also streamed
      (E_j = 1 and SAT = 1; paper Fig. 5). NDCG always uses the objective's own label.

  Returns:
    {'ndcg@K/<objective>': float32 [B], 'map@K/<objective>': float32 [B]} (NaN where undefined).
  """
  labels = jnp.asarray(labels)
  if labels.ndim != 3 or labels.shape[-1] != len(objective_names):
    raise ValueError(
        f'labels must be [B, N, J] with J = {len(objective_names)} '
        f'({tuple(objective_names)}), got shape {labels.shape}'
    )
  if not 0 <= sat_index < len(objective_names):
    raise ValueError(f'sat_index {sat_index} out of range for {tuple(objective_names)}')
  sequences, valid = jnp.asarray(sequences), jnp.asarray(valid)
  for k in tuple(ndcg_ks) + tuple(map_ks):
    _check(sequences, labels[..., 0], valid, k)
  out = _per_session_jit(
      sequences,
      labels,
      valid,
      tuple(int(k) for k in ndcg_ks),
      tuple(int(k) for k in map_ks),
      tuple(objective_names),
      int(sat_index),
      bool(streamed_only),
  )
  return {name: np.asarray(value) for name, value in out.items()}


@functools.partial(jax.jit, static_argnums=(3, 4, 5, 6, 7))
def _per_session_jit(
    sequences, labels, valid, ndcg_ks, map_ks, objective_names, sat_index, streamed_only
):
  out = {}
  sat = labels[..., sat_index] > 0
  for j, name in enumerate(objective_names):
    column = labels[..., j]
    for k in ndcg_ks:
      out[f'ndcg@{k}/{name}'] = _ndcg_jit(sequences, column, valid, k)
    ap_labels = (column > 0) & sat if streamed_only else column > 0
    for k in map_ks:
      out[f'map@{k}/{name}'] = _ap_jit(sequences, ap_labels, valid, k)
  return out


def mean_metrics(per_session: dict[str, np.ndarray]) -> dict[str, float]:
  """Means over the sessions where each metric is defined, plus `count/<metric>` session counts.

  A metric with no defined session at all has mean NaN (and count 0).
  """
  out = {}
  for name, values in per_session.items():
    values = np.asarray(values, np.float64)
    defined = ~np.isnan(values)
    count = int(defined.sum())
    out[name] = float(values[defined].mean()) if count else float('nan')
    out[f'count/{name}'] = count
  return out
