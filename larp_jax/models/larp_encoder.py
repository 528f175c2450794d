"""LARP dual encoder (KDD'24, Sec. 3): HTS-AT audio tower + BERT text tower, 256-d projections,
a learnable temperature and the TPC playlist fusion.

The module holds only the *online* networks. Momentum (EMA) copies are a second parameter tree
applied with the same module (``LARP.apply({'params': params_m, ...})``); queues and the N x 256
lookup tables are plain arrays in the train state (see ``larp_jax.jobs.larp``), updated by the pure
functions of ``larp_jax.losses.contrastive``.

Call methods (all return float32):
  encode_audio(waveform [B, S], train) -> L2-normalised [B, 256]
  encode_text(input_ids [B, L], attention_mask [B, L], train) -> L2-normalised [B, 256]
  fuse(features [B, J, 256], mask [B, J]) -> playlist vector [B, 256] (fusion or masked mean)
  temperature() -> scalar clamped to [temp_min, temp_max]
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from larp_jax.models import bert, htsat, larp_fusion, layers


@dataclasses.dataclass(frozen=True)
class LARPConfig:
  """Model settings.

  Attributes:
    audio: HTS-AT config (tower output = ``audio.num_features``).
    text: BERT config (tower output = ``text.hidden_size``).
    embed_dim: projection size (paper: 256).
    text_pooling: 'cls' (BLIP/LARP) or 'mean'.
    temperature_init, temperature_min, temperature_max: learnable temperature, clamped (official
      code: 0.07 in [0.001, 0.5]).
    fusion: True = self-attention fusion (LARP-TPC-fusion), False = masked mean (w/o fusion).
    dtype, param_dtype: compute / parameter dtypes (similarities and losses stay float32).
  """

  audio: htsat.HTSATConfig
  text: bert.BertConfig
  embed_dim: int = 256
  text_pooling: str = "cls"
  temperature_init: float = 0.07
  temperature_min: float = 0.001
  temperature_max: float = 0.5
  fusion: bool = True
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32


class LARP(nn.Module):
  """Online LARP encoders. ``__call__`` initialises every submodule (used by ``init``)."""

  config: LARPConfig

  def setup(self):
    cfg = self.config
    self.audio_encoder = htsat.HTSAT(cfg.audio, dtype=cfg.dtype, param_dtype=cfg.param_dtype)
    self.text_encoder = bert.BertEncoder(cfg.text, dtype=cfg.dtype, param_dtype=cfg.param_dtype)
    dense = lambda name: layers.dense(  # noqa: E731
        cfg.embed_dim, ("mlp", "embed"), dtype=cfg.dtype, param_dtype=cfg.param_dtype, name=name
    )
    self.audio_proj = dense("audio_proj")
    self.text_proj = dense("text_proj")
    self.fusion = larp_fusion.FusionSelfAttention(
        features=cfg.embed_dim, dtype=cfg.dtype, param_dtype=cfg.param_dtype
    )
    self.temp = self.param("temp", nn.initializers.constant(cfg.temperature_init), (), jnp.float32)

  def encode_audio(self, waveform: jax.Array, train: bool = False) -> jax.Array:
    """float32 [B, S] waveform -> L2-normalised float32 [B, embed_dim]."""
    out = self.audio_encoder(waveform, train=train)
    return layers.l2_normalize(self.audio_proj(out["embedding"]))

  def encode_text(
      self, input_ids: jax.Array, attention_mask: jax.Array, train: bool = False
  ) -> jax.Array:
    """int32 [B, L] token ids + mask -> L2-normalised float32 [B, embed_dim]."""
    hidden = self.text_encoder(input_ids, attention_mask, deterministic=not train)
    pooled = bert.pool(hidden, attention_mask, self.config.text_pooling)
    return layers.l2_normalize(self.text_proj(pooled))

  def fuse(self, features: jax.Array, mask: jax.Array) -> jax.Array:
    """[B, J, D] seed features + bool mask [B, J] -> float32 [B, D] playlist vectors."""
    if self.config.fusion:
      return self.fusion(features, mask)
    return larp_fusion.masked_mean_pool(features, mask)

  def temperature(self) -> jax.Array:
    """float32 scalar: the learnable temperature clamped to [temperature_min, temperature_max]."""
    return jnp.clip(self.temp, self.config.temperature_min, self.config.temperature_max)

  def __call__(
      self,
      waveform,
      input_ids,
      attention_mask,
      playlist_features,
      playlist_mask,
      train: bool = False,
  ):
    return (
        self.encode_audio(waveform, train),
        self.encode_text(input_ids, attention_mask, train),
        self.fusion(playlist_features, playlist_mask),
        self.temperature(),
    )
