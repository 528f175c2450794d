"""HTS-AT (hierarchical token-semantic audio transformer) in flax.linen, numerically matching
laion_clap's `clap_module/htsat.py` (the audio tower of CLAP and LARP).

Forward pass (shapes for 'tiny': 48 kHz, 10 s, spec_size 256, 64 mels, embed 96):

  waveform [B, 480000] -> log-mel [B, 1001, 64] -> bn0 (BatchNorm over mel bins)
    -> SpecAugment (train only) -> time resize 1001 -> 1024 (PyTorch bicubic, align_corners=True)
    -> "mel to image" [B, 256, 256, 1]: row = chunk * 64 + mel, column = frame within chunk
    -> patch embed (conv k4 s4) + LN -> [B, 4096, 96]
    -> 4 Swin stages (window 8, shifted windows on odd blocks, patch merging after stages 1-3)
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

from larp_jax.models import audio_frontend, layers

Dtype = Any
LN_EPS = 1e-5
BN_EPS = 1e-5
SHIFT_MASK_VALUE = -100.0
HTSAT_INIT_STD = 0.02


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
# Constants: bicubic resize matrix, relative position index, shifted-window mask.


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


@functools.lru_cache(maxsize=8)
def relative_position_index(window: int) -> np.ndarray:
  """[window^2, window^2] int32 index into the [(2w-1)^2, heads] relative position bias table."""
  coords = np.stack(np.meshgrid(np.arange(window), np.arange(window), indexing='ij'))
  coords = coords.reshape(2, -1)
  delta = coords[:, :, None] - coords[:, None, :] + (window - 1)
  return (delta[0] * (2 * window - 1) + delta[1]).astype(np.int32)


@functools.lru_cache(maxsize=16)
def shifted_window_mask(height: int, width: int, window: int, shift: int) -> np.ndarray:
  """[num_windows, window^2, window^2] float32 additive mask (0 or -100) for shifted windows.

  After the cyclic shift, windows on the bottom/right border mix tokens from different image
  regions; tokens of different regions must not attend to each other.
  """
  region = np.zeros((height, width), np.float32)
  bounds = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
  label = 0
  for rows in bounds:
    for cols in bounds:
      region[rows, cols] = label
      label += 1
  windows = region.reshape(height // window, window, width // window, window)
  windows = windows.transpose(0, 2, 1, 3).reshape(-1, window * window)
  different = windows[:, None, :] != windows[:, :, None]
  return np.where(different, SHIFT_MASK_VALUE, 0.0).astype(np.float32)


def effective_window(resolution: tuple[int, int], window: int, shift: int) -> tuple[int, int]:
  """Swin rule: a stage no larger than the window attends globally and never shifts."""
  if min(resolution) <= window:
    return min(resolution), 0
  return window, shift


# ---------------------------------------------------------------------------------------------
# Layers.


_TRUNC_NORMAL = nn.initializers.truncated_normal(HTSAT_INIT_STD)


def drop_path(x: jax.Array, rate: float, deterministic: bool, module: nn.Module) -> jax.Array:
  """Stochastic depth: zeroes whole examples with probability `rate`, rescales the rest."""
  if deterministic or rate == 0.0:
    return x
  keep = 1.0 - rate
  mask = jax.random.bernoulli(module.make_rng('dropout'), keep, (x.shape[0],) + (1,) * (x.ndim - 1))
  return jnp.where(mask, x / keep, jnp.zeros_like(x))


class WindowAttention(nn.Module):
  """Multi-head self-attention inside windows with a learned relative position bias."""

  dim: int
  num_heads: int
  window: int
  qkv_bias: bool = True
  attn_drop_rate: float = 0.0
  proj_drop_rate: float = 0.0
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, mask: np.ndarray | None, deterministic: bool) -> jax.Array:
    """x: [B * num_windows, window^2, dim]; mask: [num_windows, window^2, window^2] or None."""
    batch_windows, tokens, _ = x.shape
    head_dim = self.dim // self.num_heads
    table = self.param(
        'relative_position_bias_table',
        layers.logical_init(_TRUNC_NORMAL, (None, 'heads')),
        ((2 * self.window - 1) ** 2, self.num_heads),
        self.param_dtype,
    )
    qkv = layers.dense(
        3 * self.dim,
        ('embed', 'heads'),
        use_bias=self.qkv_bias,
        kernel_init=_TRUNC_NORMAL,
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        name='qkv',
    )(x)
    qkv = qkv.reshape(batch_windows, tokens, 3, self.num_heads, head_dim)
    query, key, value = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    query = query * head_dim**-0.5
    logits = jnp.einsum('bqhd,bkhd->bhqk', query, key).astype(jnp.float32)
    bias = table[relative_position_index(self.window).reshape(-1)]
    bias = bias.reshape(tokens, tokens, self.num_heads).transpose(2, 0, 1)
    logits = logits + bias.astype(jnp.float32)[None]
    if mask is not None:
      num_windows = mask.shape[0]
      logits = logits.reshape(
          batch_windows // num_windows, num_windows, self.num_heads, tokens, tokens
      )
      logits = logits + jnp.asarray(mask)[None, :, None]
      logits = logits.reshape(batch_windows, self.num_heads, tokens, tokens)
    weights = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
    weights = nn.Dropout(self.attn_drop_rate)(weights, deterministic=deterministic)
    out = jnp.einsum('bhqk,bkhd->bqhd', weights, value).reshape(batch_windows, tokens, self.dim)
    out = layers.dense(
        self.dim,
        ('heads', 'embed'),
        kernel_init=_TRUNC_NORMAL,
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        name='proj',
    )(out)
    return nn.Dropout(self.proj_drop_rate)(out, deterministic=deterministic)


class Mlp(nn.Module):
  """fc1 -> exact GELU -> dropout -> fc2 -> dropout."""

  dim: int
  hidden_dim: int
  drop_rate: float = 0.0
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
    x = layers.dense(
        self.hidden_dim,
        ('embed', 'mlp'),
        kernel_init=_TRUNC_NORMAL,
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        name='fc1',
    )(x)
    x = nn.gelu(x, approximate=False)
    x = nn.Dropout(self.drop_rate)(x, deterministic=deterministic)
    x = layers.dense(
        self.dim,
        ('mlp', 'embed'),
        kernel_init=_TRUNC_NORMAL,
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        name='fc2',
    )(x)
    return nn.Dropout(self.drop_rate)(x, deterministic=deterministic)


def _layer_norm(name: str, dtype: Dtype, param_dtype: Dtype) -> nn.LayerNorm:
  return nn.LayerNorm(
      epsilon=LN_EPS, use_fast_variance=False, dtype=dtype, param_dtype=param_dtype, name=name
  )


class SwinBlock(nn.Module):
  """Pre-norm Swin block: x + W-MSA/SW-MSA(LN(x)), then x + MLP(LN(x)), with drop-path."""

  dim: int
  resolution: tuple[int, int]
  num_heads: int
  window: int
  shift: int
  mlp_ratio: float = 4.0
  qkv_bias: bool = True
  drop_rate: float = 0.0
  attn_drop_rate: float = 0.0
  drop_path_rate: float = 0.0
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
    """x: [B, H*W, dim] -> [B, H*W, dim]."""
    height, width = self.resolution
    window, shift = effective_window(self.resolution, self.window, self.shift)
    batch, _, channels = x.shape
    shortcut = x
    x = _layer_norm('norm1', self.dtype, self.param_dtype)(x)
    x = x.reshape(batch, height, width, channels)
    if shift:
      x = jnp.roll(x, (-shift, -shift), axis=(1, 2))
    rows, cols = height // window, width // window
    windows = x.reshape(batch, rows, window, cols, window, channels).transpose(0, 1, 3, 2, 4, 5)
    windows = windows.reshape(batch * rows * cols, window * window, channels)
    mask = shifted_window_mask(height, width, window, shift) if shift else None
    windows = WindowAttention(
        self.dim,
        self.num_heads,
        window,
        self.qkv_bias,
        self.attn_drop_rate,
        self.drop_rate,
        self.dtype,
        self.param_dtype,
        name='attn',
    )(windows, mask, deterministic)
    x = windows.reshape(batch, rows, cols, window, window, channels).transpose(0, 1, 3, 2, 4, 5)
    x = x.reshape(batch, height, width, channels)
    if shift:
      x = jnp.roll(x, (shift, shift), axis=(1, 2))
    x = shortcut + drop_path(
        x.reshape(batch, height * width, channels), self.drop_path_rate, deterministic, self
    )
    y = _layer_norm('norm2', self.dtype, self.param_dtype)(x)
    y = Mlp(
        self.dim,
        int(self.dim * self.mlp_ratio),
        self.drop_rate,
        self.dtype,
        self.param_dtype,
        name='mlp',
    )(y, deterministic)
    return x + drop_path(y, self.drop_path_rate, deterministic, self)


class PatchMerging(nn.Module):
  """2x2 neighbourhood concat -> LN(4C) -> Linear(4C -> 2C, no bias).

  [B, H*W, C] -> [B, H*W/4, 2C].
  """

  resolution: tuple[int, int]
  dim: int
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    height, width = self.resolution
    batch = x.shape[0]
    x = x.reshape(batch, height, width, self.dim)
    x = jnp.concatenate(
        [x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], axis=-1
    )
    x = x.reshape(batch, -1, 4 * self.dim)
    x = _layer_norm('norm', self.dtype, self.param_dtype)(x)
    return layers.dense(
        2 * self.dim,
        ('mlp', 'embed'),
        use_bias=False,
        kernel_init=_TRUNC_NORMAL,
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        name='reduction',
    )(x)


class SwinStage(nn.Module):
  """`depth` Swin blocks (odd ones shifted by window // 2), then optional patch merging."""

  dim: int
  resolution: tuple[int, int]
  depth: int
  num_heads: int
  window: int
  drop_path_rates: tuple[float, ...]
  downsample: bool
  mlp_ratio: float = 4.0
  qkv_bias: bool = True
  drop_rate: float = 0.0
  attn_drop_rate: float = 0.0
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
    for i in range(self.depth):
      x = SwinBlock(
          self.dim,
          self.resolution,
          self.num_heads,
          self.window,
          0 if i % 2 == 0 else self.window // 2,
          self.mlp_ratio,
          self.qkv_bias,
          self.drop_rate,
          self.attn_drop_rate,
          self.drop_path_rates[i],
          self.dtype,
          self.param_dtype,
          name=f'blocks_{i}',
      )(x, deterministic)
    if self.downsample:
      x = PatchMerging(self.resolution, self.dim, self.dtype, self.param_dtype, name='downsample')(
          x
      )
    return x


class PatchEmbed(nn.Module):
  """Conv2d(in 1 -> embed, kernel patch_size, stride patch_stride) + flatten + LN."""

  embed_dim: int
  patch_size: int
  patch_stride: int
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, image: jax.Array) -> jax.Array:
    """image: [B, H, W, 1] -> tokens [B, (H/stride) * (W/stride), embed_dim] (row-major)."""
    pad = (self.patch_size - self.patch_stride) // 2
    x = nn.Conv(
        self.embed_dim,
        (self.patch_size, self.patch_size),
        strides=(self.patch_stride, self.patch_stride),
        padding=((pad, pad), (pad, pad)),
        kernel_init=layers.logical_init(
            nn.initializers.lecun_normal(), (None, None, None, 'embed')
        ),
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        name='proj',
    )(image)
    x = x.reshape(x.shape[0], -1, self.embed_dim)
    return _layer_norm('norm', self.dtype, self.param_dtype)(x)


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

    x = PatchEmbed(
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
      x = SwinStage(
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
    x = _layer_norm('norm', self.dtype, self.param_dtype)(x)
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
