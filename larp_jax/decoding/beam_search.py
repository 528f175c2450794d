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

Inputs are checked outside the jitted core (`beam_search_checks`): NaN/inf relevance or objectives
(at valid candidates), negative objectives, a non-bool `valid`, mismatched shapes and bad static
arguments raise a ValueError naming the argument. (Called under an outer `jax.jit`, the values are
tracers: only shapes are checked and the exact pool below is off.)

Speed (same results; see benchmarks/beam_search.py and benchmarks/README.md). Measured 2026-12-03
on the 2-core CPU, pinned to one core (single-core fair), load 2.5: B = 1024, beam 5, length 10,
J = 3, epsilon 0.05: 240k sessions/s at N = 100 (128x the per-session NumPy decoder) and 344k at
N = 20 (145x); 2.0 s compile; throughput flat in B (N = 100: 278k-315k from B = 256 to 16,384).
  * exact candidate pool: at any position n <= length, r_hat >= r_(L), the L-th best valid
    relevance, and r_t >= r_hat - c |r_hat| is increasing in r_hat, so only tracks with
    r_t >= r_(L) - c |r_(L)| (relative; minus a 1e-5 slack for rounding) can ever be allowed. A
    jitted pre-pass (`beam_search_checks.prepass`, which also computes the value checks) finds
    r_(L) and counts those tracks; the decode runs on the P best tracks (P = that count over the
    batch rounded up to a multiple of 4), kept in their original index order so ties resolve as
    without the pool. About 14 of 100 uniform relevances at epsilon = 0.05, length 10 (P = 24 for
    the worst of 1,024 or of 16,384 sessions). The pool is compacted by a scatter after a bfloat16
    product with a triangle of ones (the member counts; exact).
  * the beam state is small: `used` is a bitmask (int32 words), so a parent's state is re-selected
    with K selects over [B, K] arrays; candidates are scored on flat [B, K * P] arrays (per-track
    inputs tiled once per block), the form XLA:CPU vectorises best;
  * large batches are decoded in tiles of `tile_size` sessions (`lax.map` inside the one jitted
    call), so the per-position working set stays in cache;
  * the position loop is a rolled `lax.scan` (`SCAN_UNROLL`), which materialises the small state
    between positions; the short-session test is the top score itself (no allowed extension at all).
