"""LARP/BLIP train state kept next to the parameters: momentum queues, lookup tables and EMA.

These are not losses (the losses live in `larp_jax.losses.larp` and `larp_jax.losses.infonce`);
they are the pure, non-differentiable updates of the model state a contrastive train step carries:

  * `init_queues` / `enqueue`   FIFO ring buffers of momentum features (and their track ids and
                                playlist-id groups) used as extra negatives/positives (MoCo/BLIP).
  * `update_lookup_table` / `gather_lookup`   [N, D] tables of the latest feature per track, read
                                by LARP's TPC to fuse a playlist's other tracks.
  * `ema_update`                momentum-encoder parameters p_m <- m * p_m + (1 - m) * p.

Every function returns new arrays (no in-place state) with gradients stopped.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from larp_jax.models import layers

Array = jax.Array
PyTree = Any


# --------------------------------------------------------------------------------------------------
# Queues, lookup tables, EMA.
# --------------------------------------------------------------------------------------------------


def init_queues(
    rng: Array, queue_size: int, dim: int, *, group_width: int = 0
) -> tuple[dict[str, Array], Array]:
  """Initial LARP/BLIP queues: random unit feature rows, unknown ids.

  Args:
    rng: PRNG key.
    queue_size: Q (57600 in the paper).
    dim: feature size D (256).
    group_width: G > 0 adds a 'groups' queue int32 [Q, G] of -1 (playlist ids of queued tracks).

  Returns:
    (queues, ptr): queues = {'audio': f32 [Q, D], 'text': f32 [Q, D], 'ids': int32 [Q] of -1
    (+ 'groups')}, ptr = int32 scalar 0. Feed both to `enqueue`.
  """
  if queue_size <= 0 or dim <= 0:
    raise ValueError(f'queue_size and dim must be positive, got {queue_size}, {dim}.')
  ka, kt = jax.random.split(rng)
  queues = {
      'audio': layers.l2_normalize(jax.random.normal(ka, (queue_size, dim), jnp.float32)),
      'text': layers.l2_normalize(jax.random.normal(kt, (queue_size, dim), jnp.float32)),
      'ids': jnp.full((queue_size,), -1, jnp.int32),
  }
  if group_width:
    queues['groups'] = jnp.full((queue_size, group_width), -1, jnp.int32)
  return queues, jnp.zeros((), jnp.int32)


def enqueue(queue: PyTree, ptr: Array, items: PyTree) -> tuple[PyTree, Array]:
  """First-in-first-out write of a batch into a ring buffer, with wrap-around.

  Rows (ptr + arange(B)) % Q of every queue leaf are overwritten by the matching rows of `items`
  (gradients stopped). Works on a single array or on any pytree of arrays that share the leading
  size Q (features, ids, groups), so one call keeps them aligned.

  Args:
    queue: [Q, ...] array or pytree of such arrays.
    ptr: int32 scalar, next row to write.
    items: same structure as `queue`, leaves [B, ...] with B <= Q and matching trailing shapes.

  Returns:
    (new_queue, (ptr + B) % Q as int32 scalar).
  """
  q_leaves, q_def = jax.tree.flatten(queue)
  i_leaves, i_def = jax.tree.flatten(items)
  if q_def != i_def:
    raise ValueError(f'items must have the structure of queue: {q_def} vs {i_def}.')
  if not q_leaves:
    raise ValueError('queue is empty.')
  size = q_leaves[0].shape[0]
  batch = i_leaves[0].shape[0]
  if batch > size:
    raise ValueError(f'cannot enqueue {batch} rows into a queue of {size}.')
  for ql, il in zip(q_leaves, i_leaves):
    if ql.shape[0] != size or il.shape[0] != batch or ql.shape[1:] != il.shape[1:]:
      raise ValueError(
          f'queue leaf {ql.shape} and item leaf {il.shape} disagree (need [Q, ...] '
          f'and [B, ...] with Q = {size}, B = {batch}).'
      )
  ptr = jnp.asarray(ptr, jnp.int32)
  rows = (ptr + jnp.arange(batch, dtype=jnp.int32)) % size
  new = [
      jnp.asarray(ql).at[rows].set(jax.lax.stop_gradient(jnp.asarray(il)).astype(ql.dtype))
      for ql, il in zip(q_leaves, i_leaves)
  ]
  return jax.tree.unflatten(q_def, new), (ptr + batch) % size


def update_lookup_table(
    table: Array, ids: Array, features: Array, valid: Array | None = None
) -> Array:
  """Writes the latest features of the batch tracks into an [N, D] lookup table (no gradient).

  If an id occurs several times in the batch, its last valid occurrence wins (deterministic). Ids
  outside [0, N) and rows with `valid` False are skipped.

  Args:
    table: float [N, D] current table (float32 in LARP).
    ids: int [B] row ids.
    features: float [B, D] new features (gradients stopped; cast to table dtype).
    valid: optional bool [B].

  Returns:
    [N, D] updated table, in table dtype.
  """
  table = jnp.asarray(table)
  ids = jnp.asarray(ids)
  b = ids.shape[0]
  if ids.ndim != 1 or features.shape != (b, table.shape[1]):
    raise ValueError(
        f'ids must be [B] and features [B, {table.shape[1]}]; got {ids.shape}, '
        f'{features.shape}.'
    )
  keep = (ids >= 0) & (ids < table.shape[0])
  if valid is not None:
    keep = keep & jnp.asarray(valid, bool)
  later_same = (
      (ids[:, None] == ids[None, :])
      & keep[None, :]
      & (jnp.arange(b)[None, :] > jnp.arange(b)[:, None])
  )
  keep = keep & ~jnp.any(later_same, axis=1)
  target_rows = jnp.where(keep, ids, table.shape[0])  # out of bounds -> dropped
  return table.at[target_rows].set(jax.lax.stop_gradient(features).astype(table.dtype), mode='drop')


def gather_lookup(table: Array, ids: Array, mask: Array | None = None) -> Array:
  """Reads cached features of playlist neighbours from an [N, D] lookup table.

  Args:
    table: float [N, D].
    ids: int [B, J] row ids (values at masked positions are ignored and may be anything).
    mask: optional bool [B, J], True for real entries. Defaults to ids in [0, N).

  Returns:
    [B, J, D] in table dtype, gradients stopped, zeros at masked positions.
  """
  table = jnp.asarray(table)
  ids = jnp.asarray(ids)
  n = table.shape[0]
  if mask is None:
    mask = (ids >= 0) & (ids < n)
  mask = jnp.asarray(mask, bool)
  if mask.shape != ids.shape:
    raise ValueError(f'mask must have the shape of ids {ids.shape}, got {mask.shape}.')
  rows = jnp.take(table, jnp.clip(ids, 0, n - 1), axis=0)
  return jax.lax.stop_gradient(jnp.where(mask[..., None], rows, jnp.zeros((), table.dtype)))


def ema_update(params_m: PyTree, params: PyTree, momentum: float | Array) -> PyTree:
  """Momentum-encoder update p_m <- momentum * p_m + (1 - momentum) * p (leaf-wise, dtypes kept).

  Args:
    params_m: momentum parameters (pytree of float arrays, any float dtype).
    params: online parameters, same structure and shapes.
    momentum: scalar in [0, 1] (0.995 in LARP).

  Returns:
    The new momentum parameters, leaves in the dtypes of `params_m` (computed in float32;
    gradients stopped).
  """

  def update(pm, p):
    new = momentum * pm.astype(jnp.float32) + (1.0 - momentum) * jax.lax.stop_gradient(p).astype(
        jnp.float32
    )
    return new.astype(pm.dtype)

  return jax.tree.map(update, params_m, params)
