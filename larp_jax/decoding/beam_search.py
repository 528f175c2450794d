"""MOSTRA decoders: counterfactual submodular beam search, weighted-sum and sort decoders.

All decoders turn per-track scores of a batch of sessions into fixed-length sequences of track
indices `int32 [B, length]` that index into the candidate axis N. Padded (invalid) candidates are
never chosen, no track is chosen twice, and positions past a session's number of valid tracks
hold -1.

`mostra_beam_search` is the paper's just-in-time multi-objective beam search (Sec. 4.5, Eq. 8-9).
The rule it implements, at position n (1-based) of one beam:

  * available tracks a = valid tracks not yet chosen by the beam; r_hat = max_{t in a} r_t;
  * counterfactual filter (Eq. 8): a track t in a is allowed if delta_t <= epsilon, with
      threshold='relative' (paper):  delta_t = (r_hat - r_t) / max(|r_hat|, TINY)
      threshold='absolute' (blog):   delta_t =  r_hat - r_t
    so the best available track is always allowed and epsilon = 0 sorts by relevance. (The paper
    writes `delta_t < epsilon`; `<=` is used so that epsilon = 0 keeps the best track. The
    relative form divides by r_hat; |r_hat| floored at TINY keeps it defined for r_hat <= 0,
    which a sigmoid relevance in (0, 1] never produces.)
  * step score of an allowed track (Eq. 9), with c_j = sum of objective j over the beam's chosen
    tracks:
      gain='total' (default):   r_t + (1/n) * sum_j sqrt(c_j + E_tj)
      gain='marginal':          r_t + (1/n) * sum_j [sqrt(c_j + E_tj) - sqrt(c_j)]
    'marginal' is the submodular marginal gain g(S + t) - g(S) of g(S) = sum_j sqrt(count_j(S));
    the two differ by (1/n) sum_j sqrt(c_j), which is the same for every track of one beam but
    differs between beams, so the beams kept can differ.
  * a beam's score is the running sum of its step scores; each position keeps the `beam_size`
    best (beam, track) extensions over all beams of the session, ties to the lower flat index
    beam * N + track; at the start only beam 0 (score 0) is live.
  * once a session's valid tracks are used up its beams stay as they are: the remaining positions
    hold -1 and the score stops growing (a session with no valid track: all -1, score 0).

Float32 arithmetic is pinned down so that a plain NumPy implementation
(tests/numpy_beam_search.py) reproduces it bit for bit, ties included: the objective sum over j
runs left to right (j = 0, 1, ...); both divisions are written as multiplications by a
reciprocal, (r_hat - r_t) * (1 / max(|r_hat|, TINY)) and sum_j(...) * (1 / n), which is what
XLA rewrites `x / broadcast(y)` into anyway; and the product (1/n) * sum_j(...) is rounded on its
own before r_t is added (XLA on CPU would otherwise contract it into a fused multiply-add).
Objectives must be >= 0 (sqrt).

The decode is one jitted `lax.scan` over positions for the whole batch with fixed shapes; the
batch axis may be sharded (e.g. on a `('data', 'model')` mesh) since every operation is
independent per session.
"""

from __future__ import annotations

import functools
from typing import Literal

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

# Finite stand-in for -inf: masked candidates get exactly this value and never enter arithmetic.
NEG_INF = -1e30
# Floor of |r_hat| in the relative threshold.
TINY = 1e-12

_THRESHOLDS = ('relative', 'absolute')
_GAINS = ('total', 'marginal')


@flax.struct.dataclass
class BeamState:
  """Per-session beam state carried through the `lax.scan` over positions.

  Beams of a session are kept sorted by score, best first; dead slots (fewer allowed extensions
  than `beam_size`) come last with `live=False` and `scores=NEG_INF`. Sequences are not carried:
  each position emits back-pointers (parent slot, track) and the best sequence is read back at
  the end.

  Attributes:
    scores: float32 [B, K], running sum of step scores.
    live: bool [B, K], whether the slot holds a real beam.
    used: bool [B, K, N], tracks chosen by the beam.
    counts: float32 [B, K, J], sum of each objective over the beam's chosen tracks (c_j).
  """

  scores: Array
  live: Array
  used: Array
  counts: Array


