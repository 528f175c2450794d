"""MOSTRA scorer (SetTRM + row-wise FF) and the Table 1 baselines of Bugliarello et al. 2022.

Inputs of every model are per-item feature vectors `features [B, N, F]` (x_i = phi(u, t_i), built
by the data pipeline) and `mask [B, N]` (True = real item, False = padding).

Scorers (sort with `decoding.baseline_decoders.sort_decode`, or feed `relevance` to
`mostra_beam_search` / `weighted_sum_decode`); `apply` returns a dict:
  * `SetTRM` - MOSTRA's encoder, Eq. 7: rFF o SetTRM. Also SetRank (sort its scores) and MO-LTR
    (train it on `losses.mostra_objectives.mo_ltr_labels`).
      {'logits': float32 [B, N], 'relevance': float32 [B, N] = sigmoid(logits)}
  * `DNNScorer` - track-level MLP [256, 1024, 2048, 1024, 256] -> 1; same outputs.
  * `cosine_relevance` - the relevance ranker: cosine(user, track) embeddings.

Autoregressive set-to-sequence baselines (pointer networks over the SetTRM-encoded set):
  * `SetTRM2GRU`, `SetTRM2TRM`:
      `model.apply(variables, features, mask, targets)` -> step logits float32 [B, L, N]
        (teacher forcing on `targets [B, L]`, e.g.
        `losses.mostra_objectives.teacher_forcing_targets(sat, mask, L)`; chosen and padded
        items are masked to a large negative logit);
      `model.apply(variables, features, mask, length=L, method='decode')` -> int32 [B, L]
        (greedy; never a padded or repeated item; -1 past the valid items).
    Train with `losses.ranking.stepwise_attrank_loss` (the paper trains them with AttRank) or
    `pointer_cross_entropy`.

Table 1 catalogue (`models/mostra_scorers.py`): `SCORERS` names every trained model of Table 1
as a `ScorerSpec`; `build_model(config.model, spec)`, `init_params` and `predict` build,
initialise and run one. Their training objectives are `losses.mostra_objectives.scorer_loss`.
  DNN_<loss>          track-level MLP (`DNNScorer`), sorted by its logits.
  SetRank[_<loss>]    SetTRM + row-wise FF (`SetTRM`, Eq. 7), sorted; `SetRank` is AttRank.
  SetTRM2GRU_AttRank, SetTRM2TRM_AttRank   pointer decoders, teacher forced on the SAT-sorted
                      order with AttRank at every step, decoded greedily.
  MO-LTR_<loss>       SetTRM with the BOOST/EXPOSURE/DISCOVERY labels appended to its input
                      features (`model_inputs`), trained on s = SAT + SAT * sum_j E_j.

SetTRM layer (Sec. 4.4): ISAB_M (Eq. 5) then the feed-forward block FFB(M) = LN(M + relu(M W1) W2)
(Eq. 6). The ISAB's MABs are the official Set Transformer MABs (see `set_transformer.py`; the
paper's Eq. 3 is LN(Y + MHA(Y, Z, Z)) with an output projection W^O, the official code has no W^O
but a residual Linear+ReLU instead); `SetTRMConfig.layer_norm=True` gives Eq. 3's LayerNorm.
Parameter counts with F = 64 input features (paper, App. A, in brackets): SetTRM 6.2M [5.6M]
(`mab_row_ff=False` drops the MABs' rFF: 5.4M), DNNScorer 4.7M [4.8M], SetTRM2GRU 7.1M [7.3M],
SetTRM2TRM 7.3M [6.8M]. Dropout is not used (the paper does not mention it).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from larp_jax.models import layers
from larp_jax.models.set_transformer import ISAB, LAYER_NORM_EPS, MAB

Array = jax.Array
Dtype = Any

# Logit of items a pointer decoder may not choose (chosen or padded); finite, float32.
POINTER_MASK_VALUE = -1e9


def _check_set_inputs(features: Array, mask: Array) -> None:
  if features.ndim != 3:
    raise ValueError(f'features must be [B, N, F], got shape {features.shape}')
  if mask.shape != features.shape[:2]:
    raise ValueError(f'mask must be [B, N] = {features.shape[:2]}, got shape {mask.shape}')


@dataclasses.dataclass(frozen=True)
class SetTRMConfig:
  """SetTRM encoder hyper-parameters (defaults: the paper's App. A encoder)."""

  num_layers: int = 6
  num_heads: int = 8
  num_inducing: int = 20
  hidden_dim: int = 256
  ff_dim: int = 1024
  # Post-LN inside the ISAB's MABs (the paper's Eq. 3 has it; official Set Transformer: off).
  layer_norm: bool = True
  # The official MAB's residual Linear+ReLU (paper Eq. 3 has none).
  mab_row_ff: bool = True
  # 'official' (Set Transformer code, as above) or 'paper' (Eq. 3: LN(Y + MHA(Y, Z, Z)) with W^O;
  # the inputs are first projected to hidden_dim by a Linear, Eq. 2's d-dimensional x_i).
  mab_block: str = 'official'

  def __post_init__(self):
    if self.hidden_dim % self.num_heads:
      raise ValueError(
          f'SetTRMConfig.hidden_dim={self.hidden_dim} is not divisible by '
          f'num_heads={self.num_heads}'
      )
    if self.mab_block not in ('official', 'paper'):
      raise ValueError(
          f"SetTRMConfig.mab_block must be 'official' or 'paper', got {self.mab_block!r}"
      )
    for name in ('num_layers', 'num_heads', 'num_inducing', 'hidden_dim', 'ff_dim'):
      if getattr(self, name) < 1:
        raise ValueError(f'SetTRMConfig.{name} must be >= 1, got {getattr(self, name)}')


class FeedForwardBlock(nn.Module):
  """FFB(M) = LN(M + relu(M W1) W2), Eq. 6; [..., D] -> [..., D]."""

  ff_dim: int
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    dense = functools.partial(layers.dense, dtype=self.dtype, param_dtype=self.param_dtype)
    hidden = nn.relu(dense(self.ff_dim, ('embed', 'mlp'), name='wi')(x))
    out = x + dense(x.shape[-1], ('mlp', 'embed'), name='wo')(hidden)
    return nn.LayerNorm(
        epsilon=LAYER_NORM_EPS, dtype=self.dtype, param_dtype=self.param_dtype, name='ln'
    )(out)


class SetTRMEncoder(nn.Module):
  """SetTRM: `num_layers` x (ISAB_M -> FFB); [B, N, F] -> [B, N, hidden_dim].

  Permutation equivariant; padded items (mask False) never affect real items' outputs.
  """

  config: SetTRMConfig = SetTRMConfig()
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, features: Array, mask: Array) -> Array:
    _check_set_inputs(features, mask)
    c = self.config
    x = features.astype(self.dtype)
    if c.mab_block == 'paper':
      x = layers.dense(
          c.hidden_dim,
          ('mlp', 'embed'),
          dtype=self.dtype,
          param_dtype=self.param_dtype,
          name='input_projection',
      )(x)
    for i in range(c.num_layers):
      x = ISAB(
          c.hidden_dim,
          c.num_heads,
          c.num_inducing,
          c.layer_norm,
          c.mab_row_ff,
          self.dtype,
          self.param_dtype,
          c.mab_block,
          name=f'isab_{i}',
      )(x, mask)
      x = FeedForwardBlock(c.ff_dim, self.dtype, self.param_dtype, name=f'ffb_{i}')(x)
    return x


