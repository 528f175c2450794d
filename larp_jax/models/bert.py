"""BERT text encoder in Flax linen, numerically matching HF `transformers.BertModel`.

The encoder is the post-LayerNorm BERT of Devlin et al. with exact (erf) GELU. It returns the last
hidden state; pooling (`cls` or masked `mean`) is the separate function `pool`.

Parameter tree (all kernels are `[in, ..., out]`, i.e. PyTorch Linear weights transposed):

    embeddings/word_embeddings/embedding          [vocab, H]          ('vocab', 'embed')
    embeddings/position_embeddings/embedding      [max_pos, H]        (None, 'embed')
    embeddings/token_type_embeddings/embedding    [type_vocab, H]     (None, 'embed')   (optional)
    embeddings/LayerNorm/{scale, bias}            [H]
    layer_<i>/attention/{query,key,value}/kernel  [H, heads, kv]      ('embed', 'heads', 'kv')
    layer_<i>/attention/{query,key,value}/bias    [heads, kv]         ('heads', 'kv')
    layer_<i>/attention/output/kernel             [heads, kv, H]      ('heads', 'kv', 'embed')
    layer_<i>/attention/output/bias               [H]
    layer_<i>/attention_LayerNorm/{scale, bias}   [H]
    layer_<i>/intermediate/kernel                 [H, I]              ('embed', 'mlp')
    layer_<i>/intermediate/bias                   [I]                 ('mlp',)
    layer_<i>/output/kernel                       [I, H]              ('mlp', 'embed')
    layer_<i>/output/bias                         [H]
    layer_<i>/output_LayerNorm/{scale, bias}      [H]

Only kernels, embedding tables and the head/mlp-sized biases carry logical axis names (they come
back from `init` boxed as `nn.Partitioned`); LayerNorm parameters and H-sized biases are replicated.
`bert_convert.load_pretrained` / `bert_convert.params_from_torch_state_dict` return the same tree
unboxed (plain NumPy float32 arrays); `apply` accepts boxed or plain trees.

LARP's text encoder is BLIP's `BertEmbeddings`, which has *no* token-type table (word + position
only, max length 30). That is `BertConfig(use_token_type_embeddings=False)`. Loading an HF
checkpoint that has a token-type table into such a config folds row 0 of the table into the
position table, so the outputs equal HF's `BertModel` with `token_type_ids = 0` (HF's default).

This module is model code only: checkpoint reading is `bert_convert`, tokenisation
`data_pipelines.text` and batched text encoding `larp_jax.evaluation.text_embeddings`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from larp_jax.models import layers

Array = jax.Array
Params = dict[str, Any]

# Additive attention-mask value for padded keys, always in float32 (HF uses finfo(dtype).min).
_MASK_VALUE = float(np.finfo(np.float32).min)
_POOLING_METHODS = ('cls', 'mean')
# HF BERT's initializers: N(0, 0.02) kernels and embedding tables, zero biases.
_WEIGHT_INIT = nn.initializers.normal(stddev=0.02)
_ZEROS = nn.initializers.zeros_init()


@dataclasses.dataclass(frozen=True)
class BertConfig:
  """Hyper-parameters of a BERT encoder (names as in HF `config.json`)."""

  vocab_size: int = 30522
  hidden_size: int = 768
  num_hidden_layers: int = 12
  num_attention_heads: int = 12
  intermediate_size: int = 3072
  max_position_embeddings: int = 512
  type_vocab_size: int = 2
  layer_norm_eps: float = 1e-12
  hidden_dropout_prob: float = 0.1
  attention_probs_dropout_prob: float = 0.1
  # False gives BLIP/LARP's embeddings (word + position only).
  use_token_type_embeddings: bool = True

  def __post_init__(self):
    if self.hidden_size % self.num_attention_heads:
      raise ValueError(
          f'hidden_size={self.hidden_size} is not divisible by '
          f'num_attention_heads={self.num_attention_heads}'
      )

  @property
  def head_dim(self) -> int:
    """Width of one attention head (hidden_size // num_attention_heads)."""
    return self.hidden_size // self.num_attention_heads

  @classmethod
  def from_hf_config_dict(cls, d: Mapping[str, Any], **overrides: Any) -> 'BertConfig':
    """Builds a config from an HF BERT `config.json` dict (HF defaults for absent keys).

    Raises ValueError for BERT variants this module does not implement (non-erf activations,
    relative position embeddings). `overrides` replace fields, e.g.
    `use_token_type_embeddings=False`.
    """
    hidden_act = d.get('hidden_act', 'gelu')
    if hidden_act != 'gelu':
      raise ValueError(f"config hidden_act={hidden_act!r} is not supported (only exact 'gelu')")
    position_type = d.get('position_embedding_type', 'absolute')
    if position_type != 'absolute':
      raise ValueError(
          f'config position_embedding_type={position_type!r} is not supported ' "(only 'absolute')"
      )
    defaults = cls()
    values = {
        f.name: d.get(f.name, getattr(defaults, f.name))
        for f in dataclasses.fields(cls)
        if f.name != 'use_token_type_embeddings'
    }
    values.update(overrides)
    return cls(**values)


class BertEmbeddings(nn.Module):
  """Word + position (+ token type) embeddings, then LayerNorm and dropout."""

  config: BertConfig
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, input_ids: Array, token_type_ids: Array | None, deterministic: bool) -> Array:
    cfg = self.config
    seq_len = input_ids.shape[1]
    if seq_len > cfg.max_position_embeddings:
      raise ValueError(
          f'sequence length {seq_len} exceeds max_position_embeddings='
          f'{cfg.max_position_embeddings}'
      )
    embed = lambda n, names, name: nn.Embed(  # noqa: E731
        n,
        cfg.hidden_size,
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        embedding_init=layers.logical_init(_WEIGHT_INIT, names),
        name=name,
    )
    x = embed(cfg.vocab_size, ('vocab', 'embed'), 'word_embeddings')(input_ids)
    x = x + embed(cfg.max_position_embeddings, (None, 'embed'), 'position_embeddings')(
        jnp.arange(seq_len)[None, :]
    )
    if cfg.use_token_type_embeddings:
      if token_type_ids is None:
        token_type_ids = jnp.zeros_like(input_ids)
      x = x + embed(cfg.type_vocab_size, (None, 'embed'), 'token_type_embeddings')(token_type_ids)
    elif token_type_ids is not None:
      raise ValueError('token_type_ids given, but the config has use_token_type_embeddings=False')
    x = nn.LayerNorm(
        epsilon=cfg.layer_norm_eps,
        use_fast_variance=False,
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        name='LayerNorm',
    )(x)
    return nn.Dropout(rate=cfg.hidden_dropout_prob)(x, deterministic=deterministic)


