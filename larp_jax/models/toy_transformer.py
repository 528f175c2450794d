"""A tiny decoder-only transformer for the smoke job (exercises sharding on `model`)."""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from larp_jax.models import layers


@dataclasses.dataclass(frozen=True)
class ToyTransformerConfig:
  vocab_size: int = 64
  max_len: int = 32
  num_layers: int = 2
  embed_dim: int = 64
  num_heads: int = 4
  mlp_dim: int = 256
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32


def _dense(
    features: int, axes: tuple[str, str], config: ToyTransformerConfig, name: str
) -> nn.Dense:
  """`layers.dense` with the config's dtypes and a Xavier-uniform kernel."""
  return layers.dense(
      features,
      axes,
      dtype=config.dtype,
      param_dtype=config.param_dtype,
      name=name,
      kernel_init=nn.initializers.xavier_uniform(),
  )


class CausalSelfAttention(nn.Module):
  config: ToyTransformerConfig

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    cfg = self.config
    b, t, d = x.shape
    head_dim = d // cfg.num_heads
    qkv = _dense(3 * d, ("embed", "mlp"), cfg, "qkv")(x)  # [B, T, 3D], sharded on `model`
    q, k, v = jnp.split(qkv.reshape(b, t, 3, cfg.num_heads, head_dim), 3, axis=2)
    q, k, v = q[:, :, 0], k[:, :, 0], v[:, :, 0]  # [B, T, H, Dh]
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32) / jnp.sqrt(head_dim)
    causal = jnp.tril(jnp.ones((t, t), bool))
    logits = jnp.where(causal, logits, jnp.finfo(jnp.float32).min)
    weights = jax.nn.softmax(logits, axis=-1).astype(cfg.dtype)
    out = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(b, t, d)
    return _dense(d, ("mlp", "embed"), cfg, "out")(out)


class ToyTransformer(nn.Module):
  """Pre-LN decoder. ``tokens [B, T] int32 -> logits [B, T, vocab] float32``."""

  config: ToyTransformerConfig

  @nn.compact
  def __call__(self, tokens: jax.Array) -> jax.Array:
    cfg = self.config
    embed = nn.Embed(
        cfg.vocab_size,
        cfg.embed_dim,
        dtype=cfg.dtype,
        param_dtype=cfg.param_dtype,
        embedding_init=layers.logical_init(nn.initializers.normal(0.02), ("vocab", "embed")),
        name="embed",
    )
    pos = self.param(
        "pos",
        layers.logical_init(nn.initializers.normal(0.02), (None, "embed")),
        (cfg.max_len, cfg.embed_dim),
        cfg.param_dtype,
    )
    x = embed(tokens) + pos[None, : tokens.shape[1]].astype(cfg.dtype)
    for i in range(cfg.num_layers):
      x = x + CausalSelfAttention(cfg, name=f"attn_{i}")(nn.LayerNorm(dtype=cfg.dtype)(x))
      h = _dense(cfg.mlp_dim, ("embed", "mlp"), cfg, f"mlp_in_{i}")(
          nn.LayerNorm(dtype=cfg.dtype)(x)
      )
      x = x + _dense(cfg.embed_dim, ("mlp", "embed"), cfg, f"mlp_out_{i}")(nn.gelu(h))
    x = nn.LayerNorm(dtype=cfg.dtype, name="final_norm")(x)
    return embed.attend(x).astype(jnp.float32)
