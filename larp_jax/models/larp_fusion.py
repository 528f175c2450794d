"""LARP's TPC fusion layer: single-head self-attention over a playlist's tracks (Eq. 6, 23-24).

    Q, K, V = X W_Q^T, X W_K^T, X W_V^T            W_* in R^{256 x 256}, no bias, Xavier-normal init
    A       = softmax(Q K^T / sqrt(d)) with padded keys masked
    out     = A V                                  [J, d]
    p       = mean of out over the valid (non-padded) rows   -> playlist vector [d]

As in the official `Playlist_Constructor(method="self_attn")` there is no LayerNorm, residual or
FFN, and the playlist vector is not L2-normalised here (`tpc_loss` normalises it when asked to).

Padding never changes the result: padded inputs are zeroed before the projections (so NaN/inf in
padded slots cannot leak through 0 * x), padded keys get zero attention weight and padded query
rows are left out of the mean. The official code instead sums all J output rows (padded ids are
replaced by track 0, so those rows attend over the valid keys and add to the sum) and divides by
the number of valid rows; `official_padded_rows=True` reproduces that (padding then changes the
output). An all-padding set gives the zero vector.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from larp_jax.models import layers

Array = jax.Array


class FusionSelfAttention(nn.Module):
  """Single-head self-attention pooling of a padded set of track features into one playlist vector.

  Attributes:
    features: model width d (256 in LARP); inputs must have this last dimension.
    dtype: computation dtype of the projections (attention logits/softmax are float32).
    param_dtype: parameter dtype.
    official_padded_rows: reproduce the official quirk of summing the padded query rows too
      (requires the caller to fill padded slots like the official code does, e.g. with track 0).
  """

  features: int = 256
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32
  official_padded_rows: bool = False

  @nn.compact
  def __call__(self, x: Array, mask: Array) -> Array:
    """Fuses a batch of padded sets.

    Args:
      x: [B, J, d] track features (e.g. `gather_lookup` output), any float dtype.
      mask: bool [B, J], True for real tracks.

    Returns:
      float32 [B, d] playlist vectors.
    """
    if x.ndim != 3 or x.shape[-1] != self.features:
      raise ValueError(f'x must be [B, J, {self.features}], got {x.shape}.')
    mask = jnp.asarray(mask, bool)
    if mask.shape != x.shape[:2]:
      raise ValueError(f'mask must be [B, J] = {x.shape[:2]}, got {mask.shape}.')

    def proj(name: str) -> nn.Dense:
      return layers.dense(
          self.features,
          ('embed', 'kv'),
          use_bias=False,
          dtype=self.dtype,
          param_dtype=self.param_dtype,
          kernel_init=nn.initializers.xavier_normal(),
          name=name,
      )

    if self.official_padded_rows:
      inputs = x.astype(self.dtype)
    else:
      inputs = jnp.where(mask[..., None], x, 0).astype(self.dtype)
    q = proj('w_q')(inputs)
    k = proj('w_k')(inputs)
    v = proj('w_v')(inputs)
    logits = jnp.einsum(
        'bqd,bkd->bqk',
        q.astype(jnp.float32),
        k.astype(jnp.float32),
        precision=jax.lax.Precision.HIGHEST,
    ) * (self.features**-0.5)
    logits = jnp.where(mask[:, None, :], logits, jnp.float32(-1e9))
    attn = jax.nn.softmax(logits, axis=-1)
    out = jnp.einsum(
        'bqk,bkd->bqd', attn, v.astype(jnp.float32), precision=jax.lax.Precision.HIGHEST
    )
    count = jnp.sum(mask.astype(jnp.float32), axis=-1, keepdims=True)
    if self.official_padded_rows:
      pooled = jnp.sum(out, axis=1)
    else:
      pooled = jnp.sum(jnp.where(mask[..., None], out, 0.0), axis=1)
    pooled = pooled / jnp.maximum(count, 1.0)
    return jnp.where(count > 0, pooled, 0.0)


def masked_mean_pool(x: Array, mask: Array) -> Array:
  """The "w/o fusion" playlist vector (official `method="average"`): mean of the valid rows.

  Args:
    x: [B, J, d]; mask: bool [B, J], True for real tracks.

  Returns:
    float32 [B, d] (zeros for an all-padding row).
  """
  mask = jnp.asarray(mask, bool)
  x = jnp.where(mask[..., None], jnp.asarray(x, jnp.float32), 0.0)
  count = jnp.sum(mask.astype(jnp.float32), axis=-1, keepdims=True)
  return jnp.sum(x, axis=1) / jnp.maximum(count, 1.0)