def init_beam_state(
    batch: int, num_candidates: int, num_objectives: int, *, beam_size: int
) -> BeamState:
  """Initial state: only beam 0 is live, with score 0 and nothing chosen."""
  first = jnp.arange(beam_size) == 0
  return BeamState(
      scores=jnp.broadcast_to(
          jnp.where(first, 0.0, NEG_INF).astype(jnp.float32), (batch, beam_size)
      ),
      live=jnp.broadcast_to(first, (batch, beam_size)),
      used=jnp.zeros((batch, beam_size, num_candidates), bool),
      counts=jnp.zeros((batch, beam_size, num_objectives), jnp.float32),
  )


def _step_scores(
    state: BeamState,
    position: Array,
    relevance: Array,
    objective_columns: tuple[Array, ...],
    valid: Array,
    epsilon: Array,
    threshold: str,
    gain: str,
) -> Array:
  """Candidate beam scores float32 [B, K, N]; NEG_INF where the extension is not allowed.

  `objective_columns` holds the J objective columns, each float32 [B, N] (candidates on the
  minor axis, so each objective's sqrt term is a contiguous, vectorisable [B, K, N] array).
  """
  available = valid[:, None, :] & ~state.used & state.live[:, :, None]
  r = relevance[:, None, :]
  r_hat = jnp.max(jnp.where(available, r, NEG_INF), axis=-1, keepdims=True)
  gap = r_hat - r
  if threshold == 'relative':
    delta = gap * (1.0 / jnp.maximum(jnp.abs(r_hat), TINY))
  else:
    delta = gap
  # `gap <= 0` is implied by `delta <= epsilon` for epsilon >= 0; it keeps the best track allowed
  # even for a (traced) negative epsilon, so a live beam always has an extension.
  allowed = available & ((delta <= epsilon) | (gap <= 0))
  objective_sum = jnp.zeros(available.shape, jnp.float32)
  for j, column in enumerate(objective_columns):  # left to right: a fixed float32 order
    count = state.counts[:, :, j, None]
    term = jnp.sqrt(count + column[:, None, :])
    if gain == 'marginal':
      term = term - jnp.sqrt(count)
    objective_sum = objective_sum + term
  # The gain is >= 0 (objectives are >= 0), so the max is an identity; it is there to stop XLA
  # from fusing the multiply into a fused multiply-add with `r +`, which rounds once instead of
  # twice and would break bit-parity with a plain float32 evaluation.
  objective_gain = jnp.maximum(objective_sum * (1.0 / position.astype(jnp.float32)), 0.0)
  step = r + objective_gain
  return jnp.where(allowed, state.scores[:, :, None] + step, NEG_INF)


def _first_index_of(x: Array, value: Array) -> Array:
  """First index along the last axis where x == value (int32, [...] for x [..., M]).

  A float32 min (exact for M < 2**24), which XLA:CPU vectorises better than an int32 one.
  """
  positions = jnp.arange(x.shape[-1], dtype=jnp.float32)
  first = jnp.min(jnp.where(x == value[..., None], positions, float(x.shape[-1])), axis=-1)
  return first.astype(jnp.int32)


