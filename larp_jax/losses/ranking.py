"""Ranking losses for MOSTRA and its baselines: AttRank (listwise softmax), BCE, RMSE.

All losses are pure functions of float logits/predictions `[B, N]`, labels `[B, N]` and a
validity mask `[B, N]` (False for padded items); they compute in float32 and return a float32
scalar.

AttRank is the listwise loss of DLCM (Ai et al. 2018; `loss_func='softmax'` in the official
code): per list, target weights w_i = exp(y_i) if y_i > 0 else 0, normalised to sum to one over
the list's valid items, and the loss is the cross entropy -sum_i w_i log softmax(s)_i over valid
items. A list with no positive label has all-zero weights and loss 0. The batch loss is the mean
over lists, every list counting (DLCM sums and divides by the batch size).

It is computed with `rax.softmax_loss` (which masks padded items with `where`: their scores go to
-inf and their labels to 0) and a custom `label_fn`. Rax's own `rax.utils.normalize_probabilities`
is NOT used: for a list whose labels are all zero it returns a uniform distribution, which would
give no-positive lists a non-zero loss, unlike DLCM. Rax's default `reduce_fn=jnp.mean` averages
only over lists with at least one valid item, so the reduction is done here instead.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import rax

Array = jax.Array


def _check_same_shape(**arrays: Array) -> None:
  shapes = {name: tuple(a.shape) for name, a in arrays.items()}
  if len(set(shapes.values())) != 1:
    raise ValueError(f'inputs must have the same shape, got {shapes}')
  first = next(iter(shapes.values()))
  if len(first) < 1:
    raise ValueError(f'inputs must be at least 1-D lists, got {shapes}')


def attrank_weights(labels: Array, mask: Array) -> Array:
  """AttRank target distribution float32 [..., N]: exp(y) on valid y > 0, normalised; 0 if none."""
  labels = labels.astype(jnp.float32)
  positive = (labels > 0) & mask
  weights = jnp.where(positive, jnp.exp(jnp.where(positive, labels, 0.0)), 0.0)
  total = jnp.sum(weights, axis=-1, keepdims=True)
  return jnp.where(total > 0, weights / jnp.where(total > 0, total, 1.0), 0.0)


def attrank_loss(logits: Array, labels: Array, mask: Array) -> Array:
  """AttRank listwise softmax cross entropy (see the module docstring).

  Args:
    logits: float [B, N] scores.
    labels: float [B, N] graded or binary labels.
    mask: bool [B, N], False for padded items.

  Returns:
    float32 scalar: mean over the B lists (lists without positives contribute 0).
  """
  _check_same_shape(logits=logits, labels=labels, mask=mask)
  mask = mask.astype(bool)
  per_list = rax.softmax_loss(
      logits.astype(jnp.float32),
      labels.astype(jnp.float32),
      where=mask,
      label_fn=lambda y, where: attrank_weights(y, where),
      reduce_fn=None,
  )
  return jnp.mean(per_list)


def bce_loss(logits: Array, labels: Array, mask: Array) -> Array:
  """Pointwise binary cross entropy with logits, mean over valid items (0 if none).

  Args:
    logits: float [B, N]; labels: float [B, N] in [0, 1]; mask: bool [B, N].

  Returns:
    float32 scalar.
  """
  _check_same_shape(logits=logits, labels=labels, mask=mask)
  logits = logits.astype(jnp.float32)
  labels = labels.astype(jnp.float32)
  # log(1 + exp(-|x|)) form: stable for large |logits|.
  per_item = jnp.maximum(logits, 0.0) - logits * labels + jnp.log1p(jnp.exp(-jnp.abs(logits)))
  return _masked_mean(per_item, mask)


def rmse_loss(predictions: Array, labels: Array, mask: Array) -> Array:
  """Root mean squared error over valid items: sqrt(mean((p - y)^2)) (0 if none).

  Args:
    predictions: float [B, N] (e.g. the sigmoid relevance, or raw logits when regressing labels
      outside [0, 1] such as MO-LTR's); labels: float [B, N]; mask: bool [B, N].

  Returns:
    float32 scalar. The gradient at a perfect fit (RMSE 0) is defined as 0.
  """
  _check_same_shape(predictions=predictions, labels=labels, mask=mask)
  squared = jnp.square(predictions.astype(jnp.float32) - labels.astype(jnp.float32))
  mse = _masked_mean(squared, mask)
  safe = jnp.where(mse > 0, mse, 1.0)
  return jnp.where(mse > 0, jnp.sqrt(safe), 0.0)


def _masked_mean(values: Array, mask: Array) -> Array:
  mask = mask.astype(bool)
  count = jnp.sum(mask, dtype=jnp.float32)
  return jnp.sum(jnp.where(mask, values, 0.0)) / jnp.maximum(count, 1.0)


def pointer_cross_entropy(step_logits: Array, targets: Array) -> Array:
  """Teacher-forced pointer-decoder loss: mean CE of the target item at each decoding step.

  Args:
    step_logits: float [B, L, N] pointer logits per step (already masked: chosen/padded items
      at a large negative value).
    targets: int [B, L] target item per step, -1 for steps past the list's valid items.

  Returns:
    float32 scalar: mean over steps with a target (0 if none).
  """
  if step_logits.ndim != 3 or targets.shape != step_logits.shape[:2]:
    raise ValueError(
        f'step_logits must be [B, L, N] and targets [B, L], got '
        f'{step_logits.shape} and {targets.shape}'
    )
  log_probs = jax.nn.log_softmax(step_logits.astype(jnp.float32), axis=-1)
  has_target = targets >= 0
  picked = jnp.take_along_axis(log_probs, jnp.maximum(targets, 0)[..., None], axis=-1)[..., 0]
  return _masked_mean(-picked, has_target)


def stepwise_attrank_loss(step_logits: Array, targets: Array, labels: Array, mask: Array) -> Array:
  """AttRank applied at every decoding step over the items still available at that step.

  Step t's list is the valid items not among targets[:, :t]; its AttRank target puts exp(y)
  mass on the remaining positives, so with targets in label order the model is taught "any
  remaining positive" rather than one arbitrary order among tied labels. Steps after the
  positives run out contribute 0.

  Args:
    step_logits: float [B, L, N] pointer logits per step.
    targets: int [B, L] teacher-forcing order (-1 past the valid items).
    labels: float [B, N]; mask: bool [B, N].

  Returns:
    float32 scalar: mean over the B * L step-lists.
  """
  if step_logits.ndim != 3 or targets.shape != step_logits.shape[:2]:
    raise ValueError(
        f'step_logits must be [B, L, N] and targets [B, L], got '
        f'{step_logits.shape} and {targets.shape}'
    )
  _check_same_shape(labels=labels, mask=mask)
  batch, length, num_items = step_logits.shape
  chosen = jax.nn.one_hot(targets, num_items, dtype=jnp.int32)  # -1 -> all zeros
  chosen_before = jnp.cumsum(chosen, axis=1) - chosen
  available = mask.astype(bool)[:, None, :] & (chosen_before == 0)
  return attrank_loss(
      step_logits.reshape(batch * length, num_items),
      jnp.broadcast_to(labels[:, None, :], step_logits.shape).reshape(batch * length, num_items),
      available.reshape(batch * length, num_items),
  )
