"""Input checks and the exact-candidate-pool pre-pass of `beam_search.mostra_beam_search`.

Everything here runs before the jitted decoder core (split from ``beam_search.py``):

  * `check_shapes`: shapes, the dtype of `valid` and `length` (also used by the baseline decoders);
  * `check_static`: the static arguments (`threshold`, `gain`, `beam_size`, `tile_size`, `epsilon`);
  * `prepass`: one jitted call over the batch that returns a value code (NaN/inf relevance or
    objectives, negative objectives at valid candidates; whether every valid objective is 0 or 1),
    each session's exact-pool bound and the largest pool of the batch;
  * `raise_for_values`: when the code says so, finds the first bad entry on the host and raises a
    ValueError naming the argument.

The exact pool (module docstring of ``beam_search.py``): at any position n <= length, r_hat >=
r_(L), the L-th best valid relevance, and the threshold r_t >= r_hat - c |r_hat| grows with r_hat,
so only tracks with r_t >= r_(L) - c |r_(L)| can ever be allowed. Any lower bound of r_(L) keeps
the pool exact (it only enlarges it); `prepass` uses the L-th largest *distinct* valid relevance
(equal to r_(L) without ties, below it with ties; no tie counting needed).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

# Relative tolerance of the counterfactual threshold (see the rule in beam_search.py).
RTOL = 1e-6
# Extra slack of the exact-pool bound (relative to |r_(L)| + c): only ever enlarges the pool.
POOL_SLACK = 1e-5
# Value codes returned by `prepass` (a float32 max over the batch).
CODE_BINARY, CODE_GENERAL, CODE_BAD = 0.0, 1.0, 2.0

THRESHOLDS = ('relative', 'absolute')
GAINS = ('total', 'marginal')


def _is_int(x) -> bool:
  return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def check_static(threshold, gain, beam_size, tile_size, epsilon) -> None:
  """ValueError naming the argument for a bad static argument (or a bad concrete epsilon)."""
  if threshold not in THRESHOLDS:
    raise ValueError(f'threshold must be one of {THRESHOLDS}, got {threshold!r}')
  if gain not in GAINS:
    raise ValueError(f'gain must be one of {GAINS}, got {gain!r}')
  if not _is_int(beam_size) or beam_size < 1:
    raise ValueError(f'beam_size must be a positive int, got {beam_size!r}')
  if not _is_int(tile_size) or tile_size < 1:
    raise ValueError(f'tile_size must be a positive int, got {tile_size!r}')
  if not isinstance(epsilon, jax.core.Tracer):
    eps = float(np.asarray(epsilon))
    if not math.isfinite(eps) or eps < 0:
      raise ValueError(f'epsilon must be finite and >= 0, got {eps}')


def check_shapes(relevance, objectives, valid, length) -> None:
  """ValueError naming the argument: relevance [B, N], objectives [B, N, J], valid bool [B, N]."""
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
  if not _is_int(length) or length < 1:
    raise ValueError(f'length must be a positive int, got {length!r}')


def kth_lower_bound(x: Array, k: int) -> Array:
  """The k-th largest distinct value along the last axis of x [B, N] (float32 [B]; -inf if fewer
  than k distinct finite values): at most the k-th largest counting ties, so a lower bound of it.

  k rounds of max / mask-below over [B, N]. (Group maxima over [B, 4k] were 12% cheaper at
  N = 100 but looser: the largest pool of 16,384 sessions grew from 24 to 28 tracks, so the
  throughput fell with the batch size.)
  """
  best = jnp.max(x, axis=-1)
  for _ in range(k - 1):
    x = jnp.where(x < best[..., None], x, -jnp.inf)
    best = jnp.max(x, axis=-1)
  return best


def _value_code(relevance: Array, objectives: Array, valid: Array) -> Array:
  """float32 [] : CODE_BAD if some valid relevance is NaN/inf or some valid objective is NaN/inf
  or negative, else CODE_GENERAL if some valid objective is not 0 or 1, else CODE_BINARY."""
  code = jnp.where(jnp.isfinite(relevance), CODE_BINARY, CODE_BAD)
  for j in range(objectives.shape[-1]):  # J slices: one [B, N] fusion, no [B, N, J] temporary
    e = objectives[:, :, j]
    bad = ~(e >= 0) | (e == jnp.inf)  # NaN and -inf fail e >= 0
    code_j = jnp.where(bad, CODE_BAD, jnp.where((e == 0) | (e == 1), CODE_BINARY, CODE_GENERAL))
    code = jnp.maximum(code, code_j)
  return jnp.max(jnp.where(valid, code, CODE_BINARY))


@functools.partial(jax.jit, static_argnames=('length', 'threshold'))
def prepass(relevance, objectives, valid, epsilon, *, length, threshold):
  """Value code and the exact pool (module docstring); one jitted call.

  Args:
    relevance: float [B, N]; objectives: float [B, N, J]; valid: bool [B, N]; epsilon: float [].

  Returns:
    code float32 [] (CODE_*), bound float32 [B] (tracks with r < bound are never allowed) and
    int32 [] the largest pool of the batch (number of valid tracks with r >= bound).
  """
  valid = valid.astype(bool)
  r = relevance.astype(jnp.float32)
  code = _value_code(r, objectives.astype(jnp.float32), valid)
  masked = jnp.where(valid, r, -jnp.inf)  # a NaN here is reported by `code` before any decode
  kth = kth_lower_bound(masked, min(length, r.shape[-1]))
  c = jnp.asarray(epsilon, jnp.float32) + RTOL
  if threshold == 'relative':
    bound = jnp.where(c >= 1.0, -jnp.inf, kth - c * jnp.abs(kth))
  else:
    bound = kth - (c - RTOL) - RTOL * jnp.abs(kth)
  bound = bound - POOL_SLACK * (jnp.abs(kth) + jnp.abs(c))
  # `valid &`: with bound = -inf (fewer than `length` valid tracks) padded ones must not count.
  members = jnp.sum(jnp.where(valid & (masked >= bound[:, None]), 1.0, 0.0), axis=-1)
  return code, bound, jnp.max(members, initial=0.0).astype(jnp.int32)


def _first_bad(name: str, bad: np.ndarray, what: str) -> ValueError:
  where = np.argwhere(bad)
  first = tuple(int(i) for i in where[0]) if len(where) else ()
  return ValueError(
      f'{name} has {len(where)} {what} entries at valid candidates (first at index {first}); '
      f'mostra_beam_search needs finite relevance and finite, non-negative objectives'
  )


def raise_for_values(code, relevance, objectives, valid) -> None:
  """Raises the ValueError naming the first bad argument when `code` is CODE_BAD (host check)."""
  if code < CODE_BAD:
    return
  r, e, v = (np.asarray(jax.device_get(x)) for x in (relevance, objectives, valid))
  v = v.astype(bool)
  with np.errstate(invalid='ignore'):
    if np.any(bad := v & ~np.isfinite(r)):
      raise _first_bad('relevance', bad, 'NaN/inf')
    if np.any(bad := v[..., None] & ~np.isfinite(e)):
      raise _first_bad('objectives', bad, 'NaN/inf')
    raise _first_bad('objectives', v[..., None] & (e < 0), 'negative')