def _top_extensions(candidates: Array, beam_size: int) -> tuple[Array, Array, Array]:
  """The `beam_size` best (beam, track) entries of candidates [B, K, N], best first.

  Same result as `lax.top_k` over the flattened [B, K*N] axis (equal values: lower flat index
  beam * N + track first), but cheaper on CPU: one pass computes every beam's best value, then
  each round reads a single beam row [B, N], takes its first maximal entry, excludes it and
  refreshes that row's best value.

  Returns:
    scores float32 [B, beam_size], parent slots int32 [B, beam_size], tracks int32 [B, beam_size].
  """
  num_beams, num_candidates = candidates.shape[1:]
  columns = jnp.arange(num_candidates, dtype=jnp.int32)
  beams = jnp.arange(num_beams, dtype=jnp.int32)
  row_best = jnp.max(candidates, axis=-1)  # [B, K]
  taken_beam, taken_track, taken_score = [], [], []
  for _ in range(beam_size):
    best = jnp.max(row_best, axis=-1)  # [B]
    beam = _first_index_of(row_best, best)  # lowest beam holding the best value
    row = jnp.take_along_axis(candidates, beam[:, None, None], axis=1)[:, 0]  # [B, N]
    # Entries of this row taken in earlier rounds (-inf is below every candidate, NEG_INF too).
    for b, t in zip(taken_beam, taken_track):
      row = jnp.where((b == beam)[:, None] & (columns == t[:, None]), -jnp.inf, row)
    track = _first_index_of(row, best)
    taken_beam.append(beam)
    taken_track.append(track)
    taken_score.append(best)
    row = jnp.where(columns == track[:, None], -jnp.inf, row)
    row_best = jnp.where(beams == beam[:, None], jnp.max(row, axis=-1)[:, None], row_best)
  return (
      jnp.stack(taken_score, axis=-1),
      jnp.stack(taken_beam, axis=-1),
      jnp.stack(taken_track, axis=-1),
  )


def _beam_step(
    state: BeamState,
    position: Array,
    *,
    relevance: Array,
    objectives: Array,
    objective_columns: tuple[Array, ...],
    valid: Array,
    num_valid: Array,
    epsilon: Array,
    beam_size: int,
    threshold: str,
    gain: str,
) -> tuple[BeamState, tuple[Array, Array]]:
  """Extends every beam by one track at `position` (1-based) and keeps the best `beam_size`.

  Returns:
    The new state and back-pointers (parent slot int32 [B, K], track int32 [B, K]); sessions
    with no valid track left at this position keep their beams (parent = own slot, track = -1).
  """
  batch, _, num_candidates = state.used.shape
  candidates = _step_scores(
      state, position, relevance, objective_columns, valid, epsilon, threshold, gain
  )
  top_scores, parent, track = _top_extensions(candidates, beam_size)
  live = top_scores > NEG_INF

  def from_parent(x: Array) -> Array:
    return jnp.take_along_axis(x, parent.reshape(parent.shape + (1,) * (x.ndim - 2)), axis=1)

  picked = jax.nn.one_hot(track, num_candidates, dtype=bool) & live[:, :, None]
  picked_objectives = jnp.take_along_axis(objectives, track[:, :, None], axis=1)
  new = BeamState(
      scores=jnp.where(live, top_scores, NEG_INF),
      live=live,
      used=from_parent(state.used) | picked,
      counts=from_parent(state.counts) + jnp.where(live[:, :, None], picked_objectives, 0.0),
  )
  has_track = position <= num_valid

  def keep_or_update(new_x: Array, old_x: Array) -> Array:
    return jnp.where(has_track.reshape((-1,) + (1,) * (new_x.ndim - 1)), new_x, old_x)

  own_slot = jnp.broadcast_to(jnp.arange(beam_size, dtype=jnp.int32), parent.shape)
  pointers = (
      keep_or_update(parent, own_slot),
      keep_or_update(jnp.where(live, track, -1), jnp.full_like(track, -1)),
  )
  return jax.tree.map(keep_or_update, new, state), pointers


def _read_back(parents: Array, tracks: Array) -> Array:
  """Best sequence int32 [B, L] from back-pointers [L, B, K], starting at final slot 0."""

  def back(slot, pointers):
    parent, track = pointers
    here = slot[:, None]
    return (
        jnp.take_along_axis(parent, here, axis=1)[:, 0],
        jnp.take_along_axis(track, here, axis=1)[:, 0],
    )

  batch = parents.shape[1]
  _, sequence = jax.lax.scan(back, jnp.zeros((batch,), jnp.int32), (parents, tracks), reverse=True)
  return sequence.T


