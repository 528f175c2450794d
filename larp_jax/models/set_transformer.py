"""Set Transformer blocks (Lee et al. 2019) with key-padding masks: MAB, SAB, ISAB, PMA.

The multihead attention block follows the official code (juho-lee/set_transformer `modules.py`),
not the paper's equations, in four respects:

  * the residual adds the *projected* queries: O = Q W_q + A (K W_v), with no output projection
    W_O before the residual;
  * attention logits are scaled by 1 / sqrt(dim) with `dim` the full model width, not the
    per-head width;
  * the "rFF" after attention is one Linear + ReLU, also residual: O = O + relu(O W_o + b_o);
  * optional LayerNorm after each residual (post-LN), off by default as in the official code.

Heads split the last axis into contiguous chunks (head h owns features h*dh .. (h+1)*dh - 1), as
`torch.cat(X.split(dim // heads, 2), 0)` does, so a torch checkpoint maps onto these parameters by
transposing each Linear weight.

Additions over the official code: a key-padding mask (`mask[B, Nk]`, True = real item) that sets
the logits of padded keys to the float32 minimum before the softmax, so padded items never
influence real ones; an optional full attention mask `[B, Nq, Nk]` (e.g. causal); and
`row_ff=False` to drop the rFF (the paper's Eq. 3 MAB has none). A query row whose keys are all
masked attends uniformly (finite, never NaN); its output is meaningless and should be masked by
the caller. Attention logits and softmax run in float32.

`block='paper'` switches a MAB to the paper's Eq. 3-4 instead (MOSTRA, Sec. 4.4):
MAB(Y, Z) = LN(Y + MHA(Y, Z, Z)), MHA = [O_1 || ... || O_H] W^O with O_h =
softmax(Q_h K_h^T / sqrt(d_h)) V_h (d_h = dim / heads, the usual Transformer scale), the residual
on the unprojected queries Y (so Y must already be `dim` wide), always LN, no rFF.

Shapes: sets are `[B, N, D]`; outputs of every block are `[B, N_query, dim]`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from larp_jax.models import layers

Array = jax.Array
Dtype = Any

# Logit given to masked keys (finite, float32).
MASK_VALUE = float(np.finfo(np.float32).min)
MAB_BLOCKS = ('official', 'paper')
# torch.nn.LayerNorm's default epsilon (the official code's LayerNorms), not flax's 1e-6.
LAYER_NORM_EPS = 1e-5


def attention_mask_from(
    mask: Array | None, batch: int, num_queries: int, num_keys: int
) -> Array | None:
  """Checks a key-padding mask [B, Nk] or a full mask [B, Nq, Nk]; returns bool [B, 1|Nq, Nk]."""
  if mask is None:
    return None
  mask = jnp.asarray(mask).astype(bool)
  if mask.ndim == 2 and mask.shape == (batch, num_keys):
    return mask[:, None, :]
  if (
      mask.ndim == 3
      and mask.shape[0] in (1, batch)
      and mask.shape[1] in (1, num_queries)
      and (mask.shape[2] == num_keys)
  ):
    return mask
  raise ValueError(
      f'mask must be [B, Nk] = {(batch, num_keys)} or [B, Nq, Nk] = '
      f'{(batch, num_queries, num_keys)}, got shape {mask.shape}'
  )


class MAB(nn.Module):
  """Multihead attention block MAB(Q, K) of the official Set Transformer code, with masking.

  Attributes:
    dim: output width dim_V (also the width of the Q/K/V projections).
    num_heads: must divide `dim`.
    layer_norm: post-LN after each residual (`ln=True` in the official code).
    row_ff: keep the residual Linear+ReLU "rFF" (official code: always on).
    block: 'official' (the code) or 'paper' (Eq. 3; ignores layer_norm/row_ff, see module doc).
  """

  dim: int
  num_heads: int
  layer_norm: bool = False
  row_ff: bool = True
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  block: str = 'official'

  def _layer_norm(self, name: str) -> nn.LayerNorm:
    return nn.LayerNorm(
        epsilon=LAYER_NORM_EPS, dtype=self.dtype, param_dtype=self.param_dtype, name=name
    )

  @nn.compact
  def __call__(self, queries: Array, keys: Array, mask: Array | None = None) -> Array:
    """Args: queries [B, Nq, Dq], keys [B, Nk, Dk], mask [B, Nk] or [B, Nq, Nk] (True = attend).

    Returns:
      [B, Nq, dim] in `dtype`.
    """
    if self.dim % self.num_heads:
      raise ValueError(f'MAB dim={self.dim} is not divisible by num_heads={self.num_heads}')
    if queries.ndim != 3 or keys.ndim != 3 or queries.shape[0] != keys.shape[0]:
      raise ValueError(
          f'queries and keys must be [B, N, D] with the same B, got '
          f'{queries.shape} and {keys.shape}'
      )
    if self.block not in MAB_BLOCKS:
      raise ValueError(f'MAB block must be one of {MAB_BLOCKS}, got {self.block!r}')
    if self.block == 'paper' and queries.shape[-1] != self.dim:
      raise ValueError(
          f"MAB block='paper' adds the queries (width {queries.shape[-1]}) to a width-{self.dim} "
          'output: project the inputs to dim first'
      )
    batch, num_queries, _ = queries.shape
    head_dim = self.dim // self.num_heads
    dense = lambda name: layers.dense(  # noqa: E731
        self.dim, ('embed', 'mlp'), dtype=self.dtype, param_dtype=self.param_dtype, name=name
    )
    q = dense('query')(queries)
    k = dense('key')(keys)
    v = dense('value')(keys)
    split = lambda x: x.reshape(x.shape[:2] + (self.num_heads, head_dim))
    logits = jnp.einsum(
        'bqhd,bkhd->bhqk', split(q), split(k), preferred_element_type=jnp.float32
    ) / np.sqrt(self.dim if self.block == 'official' else head_dim)
    attention_mask = attention_mask_from(mask, batch, num_queries, keys.shape[1])
    if attention_mask is not None:
      logits = jnp.where(attention_mask[:, None, :, :], logits, MASK_VALUE)
    weights = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
    attended = jnp.einsum('bhqk,bkhd->bqhd', weights, split(v)).reshape(
        batch, num_queries, self.dim
    )
    if self.block == 'paper':
      projected = dense('output')(attended)
      return self._layer_norm('ln')(queries.astype(self.dtype) + projected)
    out = q + attended
    if self.layer_norm:
      out = self._layer_norm('ln0')(out)
    if self.row_ff:
      out = out + nn.relu(dense('row_ff')(out))
      if self.layer_norm:
        out = self._layer_norm('ln1')(out)
    return out


class SAB(nn.Module):
  """Set attention block SAB(X) = MAB(X, X) (permutation equivariant)."""

  dim: int
  num_heads: int
  layer_norm: bool = False
  row_ff: bool = True
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, mask: Array | None = None) -> Array:
    """Args: x [B, N, D], mask [B, N] (True = real item). Returns [B, N, dim]."""
    return MAB(
        self.dim,
        self.num_heads,
        self.layer_norm,
        self.row_ff,
        self.dtype,
        self.param_dtype,
        name='mab',
    )(x, x, mask)


class ISAB(nn.Module):
  """Induced set attention block: H = MAB0(I, X) (masked keys), out = MAB1(X, H).

  The `num_inducing` inducing points I are a learned [num_inducing, dim] parameter (Xavier
  uniform). Padded items are excluded from H, so they cannot affect real items' outputs.
  """

  dim: int
  num_heads: int
  num_inducing: int
  layer_norm: bool = False
  row_ff: bool = True
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  block: str = 'official'

  @nn.compact
  def __call__(self, x: Array, mask: Array | None = None) -> Array:
    """Args: x [B, N, D], mask [B, N] (True = real item). Returns [B, N, dim]."""
    inducing = self.param(
        'inducing_points',
        layers.logical_init(nn.initializers.xavier_uniform(), (None, 'embed')),
        (self.num_inducing, self.dim),
        self.param_dtype,
    )
    inducing = jnp.broadcast_to(
        jnp.asarray(inducing, self.dtype), (x.shape[0], self.num_inducing, self.dim)
    )
    if mask is not None and jnp.ndim(mask) != 2:
      raise ValueError(f'ISAB mask must be a key-padding mask [B, N], got shape {mask.shape}')
    mab = lambda name: MAB(
        self.dim,
        self.num_heads,
        self.layer_norm,
        self.row_ff,
        self.dtype,
        self.param_dtype,
        self.block,
        name=name,
    )
    summary = mab('mab0')(inducing, x, mask)
    return mab('mab1')(x, summary)


class PMA(nn.Module):
  """Pooling by multihead attention: MAB(S, X) with `num_seeds` learned seed vectors S."""

  dim: int
  num_heads: int
  num_seeds: int
  layer_norm: bool = False
  row_ff: bool = True
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, mask: Array | None = None) -> Array:
    """Args: x [B, N, dim], mask [B, N]. Returns [B, num_seeds, dim] (permutation invariant)."""
    seeds = self.param(
        'seeds',
        layers.logical_init(nn.initializers.xavier_uniform(), (None, 'embed')),
        (self.num_seeds, self.dim),
        self.param_dtype,
    )
    seeds = jnp.broadcast_to(jnp.asarray(seeds, self.dtype), (x.shape[0], self.num_seeds, self.dim))
    return MAB(
        self.dim,
        self.num_heads,
        self.layer_norm,
        self.row_ff,
        self.dtype,
        self.param_dtype,
        name='mab',
    )(seeds, x, mask)


class SetTransformerEncoder(nn.Module):
  """Stack of ISABs (or SABs) as the official `SetTransformer` encoder (2 ISABs by default).

  The first block maps the input width D to `dim`; no separate input projection.
  """

  dim: int = 128
  num_heads: int = 4
  num_inducing: int = 32
  num_layers: int = 2
  block: str = 'isab'
  layer_norm: bool = False
  row_ff: bool = True
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, mask: Array | None = None) -> Array:
    """Args: x [B, N, D], mask [B, N] (True = real item). Returns [B, N, dim]."""
    if self.block not in ('isab', 'sab'):
      raise ValueError(f"block must be 'isab' or 'sab', got {self.block!r}")
    for i in range(self.num_layers):
      if self.block == 'isab':
        x = ISAB(
            self.dim,
            self.num_heads,
            self.num_inducing,
            self.layer_norm,
            self.row_ff,
            self.dtype,
            self.param_dtype,
            name=f'isab_{i}',
        )(x, mask)
      else:
        x = SAB(
            self.dim,
            self.num_heads,
            self.layer_norm,
            self.row_ff,
            self.dtype,
            self.param_dtype,
            name=f'sab_{i}',
        )(x, mask)
    return x
