"""Generalized user representation (paper 001, Sec. 3.2.3): a SELU autoencoder with a 120-d code.

``x_u = [c_u, a_u, v_u]`` (standardised user features: context/demographics/activity, audio and
collaborative aggregates over several horizons) -> encoder MLP -> ``z_u`` (120-d, linear) ->
decoder MLP -> ``x̂_u``. Both MLPs use SELU between layers (Sec. 3.3.3: "SELU activation function
in both encoder and decoder") with LeCun-normal initialisation (what SELU's self-normalisation
assumes) and "a small dropout".

Readings the paper leaves open (config keys, defaults first):
  * ``dropout_kind``: ``'alpha'`` (alpha-dropout, which keeps SELU's zero mean / unit variance;
    Klambauer et al. 2017) or ``'plain'`` (inverted dropout).
  * the code layer is linear (no activation on z), so z is not bounded by SELU's negative
    saturation; the decoder's output layer is linear too (standardised targets are unbounded).
The transfer-task heads fitted on frozen z live in ``larp_jax/evaluation/transfer_heads.py``
(they are fitted for many user-vector kinds at once, baselines included, so they are evaluation
code, not part of this model).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from larp_jax.models import layers

Array = jax.Array

# SELU's constants (Klambauer et al. 2017); alpha' = -scale * alpha is SELU's negative limit.
_SELU_ALPHA = 1.6732632423543772
_SELU_SCALE = 1.0507009873554805
_ALPHA_PRIME = -_SELU_SCALE * _SELU_ALPHA


@dataclasses.dataclass(frozen=True)
class AutoencoderConfig:
  """Shape of the autoencoder.

  Attributes:
    input_dim: d, the width of x (all feature blocks kept by the config).
    hidden: encoder hidden widths; the decoder mirrors them.
    latent_dim: k, the width of z (paper: 120).
    dropout_rate: dropout after every hidden SELU (paper: "a small dropout").
    dropout_kind: 'alpha' | 'plain'.
  """

  input_dim: int
  hidden: Sequence[int] = (512, 256)
  latent_dim: int = 120
  dropout_rate: float = 0.05
  dropout_kind: str = "alpha"

  def __post_init__(self):
    if self.dropout_kind not in ("alpha", "plain"):
      raise ValueError(f"dropout_kind={self.dropout_kind!r}; expected 'alpha' or 'plain'.")
    if not 0.0 <= self.dropout_rate < 1.0:
      raise ValueError(f"dropout_rate={self.dropout_rate} must be in [0, 1).")
    if self.input_dim < 1 or self.latent_dim < 1:
      raise ValueError(f"input_dim={self.input_dim}, latent_dim={self.latent_dim} must be >= 1.")


def alpha_dropout(x: Array, rate: float, rng: Array) -> Array:
  """Alpha-dropout: dropped units are set to SELU's negative limit, then an affine correction
  restores zero mean and unit variance for inputs with that moment (``x [...]`` float32)."""
  keep = jax.random.bernoulli(rng, 1.0 - rate, x.shape)
  a = ((1.0 - rate) * (1.0 + rate * _ALPHA_PRIME**2)) ** -0.5
  b = -a * _ALPHA_PRIME * rate
  return a * jnp.where(keep, x, _ALPHA_PRIME) + b


class _SeluMLP(nn.Module):
  """Dense -> SELU -> dropout for every hidden width, then a linear output layer."""

  hidden: Sequence[int]
  out_dim: int
  dropout_rate: float
  dropout_kind: str

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    for i, width in enumerate(self.hidden):
      x = layers.dense(width, ("embed", "mlp"), name=f"dense_{i}")(x)
      x = nn.selu(x)
      if train and self.dropout_rate > 0:
        if self.dropout_kind == "alpha":
          x = alpha_dropout(x, self.dropout_rate, self.make_rng("dropout"))
        else:
          x = nn.Dropout(self.dropout_rate)(x, deterministic=False)
    return layers.dense(self.out_dim, ("mlp", "embed"), name="out")(x)


class UserAutoencoder(nn.Module):
  """``x [B, d] float32 -> (z [B, k], x̂ [B, d])``; ``encode`` gives z alone."""

  config: AutoencoderConfig

  def setup(self):
    c = self.config
    self.encoder = _SeluMLP(tuple(c.hidden), c.latent_dim, c.dropout_rate, c.dropout_kind)
    self.decoder = _SeluMLP(tuple(c.hidden)[::-1], c.input_dim, c.dropout_rate, c.dropout_kind)

  def encode(self, x: Array, train: bool = False) -> Array:
    """``x [B, d]`` standardised features -> ``z [B, latent_dim]`` float32."""
    return self.encoder(jnp.asarray(x, jnp.float32), train)

  def __call__(self, x: Array, train: bool = False) -> tuple[Array, Array]:
    z = self.encode(x, train)
    return z, self.decoder(z, train)