@functools.partial(jax.jit, static_argnames=('length', 'beam_size', 'threshold', 'gain'))
def _mostra_beam_search_jit(
    relevance: Array,
    objectives: Array,
    valid: Array,
    epsilon: Array,
    *,
    length: int,
    beam_size: int,
    threshold: str,
    gain: str,
) -> tuple[Array, Array]:
  relevance = relevance.astype(jnp.float32)
  objectives = objectives.astype(jnp.float32)
  valid = valid.astype(bool)
  epsilon = jnp.asarray(epsilon, jnp.float32)
  batch, num_candidates, num_objectives = objectives.shape
  state = init_beam_state(batch, num_candidates, num_objectives, beam_size=beam_size)
  step = functools.partial(
      _beam_step,
      relevance=relevance,
      objectives=objectives,
      objective_columns=tuple(objectives[:, :, j] for j in range(num_objectives)),
      valid=valid,
      num_valid=jnp.sum(valid, axis=-1, dtype=jnp.int32),
      epsilon=epsilon,
      beam_size=beam_size,
      threshold=threshold,
      gain=gain,
  )
  state, (parents, tracks) = jax.lax.scan(step, state, jnp.arange(1, length + 1, dtype=jnp.int32))
  return _read_back(parents, tracks), state.scores[:, 0]


def _check_inputs(relevance, objectives, valid, length: int) -> None:
  if relevance.ndim != 2:
    raise ValueError(f'relevance must be [B, N], got shape {relevance.shape}')
  if objectives.ndim != 3 or objectives.shape[:2] != relevance.shape:
    raise ValueError(
        f'objectives must be [B, N, J] with [B, N] = {relevance.shape}, '
        f'got shape {objectives.shape}'
    )
  if valid.shape != relevance.shape:
    raise ValueError(
        f'valid must have the shape of relevance {relevance.shape}, ' f'got {valid.shape}'
    )
  if relevance.shape[1] < 1:
    raise ValueError(f'relevance needs at least one candidate, got shape {relevance.shape}')
  if not isinstance(length, (int, np.integer)) or length < 1:
    raise ValueError(f'length must be a positive int, got {length!r}')


def mostra_beam_search(
    relevance: Array,
    objectives: Array,
    valid: Array,
    *,
    length: int,
    beam_size: int,
    epsilon: float | Array,
    threshold: Literal['relative', 'absolute'] = 'relative',
    gain: Literal['total', 'marginal'] = 'total',
) -> tuple[Array, Array]:
  """MOSTRA counterfactual submodular multi-objective beam search (see the module docstring).

  Args:
    relevance: float [B, N] predicted relevance r (the SetTRM sigmoid output).
    objectives: float [B, N, J] artist/platform objective labels E (binary in the paper).
    valid: bool [B, N], False for padded candidates (never chosen).
    length: number of positions to decode (static).
    beam_size: beams kept per session (static).
    epsilon: counterfactual tolerance (>= 0; a scalar, may be traced: sweeping it does not
      recompile).
    threshold: 'relative' (paper Eq. 8) or 'absolute' gap r_hat - r_t.
    gain: 'total' (sum_j sqrt(c_j + E_tj)) or 'marginal' (minus sum_j sqrt(c_j)).

  Returns:
    sequences: int32 [B, length], the best beam's track indices, -1 past the valid tracks.
    scores: float32 [B], the best beam's score.
  """
  if threshold not in _THRESHOLDS:
    raise ValueError(f'threshold must be one of {_THRESHOLDS}, got {threshold!r}')
  if gain not in _GAINS:
    raise ValueError(f'gain must be one of {_GAINS}, got {gain!r}')
  if not isinstance(beam_size, (int, np.integer)) or beam_size < 1:
    raise ValueError(f'beam_size must be a positive int, got {beam_size!r}')
  if isinstance(epsilon, (int, float)) and epsilon < 0:
    raise ValueError(f'epsilon must be >= 0, got {epsilon}')
  _check_inputs(relevance, objectives, valid, length)
  return _mostra_beam_search_jit(
      relevance,
      objectives,
      valid,
      epsilon,
      length=int(length),
      beam_size=int(beam_size),
      threshold=threshold,
      gain=gain,
  )


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
  relevance = relevance.astype(jnp.float32)
  weighted = jnp.sum(objectives.astype(jnp.float32) * jnp.asarray(alpha, jnp.float32), axis=-1)
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
  _check_inputs(relevance, objectives, valid, length)
  scores = weighted_sum_scores(
      relevance, objectives, alpha=alpha, relevance_threshold=relevance_threshold
  )
  return sort_decode(scores, valid, length=length)
