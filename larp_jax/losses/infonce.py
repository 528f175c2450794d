"""Multi-positive InfoNCE with soft targets: the one contrastive loss larp_jax's models share.

LARP's WTC / TTC / TPC (`larp_jax.losses.larp`), CLCRec's in-batch InfoNCE
(`larp_jax.recommenders.clcrec`) and MAP-2T's retrieval loss are all one direction of this loss, or
the mean of two of them: online query features are scored against key features (the current batch,
optionally followed by a FIFO queue of momentum features), and a cross-entropy is taken against a
target distribution spread uniformly over each row's positives (BLIP-retrieval style
`pos / pos.sum(1)`), optionally mixed with momentum-distillation soft targets:

    logits  = query @ [keys ; queue]^T / temperature                         [B, K+Q]   float32
    hard    = positives / positives.sum(-1)                                  [B, K+Q]   float32
    soft    = softmax(query_m @ [keys_m ; queue]^T / temperature)            [B, K+Q]   float32
    targets = (1 - alpha) * hard + alpha * soft                              (stop-gradient)
    loss_b  = -sum_j targets[b, j] * log_softmax(logits)[b, j]
    loss    = sum_b loss_b / #valid rows                                     float32 scalar

With one positive per row (the diagonal, `pair_positives(arange(B), B)`) and no queue this is the
classic in-batch InfoNCE / CLIP direction `CE(query @ keys^T / t, arange(B))`.

Relation "groups". Positives other than the diagonal are computed from small int32 id lists, padded
with -1: two rows are positives when their lists share a non-negative id (`shared_group_positives`).
For identity positives the list is an item id ([B] or [B, 1]); for co-occurrence or incidence it is
the list of containers (e.g. training playlists) an item belongs to ([B, G]). A queue of such lists
plays the role of BLIP retrieval's `idx_queue`, so a queued copy of a positive is not a negative.

Features are expected L2-normalised (cosine similarity); they are cast to float32 before any
similarity is formed, and the matmuls run at HIGHEST precision.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array

_HIGHEST = jax.lax.Precision.HIGHEST


# --------------------------------------------------------------------------------------------------
# Positives.
# --------------------------------------------------------------------------------------------------


def as_groups(groups: Array | None, name: str, rows: int | None = None) -> Array:
  """Checks an id-list array and returns it as int32 [R, G].

  Args:
    groups: integer [R] or [R, G] ids, -1 = padding (a 1-D [R] array becomes [R, 1]).
    name: argument name used in error messages.
    rows: the R the caller needs (None: any).

  Returns:
    int32 [R, G].

  Raises:
    ValueError: if `groups` is None, not an integer array of rank 1 or 2, or has not `rows` rows.
  """
  if groups is None:
    raise ValueError(f'{name} is required here (integer ids per row, -1 = padding).')
  groups = jnp.asarray(groups)
  if not jnp.issubdtype(groups.dtype, jnp.integer):
    raise ValueError(
        f'{name} must be an integer array of ids (-1 = padding), got dtype ' f'{groups.dtype}.'
    )
  if groups.ndim == 1:
    groups = groups[:, None]
  if groups.ndim != 2:
    raise ValueError(f'{name} must have shape [R] or [R, G], got {groups.shape}.')
  if rows is not None and groups.shape[0] != rows:
    raise ValueError(f'{name} must have {rows} rows, got {groups.shape}.')
  return groups.astype(jnp.int32)


def shared_group_positives(query_groups: Array, key_groups: Array) -> Array:
  """Marks (query, key) pairs whose id lists share a non-negative id.

  Args:
    query_groups: int [B] or [B, G]; -1 pads.
    key_groups: int [K] or [K, H]; -1 pads.

  Returns:
    bool [B, K]: True where some id >= 0 appears in both lists.
  """
  q = as_groups(query_groups, 'query_groups')
  k = as_groups(key_groups, 'key_groups')
  out = jnp.zeros((q.shape[0], k.shape[0]), dtype=bool)
  # A loop over the (small) key width keeps the intermediate at [B, K, G] instead of [B, K, G, H].
  for h in range(k.shape[1]):
    key_h = k[:, h]
    hit = (q[:, None, :] == key_h[None, :, None]) & (key_h[None, :, None] >= 0)
    out = out | jnp.any(hit, axis=-1)
  return out


def pair_positives(partner: Array, num_keys: int) -> Array:
  """One positive per row: row b is positive at column partner[b].

  Args:
    partner: int32 [B] key column of each row's positive; < 0 means no positive (the row is then
      left out of the loss). `arange(B)` gives the diagonal.
    num_keys: K + Q, the number of key columns.

  Returns:
    bool [B, num_keys].
  """
  columns = jnp.arange(num_keys, dtype=jnp.int32)
  return (partner[:, None] == columns[None, :]) & (partner[:, None] >= 0)


# --------------------------------------------------------------------------------------------------
# Multi-positive InfoNCE.
# --------------------------------------------------------------------------------------------------


def _keys_with_queue(keys: Array, queue: Array | None) -> Array:
  """float32 [K+Q, D]: `keys` followed by `queue` (or `keys` alone when `queue` is None)."""
  keys = jnp.asarray(keys, jnp.float32)
  if queue is None:
    return keys
  return jnp.concatenate([keys, jnp.asarray(queue, jnp.float32)], axis=0)


def momentum_distillation_targets(
    query_m: Array, keys_m: Array, queue: Array | None, temperature: float | Array
) -> Array:
  """BLIP momentum-distillation soft targets: softmax(query_m @ [keys_m; queue]^T / temperature).

  Args:
    query_m: [B, D] momentum-encoder features of the queries (any float dtype; cast to float32).
    keys_m: [K, D] momentum-encoder features of the in-batch keys.
    queue: [Q, D] queued momentum features, or None.
    temperature: scalar > 0.

  Returns:
    float32 [B, K+Q] rows summing to 1, with gradients stopped (targets, as in BLIP's no_grad
    block).
  """
  all_keys = _keys_with_queue(keys_m, queue)
  logits = jnp.matmul(jnp.asarray(query_m, jnp.float32), all_keys.T, precision=_HIGHEST)
  logits = logits / jnp.asarray(temperature, jnp.float32)
  return jax.lax.stop_gradient(jax.nn.softmax(logits, axis=-1))


def multi_positive_contrastive(
    query: Array,
    keys: Array,
    queue: Array | None,
    positives: Array,
    temperature: float | Array,
    soft_targets: Array | None = None,
    alpha: float | Array = 0.0,
    *,
    row_mask: Array | None = None,
    logit_mask: Array | None = None,
    mean_over_all_rows: bool = False,
) -> tuple[Array, dict[str, Array]]:
  """One direction of InfoNCE with several positives per row, soft targets and queue negatives.

  logits = query @ [keys ; queue]^T / temperature; targets = (1 - alpha) * positives / row sums
  + alpha * soft_targets (gradients stopped); loss = mean over valid rows of
  -sum_j targets[b, j] * log_softmax(logits)[b, j]. See the module docstring.

  Args:
    query: [B, D] online features (any float dtype; cast to float32).
    keys: [K, D] in-batch key features (K is usually B).
    queue: [Q, D] queued key features appended after `keys`, or None (Q = 0).
    positives: [B, K+Q] bool or non-negative float weights; each row's target is its positives
      normalised to sum to 1. Rows without any positive get zero loss and are left out of the mean.
    temperature: scalar > 0 (python float or traced float32, e.g. a learnable parameter).
    soft_targets: optional float [B, K+Q] distribution (e.g. `momentum_distillation_targets`), mixed
      in as `targets = (1 - alpha) * hard + alpha * soft_targets` (BLIP's momentum distillation).
    alpha: mixing weight for `soft_targets` (ignored when `soft_targets` is None).
    row_mask: optional bool [B]; rows where it is False are dropped (padding).
    logit_mask: optional bool [B, K+Q]; a False entry leaves that key out of the row's softmax
      (and out of its positives), e.g. the self-similarity of SimCLR's NT-Xent, where the keys
      are the queries themselves. None keeps every key.
    mean_over_all_rows: divide the summed row losses by B instead of by the number of valid rows
      (reproduces the official LARP TPC quirk, where rows without a positive count as zero-loss
      rows).

  Returns:
    (loss, aux): loss float32 scalar; aux has 'logits' float32 [B, K+Q], 'targets' float32
    [B, K+Q], 'per_row_loss' float32 [B] (0 on invalid rows), 'row_valid' bool [B] and
    'top1_is_positive' float32 scalar (fraction of valid rows whose arg-max logit is a positive).

  Raises:
    ValueError: on inconsistent shapes.
  """
  query = jnp.asarray(query, jnp.float32)
  all_keys = _keys_with_queue(keys, queue)
  if query.ndim != 2 or all_keys.ndim != 2 or query.shape[1] != all_keys.shape[1]:
    raise ValueError(
        f'query [B, D] and keys/queue [*, D] must agree in D; got query '
        f'{query.shape}, keys+queue {all_keys.shape}.'
    )
  b, n = query.shape[0], all_keys.shape[0]
  positives = jnp.asarray(positives)
  if positives.shape != (b, n):
    raise ValueError(f'positives must have shape [B, K+Q] = {(b, n)}, got {positives.shape}.')
  if soft_targets is not None and soft_targets.shape != (b, n):
    raise ValueError(f'soft_targets must have shape {(b, n)}, got {soft_targets.shape}.')

  logits = jnp.matmul(query, all_keys.T, precision=_HIGHEST) / jnp.asarray(temperature, jnp.float32)
  weights = positives.astype(jnp.float32)
  if logit_mask is not None:
    logit_mask = jnp.asarray(logit_mask, bool)
    if logit_mask.shape != (b, n):
      raise ValueError(f'logit_mask must have shape [B, K+Q] = {(b, n)}, got {logit_mask.shape}.')
    # A large finite negative (not -inf): a left-out key gets probability 0 and its zero target
    # times its log-probability stays 0 (never 0 * -inf).
    logits = jnp.where(logit_mask, logits, jnp.float32(-1e9))
    weights = jnp.where(logit_mask, weights, 0.0)
  row_total = jnp.sum(weights, axis=-1)
  row_valid = row_total > 0
  if row_mask is not None:
    row_mask = jnp.asarray(row_mask, bool)
    if row_mask.shape != (b,):
      raise ValueError(f'row_mask must have shape [B] = {(b,)}, got {row_mask.shape}.')
    row_valid = row_valid & row_mask
  targets = weights / jnp.where(row_total > 0, row_total, 1.0)[:, None]
  if soft_targets is not None:
    alpha = jnp.asarray(alpha, jnp.float32)
    targets = (1.0 - alpha) * targets + alpha * jnp.asarray(soft_targets, jnp.float32)
  targets = jax.lax.stop_gradient(targets)

  log_probs = jax.nn.log_softmax(logits, axis=-1)
  per_row = -jnp.sum(targets * log_probs, axis=-1)
  per_row = jnp.where(row_valid, per_row, 0.0)
  num_valid = jnp.sum(row_valid.astype(jnp.float32))
  denom = jnp.float32(b) if mean_over_all_rows else jnp.maximum(num_valid, 1.0)
  loss = jnp.sum(per_row) / denom

  top1 = jnp.argmax(logits, axis=-1)
  top1_pos = jnp.take_along_axis(weights, top1[:, None], axis=-1)[:, 0] > 0
  top1_rate = jnp.sum((top1_pos & row_valid).astype(jnp.float32)) / jnp.maximum(num_valid, 1.0)
  aux = {
      'logits': logits,
      'targets': targets,
      'per_row_loss': per_row,
      'row_valid': row_valid,
      'top1_is_positive': top1_rate,
  }
  return loss, aux