def _scores(logits: Array) -> dict[str, Array]:
  logits = logits.astype(jnp.float32)
  return {'logits': logits, 'relevance': jax.nn.sigmoid(logits)}


class SetTRM(nn.Module):
  """MOSTRA encoder / SetRank scorer, Eq. 7: relevance = sigmoid(rFF(SetTRM(X))).

  `head_hidden_dims` adds hidden ReLU layers to the row-wise head (default: one Linear d -> 1,
  the paper's "feed-forward layer").
  """

  config: SetTRMConfig = SetTRMConfig()
  head_hidden_dims: tuple[int, ...] = ()
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, features: Array, mask: Array) -> dict[str, Array]:
    """Args: features [B, N, F], mask bool [B, N].

    Returns:
      {'logits': float32 [B, N], 'relevance': float32 [B, N]}; values at padded positions are
      computed but meaningless (mask them).
    """
    x = SetTRMEncoder(self.config, self.dtype, self.param_dtype, name='encoder')(features, mask)
    dense = functools.partial(layers.dense, dtype=self.dtype, param_dtype=self.param_dtype)
    for i, width in enumerate(self.head_hidden_dims):
      x = nn.relu(dense(width, ('embed', 'mlp'), name=f'head_{i}')(x))
    logits = dense(1, ('embed', None), name='head_out')(x)[..., 0]
    return _scores(logits)


