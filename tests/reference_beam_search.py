"""Independent float64 reference of the MOSTRA beam-search rule (the test oracle).

Written from the rule's text (paper Sec. 4.5, Eq. 8-9, as settled in the docstring of
larp_jax/decoding/beam_search.py), not from the decoder: plain Python over beams and candidates,
float64 arithmetic, candidate lists sorted with Python's `sorted`.

  * available a = valid tracks not in the beam; r_hat = max r over a;
  * t in a is allowed iff r_hat - r_t <= 0, or
      relative: r_hat - r_t <= (epsilon + 1e-6) * |r_hat|
      absolute: r_hat - r_t <= epsilon + 1e-6 * |r_hat|;
  * step score r_t + (1/n) sum_j sqrt(c_j + E_tj)   (marginal: minus (1/n) sum_j sqrt(c_j));
  * beam score = sum of step scores; keep the beam_size best (beam, track) extensions, ties to the
    lower beam then the lower track; stop extending once the valid tracks are used up.

Besides the best sequence and score, `reference_session` reports whether the float64 values came
near a tie (two candidate scores among the kept ones and the first dropped one within
`TIE_TOL`) or near the threshold: there a float32 decoder may legitimately pick another
extension, and the tests then check the decoder's own sequence with `path_score` instead.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

RTOL = 1e-6
TIE_TOL = 1e-5


@dataclasses.dataclass
class Decoded:
  sequence: np.ndarray  # int [length], -1 past the valid tracks
  score: float
  near_tie: bool


def _allowed(r_hat: float, r_t: float, epsilon: float, threshold: str) -> tuple[bool, bool]:
  """(allowed, near the boundary) for one track."""
  gap = r_hat - r_t
  if threshold == 'relative':
    bound = (epsilon + RTOL) * abs(r_hat)
  elif threshold == 'absolute':
    bound = epsilon + RTOL * abs(r_hat)
  else:
    raise ValueError(threshold)
  near = gap > 0 and abs(gap - bound) <= 1e-7 * max(abs(r_hat), 1.0)
  return gap <= 0 or gap <= bound, near


def _gain(counts: list[float], e_t: list[float], gain: str) -> float:
  total = 0.0
  for c, e in zip(counts, e_t):
    total += math.sqrt(c + e)
    if gain == 'marginal':
      total -= math.sqrt(c)
  return total


def reference_session(
    relevance, objectives, valid, *, length, beam_size, epsilon, threshold='relative', gain='total'
) -> Decoded:
  """Decodes one session: relevance [N], objectives [N, J], valid [N] bool."""
  r = [float(x) for x in np.asarray(relevance, np.float64)]
  e = np.asarray(objectives, np.float64).tolist()
  ok = [bool(x) for x in np.asarray(valid)]
  num_objectives = np.asarray(objectives).shape[1]
  epsilon = float(epsilon)
  beams = [([], 0.0, [0.0] * num_objectives)]  # (chosen, score, counts), best first
  near_tie = False
  for n in range(1, length + 1):
    if n > sum(ok):
      break
    candidates = []
    for b, (chosen, score, counts) in enumerate(beams):
      available = [t for t in range(len(r)) if ok[t] and t not in chosen]
      r_hat = max(r[t] for t in available)
      for t in available:
        allowed, near = _allowed(r_hat, r[t], epsilon, threshold)
        near_tie |= near
        if allowed:
          step = r[t] + _gain(counts, e[t], gain) / n
          candidates.append((score + step, b, t))
    ranked = sorted(candidates, key=lambda c: (-c[0], c[1], c[2]))
    head = ranked[: beam_size + 1]
    near_tie |= any(abs(a[0] - b[0]) <= TIE_TOL for a, b in zip(head, head[1:]))
    beams = [
        (beams[b][0] + [t], s, [c + x for c, x in zip(beams[b][2], e[t])])
        for s, b, t in ranked[:beam_size]
    ]
  chosen, score, _ = beams[0]
  sequence = np.full(length, -1, np.int64)
  sequence[: len(chosen)] = chosen
  return Decoded(sequence=sequence, score=score, near_tie=near_tie)


def path_score(
    relevance, objectives, valid, sequence, *, epsilon, threshold='relative', gain='total'
) -> tuple[bool, float]:
  """(every pick valid, unused and allowed by the rule given its prefix; float64 path score).

  `sequence` int [length] must hold min(length, number of valid tracks) picks, then -1.
  """
  r = np.asarray(relevance, np.float64)
  e = np.asarray(objectives, np.float64)
  ok = np.asarray(valid, bool)
  sequence = [int(t) for t in sequence]
  expected_picks = min(len(sequence), int(ok.sum()))
  if any(t < 0 for t in sequence[:expected_picks]) or any(
      t != -1 for t in sequence[expected_picks:]
  ):
    return False, float('nan')
  chosen, counts, score = [], [0.0] * e.shape[1], 0.0
  for n, t in enumerate(sequence[:expected_picks], start=1):
    if not (0 <= t < len(r)) or not ok[t] or t in chosen:
      return False, float('nan')
    available = [u for u in range(len(r)) if ok[u] and u not in chosen]
    r_hat = max(r[u] for u in available)
    if not _allowed(r_hat, r[t], float(epsilon), threshold)[0]:
      return False, float('nan')
    score += r[t] + _gain(counts, e[t].tolist(), gain) / n
    counts = [c + x for c, x in zip(counts, e[t])]
    chosen.append(t)
  return True, score
