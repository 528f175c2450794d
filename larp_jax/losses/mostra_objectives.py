"""MOSTRA training objectives: the target each Table 1 scorer learns and its batch loss.

  * `training_target`: SAT, or MO-LTR's composite s = SAT + SAT * sum_j E_j (`mo_ltr_labels`).
  * `teacher_forcing_targets`: the order the pointer decoders are teacher forced on (valid items
    by target, descending).
  * `scorer_loss`: one scorer's float32 training loss on a batch. AttRank / BCE on the logits;
    RMSE on the sigmoid relevance (SAT targets in {0, 1}) or on the logits (MO-LTR targets up
    to 4); the pointer decoders take AttRank at every step (`ranking.stepwise_attrank_loss`).

The scorers themselves (`ScorerSpec`, `SCORERS`, `build_model`) are in `larp_jax.models.mostra`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from larp_jax.decoding.baseline_decoders import sort_decode
from larp_jax.losses import ranking
from larp_jax.models import mostra_scorers

Array = jax.Array


def mo_ltr_labels(sat: Array, objectives: Array, weights: Array | None = None) -> Array:
  """MO-LTR training label (App. A): s_i = SAT_i + SAT_i * sum_j w_j E_ij (w = 1 in the paper).

  Args:
    sat: float [B, N] SAT labels; objectives: float [B, N, J]; weights: optional float [J].

  Returns:
    float32 [B, N]. Train `SetTRM` on it (AttRank on logits, or RMSE on logits since the
    label exceeds 1) and sort its logits.
  """
  if objectives.ndim != 3 or objectives.shape[:2] != sat.shape:
    raise ValueError(
        f'objectives must be [B, N, J] with [B, N] = {sat.shape}, ' f'got {objectives.shape}'
    )
  objectives = objectives.astype(jnp.float32)
  if weights is not None:
    weights = jnp.asarray(weights, jnp.float32)
    if weights.shape != objectives.shape[-1:]:
      raise ValueError(f'weights must be [J] = {objectives.shape[-1:]}, got {weights.shape}')
    objectives = objectives * weights
  sat = sat.astype(jnp.float32)
  return sat + sat * jnp.sum(objectives, axis=-1)


def teacher_forcing_targets(labels: Array, mask: Array, length: int) -> Array:
  """Target order for the autoregressive baselines: valid items by label, descending.

  Ties go to the lower index; with SAT labels, completed tracks come first.

  Args:
    labels: float [B, N] (e.g. `training_target`); mask: bool [B, N]; length: steps L.

  Returns:
    int32 [B, length], -1 past the valid items.
  """
  return sort_decode(labels, mask, length=length)


def training_target(spec: mostra_scorers.ScorerSpec, labels: Array) -> Array:
  """A scorer's training target.

  Args:
    spec: which scorer; labels: float [B, N, 4] (SAT first, `mostra_scorers.SAT`).

  Returns:
    float32 [B, N]: SAT, or MO-LTR's SAT + SAT * sum_j E_j.
  """
  sat = labels[..., mostra_scorers.SAT]
  if spec.multi_objective:
    return mo_ltr_labels(sat, labels[..., mostra_scorers.SAT + 1 :])
  return sat.astype(jnp.float32)


def scorer_loss(
    model: nn.Module,
    spec: mostra_scorers.ScorerSpec,
    params: Any,
    features: Array,
    mask: Array,
    labels: Array,
    pointer_length: int,
) -> Array:
  """Training loss of one batch.

  Args:
    model: `mostra_scorers.build_model(config.model, spec)`; spec: which scorer; params: its
      parameters.
    features: float [B, N, F]; mask: [B, N] (cast to bool); labels: float [B, N, 4].
    pointer_length: teacher-forced steps L of the pointer models.

  Returns:
    float32 scalar.
  """
  mask = mask.astype(bool)
  inputs = mostra_scorers.model_inputs(spec, features, mask, labels)
  target = training_target(spec, labels)
  if spec.is_pointer:
    targets = teacher_forcing_targets(target, mask, pointer_length)
    step_logits = model.apply({'params': params}, inputs, mask, targets)
    return ranking.stepwise_attrank_loss(step_logits, targets, target, mask)
  out = model.apply({'params': params}, inputs, mask)
  if spec.loss == 'attrank':
    return ranking.attrank_loss(out['logits'], target, mask)
  if spec.loss == 'bce':
    return ranking.bce_loss(out['logits'], target, mask)
  if spec.loss == 'rmse':
    prediction = out['logits'] if spec.multi_objective else out['relevance']
    return ranking.rmse_loss(prediction, target, mask)
  raise ValueError(f'unknown loss {spec.loss!r}; choose from {mostra_scorers.LOSSES}')
