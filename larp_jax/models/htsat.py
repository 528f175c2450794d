"""HTS-AT (hierarchical token-semantic audio transformer) in flax.linen, numerically matching
laion_clap's `clap_module/htsat.py` (the audio tower of CLAP and LARP).

Forward pass (shapes for 'tiny': 48 kHz, 10 s, spec_size 256, 64 mels, embed 96):

  waveform [B, 480000] -> log-mel [B, 1001, 64] -> bn0 (BatchNorm over mel bins)
    -> SpecAugment (train only) -> time resize 1001 -> 1024 (PyTorch bicubic, align_corners=True)
    -> "mel to image" [B, 256, 256, 1]: row = chunk * 64 + mel, column = frame within chunk
    -> patch embed (conv k4 s4) + LN -> [B, 4096, 96]
    -> 4 Swin stages (window 8, shifted windows on odd blocks, patch merging after stages 1-3;
       blocks in `larp_jax/models/swin.py`)
    -> LN -> [B, 8, 8, 768] -> token-semantic head:
         embedding [B, 768] (mean of all tokens), fine_grained_embedding [B, 1024, 768],
         tscam conv -> framewise_output [B, 1024, 527] (sigmoid), clipwise_output [B, 527].

Parameter names mirror the PyTorch module names (`layers_0/blocks_1/attn/qkv`, ...) so that
`htsat_convert.convert_torch_state_dict` is a rename plus transposes. Layer norms use eps 1e-5 as
in PyTorch.
Train mode needs `rngs={'dropout': key}` (drop-path and SpecAugment) and
`mutable=['batch_stats']` (bn0 running statistics).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from larp_jax.models import audio_frontend, layers, swin

Dtype = Any
BN_EPS = 1e-5


@dataclasses.dataclass(frozen=True)
class HTSATConfig:
  """Architecture and input settings of an HTS-AT variant (see `htsat_config`).

  Audio fields feed `audio_frontend.LogMelConfig`; `spec_size` is the side of the square image the
  log-mel is folded into (`freq_ratio = spec_size // mel_bins` time chunks stacked along frequency),
  so at most `spec_size * freq_ratio` frames fit.
  """

  variant: str = 'tiny'
  # Audio input and log-mel frontend.
  sample_rate: int = 48000
  clip_samples: int = 480000
  mel_bins: int = 64
  n_fft: int = 1024
  hop_length: int = 480
  fmin: float = 50.0
  fmax: float = 14000.0
  # Swin transformer.
  spec_size: int = 256
  patch_size: int = 4
  patch_stride: int = 4
  embed_dim: int = 96
  depths: tuple[int, ...] = (2, 2, 6, 2)
  num_heads: tuple[int, ...] = (4, 8, 16, 32)
  window_size: int = 8
  mlp_ratio: float = 4.0
  qkv_bias: bool = True
  num_classes: int = 527
  # Regularisation (train mode only).
  drop_rate: float = 0.0
  attn_drop_rate: float = 0.0
  drop_path_rate: float = 0.1
  spec_augment: bool = True
  time_drop_width: int = 64
  time_stripes_num: int = 2
  freq_drop_width: int = 8
  freq_stripes_num: int = 2
  # flax convention: running = momentum * running + (1 - momentum) * batch (torch momentum 0.1).
  bn_momentum: float = 0.9

  def __post_init__(self):
    if len(self.depths) != len(self.num_heads):
      raise ValueError(f'depths {self.depths} and num_heads {self.num_heads} differ in length')
    if self.freq_ratio < 1:
      raise ValueError(f'spec_size {self.spec_size} must be >= mel_bins {self.mel_bins}')
    if self.spec_size % self.freq_ratio:
      raise ValueError(
          f'spec_size {self.spec_size} is not divisible by freq_ratio ' f'{self.freq_ratio}'
      )
    if self.patch_size < self.patch_stride:
      raise ValueError(f'patch_size {self.patch_size} < patch_stride {self.patch_stride}')
    grid = self.spec_size // self.patch_stride
    for stage, (dim_heads, res) in enumerate(zip(self.num_heads, self.stage_resolutions)):
      if self.stage_dim(stage) % dim_heads:
        raise ValueError(
            f'stage {stage} width {self.stage_dim(stage)} not divisible by ' f'{dim_heads} heads'
        )
      if res > self.window_size and res % self.window_size:
        raise ValueError(
            f'stage {stage} resolution {res} not divisible by window ' f'{self.window_size}'
        )
    if grid % 2 ** (self.num_stages - 1):
      raise ValueError(f'patch grid {grid} cannot be halved {self.num_stages - 1} times')
    if self.stage_resolutions[-1] % self.freq_ratio:
      raise ValueError(f'final grid {self.stage_resolutions[-1]} not divisible by freq_ratio')
    if audio_frontend.num_frames(self.clip_samples, self.frontend) > self.target_frames:
      raise ValueError(
          f'clip_samples {self.clip_samples} gives more frames than the '
          f'{self.target_frames} that fit in spec_size {self.spec_size}'
      )

  @property
  def num_stages(self) -> int:
    return len(self.depths)

  @property
  def freq_ratio(self) -> int:
    return self.spec_size // self.mel_bins

  @property
  def target_frames(self) -> int:
    """Frames after the time resize (= framewise output length)."""
    return self.spec_size * self.freq_ratio

  @property
  def target_mel_bins(self) -> int:
    return self.spec_size // self.freq_ratio

  @property
  def stage_resolutions(self) -> tuple[int, ...]:
    grid = self.spec_size // self.patch_stride
    return tuple(grid // 2**i for i in range(self.num_stages))

  def stage_dim(self, stage: int) -> int:
    return self.embed_dim * 2**stage

  @property
  def num_features(self) -> int:
    """Width of `embedding` (768 for tiny, 1024 for base)."""
    return self.stage_dim(self.num_stages - 1)

  @property
  def frontend(self) -> audio_frontend.LogMelConfig:
    return audio_frontend.LogMelConfig(
        sample_rate=self.sample_rate,
        n_fft=self.n_fft,
        hop_length=self.hop_length,
        win_length=self.n_fft,
        n_mels=self.mel_bins,
        fmin=self.fmin,
        fmax=self.fmax,
        center=True,
        pad_mode='reflect',
        ref=1.0,
        amin=1e-10,
        top_db=None,
    )


_VARIANTS: dict[str, dict[str, Any]] = {
    # laion_clap model_configs/HTSAT-tiny.json (CLAP, LARP).
    'tiny': dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(4, 8, 16, 32)),
    # laion_clap model_configs/HTSAT-base.json (CLAP music checkpoints).
    'base': dict(embed_dim=128, depths=(2, 2, 12, 2), num_heads=(4, 8, 16, 32)),
    # CPU-friendly demo variant: 4 s at 16 kHz (401 frames of 10 ms) folded into a 128 x 128 image.
    'small': dict(
        sample_rate=16000,
        clip_samples=64000,
        mel_bins=32,
        n_fft=512,
        hop_length=160,
        fmin=50.0,
        fmax=8000.0,
        spec_size=128,
        embed_dim=32,
        depths=(1, 1, 2, 1),
        num_heads=(1, 2, 4, 8),
        window_size=8,
    ),
}


def htsat_config(variant: str, **overrides: Any) -> HTSATConfig:
  """Config of a named variant ('tiny', 'base', 'small'), with optional field overrides."""
  if variant not in _VARIANTS:
    raise ValueError(f'unknown HTS-AT variant {variant!r}; choose one of {sorted(_VARIANTS)}')
  return HTSATConfig(variant=variant, **{**_VARIANTS[variant], **overrides})


# ---------------------------------------------------------------------------------------------
# Input pipeline: bicubic resize (as PyTorch interpolate), SpecAugment, mel to image.


@functools.lru_cache(maxsize=32)
def bicubic_resize_matrix(in_size: int, out_size: int) -> np.ndarray:
  """[out_size, in_size] float32 matrix R such that R @ x equals
  `torch.nn.functional.interpolate(x, mode='bicubic', align_corners=True)` along one axis.

  PyTorch's cubic convolution: A = -0.75, source coordinate `i * (in-1)/(out-1)` computed in
  float32, taps at floor(src) - 1 .. floor(src) + 2 clamped to the border.
  """
  a = np.float32(-0.75)
  scale = np.float32(in_size - 1) / np.float32(out_size - 1) if out_size > 1 else np.float32(0)
  src = (scale * np.arange(out_size, dtype=np.float32)).astype(np.float32)
  base = np.floor(src)
  t = (src - base).astype(np.float32)

  def near(x):  # |x| <= 1
    return ((a + 2) * x - (a + 3)) * x * x + 1

  def far(x):  # 1 < |x| < 2
    return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

  weights = np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=1)
  taps = np.clip(base.astype(np.int64)[:, None] + np.arange(-1, 3)[None, :], 0, in_size - 1)
  matrix = np.zeros((out_size, in_size), np.float64)
  np.add.at(matrix, (np.repeat(np.arange(out_size), 4), taps.ravel()), weights.ravel())
  return matrix.astype(np.float32)


def bicubic_resize(x: jax.Array, out_size: int, axis: int) -> jax.Array:
  """Resizes `x` along `axis` like PyTorch bicubic interpolation with align_corners=True."""
  matrix = jnp.asarray(bicubic_resize_matrix(x.shape[axis], out_size))
  moved = jnp.moveaxis(x, axis, -1)
  resized = jnp.matmul(moved, matrix.T.astype(x.dtype), precision='highest')
  return jnp.moveaxis(resized, -1, axis)


def spec_augment(x: jax.Array, rng: jax.Array, config: HTSATConfig) -> jax.Array:
  """torchlibrosa SpecAugmentation: per example, zero `stripes_num` stripes of width in
  [0, drop_width) along time, then along mel bins. x: [B, frames, mels]."""
  time_rng, freq_rng = jax.random.split(rng)

  def stripes(key, total, drop_width, num):
    width_key, start_key = jax.random.split(key)
    drop_width = min(drop_width, total)
    batch = x.shape[0]
    width = jax.random.randint(width_key, (batch, num), 0, drop_width)
    start = jnp.floor(jax.random.uniform(start_key, (batch, num)) * (total - width)).astype(
        jnp.int32
    )
    positions = jnp.arange(total)[None, None, :]
    hit = (positions >= start[..., None]) & (positions < (start + width)[..., None])
    return jnp.any(hit, axis=1)  # [B, total]

  time_drop = stripes(time_rng, x.shape[1], config.time_drop_width, config.time_stripes_num)
  freq_drop = stripes(freq_rng, x.shape[2], config.freq_drop_width, config.freq_stripes_num)
  drop = time_drop[:, :, None] | freq_drop[:, None, :]
  return jnp.where(drop, jnp.zeros_like(x), x)


def mel_to_image(log_mel: jax.Array, config: HTSATConfig) -> jax.Array:
  """HTS-AT `reshape_wav2img`: resize to [B, target_frames, target_mel_bins] and fold time chunks
  under each other. [B, frames, mels] -> [B, spec_size, spec_size, 1]; image row = chunk *
  target_mel_bins + mel, column = frame within the chunk."""
  batch, frames, mels = log_mel.shape
  if frames > config.target_frames or mels > config.target_mel_bins:
    raise ValueError(
        f'log-mel of {frames} frames x {mels} bins does not fit the '
        f'{config.target_frames} x {config.target_mel_bins} HTS-AT input'
    )
  x = log_mel
  if frames < config.target_frames:
    x = bicubic_resize(x, config.target_frames, axis=1)
  if mels < config.target_mel_bins:
    x = bicubic_resize(x, config.target_mel_bins, axis=2)
  ratio = config.freq_ratio
  x = x.transpose(0, 2, 1)  # [B, F, T]
  x = x.reshape(batch, config.target_mel_bins, ratio, config.target_frames // ratio)
  x = x.transpose(0, 2, 1, 3).reshape(batch, ratio * config.target_mel_bins, -1)
  return x[..., None]


class HTSAT(nn.Module):
  """HTS-AT audio encoder on raw waveforms.

  Call: `HTSAT(config).apply(variables, waveform, train=False)` with waveform float32
  [B, samples] at `config.sample_rate`, samples <= what `spec_size` allows (10.23 s for tiny/base).
  Returns a dict of float32 arrays: `embedding` [B, C], `clipwise_output` [B, classes] (sigmoid),
  `framewise_output` [B, T_out, classes] (sigmoid), `fine_grained_embedding` [B, T_out, C], with
  C = `config.num_features` and T_out = `config.target_frames`.
  """

  config: HTSATConfig
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, waveform: jax.Array, train: bool = False) -> dict[str, jax.Array]:
    cfg = self.config
    if waveform.ndim != 2:
      raise ValueError(f'waveform must be [batch, samples], got shape {waveform.shape}')
    deterministic = not train
    x = audio_frontend.log_mel_spectrogram(waveform.astype(jnp.float32), cfg.frontend)
    x = nn.BatchNorm(
        use_running_average=not train,
        axis=-1,
        momentum=cfg.bn_momentum,
        epsilon=BN_EPS,
        use_fast_variance=False,
        dtype=jnp.float32,
        param_dtype=self.param_dtype,
        name='bn0',
    )(x)
    if train and cfg.spec_augment:
      x = spec_augment(x, self.make_rng('dropout'), cfg)
    image = mel_to_image(x, cfg).astype(self.dtype)

    x = swin.PatchEmbed(
        cfg.embed_dim,
        cfg.patch_size,
        cfg.patch_stride,
        self.dtype,
        self.param_dtype,
        name='patch_embed',
    )(image)
    x = nn.Dropout(cfg.drop_rate)(x, deterministic=deterministic)
    rates = np.linspace(0.0, cfg.drop_path_rate, sum(cfg.depths)).tolist()
    for stage, depth in enumerate(cfg.depths):
      start = sum(cfg.depths[:stage])
      res = cfg.stage_resolutions[stage]
      x = swin.SwinStage(
          cfg.stage_dim(stage),
          (res, res),
          depth,
          cfg.num_heads[stage],
          cfg.window_size,
          tuple(rates[start : start + depth]),
          stage < cfg.num_stages - 1,
          cfg.mlp_ratio,
          cfg.qkv_bias,
          cfg.drop_rate,
          cfg.attn_drop_rate,
          self.dtype,
          self.param_dtype,
          name=f'layers_{stage}',
      )(x, deterministic)
    x = swin.layer_norm('norm', self.dtype, self.param_dtype)(x)
    return self._token_semantic_head(x)

  def _token_semantic_head(self, x: jax.Array) -> dict[str, jax.Array]:
    """[B, R*R, C] final tokens -> output dict (see class docstring)."""
    cfg = self.config
    batch, _, channels = x.shape
    res = cfg.stage_resolutions[-1]
    freq_bins = res // cfg.freq_ratio  # rows of one time chunk
    # Unfold the time chunks stacked along the image rows back into one long time axis.
    x = x.reshape(batch, cfg.freq_ratio, freq_bins, res, channels).transpose(0, 2, 1, 3, 4)
    x = x.reshape(batch, freq_bins, cfg.freq_ratio * res, channels)  # [B, F', T', C]
    upsample = cfg.target_frames // x.shape[2]
    embedding = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
    fine_grained = jnp.repeat(jnp.mean(x.astype(jnp.float32), axis=1), upsample, axis=1)
    logits = nn.Conv(
        cfg.num_classes,
        (freq_bins, 3),
        padding=((0, 0), (1, 1)),
        kernel_init=layers.logical_init(
            nn.initializers.lecun_normal(), (None, None, 'embed', None)
        ),
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        name='tscam_conv',
    )(x)
    logits = logits[:, 0].astype(jnp.float32)  # [B, T', classes]
    return {
        'embedding': embedding,
        'clipwise_output': jax.nn.sigmoid(jnp.mean(logits, axis=1)),
        'framewise_output': jnp.repeat(jax.nn.sigmoid(logits), upsample, axis=1),
        'fine_grained_embedding': fine_grained,
    }