class BertSelfAttention(nn.Module):
  """Multi-head self-attention with an additive float32 mask bias; returns the output projection."""

  config: BertConfig
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, attention_bias: Array, deterministic: bool) -> Array:
    cfg = self.config
    heads, head_dim = cfg.num_attention_heads, cfg.head_dim

    def project(name: str) -> Array:
      return nn.DenseGeneral(
          features=(heads, head_dim),
          axis=-1,
          dtype=self.dtype,
          param_dtype=self.param_dtype,
          kernel_init=layers.logical_init(_WEIGHT_INIT, ('embed', 'heads', 'kv')),
          bias_init=layers.logical_init(_ZEROS, ('heads', 'kv')),
          name=name,
      )(x)

    # Heads-major [B, heads, T, kv] so that both attention matmuls batch over leading axes (about
    # 10% faster on CPU at T=128 than contracting the [B, T, heads, kv] layout directly).
    query = project('query').transpose(0, 2, 1, 3) / jnp.sqrt(head_dim).astype(self.dtype)
    key = project('key').transpose(0, 2, 1, 3)
    value = project('value').transpose(0, 2, 1, 3)
    scores = jnp.einsum('bhqd,bhkd->bhqk', query, key).astype(jnp.float32) + attention_bias
    # Softmax with the normalisation deferred past the value matmul: dividing the [B, T, heads,
    # kv] context is cheaper than dividing the [B, heads, T, T] probabilities (same result;
    # dropout commutes with the per-row scale).
    scores_max = jax.lax.stop_gradient(jnp.max(scores, axis=-1, keepdims=True))
    weights = jnp.exp(scores - scores_max)
    denominator = jnp.sum(weights, axis=-1).transpose(0, 2, 1)[..., None]  # [B, T, heads, 1]
    weights = nn.Dropout(rate=cfg.attention_probs_dropout_prob)(
        weights, deterministic=deterministic
    )
    context = jnp.einsum('bhqk,bhkd->bqhd', weights.astype(self.dtype), value)
    context = (context.astype(jnp.float32) / denominator).astype(self.dtype)
    return nn.DenseGeneral(
        features=cfg.hidden_size,
        axis=(-2, -1),
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        kernel_init=layers.logical_init(_WEIGHT_INIT, ('heads', 'kv', 'embed')),
        name='output',
    )(context)


