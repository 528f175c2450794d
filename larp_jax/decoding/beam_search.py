"""MOSTRA decoders: counterfactual submodular beam search, weighted-sum and sort decoders.

All decoders turn per-track scores of a batch of sessions into fixed-length sequences of track
indices `int32 [B, length]` that index into the candidate axis N. Padded (invalid) candidates are
never chosen, no track is chosen twice, and positions past a session's number of valid tracks
hold -1. Values at padded candidates are ignored (they may be anything, NaN included).

`mostra_beam_search` is the paper's just-in-time multi-objective beam search (Sec. 4.5, Eq. 8-9).
THE RULE, at position n (1-based) of one beam:

  * available tracks a = valid tracks not yet chosen by the beam; r_hat = max_{t in a} r_t;
  * counterfactual filter (Eq. 8), inclusive up to float rounding: a track t in a is allowed iff
      threshold='relative' (paper):  r_hat - r_t <= (epsilon + RTOL) * |r_hat|
      threshold='absolute' (blog):   r_hat - r_t <=  epsilon + RTOL  * |r_hat|
    or r_hat - r_t <= 0 (the best available track is always allowed). RTOL = 1e-6 is a relative
    tolerance on the scale of r_hat: it makes the threshold inclusive at exactly delta = epsilon
    (r_hat = 1.0, r_t = 0.95, epsilon = 0.05 allows t although float32 gives 1 - 0.95 >
    0.05 * 1 by one ulp). The paper writes `delta_t < epsilon`; `<=` (plus RTOL) is used so that
    epsilon = 0 keeps the best track and a gap of exactly epsilon is allowed. |r_hat| keeps the
    relative form defined for r_hat <= 0, which a sigmoid relevance in (0, 1] never produces.
  * step score of an allowed track (Eq. 9), with c_j = sum of objective j over the beam's chosen
    tracks:
      gain='total' (default):   r_t + (1/n) * sum_j sqrt(c_j + E_tj)
      gain='marginal':          r_t + (1/n) * sum_j [sqrt(c_j + E_tj) - sqrt(c_j)]
    'marginal' is the submodular marginal gain g(S + t) - g(S) of g(S) = sum_j sqrt(count_j(S)).
  * a beam's score is the running sum of its step scores; each position keeps the `beam_size`
    best (beam, track) extensions over all beams of the session, ties to the lower flat index
    beam * N + track (lower beam, then lower track); at the start only beam 0 (score 0) is live.
  * once a session's valid tracks are used up its beams stay as they are: the remaining positions
    hold -1 and the score stops growing (a session with no valid track: all -1, score 0).

Inputs are checked eagerly, outside the jitted core: NaN/inf relevance or objectives (at valid
candidates), negative objectives, a non-bool `valid`, mismatched shapes and bad static arguments
raise a ValueError naming the argument. (Called under an outer `jax.jit`, the values are tracers:
only shapes are checked and the exact pool below is off.)

Speed (same results; see benchmarks/beam_search.py):
  * exact candidate pool: at any position n <= length, r_hat >= r_(L), the L-th best valid
    relevance, and r_t >= r_hat - c |r_hat| is increasing in r_hat, so only tracks with
    r_t >= r_(L) - c |r_(L)| (relative; minus a 1e-5 slack for rounding) can ever be allowed. A
    cheap pre-pass counts them; the decode runs on the P best tracks (P = that count over the
    batch rounded up to a multiple of 4), kept in their original index order so ties resolve as
    without the pool. About 14 of 100 uniform relevances at epsilon = 0.05, length 10.
  * large batches are decoded in tiles of `tile_size` sessions (`lax.map` inside the one jitted
    call) so the per-step working set stays in cache;
  * the position loop is a fully unrolled `lax.scan`; the short-session test is folded into the
    availability mask, so only [B, K] arrays are re-selected for finished sessions.
The batch axis may be sharded (e.g. on a `('data', 'model')` mesh): every operation is per session.
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

# Finite stand-in for -inf: masked candidates get exactly this value and never enter arithmetic.
NEG_INF = -1e30
# Relative tolerance of the counterfactual threshold (module docstring).
RTOL = 1e-6
# Extra slack of the exact-pool bound (relative to |r_(L)| + c): only ever enlarges the pool.
POOL_SLACK = 1e-5
# Sessions per tile inside the jitted call (fits the per-step working set in cache on CPU).
DEFAULT_TILE_SIZE = 1024
# Up to this many (beam, track) extensions a position, the flat top-k is the faster one on CPU.
FLAT_TOP_K_MAX = 256

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


def _step_scores(state, position, relevance, objective_columns, valid, has_track, epsilon, rule):
  """Candidate beam scores float32 [B, K, N]; NEG_INF where the extension is not allowed."""
  threshold, gain, binary = rule
  available = (valid & has_track[:, None])[:, None, :] & ~state.used & state.live[:, :, None]
  r = relevance[:, None, :]
  r_hat = jnp.max(jnp.where(available, r, NEG_INF), axis=-1, keepdims=True)
  gap = r_hat - r
  if threshold == 'relative':
    bound = (epsilon + RTOL) * jnp.abs(r_hat)
  else:
    bound = epsilon + RTOL * jnp.abs(r_hat)
  allowed = available & ((gap <= bound) | (gap <= 0))
  objective_sum = jnp.zeros(available.shape, jnp.float32)
  for j, column in enumerate(objective_columns):
    count = state.counts[:, :, j, None]
    if binary:  # E in {0, 1}: the same two square roots per beam, selected per track
      root0, root1 = jnp.sqrt(count), jnp.sqrt(count + 1.0)
      if gain == 'marginal':
        term = jnp.where(column[:, None, :] > 0, root1 - root0, 0.0)
      else:
        term = jnp.where(column[:, None, :] > 0, root1, root0)
    else:
      term = jnp.sqrt(count + column[:, None, :])
      if gain == 'marginal':
        term = term - jnp.sqrt(count)
    objective_sum = objective_sum + term
  step = r + objective_sum * (1.0 / position.astype(jnp.float32))
  return jnp.where(allowed, state.scores[:, :, None] + step, NEG_INF)


def _first_index_of(x: Array, value: Array) -> Array:
  """First index along the last axis where x == value (int32, [...] for x [..., M]).

  A float32 min (exact for M < 2**24), which XLA:CPU vectorises better than an int32 one.
  """
  positions = jnp.arange(x.shape[-1], dtype=jnp.float32)
  first = jnp.min(jnp.where(x == value[..., None], positions, float(x.shape[-1])), axis=-1)
  return first.astype(jnp.int32)


def _top_extensions_flat(candidates: Array, beam_size: int) -> tuple[Array, Array, Array]:
  """`_top_extensions` for small K * N: `beam_size` rounds of max / first index / mask over the
  flattened [B, K * N] candidates (fewer, larger operations than the row-wise version)."""
  batch, num_beams, num_candidates = candidates.shape
  flat = candidates.reshape(batch, num_beams * num_candidates)
  positions = jnp.arange(flat.shape[-1], dtype=jnp.float32)
  scores, flat_index = [], []
  for _ in range(beam_size):
    best = jnp.max(flat, axis=-1)
    first = jnp.min(jnp.where(flat == best[:, None], positions, float(flat.shape[-1])), axis=-1)
    flat = jnp.where(positions == first[:, None], -jnp.inf, flat)
    scores.append(best)
    flat_index.append(first.astype(jnp.int32))
  index = jnp.stack(flat_index, axis=-1)
  return jnp.stack(scores, axis=-1), index // num_candidates, index % num_candidates


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
    state,
    position,
    *,
    relevance,
    objectives,
    columns,
    valid,
    num_valid,
    epsilon,
    beam_size,
    rule,
    fallback=None,
):
  """Extends every beam by one track at `position` (1-based) and keeps the best `beam_size`.

  `state` may hold fewer slots than `beam_size` (position 1: only beam 0); `fallback` is then the
  `beam_size`-slot state that finished sessions keep.

  Returns:
    The new state and back-pointers (parent slot int32 [B, K], track int32 [B, K]); sessions
    with no valid track left at this position keep their beams (parent = own slot, track = -1).
  """
  num_candidates = state.used.shape[-1]
  has_track = position <= num_valid  # [B]
  candidates = _step_scores(state, position, relevance, columns, valid, has_track, epsilon, rule)
  if beam_size * num_candidates <= FLAT_TOP_K_MAX:
    top_scores, parent, track = _top_extensions_flat(candidates, beam_size)
  else:
    top_scores, parent, track = _top_extensions(candidates, beam_size)
  live = top_scores > NEG_INF

  def from_parent(x: Array) -> Array:
    return jnp.take_along_axis(x, parent.reshape(parent.shape + (1,) * (x.ndim - 2)), axis=1)

  picked = (track[:, :, None] == jnp.arange(num_candidates, dtype=jnp.int32)) & live[:, :, None]
  picked_objectives = jnp.where(
      live[:, :, None], jnp.take_along_axis(objectives, track[:, :, None], axis=1), 0.0
  )
  # Finished sessions (no track at this position) keep scores and liveness; their `used` and
  # `counts` are never read again (nothing is available to them at any later position).
  keep = has_track[:, None]
  old = state if fallback is None else fallback
  new = BeamState(
      scores=jnp.where(keep, jnp.where(live, top_scores, NEG_INF), old.scores),
      live=jnp.where(keep, live, old.live),
      used=from_parent(state.used) | picked,
      counts=from_parent(state.counts) + picked_objectives,
  )
  own_slot = jnp.broadcast_to(jnp.arange(beam_size, dtype=jnp.int32), parent.shape)
  pointers = (jnp.where(keep, parent, own_slot), jnp.where(keep & live, track, -1))
  return new, pointers


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
  _, sequence = jax.lax.scan(
      back, jnp.zeros((batch,), jnp.int32), (parents, tracks), reverse=True, unroll=True
  )
  return sequence.T


def _decode_block(relevance, objectives, valid, epsilon, *, length, beam_size, rule):
  """The beam search on one block of sessions (no pool): (int32 [b, L], float32 [b])."""
  batch, num_candidates, num_objectives = objectives.shape
  step = functools.partial(
      _beam_step,
      relevance=relevance,
      objectives=objectives,
      # The J objective columns [B, N], sliced once outside the scan (contiguous per column).
      columns=tuple(objectives[:, :, j] for j in range(num_objectives)),
      valid=valid,
      num_valid=jnp.sum(valid, axis=-1, dtype=jnp.int32),
      epsilon=epsilon,
      beam_size=beam_size,
      rule=rule,
  )
  # Position 1 extends beam 0 alone (the other slots are not live yet): a 1-slot state.
  state, (parent, track) = step(
      init_beam_state(batch, num_candidates, num_objectives, beam_size=1),
      jnp.int32(1),
      fallback=init_beam_state(batch, num_candidates, num_objectives, beam_size=beam_size),
  )
  parents, tracks = parent[None], track[None]
  if length > 1:
    positions = jnp.arange(2, length + 1, dtype=jnp.int32)
    state, (more_parents, more_tracks) = jax.lax.scan(step, state, positions, unroll=True)
    parents = jnp.concatenate([parents, more_parents])
    tracks = jnp.concatenate([tracks, more_tracks])
  return _read_back(parents, tracks), state.scores[:, 0]


def _decode_pooled(
    relevance, objectives, valid, bound, epsilon, *, length, beam_size, rule, pool_size
):
  """`_decode_block` on the tracks with r >= bound (at most `pool_size`), in index order."""
  num_candidates = relevance.shape[-1]
  if pool_size >= num_candidates:
    return _decode_block(
        relevance, objectives, valid, epsilon, length=length, beam_size=beam_size, rule=rule
    )
  member = valid & (relevance >= bound[:, None])  # [b, N], at most pool_size per session
  slot = jnp.cumsum(member, axis=-1, dtype=jnp.int32) - 1
  onehot = member[:, :, None] & (slot[:, :, None] == jnp.arange(pool_size, dtype=jnp.int32))
  tracks = jnp.arange(num_candidates, dtype=jnp.int32)[None, :, None]
  pool = jnp.sum(jnp.where(onehot, tracks, 0), axis=1)  # [b, P] track index of each slot
  pool_valid = jnp.any(onehot, axis=1)
  sequences, scores = _decode_block(
      jnp.take_along_axis(relevance, pool, axis=1),
      jnp.take_along_axis(objectives, pool[:, :, None], axis=1),
      pool_valid,
      epsilon,
      length=length,
      beam_size=beam_size,
      rule=rule,
  )
  picked = jnp.take_along_axis(pool, jnp.maximum(sequences, 0), axis=1)
  return jnp.where(sequences >= 0, picked, -1).astype(jnp.int32), scores


@functools.partial(
    jax.jit,
    static_argnames=(
        'length',
        'beam_size',
        'threshold',
        'gain',
        'pool_size',
        'tile_size',
        'binary',
    ),
)
def _mostra_beam_search_jit(
    relevance: Array,
    objectives: Array,
    valid: Array,
    bound: Array,
    epsilon: Array,
    *,
    length: int,
    beam_size: int,
    threshold: str,
    gain: str,
    pool_size: int,
    tile_size: int,
    binary: bool = False,
) -> tuple[Array, Array]:
  """The jitted core. bound: float32 [B], the exact pool's lower relevance bound (`_prepass`);
  binary: every valid objective is 0 or 1 (same values, two square roots per beam)."""
  valid = valid.astype(bool)
  relevance = jnp.where(valid, relevance.astype(jnp.float32), 0.0)
  objectives = jnp.where(valid[..., None], objectives.astype(jnp.float32), 0.0)
  epsilon = jnp.asarray(epsilon, jnp.float32)
  decode = functools.partial(
      _decode_pooled,
      epsilon=epsilon,
      length=length,
      beam_size=beam_size,
      rule=(threshold, gain, binary),
      pool_size=pool_size,
  )
  bound = jnp.asarray(bound, jnp.float32)
  batch = relevance.shape[0]
  if batch <= tile_size:
    return decode(relevance, objectives, valid, bound)
  num_tiles = -(-batch // tile_size)
  extra = num_tiles * tile_size - batch

  def tiles(x):
    x = jnp.pad(x, [(0, extra)] + [(0, 0)] * (x.ndim - 1))
    return x.reshape((num_tiles, tile_size) + x.shape[1:])

  sequences, scores = jax.lax.map(
      lambda xs: decode(*xs), (tiles(relevance), tiles(objectives), tiles(valid), tiles(bound))
  )
  return sequences.reshape(-1, length)[:batch], scores.reshape(-1)[:batch]


def _kth_largest(x: Array, k: int) -> Array:
  """The k-th largest value along the last axis, counting ties (-inf if fewer than k finite).

  k passes of max / count / mask, which XLA:CPU runs faster than `lax.top_k`.
  """
  remaining = jnp.full(x.shape[:-1], k, jnp.int32)
  kth = jnp.full(x.shape[:-1], -jnp.inf, x.dtype)
  for _ in range(k):
    best = jnp.max(x, axis=-1)
    ties = x == best[..., None]
    kth = jnp.where(remaining > 0, best, kth)
    remaining = remaining - jnp.sum(ties, axis=-1, dtype=jnp.int32)
    x = jnp.where(ties, -jnp.inf, x)
  return kth


def _kth_lower_bound(x: Array, k: int) -> Array:
  """A lower bound of the k-th largest value along the last axis (-inf if fewer than k finite).

  The k-th largest of the maxima of G >= k disjoint groups of the last axis: at least k entries
  (one per group) are >= it, so it is <= the k-th largest. With G = 4k groups it is close to it,
  and costs k rounds over [B, G] instead of [B, N].
  """
  n = x.shape[-1]
  groups = min(n, 4 * k)
  if groups <= k or n <= 2 * groups:
    return _kth_largest(x, k)
  size = -(-n // groups)
  padded = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, groups * size - n)], constant_values=-jnp.inf)
  maxima = jnp.max(padded.reshape(x.shape[:-1] + (groups, size)), axis=-1)
  return _kth_largest(maxima, k)


@functools.partial(jax.jit, static_argnames=('length', 'threshold'))
def _prepass(relevance, objectives, valid, epsilon, *, length, threshold):
  """Input flags and the exact pool (module docstring).

  Returns:
    flags bool [4] (non-finite r, non-finite E, negative E at valid candidates; all valid E in
    {0, 1}), bound float32
    [B] (tracks with r < bound are never allowed) and int32 [] the largest pool of the batch.
  """
  valid = valid.astype(bool)
  r = relevance.astype(jnp.float32)
  e = objectives.astype(jnp.float32)
  ev = valid[..., None]
  flags = jnp.stack(
      [
          jnp.any(valid & ~jnp.isfinite(r)),
          jnp.any(ev & ~jnp.isfinite(e)),
          jnp.any(ev & (e < 0)),
          jnp.all(~ev | (e == 0) | (e == 1)),
      ]
  )
  masked = jnp.where(valid & jnp.isfinite(r), r, -jnp.inf)
  kth = _kth_lower_bound(masked, min(length, r.shape[-1]))  # -inf: fewer than `length` valid
  c = jnp.asarray(epsilon, jnp.float32) + RTOL
  if threshold == 'relative':
    bound = jnp.where(c >= 1.0, -jnp.inf, kth - c * jnp.abs(kth))
  else:
    bound = kth - (c - RTOL) - RTOL * jnp.abs(kth)
  bound = bound - POOL_SLACK * (jnp.abs(kth) + jnp.abs(c))
  count = jnp.max(jnp.sum(masked >= bound[:, None], axis=-1, dtype=jnp.int32), initial=0)
  return flags, bound, count


def _is_tracer(*xs) -> bool:
  return any(isinstance(x, jax.core.Tracer) for x in xs)


def check_shapes(relevance, objectives, valid, length) -> None:
  if relevance.ndim != 2:
    raise ValueError(f'relevance must be [B, N], got shape {relevance.shape}')
  if objectives.ndim != 3 or objectives.shape[:2] != relevance.shape:
    raise ValueError(
        f'objectives must be [B, N, J] with [B, N] = relevance.shape {relevance.shape}, '
        f'got shape {objectives.shape}'
    )
  if valid.shape != relevance.shape:
    raise ValueError(f'valid must have the shape of relevance {relevance.shape}, got {valid.shape}')
  if valid.dtype != bool:
    raise ValueError(f'valid must be bool, got dtype {valid.dtype}')
  if relevance.shape[1] < 1:
    raise ValueError(f'relevance needs at least one candidate, got shape {relevance.shape}')
  if not isinstance(length, (int, np.integer)) or isinstance(length, bool) or length < 1:
    raise ValueError(f'length must be a positive int, got {length!r}')


def _first_bad(name: str, bad: np.ndarray, what: str) -> ValueError:
  where = np.argwhere(bad)
  first = tuple(int(i) for i in where[0]) if len(where) else ()
  return ValueError(
      f'{name} has {len(where)} {what} entries at valid candidates (first at index {first}); '
      f'mostra_beam_search needs finite relevance and finite, non-negative objectives'
  )


def _raise_for_values(flags, relevance, objectives, valid) -> None:
  if not np.any(flags[:3]):
    return
  r, e, v = (np.asarray(jax.device_get(x)) for x in (relevance, objectives, valid))
  v = v.astype(bool)
  if flags[0]:
    raise _first_bad('relevance', v & ~np.isfinite(r), 'NaN/inf')
  if flags[1]:
    raise _first_bad('objectives', v[..., None] & ~np.isfinite(e), 'NaN/inf')
  raise _first_bad('objectives', v[..., None] & (e < 0), 'negative')


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
    tile_size: int = DEFAULT_TILE_SIZE,
    use_pool: bool = True,
) -> tuple[Array, Array]:
  """MOSTRA counterfactual submodular multi-objective beam search (the rule: module docstring).

  Args:
    relevance: float [B, N] predicted relevance r (the SetTRM sigmoid output); finite at valid
      candidates.
    objectives: float [B, N, J] artist/platform objective labels E (binary in the paper); finite
      and >= 0 at valid candidates. J may be 0 (then MOSTRA is a relevance sort within epsilon).
    valid: bool [B, N], False for padded candidates (never chosen; their values are ignored).
    length: number of positions to decode (static).
    beam_size: beams kept per session (static).
    epsilon: counterfactual tolerance (finite, >= 0; a scalar, may be traced: sweeping it does
      not recompile the core, though the exact pool size may change with it).
    threshold: 'relative' (paper Eq. 8) or 'absolute' gap r_hat - r_t.
    gain: 'total' (sum_j sqrt(c_j + E_tj)) or 'marginal' (minus sum_j sqrt(c_j)).
    tile_size: sessions per tile inside the jitted call (static; results do not depend on it).
    use_pool: decode on the exact candidate pool (results do not depend on it).

  Returns:
    sequences: int32 [B, length], the best beam's track indices, -1 past the valid tracks.
    scores: float32 [B], the best beam's score.

  Raises:
    ValueError: naming the argument, for bad shapes, dtypes, static arguments or values.
  """
  if threshold not in _THRESHOLDS:
    raise ValueError(f'threshold must be one of {_THRESHOLDS}, got {threshold!r}')
  if gain not in _GAINS:
    raise ValueError(f'gain must be one of {_GAINS}, got {gain!r}')
  if not isinstance(beam_size, (int, np.integer)) or isinstance(beam_size, bool) or beam_size < 1:
    raise ValueError(f'beam_size must be a positive int, got {beam_size!r}')
  if not isinstance(tile_size, (int, np.integer)) or tile_size < 1:
    raise ValueError(f'tile_size must be a positive int, got {tile_size!r}')
  relevance, objectives, valid = (
      x if isinstance(x, jax.Array) else np.asarray(x) for x in (relevance, objectives, valid)
  )
  check_shapes(relevance, objectives, valid, length)
  num_candidates = relevance.shape[1]
  pool_size = num_candidates
  binary = False
  bound = None
  if not _is_tracer(epsilon):
    eps = float(np.asarray(epsilon))
    if not math.isfinite(eps) or eps < 0:
      raise ValueError(f'epsilon must be finite and >= 0, got {eps}')
  if not _is_tracer(relevance, objectives, valid, epsilon):
    relevance, objectives, valid = (jnp.asarray(x) for x in (relevance, objectives, valid))
    flags, bound, count = _prepass(
        relevance, objectives, valid, epsilon, length=int(length), threshold=threshold
    )
    flags, count = jax.device_get((flags, count))
    _raise_for_values(flags, relevance, objectives, valid)
    binary = bool(flags[3])
    if use_pool:
      needed = max(int(count), min(int(length), num_candidates), 1)
      pool_size = min(num_candidates, -(-needed // 4) * 4)
  if bound is None:
    bound = jnp.full(relevance.shape[:1], -jnp.inf, jnp.float32)
  return _mostra_beam_search_jit(
      relevance,
      objectives,
      valid,
      bound,
      epsilon,
      length=int(length),
      beam_size=int(beam_size),
      threshold=threshold,
      gain=gain,
      pool_size=int(pool_size),
      tile_size=int(tile_size),
      binary=binary,
  )
