"""MOSTRA's Table 1 scorer catalogue: which model and loss each row trains, and how it is built,
fed and asked for predictions (App. A). The modules themselves live in ``models/mostra.py``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from larp_jax.models import mostra

Array = jax.Array


ARCHITECTURES = ('dnn', 'settrm', 'settrm2gru', 'settrm2trm')
LOSSES = ('attrank', 'bce', 'rmse')
# Column of SAT in the session labels [B, N, 4] (`data_pipelines.sessions.OBJECTIVES` order:
# SAT, BOOST, EXPOSURE, DISCOVERY); the J = 3 columns after it are the other objectives.
SAT = 0


@dataclasses.dataclass(frozen=True)
class ScorerSpec:
  """One trained model of Table 1.

  Attributes:
    architecture: one of ARCHITECTURES.
    loss: one of LOSSES (pointer decoders: 'attrank' only).
    multi_objective: MO-LTR: objective labels as inputs, composite training target.
  """

  architecture: str
  loss: str
  multi_objective: bool = False

  @property
  def is_pointer(self) -> bool:
    """True for the autoregressive pointer decoders (SetTRM2GRU, SetTRM2TRM)."""
    return self.architecture in ('settrm2gru', 'settrm2trm')


SCORERS = {
    'DNN_AttRank': ScorerSpec('dnn', 'attrank'),
    'DNN_BCE': ScorerSpec('dnn', 'bce'),
    'DNN_RMSE': ScorerSpec('dnn', 'rmse'),
    'SetRank': ScorerSpec('settrm', 'attrank'),
    'SetRank_BCE': ScorerSpec('settrm', 'bce'),
    'SetRank_RMSE': ScorerSpec('settrm', 'rmse'),
    'SetTRM2GRU_AttRank': ScorerSpec('settrm2gru', 'attrank'),
    'SetTRM2TRM_AttRank': ScorerSpec('settrm2trm', 'attrank'),
    'MO-LTR_AttRank': ScorerSpec('settrm', 'attrank', multi_objective=True),
    'MO-LTR_RMSE': ScorerSpec('settrm', 'rmse', multi_objective=True),
}


def scorer_spec(name: str) -> ScorerSpec:
  """The `ScorerSpec` of a Table 1 scorer name (a key of SCORERS); ValueError if unknown."""
  if name not in SCORERS:
    raise ValueError(f'config.scorers: unknown scorer {name!r}; choose from {sorted(SCORERS)}')
  return SCORERS[name]


def build_model(model_config: Any, spec: ScorerSpec) -> nn.Module:
  """The flax module of one scorer.

  Args:
    model_config: the `config.model` section of configs/mostra.py (`dtype`, `settrm`,
      `dnn_hidden_dims`, `gru`, `trm`).
    spec: which scorer.

  Returns:
    An unbound `DNNScorer`, `SetTRM`, `SetTRM2GRU` or `SetTRM2TRM`.
  """
  dtype = jnp.dtype(model_config.dtype)
  settrm = mostra.SetTRMConfig(**model_config.settrm.to_dict())
  if spec.architecture == 'dnn':
    return mostra.DNNScorer(hidden_dims=tuple(model_config.dnn_hidden_dims), dtype=dtype)
  if spec.architecture == 'settrm':
    return mostra.SetTRM(settrm, dtype=dtype)
  if spec.architecture == 'settrm2gru':
    return mostra.SetTRM2GRU(settrm, dtype=dtype, **model_config.gru.to_dict())
  if spec.architecture == 'settrm2trm':
    return mostra.SetTRM2TRM(settrm, dtype=dtype, **model_config.trm.to_dict())
  raise ValueError(f'unknown architecture {spec.architecture!r}; choose from {ARCHITECTURES}')


def model_inputs(spec: ScorerSpec, features: Array, mask: Array, labels: Array) -> Array:
  """A scorer's input features.

  Args:
    spec: which scorer.
    features: float [B, N, F]; mask: bool [B, N]; labels: float [B, N, 4] (SAT first).

  Returns:
    `features` [B, N, F], or for MO-LTR the features with the J objective labels after SAT
    appended (zero on padded items): [B, N, F + J] in the features' dtype.
  """
  if not spec.multi_objective:
    return features
  objectives = jnp.where(mask[..., None], labels[..., SAT + 1 :], 0.0).astype(features.dtype)
  return jnp.concatenate([features, objectives], axis=-1)


def predict(
    model: nn.Module,
    spec: ScorerSpec,
    params: Any,
    features: Array,
    mask: Array,
    labels: Array,
    length: int,
) -> dict[str, Array]:
  """Inference outputs of one scorer on a batch.

  Args:
    model: `build_model(config.model, spec)`; spec: which scorer; params: its parameters.
    features: float [B, N, F]; mask: [B, N] (cast to bool); labels: float [B, N, 4] (read by
      MO-LTR only).
    length: decoded positions L of the pointer models.

  Returns:
    Scorers: {'logits', 'relevance'} float32 [B, N]; pointer models: {'sequences'} int32 [B, L].
  """
  mask = mask.astype(bool)
  inputs = model_inputs(spec, features, mask, labels)
  if spec.is_pointer:
    return {
        'sequences': model.apply({'params': params}, inputs, mask, length=length, method='decode')
    }
  out = model.apply({'params': params}, inputs, mask)
  return {'logits': out['logits'], 'relevance': out['relevance']}


def init_params(
    model: nn.Module,
    spec: ScorerSpec,
    rng: Array,
    features: Array,
    mask: Array,
    labels: Array,
    pointer_length: int,
) -> Any:
  """Boxed parameters (nn.Partitioned leaves) of a fresh model.

  Args:
    model: `build_model(config.model, spec)`; spec: which scorer; rng: init PRNG key.
    features: float [B, N, F]; mask: bool [B, N]; labels: float [B, N, 4] (example batch).
    pointer_length: teacher-forced steps L of the pointer models (their init batch [B, L]).

  Returns:
    The 'params' collection.
  """
  inputs = model_inputs(spec, features, mask, labels)
  if spec.is_pointer:
    targets = jnp.zeros((features.shape[0], pointer_length), jnp.int32)
    return model.init(rng, inputs, mask, targets)['params']
  return model.init(rng, inputs, mask)['params']