class BertLayer(nn.Module):
  """Post-LN transformer layer: LN(x + attn(x)), then LN(x + FFN(x)) with erf GELU.

  LayerNorms use the two-pass variance (`use_fast_variance=False`), as torch does; with eps 1e-12
  the one-pass E[x^2] - E[x]^2 form costs accuracy.
  """

  config: BertConfig
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, attention_bias: Array, deterministic: bool) -> Array:
    cfg = self.config
    layer_norm = lambda name: nn.LayerNorm(  # noqa: E731
        epsilon=cfg.layer_norm_eps,
        use_fast_variance=False,
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        name=name,
    )
    dropout = nn.Dropout(rate=cfg.hidden_dropout_prob)
    attended = BertSelfAttention(cfg, self.dtype, self.param_dtype, name='attention')(
        x, attention_bias, deterministic
    )
    x = layer_norm('attention_LayerNorm')(x + dropout(attended, deterministic=deterministic))
    h = layers.dense(
        cfg.intermediate_size,
        ('embed', 'mlp'),
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        kernel_init=_WEIGHT_INIT,
        bias_init=_ZEROS,
        name='intermediate',
    )(x)
    h = nn.gelu(h, approximate=False)
    h = layers.dense(
        cfg.hidden_size,
        ('mlp', 'embed'),
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        kernel_init=_WEIGHT_INIT,
        name='output',
    )(h)
    return layer_norm('output_LayerNorm')(x + dropout(h, deterministic=deterministic))


class BertEncoder(nn.Module):
  """BERT encoder returning the last hidden state (no pooler)."""

  config: BertConfig
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(
      self,
      input_ids: Array,
      attention_mask: Array,
      token_type_ids: Array | None = None,
      deterministic: bool = True,
  ) -> Array:
    """Encodes token ids.

    Args:
      input_ids: int32 [B, T] token ids.
      attention_mask: [B, T], 1 for real tokens and 0 for padding (any int/bool/float dtype).
      token_type_ids: optional int32 [B, T] segment ids (zeros when None). Must be None when the
        config has `use_token_type_embeddings=False`.
      deterministic: disables dropout when True; otherwise needs a 'dropout' rng.

    Returns:
      float32 [B, T, H] last hidden state. Padded positions are computed too (as HF does).
    """
    if input_ids.ndim != 2 or attention_mask.shape != input_ids.shape:
      raise ValueError(
          f'input_ids {input_ids.shape} and attention_mask {attention_mask.shape} '
          'must both be [B, T]'
      )
    x = BertEmbeddings(self.config, self.dtype, self.param_dtype, name='embeddings')(
        input_ids, token_type_ids, deterministic
    )
    keep = attention_mask.astype(jnp.bool_)[:, None, None, :]
    attention_bias = jnp.where(keep, 0.0, _MASK_VALUE).astype(jnp.float32)  # [B, 1, 1, T]
    for i in range(self.config.num_hidden_layers):
      x = BertLayer(self.config, self.dtype, self.param_dtype, name=f'layer_{i}')(
          x, attention_bias, deterministic
      )
    return x.astype(jnp.float32)


def pool(hidden: Array, attention_mask: Array, method: str) -> Array:
  """Pools a hidden state [B, T, H] to float32 [B, H].

  `cls` takes position 0; `mean` averages the positions where attention_mask [B, T] is 1
  (sentence-transformers' mean pooling: the count is clamped at 1e-9).
  """
  if method == 'cls':
    return hidden[:, 0].astype(jnp.float32)
  if method == 'mean':
    mask = attention_mask.astype(jnp.float32)[..., None]
    total = jnp.sum(hidden.astype(jnp.float32) * mask, axis=1)
    return total / jnp.maximum(jnp.sum(mask, axis=1), 1e-9)
  raise ValueError(f'unknown pooling method {method!r}; expected one of {_POOLING_METHODS}')


# ---------------------------------------------------------------------------------------------
# Jitted encoding.


@functools.lru_cache(maxsize=8)
def make_encode_fn(
    config: BertConfig, *, pooling: str, normalize: bool, dtype: Any = jnp.float32
) -> Callable[[Params, Array, Array], Array]:
  """Returns jitted `(params, input_ids [B,T], attention_mask [B,T]) -> float32 [B, H]`.

  `input_ids` are int32 token ids and `attention_mask` is 1 for real tokens, 0 for padding;
  the output is the `pool`ed last hidden state, L2-normalised when `normalize`. Cached per
  (config, pooling, normalize, dtype), so repeated calls (e.g. from
  `larp_jax.evaluation.text_embeddings.encode_texts`) reuse the compiled function.
  """
  if pooling not in _POOLING_METHODS:
    raise ValueError(f'unknown pooling {pooling!r}; expected one of {_POOLING_METHODS}')
  module = BertEncoder(config, dtype=dtype)

  @jax.jit
  def encode(params: Params, input_ids: Array, attention_mask: Array) -> Array:
    hidden = module.apply({'params': params}, input_ids, attention_mask, deterministic=True)
    embeddings = pool(hidden, attention_mask, pooling)
    return layers.l2_normalize(embeddings) if normalize else embeddings

  return encode