The batch axis may be sharded (e.g. on a `('data', 'model')` mesh): every operation is per session.
"""

from __future__ import annotations

import functools
from typing import Literal

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from larp_jax.decoding import beam_search_checks as checks
from larp_jax.decoding.beam_search_checks import RTOL, check_shapes  # noqa: F401 (re-exported)

Array = jax.Array

# Finite stand-in for -inf: masked candidates get exactly this value and never enter arithmetic.
NEG_INF = -1e30
# Sessions per tile inside the jitted call (fits the per-step working set in cache on CPU).
DEFAULT_TILE_SIZE = 256
# Up to this many (beam, track) extensions a position, the flat top-k is the faster one on CPU.
FLAT_TOP_K_MAX = 256
# Positions per iteration of the scan over positions: a rolled loop materialises the small state
# between positions (unrolled, XLA fuses the K-way parent selects into the next position's
# [B, K * P] candidate fusion and recomputes them per candidate; 1.5x slower at N = 100).
SCAN_UNROLL = 1
# `used` of a dead beam slot: every bit set (nothing available).
ALL_USED = -1

_prepass = checks.prepass  # looked up at call time (benchmarks/gpu_steps.py records the calls)


@flax.struct.dataclass
class BeamState:
  """Per-session beam state carried through the `lax.scan` over positions.

  The state is tiny per session (K scores, K bitmask words, K * J counts), one [B, K] array per
  bitmask word and per objective. Beams of a session are kept sorted by score, best first; dead
  slots (fewer allowed extensions than `beam_size`) come last with `scores=NEG_INF` and every
  `used` bit set. Sequences are not carried: each
  position emits back-pointers (parent slot, pool slot) and the best sequence is read back at
  the end.

  Attributes:
    scores: float32 [B, K], running sum of step scores.
    used: int32 [W, B, K], W = ceil(P / 32): bit p % 32 of word p // 32 is set if pool slot p is
      not available (chosen by the beam, or not a valid track of the session).
    counts: float32 [J, B, K], sum of each objective over the beam's chosen tracks (c_j).
  """

  scores: Array
  used: Array
  counts: Array


def _init_state(unavailable: Array, num_objectives: int, beam_size: int) -> BeamState:
  """Only beam 0 is live, with score 0, nothing chosen; unavailable: int32 [W, B] invalid slots."""
  first = jnp.arange(beam_size) == 0
  batch = unavailable.shape[-1]
  return BeamState(
      scores=jnp.broadcast_to(
          jnp.where(first, 0.0, NEG_INF).astype(jnp.float32), (batch, beam_size)
      ),
      used=jnp.where(first, unavailable[:, :, None], ALL_USED),
      counts=jnp.zeros((num_objectives, batch, beam_size), jnp.float32),
  )


def _pack_bits(bits: Array) -> Array:
  """bool [B, P] -> int32 [W, B], W = ceil(P / 32): bit p % 32 of word p // 32 = bits[:, p]."""
  batch, size = bits.shape
  words = -(-size // 32)
  shifted = jnp.left_shift(bits.astype(jnp.int32), jnp.arange(size, dtype=jnp.int32) % 32)
  shifted = jnp.pad(shifted, ((0, 0), (0, words * 32 - size))).reshape(batch, words, 32)
  # Distinct bits: their (wrapping) int32 sum is their bitwise or.
  return jnp.sum(shifted, axis=-1, dtype=jnp.int32).T


def _tiled_pool(pool: dict, num_beams: int) -> dict:
  """The pool's per-candidate arrays repeated for `num_beams` beams, flat [B, K * P].

  XLA:CPU vectorises a [B, K * P] fusion of contiguous operands several times better than the
  same fusion with [B, P] operands broadcast along a middle beam axis, so the per-track inputs of
  the candidate scores are tiled once per block (outside the loop over positions).
  """
  size = pool['relevance'].shape[-1]
  slot = jnp.tile(jnp.arange(size, dtype=jnp.int32), num_beams)
  mask = jnp.left_shift(jnp.int32(1), slot & 31)  # [K * P], the slot's bit in its word
  word = slot >> 5  # [K * P], the slot's word
  if pool['bits'] is None:
    columns = [jnp.tile(c, (1, num_beams)) for c in pool['column_list']]
  else:  # binary: from the packed bits (a [B, W] broadcast is cheaper than tiling bools)
    columns = [(_spread_words(w, word) & mask) != 0 for w in pool['bits']]
  return dict(
      relevance=jnp.tile(pool['relevance'], (1, num_beams)), columns=columns, mask=mask, word=word
  )


def _spread_words(words: Array, word: Array) -> Array:
  """int32 [B, F]: words[b, word[f]] for words int32 [B, W] and a static word index [F]."""
  out = jnp.broadcast_to(words[:, :1], words.shape[:1] + word.shape)
  for w in range(1, words.shape[1]):
    out = jnp.where(word == w, words[:, w : w + 1], out)
  return out


def _pick(index: Array, x: Array) -> Array:
  """x[b, index[b, ...]] for x [B, K] and index int32 [B, ...] in [0, K): K selects, no gather."""
  extra = (1,) * (index.ndim - 1)
  out = jnp.broadcast_to(x[:, 0].reshape((-1,) + extra), index.shape)
  for k in range(1, x.shape[1]):
    out = jnp.where(index == k, x[:, k].reshape((-1,) + extra), out)
  return out


def _bit_at(words: Array, index: Array) -> Array:
  """Bit `index` (int32 [B, K], >= 0) of words int32 [B, W] -> int32 [B, K] in {0, 1}."""
  word = words[:, :1] if words.shape[1] == 1 else _pick(index >> 5, words)
  return (word >> (index & 31)) & 1


def _step_scores(state, position, tiled, epsilon, rule):
  """Candidate beam scores float32 [B, K * P] (flat index beam * P + slot); NEG_INF where the
  extension is not allowed. tiled: `_tiled_pool` for K = the state's number of slots."""
  threshold, gain, binary = rule
  num_beams = state.scores.shape[1]
  relevance = tiled['relevance']
  size = relevance.shape[-1] // num_beams

  def per_candidate(x):  # [B, K] per beam -> [B, K * P] per candidate
    return jnp.repeat(x, size, axis=1)

  words = per_candidate(state.used[0])
  for w in range(1, state.used.shape[0]):
    words = jnp.where(tiled['word'] == w, per_candidate(state.used[w]), words)
  available = (words & tiled['mask']) == 0
  r_hat = jnp.max(jnp.where(available, relevance, NEG_INF).reshape(-1, num_beams, size), axis=-1)
  if threshold == 'relative':
    bound = (epsilon + RTOL) * jnp.abs(r_hat)  # [B, K]
  else:
    bound = epsilon + RTOL * jnp.abs(r_hat)
  gap = jnp.repeat(r_hat, size, axis=1) - relevance
  allowed = available & ((gap <= jnp.repeat(bound, size, axis=1)) | (gap <= 0))
  root0 = jnp.sqrt(state.counts)  # [J, B, K]: one fusion for all objectives
  root1 = jnp.sqrt(state.counts + 1.0) if binary else None
  objective_sum = jnp.zeros(relevance.shape, jnp.float32)
  for j, column in enumerate(tiled['columns']):
    low = per_candidate(root0[j])
    if binary:  # E in {0, 1}: the same two square roots per beam, selected per track
      high = per_candidate(root1[j])
      term = (
          jnp.where(column, high - low, 0.0) if gain == 'marginal' else jnp.where(column, high, low)
      )
    else:
      term = jnp.sqrt(per_candidate(state.counts[j]) + column)
      if gain == 'marginal':
        term = term - low
    objective_sum = objective_sum + term
  step = relevance + objective_sum * (1.0 / position.astype(jnp.float32))
  return jnp.where(allowed, per_candidate(state.scores) + step, NEG_INF)


def _top_extensions_flat(
    flat: Array, beam_size: int, num_candidates: int
) -> tuple[Array, Array, Array]:
  """`_top_extensions` of flat [B, K * P] candidates by `beam_size` rounds of max / first index /
  mask over the whole row (the faster form when K * P is small)."""
  positions = jnp.arange(flat.shape[-1], dtype=jnp.float32)
  scores, flat_index = [], []
  for _ in range(beam_size):
    best = jnp.max(flat, axis=-1)
    first = jnp.min(jnp.where(flat == best[:, None], positions, float(flat.shape[-1])), axis=-1)
    flat = jnp.where(positions == first[:, None], -jnp.inf, flat)
    scores.append(best)
    flat_index.append(first)
  # Past the last entry (K * P < beam_size) the index is clamped; such slots are dead. Parent and
  # track in float32 (exact for these small integers): no signed integer division in the update.
  index = jnp.minimum(jnp.stack(flat_index, axis=-1), flat.shape[-1] - 1.0)
  parent = jnp.floor(index / num_candidates)
  track = index - parent * num_candidates
  return jnp.stack(scores, axis=-1), parent.astype(jnp.int32), track.astype(jnp.int32)


def _top_extensions(candidates: Array, beam_size: int) -> tuple[Array, Array, Array]:
  """The `beam_size` best (beam, track) entries of candidates [B, K, P], best first.

  Same result as `lax.top_k` over the flattened [B, K * P] axis (equal values: lower flat index
  beam * P + track first), but cheaper on CPU: one pass computes every beam's best value; each
  round takes the best beam (K elementwise comparisons), selects its row [B, P], takes the row's
  first maximal entry, excludes it and refreshes that row's best value.

  Returns:
    scores float32 [B, beam_size], parent slots int32 [B, beam_size], tracks int32 [B, beam_size].
  """
  num_beams, num_candidates = candidates.shape[1:]
  columns = jnp.arange(num_candidates, dtype=jnp.float32)
  row_best = jnp.max(candidates, axis=-1).T  # [K, B]
  taken_beam, taken_track, taken_score = [], [], []
  for _ in range(beam_size):
    best = row_best[0]
    for k in range(1, num_beams):
      best = jnp.maximum(best, row_best[k])
    beam = jnp.full(best.shape, num_beams, jnp.int32)  # lowest beam holding the best value
    for k in range(num_beams - 1, -1, -1):
      beam = jnp.where(row_best[k] == best, k, beam)
    row = candidates[:, 0]
    for k in range(1, num_beams):
      row = jnp.where((beam == k)[:, None], candidates[:, k], row)
    # Entries of this row taken in earlier rounds (-inf is below every candidate, NEG_INF too).
    for b, t in zip(taken_beam, taken_track):
      row = jnp.where((b == beam)[:, None] & (columns == t[:, None]), -jnp.inf, row)
    track = jnp.min(jnp.where(row == best[:, None], columns, float(num_candidates)), axis=-1)
    row = jnp.where(columns == track[:, None], -jnp.inf, row)
    row_best = jnp.where(jnp.arange(num_beams)[:, None] == beam, jnp.max(row, axis=-1), row_best)
    taken_beam.append(beam)
    taken_track.append(track)
    taken_score.append(best)
  return (
      jnp.stack(taken_score, axis=-1),
      jnp.minimum(jnp.stack(taken_beam, axis=-1), num_beams - 1),
      jnp.minimum(jnp.stack(taken_track, axis=-1), num_candidates - 1).astype(jnp.int32),
  )


def _beam_step(state, position, *, pool, epsilon, beam_size, rule, fallback=None):
  """Extends every beam by one track at `position` (1-based) and keeps the best `beam_size`.

  `state` may hold fewer slots than `beam_size` (position 1: only beam 0); `fallback` is then the
  `beam_size`-slot state that finished sessions keep.

  Returns:
    The new state and back-pointers (parent slot int32 [B, K], pool slot int32 [B, K]); sessions
    with no allowed extension (no valid track left at this position) keep their beams (parent =
    own slot, track = -1).
  """
  num_words, _, num_beams = state.used.shape
  size = pool['relevance'].shape[-1]
  candidates = _step_scores(state, position, pool['tiled'][num_beams], epsilon, rule)
  if beam_size * size <= FLAT_TOP_K_MAX:
    top_scores, parent, track = _top_extensions_flat(candidates, beam_size, size)
  else:
    top_scores, parent, track = _top_extensions(candidates.reshape(-1, num_beams, size), beam_size)
  live = top_scores > NEG_INF
  # A live beam always has an allowed extension (its best available track) while the session has
  # a valid track left, so "no extension at all" is exactly "the session is finished".
  keep = live[:, :1]
  bit = jnp.left_shift(jnp.int32(1), track & 31)
  used = []
  for w in range(num_words):
    picked = bit if num_words == 1 else jnp.where(track >> 5 == w, bit, 0)
    used.append(jnp.where(live, _pick(parent, state.used[w]) | picked, ALL_USED))
  counts = []
  for j in range(state.counts.shape[0]):
    if rule[2]:  # binary: the chosen track's objective bit
      gained = _bit_at(pool['bits'][j], track).astype(jnp.float32)
    else:
      gained = jnp.take_along_axis(pool['columns'][:, j], track, axis=1)
    counts.append(_pick(parent, state.counts[j]) + jnp.where(live, gained, 0.0))
  # Finished sessions keep scores and `used` (their counts are never read again).
  old = state if fallback is None else fallback
  new = BeamState(
      scores=jnp.where(keep, jnp.where(live, top_scores, NEG_INF), old.scores),
      used=jnp.where(keep[None], jnp.stack(used), old.used),
      counts=jnp.stack(counts) if counts else jnp.zeros((0,) + parent.shape, jnp.float32),
  )
  own_slot = jnp.broadcast_to(jnp.arange(beam_size, dtype=jnp.int32), parent.shape)
  pointers = (jnp.where(keep, parent, own_slot), jnp.where(keep & live, track, -1))
  return new, pointers


def _read_back(parents: Array, tracks: Array) -> Array:
  """Best sequence int32 [B, L] from back-pointers [L, B, K], starting at final slot 0."""
  slot = jnp.zeros(parents.shape[1:2], jnp.int32)
  sequence = []
  for parent, track in zip(parents[::-1], tracks[::-1]):
    sequence.append(_pick(slot, track))
    slot = _pick(slot, parent)
  return jnp.stack(sequence[::-1], axis=1)


def _compact(relevance, objectives, valid, bound, pool_size):
  """The pool: the valid tracks with r >= bound (at most `pool_size`), in index order.

  Values at invalid candidates may be anything (NaN included): only pool-sized arrays are masked.

  Returns:
    tracks int32 [b, P] (the candidate index of each pool slot; 0 past the pool), pool_valid bool
    [b, P], relevance float32 [b, P] and objectives float32 [b, P, J] (0 past the pool).
  """
  batch, num_candidates = relevance.shape

  def masked(pool_valid, r, e):
    return (
        jnp.where(pool_valid, r.astype(jnp.float32), 0.0),
        jnp.where(pool_valid[..., None], e.astype(jnp.float32), 0.0),
    )

  if pool_size >= num_candidates:
    tracks = jnp.broadcast_to(jnp.arange(num_candidates, dtype=jnp.int32), relevance.shape)
    return (tracks, valid) + masked(valid, relevance, objectives)
  member = valid & (relevance >= bound[:, None])
  # Inclusive member count by a product with a triangle of ones: 0/1 inputs are exact in bfloat16
  # and the float32 accumulation is exact below 2**24. XLA:CPU runs it 4x faster than a cumsum
  # (reduce-window), and bfloat16 1.6x faster than float32.
  triangle = jnp.triu(jnp.ones((num_candidates, num_candidates), jnp.bfloat16))
  count = jnp.dot(member.astype(jnp.bfloat16), triangle, preferred_element_type=jnp.float32).astype(
      jnp.int32
  )
  slot = jnp.where(member & (count <= pool_size), count - 1, pool_size)  # pool_size: dropped
  rows = jnp.broadcast_to(jnp.arange(batch, dtype=jnp.int32)[:, None], relevance.shape)
  indices = jnp.broadcast_to(jnp.arange(num_candidates, dtype=jnp.int32), relevance.shape)
  tracks = jnp.zeros((batch, pool_size), jnp.int32)
  tracks = tracks.at[rows, slot].set(indices, mode='drop', unique_indices=True)
  pool_valid = jnp.arange(pool_size) < count[:, -1:]
  return (tracks, pool_valid) + masked(
      pool_valid,
      jnp.take_along_axis(relevance, tracks, axis=1),
      jnp.take_along_axis(objectives, tracks[:, :, None], axis=1),
  )


def _decode_pooled(
    relevance, objectives, valid, bound, epsilon, *, length, beam_size, rule, pool_size
):
  """The beam search on one block of sessions [b, N] and its pool: (int32 [b, L], float32 [b])."""
  tracks, pool_valid, pool_relevance, pool_objectives = _compact(
      relevance, objectives, valid, bound, pool_size
  )
  columns = jnp.moveaxis(pool_objectives, 2, 1)  # [b, J, P]: contiguous per objective
  if rule[2]:
    columns = columns > 0
  pool = dict(
      relevance=pool_relevance,
      columns=columns,
      column_list=[columns[:, j] for j in range(columns.shape[1])],
      bits=[_pack_bits(columns[:, j]).T for j in range(columns.shape[1])] if rule[2] else None,
  )
  pool['tiled'] = {k: _tiled_pool(pool, k) for k in sorted({1, beam_size})}
  unavailable = _pack_bits(~pool_valid)
  step = functools.partial(_beam_step, pool=pool, epsilon=epsilon, beam_size=beam_size, rule=rule)
  num_objectives = objectives.shape[-1]
  # Position 1 extends beam 0 alone (the other slots are not live yet): a 1-slot state.
  state, (parent, track) = step(
      _init_state(unavailable, num_objectives, 1),
      jnp.int32(1),
      fallback=_init_state(unavailable, num_objectives, beam_size),
  )
  parents, slots = parent[None], track[None]
  if length > 1:
    positions = jnp.arange(2, length + 1, dtype=jnp.int32)
    state, (more_parents, more_slots) = jax.lax.scan(step, state, positions, unroll=SCAN_UNROLL)
    parents = jnp.concatenate([parents, more_parents])
    slots = jnp.concatenate([slots, more_slots])
  sequences = _read_back(parents, slots)
  picked = jnp.take_along_axis(tracks, jnp.maximum(sequences, 0), axis=1)
  return jnp.where(sequences >= 0, picked, -1).astype(jnp.int32), state.scores[:, 0]


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
  relevance = relevance.astype(jnp.float32)  # values at invalid candidates are masked per block
  decode = functools.partial(
      _decode_pooled,
      epsilon=jnp.asarray(epsilon, jnp.float32),
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
  checks.check_static(threshold, gain, beam_size, tile_size, epsilon)
  relevance, objectives, valid = (
      x if isinstance(x, jax.Array) else np.asarray(x) for x in (relevance, objectives, valid)
  )
  check_shapes(relevance, objectives, valid, length)
  num_candidates = relevance.shape[1]
  pool_size, binary, bound = num_candidates, False, None
  if not any(isinstance(x, jax.core.Tracer) for x in (relevance, objectives, valid, epsilon)):
    relevance, objectives, valid = (jnp.asarray(x) for x in (relevance, objectives, valid))
    code, bound, count = _prepass(
        relevance, objectives, valid, epsilon, length=int(length), threshold=threshold
    )
    code, count = jax.device_get((code, count))
    checks.raise_for_values(code, relevance, objectives, valid)
    binary = bool(code == checks.CODE_BINARY)
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