class DNNScorer(nn.Module):
  """Track-level DNN baseline: row-wise MLP with ReLUs, widths [256, 1024, 2048, 1024, 256] -> 1.

  Items are scored independently; `mask` is accepted for interface parity and not used.
  """

  hidden_dims: tuple[int, ...] = (256, 1024, 2048, 1024, 256)
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, features: Array, mask: Array) -> dict[str, Array]:
    """Args: features [B, N, F], mask [B, N]. Returns {'logits', 'relevance'} float32 [B, N]."""
    _check_set_inputs(features, mask)
    dense = functools.partial(layers.dense, dtype=self.dtype, param_dtype=self.param_dtype)
    x = features.astype(self.dtype)
    for i, width in enumerate(self.hidden_dims):
      axes = ('embed', 'mlp') if i % 2 == 0 else ('mlp', 'embed')
      x = nn.relu(dense(width, axes, name=f'dense_{i}')(x))
    logits = dense(1, ('embed', None), name='out')(x)[..., 0]
    return _scores(logits)


def cosine_relevance(user_embedding: Array, track_embeddings: Array) -> Array:
  """Relevance-ranker baseline: cosine(user, track) per candidate; sort with `sort_decode`.

  Args:
    user_embedding: float [B, D]; track_embeddings: float [B, N, D].

  Returns:
    float32 [B, N] in [-1, 1].
  """
  if (
      user_embedding.ndim != 2
      or track_embeddings.ndim != 3
      or track_embeddings.shape[0] != user_embedding.shape[0]
      or track_embeddings.shape[2] != user_embedding.shape[1]
  ):
    raise ValueError(
        f'user_embedding must be [B, D] and track_embeddings [B, N, D], got '
        f'{user_embedding.shape} and {track_embeddings.shape}'
    )
  return jnp.einsum(
      'bd,bnd->bn', layers.l2_normalize(user_embedding), layers.l2_normalize(track_embeddings)
  )


def _gather_items(items: Array, index: Array) -> Array:
  """items [B, N, D] at index int [B] or [B, L] (-1 -> zeros) -> [B, D] or [B, L, D]."""
  squeeze = index.ndim == 1
  index = index[:, None] if squeeze else index
  picked = jnp.take_along_axis(items, jnp.maximum(index, 0)[..., None], axis=1)
  picked = jnp.where((index >= 0)[..., None], picked, 0)
  return picked[:, 0] if squeeze else picked


def _greedy_choice(logits: Array, available: Array) -> Array:
  """Argmax over available items (ties: lower index), -1 when none is available; int32 [B]."""
  choice = jnp.argmax(jnp.where(available, logits, -jnp.inf), axis=-1).astype(jnp.int32)
  return jnp.where(jnp.any(available, axis=-1), choice, -1)


