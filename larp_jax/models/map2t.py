"""MAP-2T towers (paper 002, Sec. 3.2): music and gated podcast sub-towers, feature-gated fusion,
and the text-initialised audiobook tower with its residual.

User side (inputs are frozen upstream vectors; every layer here trains):
  music      z = W x + b, z~ = γ ⊙ z + β, u_m = LN(z~ + FFN(z~))                    (FiLM-style)
  podcast    h1 = FFN1(x), h2 = FFN2(x), g = σ(f_gate(x)) (d-wide), u~ = g ⊙ h1 + (1-g) ⊙ h2,
             u_p = LN(u~ + FFN(u~))
  audiobook  (the "+ audiobook" variants) x_u^(ab-hist) through a sub-tower of the music form
  fusion     two inputs, 'gated': z = [u_1 ‖ u_2 ‖ |u_1 - u_2| ‖ u_1 ⊙ u_2],
             α = σ(W2 φ(W1 z + b1) + b2), u = α ⊙ u_1 + (1 - α) ⊙ u_2       (the paper's gate)
             three inputs, 'gated': a per-dimension softmax over the three sub-tower outputs from
             an MLP of their concatenation (OUR generalisation: the paper gates two inputs only)
             'concat': u = W [u_1 ‖ … ‖ u_k] + b (the ablation); one input: u = u_1
Item side: h_deep = FFN_deep(x), h_light = FFN_shallow(x), v = LN(f_mixer([h_deep ‖ h_light]) + x),
  so the item width is the text width d (the residual needs it) and the user side maps to d too.

``MAP2T.__call__(user_inputs, items)`` returns ``(z_user [B, d], z_item [N, d], aux)`` with the
gates in ``aux`` (``podcast_gate [B, d]``, ``fusion_gate [B, d]`` or ``[B, 3, d]``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from larp_jax.models import layers

Array = jax.Array
MODALITIES = ("music", "podcast", "audiobook")


@dataclasses.dataclass(frozen=True)
class MAP2TConfig:
  """Shapes and switches of the MAP-2T towers.

  Attributes:
    dim: d, the shared width = the audiobook text-embedding width.
    hidden: hidden width of every FFN.
    modalities: the user-side inputs used, a subset of MODALITIES in that order.
    fusion: 'gated' (the paper's feature gate; softmax gate for three inputs) | 'concat'.
    deep_layers: hidden layers of the item tower's deep branch (the shallow branch has none).
    dtype / param_dtype: computation / parameter dtypes.
  """

  dim: int = 384
  hidden: int = 256
  modalities: tuple[str, ...] = ("music", "podcast")
  fusion: str = "gated"
  deep_layers: int = 2
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  def __post_init__(self):
    if not self.modalities or any(m not in MODALITIES for m in self.modalities):
      raise ValueError(f"MAP2TConfig.modalities={self.modalities}: choose from {MODALITIES}.")
    if self.fusion not in ("gated", "concat"):
      raise ValueError(f"MAP2TConfig.fusion={self.fusion!r}: 'gated' | 'concat'.")


def _ffn(config: MAP2TConfig, name: str, depth: int = 1) -> layers.MLP:
  """``[..., F] -> [..., d]`` with ``depth`` hidden GELU layers of width ``config.hidden``."""
  return layers.MLP(
      features=(config.hidden,) * depth + (config.dim,),
      axes=("embed", "mlp"),
      activation=nn.gelu,
      dtype=config.dtype,
      param_dtype=config.param_dtype,
      name=name,
  )


def _layer_norm(config: MAP2TConfig, name: str) -> nn.LayerNorm:
  return nn.LayerNorm(dtype=config.dtype, param_dtype=config.param_dtype, name=name)


class CalibratedTower(nn.Module):
  """Music-form sub-tower: ``x [B, F] -> LN(z~ + FFN(z~)) [B, d]``, z~ = γ ⊙ (W x + b) + β."""

  config: MAP2TConfig

  @nn.compact
  def __call__(self, x: Array) -> Array:
    c = self.config
    z = layers.dense(
        c.dim, ("embed", "mlp"), dtype=c.dtype, param_dtype=c.param_dtype, name="proj"
    )(x)
    gamma = self.param(
        "gamma", layers.logical_init(nn.initializers.ones, ("mlp",)), (c.dim,), c.param_dtype
    )
    beta = self.param(
        "beta", layers.logical_init(nn.initializers.zeros, ("mlp",)), (c.dim,), c.param_dtype
    )
    z = gamma * z + beta
    return _layer_norm(c, "norm")(z + _ffn(c, "ffn")(z))


class GatedPodcastTower(nn.Module):
  """``x [B, F] -> (u_p [B, d], g [B, d])``: two FFN paths mixed by a d-wide sigmoid gate."""

  config: MAP2TConfig

  @nn.compact
  def __call__(self, x: Array) -> tuple[Array, Array]:
    c = self.config
    h1 = _ffn(c, "ffn_1")(x)
    h2 = _ffn(c, "ffn_2")(x)
    g = nn.sigmoid(_ffn(c, "gate")(x))
    u = g * h1 + (1 - g) * h2
    return _layer_norm(c, "norm")(u + _ffn(c, "ffn")(u)), g


class Fusion(nn.Module):
  """``[u_1 … u_k] ([B, d] each) -> (u [B, d], gate)`` (module docstring)."""

  config: MAP2TConfig

  @nn.compact
  def __call__(self, parts: Sequence[Array]) -> tuple[Array, Array | None]:
    c = self.config
    if len(parts) == 1:
      return parts[0], None
    if c.fusion == "concat":
      u = layers.dense(
          c.dim, ("mlp", "embed"), dtype=c.dtype, param_dtype=c.param_dtype, name="concat"
      )(jnp.concatenate(parts, -1))
      return u, None
    if len(parts) == 2:
      a, b = parts
      z = jnp.concatenate([a, b, jnp.abs(a - b), a * b], -1)
      alpha = nn.sigmoid(
          layers.MLP(
              (c.hidden, c.dim),
              activation=nn.gelu,
              dtype=c.dtype,
              param_dtype=c.param_dtype,
              name="gate",
          )(z)
      )
      return alpha * a + (1 - alpha) * b, alpha
    stacked = jnp.stack(parts, 1)  # [B, k, d]
    logits = layers.MLP(
        (c.hidden, c.dim * len(parts)),
        activation=nn.gelu,
        dtype=c.dtype,
        param_dtype=c.param_dtype,
        name="gate",
    )(jnp.concatenate(parts, -1))
    weights = jax.nn.softmax(logits.reshape(stacked.shape), axis=1)
    return jnp.sum(weights * stacked, 1), weights


class ItemTower(nn.Module):
  """``x [N, d] -> LN(f_mixer([FFN_deep(x) ‖ FFN_shallow(x)]) + x) [N, d]``."""

  config: MAP2TConfig

  @nn.compact
  def __call__(self, x: Array) -> Array:
    c = self.config
    deep = _ffn(c, "deep", depth=c.deep_layers)(x)
    light = layers.dense(
        c.dim, ("embed", "mlp"), dtype=c.dtype, param_dtype=c.param_dtype, name="shallow"
    )(x)
    mixed = layers.dense(
        c.dim, ("mlp", "embed"), dtype=c.dtype, param_dtype=c.param_dtype, name="mixer"
    )(jnp.concatenate([deep, light], -1))
    return _layer_norm(c, "norm")(mixed + x)


class MAP2T(nn.Module):
  """The two towers. ``user_inputs``: {modality: float [B, F_m]} for ``config.modalities``."""

  config: MAP2TConfig

  def setup(self):
    c = self.config
    towers = {}
    for m in c.modalities:
      towers[m] = GatedPodcastTower(c, name=m) if m == "podcast" else CalibratedTower(c, name=m)
    self.towers = towers
    self.fusion = Fusion(c, name="fusion")
    self.item_tower = ItemTower(c, name="item")

  def encode_users(self, user_inputs: Mapping[str, Array]) -> tuple[Array, dict[str, Array]]:
    """``{modality: [B, F_m]} -> (u [B, d], aux)``."""
    missing = [m for m in self.config.modalities if m not in user_inputs]
    if missing:
      raise ValueError(f"MAP2T user inputs lack {missing} (have {sorted(user_inputs)}).")
    parts, aux = [], {}
    for m in self.config.modalities:
      x = jnp.asarray(user_inputs[m], self.config.dtype)
      if m == "podcast":
        u, aux["podcast_gate"] = self.towers[m](x)
      else:
        u = self.towers[m](x)
      parts.append(u)
    u, gate = self.fusion(parts)
    if gate is not None:
      aux["fusion_gate"] = gate
    return u, aux

  def encode_items(self, items: Array) -> Array:
    """``x^(ab) [N, d] -> v [N, d]``."""
    return self.item_tower(jnp.asarray(items, self.config.dtype))

  def __call__(
      self, user_inputs: Mapping[str, Array], items: Array
  ) -> tuple[Array, Array, dict[str, Array]]:
    u, aux = self.encode_users(user_inputs)
    return u, self.encode_items(items), aux
