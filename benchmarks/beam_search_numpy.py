"""Baseline of benchmarks/beam_search.py: a per-session NumPy MOSTRA decoder, vectorised over
beams and candidates ([beam_size, N] arrays per position), float32.

The rule is the one stated in larp_jax/decoding/beam_search.py (threshold inclusive with a 1e-6
relative tolerance, Eq. 9 gain, ties to the lower flat index beam * N + track). This is a speed
baseline, not the test oracle (that is tests/reference_beam_search.py, float64).
"""

from __future__ import annotations

import numpy as np

NEG_INF = np.float32(-1e30)
RTOL = np.float32(1e-6)


def decode_session(
    relevance: np.ndarray,
    objectives: np.ndarray,
    valid: np.ndarray,
    *,
    length: int,
    beam_size: int,
    epsilon: float,
    threshold: str = 'relative',
    gain: str = 'total',
) -> tuple[np.ndarray, np.float32]:
  """One session: relevance [N], objectives [N, J], valid [N] -> (int32 [length], float32)."""
  r = np.where(valid, relevance, 0).astype(np.float32)
  e = np.where(valid[:, None], objectives, 0).astype(np.float32)
  num_tracks = len(r)
  eps = np.float32(epsilon)
  scores = np.full(beam_size, NEG_INF, np.float32)
  scores[0] = 0
  live = np.zeros(beam_size, bool)
  live[0] = True
  used = np.zeros((beam_size, num_tracks), bool)
  counts = np.zeros((beam_size, e.shape[1]), np.float32)
  sequences = np.full((beam_size, length), -1, np.int32)
  for n in range(1, min(length, int(valid.sum())) + 1):
    available = valid[None, :] & ~used & live[:, None]
    r_hat = np.where(available, r[None, :], NEG_INF).max(axis=1, keepdims=True)
    gap = r_hat - r[None, :]
    if threshold == 'relative':
      bound = (eps + RTOL) * np.abs(r_hat)
    else:
      bound = eps + RTOL * np.abs(r_hat)
    allowed = available & ((gap <= bound) | (gap <= 0))
    terms = np.sqrt(counts[:, None, :] + e[None, :, :]).sum(axis=-1)
    if gain == 'marginal':
      terms = terms - np.sqrt(counts).sum(axis=-1, keepdims=True)
    flat = np.where(allowed, scores[:, None] + r[None, :] + terms / np.float32(n), NEG_INF).ravel()
    if len(flat) > beam_size:
      part = np.argpartition(-flat, beam_size - 1)[:beam_size]
      # argpartition does not keep ties in index order: take every entry tied with the cut too.
      cut = flat[part].min()
      part = np.flatnonzero(flat >= cut)
    else:
      part = np.arange(len(flat))
    best = part[np.lexsort((part, -flat[part]))][:beam_size]
    top = flat[best]
    parent, track = best // num_tracks, best % num_tracks
    live = np.zeros(beam_size, bool)
    live[: len(best)] = top > NEG_INF
    new_scores = np.full(beam_size, NEG_INF, np.float32)
    new_scores[: len(best)] = np.where(live[: len(best)], top, NEG_INF)
    new_used = np.zeros_like(used)
    new_used[: len(best)] = used[parent]
    new_used[np.arange(len(best)), track] |= live[: len(best)]
    new_counts = np.zeros_like(counts)
    new_counts[: len(best)] = counts[parent] + e[track] * live[: len(best), None]
    new_sequences = np.full_like(sequences, -1)
    new_sequences[: len(best)] = sequences[parent]
    new_sequences[np.arange(len(best)), n - 1] = np.where(live[: len(best)], track, -1)
    scores, used, counts, sequences = new_scores, new_used, new_counts, new_sequences
  final = np.float32(scores[0]) if live[0] else np.float32(0)
  return sequences[0], final


def decode_batch(relevance, objectives, valid, **kwargs) -> tuple[np.ndarray, np.ndarray]:
  """`decode_session` over a batch: (int32 [B, length], float32 [B])."""
  results = [
      decode_session(relevance[i], objectives[i], valid[i], **kwargs) for i in range(len(relevance))
  ]
  return np.stack([s for s, _ in results]), np.array([s for _, s in results], np.float32)