# `forced` entries >= -1 are teacher-forced choices (-1: no item); this value means "greedy".
_GREEDY = -2


def _check_targets(targets: Array, features: Array) -> None:
  if targets.ndim != 2 or targets.shape[0] != features.shape[0]:
    raise ValueError(
        f'targets must be int [B, L] with B = {features.shape[0]}, ' f'got shape {targets.shape}'
    )


class SetTRM2GRU(nn.Module):
  """SetTRM encoder + 1-layer GRU pointer decoder (App. A: hidden 256, decoder size 512,
  additive attention 128).

  Step t: h_t = GRU(h_{t-1}, x_t) with x_t the encoding of the item chosen at t-1 (a learned
  start vector at t = 0) and h_0 = tanh(W mean-pooled encoding); an additive-attention glimpse
  c_t over the valid items; q_t = tanh(W [h_t; c_t]) of width `decoder_size`; pointer logits
  u_ti = v^T tanh(W_e e_i + W_q q_t) over the items neither chosen nor padded.
  """

  encoder: SetTRMConfig = SetTRMConfig()
  decoder_hidden: int = 256
  decoder_size: int = 512
  attention_size: int = 128
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  def setup(self):
    d = lambda n, axes, name, bias=True: layers.dense(
        n, axes, dtype=self.dtype, param_dtype=self.param_dtype, name=name, use_bias=bias
    )
    self.set_encoder = SetTRMEncoder(self.encoder, self.dtype, self.param_dtype)
    self.start_input = self.param(
        'start_input',
        layers.logical_init(nn.initializers.normal(0.02), ('embed',)),
        (self.encoder.hidden_dim,),
        self.param_dtype,
    )
    self.initial_state = d(self.decoder_hidden, ('embed', 'mlp'), 'initial_state')
    self.cell = nn.GRUCell(self.decoder_hidden, dtype=self.dtype, param_dtype=self.param_dtype)
    self.glimpse_items = d(self.attention_size, ('embed', 'mlp'), 'glimpse_items', False)
    self.glimpse_query = d(self.attention_size, ('embed', 'mlp'), 'glimpse_query')
    self.glimpse_out = d(1, ('mlp', None), 'glimpse_out', False)
    self.query = d(self.decoder_size, ('embed', 'mlp'), 'query')
    self.pointer_items = d(self.attention_size, ('embed', 'mlp'), 'pointer_items', False)
    self.pointer_query = d(self.attention_size, ('mlp', 'embed'), 'pointer_query')
    self.pointer_out = d(1, ('mlp', None), 'pointer_out', False)

  def _step(self, carry, forced, encoded, mask, glimpse_keys, pointer_keys):
    state, chosen, inputs = carry
    state, _ = self.cell(state, inputs)
    glimpse = self.glimpse_out(jnp.tanh(glimpse_keys + self.glimpse_query(state)[:, None]))
    glimpse = jnp.where(mask, glimpse[..., 0].astype(jnp.float32), POINTER_MASK_VALUE)
    context = jnp.einsum('bn,bnd->bd', jax.nn.softmax(glimpse, axis=-1).astype(self.dtype), encoded)
    query = jnp.tanh(self.query(jnp.concatenate([state, context], axis=-1)))
    logits = self.pointer_out(jnp.tanh(pointer_keys + self.pointer_query(query)[:, None]))
    available = mask & ~chosen
    logits = jnp.where(available, logits[..., 0].astype(jnp.float32), POINTER_MASK_VALUE)
    choice = jnp.where(forced >= -1, forced, _greedy_choice(logits, available))
    chosen = chosen | jax.nn.one_hot(choice, mask.shape[-1], dtype=bool)
    return (state, chosen, _gather_items(encoded, choice)), (logits, choice)

  def _run(self, features: Array, mask: Array, forced: Array) -> tuple[Array, Array]:
    _check_set_inputs(features, mask)
    mask = mask.astype(bool)
    encoded = self.set_encoder(features, mask)
    weights = mask[..., None].astype(encoded.dtype)
    pooled = jnp.sum(encoded * weights, axis=1) / jnp.maximum(jnp.sum(weights, axis=1), 1.0)
    batch = features.shape[0]
    carry = (
        jnp.tanh(self.initial_state(pooled)),
        jnp.zeros(mask.shape, bool),
        jnp.broadcast_to(jnp.asarray(self.start_input, encoded.dtype), (batch, encoded.shape[-1])),
    )
    scan = nn.scan(
        lambda module, c, f, *rest: module._step(c, f, *rest),
        variable_broadcast='params',
        split_rngs={'params': False},
        in_axes=(1, nn.broadcast, nn.broadcast, nn.broadcast, nn.broadcast),
        out_axes=1,
    )
    _, (logits, choices) = scan(
        self, carry, forced, encoded, mask, self.glimpse_items(encoded), self.pointer_items(encoded)
    )
    return logits, choices

  def __call__(self, features: Array, mask: Array, targets: Array) -> Array:
    """Teacher forcing. Args: features [B, N, F], mask [B, N], targets int [B, L] (-1 = none).

    Returns:
      float32 [B, L, N] pointer logits (chosen/padded items at POINTER_MASK_VALUE).
    """
    _check_targets(targets, features)
    return self._run(features, mask, targets.astype(jnp.int32))[0]

  def decode(self, features: Array, mask: Array, length: int) -> Array:
    """Greedy decoding: int32 [B, length], -1 past the valid items."""
    forced = jnp.full((features.shape[0], length), _GREEDY, jnp.int32)
    return self._run(features, mask, forced)[1]


