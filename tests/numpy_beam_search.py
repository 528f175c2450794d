"""Plain per-session NumPy implementation of the MOSTRA beam-search rule (test/benchmark oracle).

One session at a time, loops over positions and beams, vectorised only over the tracks of one
beam. Everything is float32, the objective sum runs j = 0, 1, ..., divisions are multiplications
by a reciprocal and the gain (1/n) * sum_j(...) is rounded before r_t is added, so the arithmetic
is bit-identical to `larp_jax.decoding.beam_search.mostra_beam_search` (whose module docstring
states the rule).
"""

from __future__ import annotations

import numpy as np

TINY = np.float32(1e-12)


def beam_search_session(
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
  """Decodes one session.

  Args:
    relevance: [N] relevance r.
    objectives: [N, J] objective labels E.
    valid: [N] bool.
    length, beam_size, epsilon, threshold, gain: as in `mostra_beam_search`.

  Returns:
    (int32 [length] best sequence with -1 past the valid tracks, float32 best score).
  """
  r = np.asarray(relevance, np.float32)
  e = np.asarray(objectives, np.float32)
  valid = np.asarray(valid, bool)
  num_tracks, num_objectives = e.shape
  eps = np.float32(epsilon)
  # A beam is (chosen tracks, score, counts c_j); the list is kept best first.
  beams = [([], np.float32(0.0), np.zeros(num_objectives, np.float32))]
  for position in range(1, length + 1):
    if position > valid.sum():
      break
    candidates = []  # (score, flat index, beam, track)
    for b, (chosen, score, counts) in enumerate(beams):
      available = valid.copy()
      available[chosen] = False
      r_hat = r[available].max()
      gap = r_hat - r
      if threshold == 'relative':
        delta = gap * (np.float32(1) / max(np.abs(r_hat), TINY))
      else:
        delta = gap
      allowed = available & (delta <= eps)
      terms = np.sqrt(counts[None, :] + e)
      if gain == 'marginal':
        terms = terms - np.sqrt(counts)[None, :]
      objective_sum = np.zeros(num_tracks, np.float32)
      for j in range(num_objectives):
        objective_sum = objective_sum + terms[:, j]
      step = r + objective_sum * (np.float32(1) / np.float32(position))
      for t in np.flatnonzero(allowed):
        candidates.append((score + step[t], b * num_tracks + t, b, t))
    candidates.sort(key=lambda c: (-c[0], c[1]))
    beams = [
        (beams[b][0] + [t], np.float32(s), beams[b][2] + e[t])
        for s, _, b, t in candidates[:beam_size]
    ]
  chosen, score, _ = beams[0]
  sequence = np.full(length, -1, np.int32)
  sequence[: len(chosen)] = chosen
  return sequence, np.float32(score)


def beam_search_batch(relevance, objectives, valid, **kwargs) -> tuple[np.ndarray, np.ndarray]:
  """`beam_search_session` over a batch: returns (int32 [B, length], float32 [B])."""
  results = [
      beam_search_session(relevance[i], objectives[i], valid[i], **kwargs)
      for i in range(len(relevance))
  ]
  return (np.stack([s for s, _ in results]), np.array([score for _, score in results], np.float32))
