"""Layers every larp_jax model shares: dense with logical axes, MLP, L2-normalise, temperature.

Parameters carry *logical* axis names (``'embed'``, ``'mlp'``, ``'heads'`` ...); the config's
rules (``configs/common.py``) map them onto the ``('data', 'model')`` mesh. A model never names a
mesh axis itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array
Dtype = Any
Initializer = Callable[..., Array]


def logical_init(init: Initializer, axes: Sequence[str | None]) -> Initializer:
  """``init`` whose parameters are boxed with the logical ``axes`` (one name per dimension)."""
  return nn.with_logical_partitioning(init, tuple(axes))


def dense(
    features: int,
    axes: Sequence[str | None],
    *,
    dtype: Dtype = jnp.float32,
    param_dtype: Dtype = jnp.float32,
    name: str | None = None,
    use_bias: bool = True,
    kernel_init: Initializer = nn.initializers.lecun_normal(),
    bias_init: Initializer | None = None,
    precision: Any = None,
) -> nn.Dense:
  """``nn.Dense`` whose kernel [in, out] is annotated with the two logical ``axes``.

  Args:
    features: output width.
    axes: logical names of the kernel's (input, output) dimensions, e.g. ``('embed', 'mlp')``.
    dtype, param_dtype: computation and parameter dtypes.
    name: submodule name (it is part of the parameter path, so it fixes initialisation too).
    use_bias: add a bias.
    kernel_init: initializer of the kernel (default LeCun normal, flax's default).
    bias_init: initializer of the bias; ``None`` keeps flax's zeros without an annotation,
      anything else is annotated with the output axis.
    precision: matmul precision passed to ``nn.Dense``.
  """
  kwargs = {}
  if bias_init is not None:
    kwargs["bias_init"] = logical_init(bias_init, (axes[-1],))
  return nn.Dense(
      features,
      use_bias=use_bias,
      dtype=dtype,
      param_dtype=param_dtype,
      name=name,
      kernel_init=logical_init(kernel_init, axes),
      precision=precision,
      **kwargs,
  )


def l2_normalize(x: Array, axis: int = -1, eps: float = 1e-12) -> Array:
  """float32 ``x / max(||x||, eps)`` along ``axis`` (zero vectors stay zero)."""
  x = jnp.asarray(x, jnp.float32)
  return x / jnp.maximum(jnp.linalg.norm(x, axis=axis, keepdims=True), eps)


class MLP(nn.Module):
  """Dense layers with an activation between them (none after the last).

  Attributes:
    features: widths of the layers, last = output width.
    axes: logical names of each kernel's (input, output) dims; one pair for all layers or one
      pair per layer.
    activation: applied after every layer but the last.
    final_activation: also apply ``activation`` after the last layer.
    dropout_rate: dropout after every hidden activation (needs the 'dropout' rng when training).
    kernel_init: kernel initializer.
    dtype, param_dtype: computation and parameter dtypes.
  """

  features: Sequence[int]
  axes: Sequence[Any] = ("embed", "mlp")
  activation: Callable[[Array], Array] = nn.relu
  final_activation: bool = False
  dropout_rate: float = 0.0
  kernel_init: Initializer = nn.initializers.lecun_normal()
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, deterministic: bool = True) -> Array:
    """``x [..., F_in]`` -> ``[..., features[-1]]``."""
    axes = list(self.axes)
    per_layer = axes if axes and isinstance(axes[0], (tuple, list)) else [axes] * len(self.features)
    if len(per_layer) != len(self.features):
      raise ValueError(f"MLP: {len(per_layer)} axis pairs for {len(self.features)} layers.")
    for i, (width, layer_axes) in enumerate(zip(self.features, per_layer)):
      x = dense(
          width,
          layer_axes,
          dtype=self.dtype,
          param_dtype=self.param_dtype,
          kernel_init=self.kernel_init,
          name=f"dense_{i}",
      )(x)
      last = i == len(self.features) - 1
      if not last or self.final_activation:
        x = self.activation(x)
      if not last and self.dropout_rate:
        x = nn.Dropout(self.dropout_rate)(x, deterministic=deterministic)
    return x


class LearnedTemperature(nn.Module):
  """A learnable scalar temperature, clipped to ``[minimum, maximum]`` when read.

  The raw parameter is called ``name_in_params`` in the parent's parameter tree (LARP: 'temp').
  """

  init_value: float = 0.07
  minimum: float = 0.001
  maximum: float = 0.5

  @nn.compact
  def __call__(self) -> Array:
    """float32 scalar."""
    raw = self.param("temp", nn.initializers.constant(self.init_value), (), jnp.float32)
    return jnp.clip(raw, self.minimum, self.maximum)