def _sinusoidal_positions(length: int, dim: int) -> Array:
  position = np.arange(length)[:, None]
  rates = np.exp(-np.log(10000.0) * (np.arange(0, dim, 2) / dim))
  table = np.zeros((length, dim), np.float32)
  table[:, 0::2] = np.sin(position * rates)
  table[:, 1::2] = np.cos(position * rates)[:, : dim // 2]
  return jnp.asarray(table)


class SetTRM2TRM(nn.Module):
  """SetTRM encoder + 1-layer causal transformer pointer decoder (App. A: 8 heads, hidden 256,
  intermediate 1024).

  Decoder input at step t: the encoding of the item chosen at t-1 (a learned start vector at
  t = 0) plus a sinusoidal position code. One layer = causal self-attention MAB -> cross-attention
  MAB over the encoded valid items -> FFB (the MABs use post-LN and no rFF, i.e. the paper's Eq.
  3 without W^O). Pointer logits: (W_q s_t) . (W_k e_i) / sqrt(d) over items neither chosen nor
  padded. The App. A "20 induced points" of this decoder have no counterpart in a causal decoder
  and are not used.
  """

  encoder: SetTRMConfig = SetTRMConfig()
  decoder_heads: int = 8
  decoder_ff_dim: int = 1024
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  def setup(self):
    dim = self.encoder.hidden_dim
    self.set_encoder = SetTRMEncoder(self.encoder, self.dtype, self.param_dtype)
    self.start_input = self.param(
        'start_input',
        layers.logical_init(nn.initializers.normal(0.02), ('embed',)),
        (dim,),
        self.param_dtype,
    )
    mab = lambda name: MAB(
        dim,
        self.decoder_heads,
        layer_norm=True,
        row_ff=False,
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        name=name,
    )
    self.self_attention = mab('self_attention')
    self.cross_attention = mab('cross_attention')
    self.ffb = FeedForwardBlock(self.decoder_ff_dim, self.dtype, self.param_dtype)
    self.pointer_query = layers.dense(
        dim, ('embed', 'mlp'), dtype=self.dtype, param_dtype=self.param_dtype, name='pointer_query'
    )
    self.pointer_key = layers.dense(
        dim, ('embed', 'mlp'), dtype=self.dtype, param_dtype=self.param_dtype, name='pointer_key'
    )

  def _decoder_states(self, inputs: Array, encoded: Array, mask: Array) -> Array:
    """Causal decoder over inputs [B, L, d] -> states [B, L, d]."""
    length = inputs.shape[1]
    x = inputs + _sinusoidal_positions(length, inputs.shape[-1]).astype(inputs.dtype)
    causal = jnp.tril(jnp.ones((length, length), bool))[None]
    x = self.self_attention(x, x, causal)
    x = self.cross_attention(x, encoded, mask)
    return self.ffb(x)

  def _pointer_logits(self, states: Array, pointer_keys: Array, available: Array) -> Array:
    """states [B, ..., d], pointer_keys [B, N, d], available [B, ..., N] -> float32 logits."""
    queries = self.pointer_query(states)
    logits = jnp.einsum(
        'b...d,bnd->b...n', queries, pointer_keys, preferred_element_type=jnp.float32
    ) / np.sqrt(states.shape[-1])
    return jnp.where(available, logits, POINTER_MASK_VALUE)

  def _encode(self, features: Array, mask: Array) -> tuple[Array, Array, Array]:
    _check_set_inputs(features, mask)
    mask = mask.astype(bool)
    encoded = self.set_encoder(features, mask)
    start = jnp.broadcast_to(
        jnp.asarray(self.start_input, encoded.dtype), (features.shape[0], 1, encoded.shape[-1])
    )
    return mask, encoded, start

  def __call__(self, features: Array, mask: Array, targets: Array) -> Array:
    """Teacher forcing (parallel over steps). Args as `SetTRM2GRU.__call__`.

    Returns:
      float32 [B, L, N] pointer logits (chosen/padded items at POINTER_MASK_VALUE).
    """
    _check_targets(targets, features)
    targets = targets.astype(jnp.int32)
    mask, encoded, start = self._encode(features, mask)
    inputs = jnp.concatenate([start, _gather_items(encoded, targets[:, :-1])], axis=1)
    states = self._decoder_states(inputs, encoded, mask)
    chosen = jax.nn.one_hot(targets, mask.shape[-1], dtype=jnp.int32)
    available = mask[:, None, :] & ((jnp.cumsum(chosen, axis=1) - chosen) == 0)
    return self._pointer_logits(states, self.pointer_key(encoded), available)

  def decode(self, features: Array, mask: Array, length: int) -> Array:
    """Greedy decoding: int32 [B, length], -1 past the valid items.

    Each step reruns the (1-layer) decoder over a fixed [B, length, d] prefix buffer with the
    causal mask and reads position t: O(length^2) but fixed shapes.
    """
    mask, encoded, start = self._encode(features, mask)
    batch, _, dim = encoded.shape
    pointer_keys = self.pointer_key(encoded)
    inputs = jnp.zeros((batch, length, dim), encoded.dtype).at[:, :1].set(start)

    def step(module, carry, t):
      inputs, chosen = carry
      states = module._decoder_states(inputs, encoded, mask)
      state = jax.lax.dynamic_index_in_dim(states, t, axis=1, keepdims=False)
      available = mask & ~chosen
      choice = _greedy_choice(module._pointer_logits(state, pointer_keys, available), available)
      chosen = chosen | jax.nn.one_hot(choice, mask.shape[-1], dtype=bool)
      next_input = _gather_items(encoded, choice)[:, None]
      inputs = jax.lax.dynamic_update_slice_in_dim(
          inputs, next_input, jnp.minimum(t + 1, length - 1), axis=1
      )
      # At t = length - 1 the write lands on the last slot, which is never read again.
      return (inputs, chosen), choice

    scan = nn.scan(step, variable_broadcast='params', split_rngs={'params': False}, out_axes=1)
    _, choices = scan(
        self, (inputs, jnp.zeros(mask.shape, bool)), jnp.arange(length, dtype=jnp.int32)
    )
    return choices
