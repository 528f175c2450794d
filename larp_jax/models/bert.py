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
`load_pretrained` / `params_from_torch_state_dict` return the same tree unboxed (plain NumPy
float32 arrays); `apply` accepts boxed or plain trees.

LARP's text encoder is BLIP's `BertEmbeddings`, which has *no* token-type table (word + position
only, max length 30). That is `BertConfig(use_token_type_embeddings=False)`. Loading an HF
checkpoint that has a token-type table into such a config folds row 0 of the table into the
position table, so the outputs equal HF's `BertModel` with `token_type_ids = 0` (HF's default).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Any, Callable, Iterable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
Params = dict[str, Any]

# Additive attention-mask value for padded keys, always in float32 (HF uses finfo(dtype).min).
_MASK_VALUE = float(np.finfo(np.float32).min)
_POOLING_METHODS = ('cls', 'mean')
# Checkpoint entries that have no counterpart in the encoder and are skipped on purpose:
# the pooler (`add_pooling_layer=False` in LARP), the position-id buffer, and the MLM/NSP heads of
# `BertForPreTraining` checkpoints such as bert-base-uncased (LARP's text encoder).
_IGNORED_KEYS = ('embeddings.position_ids',)
_IGNORED_PREFIXES = ('pooler.', 'cls.')


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
          f'num_attention_heads={self.num_attention_heads}')

  @property
  def head_dim(self) -> int:
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
      raise ValueError(f'config position_embedding_type={position_type!r} is not supported '
                       "(only 'absolute')")
    defaults = cls()
    values = {f.name: d.get(f.name, getattr(defaults, f.name)) for f in dataclasses.fields(cls)
              if f.name != 'use_token_type_embeddings'}
    values.update(overrides)
    return cls(**values)


def _kernel_init(names: tuple[str | None, ...]) -> Callable[..., Array]:
  return nn.with_logical_partitioning(nn.initializers.normal(stddev=0.02), names)


def _bias_init(names: tuple[str | None, ...]) -> Callable[..., Array]:
  return nn.with_logical_partitioning(nn.initializers.zeros_init(), names)


class BertEmbeddings(nn.Module):
  """Word + position (+ token type) embeddings, then LayerNorm and dropout."""
  config: BertConfig
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, input_ids: Array, token_type_ids: Array | None,
               deterministic: bool) -> Array:
    cfg = self.config
    seq_len = input_ids.shape[1]
    if seq_len > cfg.max_position_embeddings:
      raise ValueError(f'sequence length {seq_len} exceeds max_position_embeddings='
                       f'{cfg.max_position_embeddings}')
    embed = lambda n, names, name: nn.Embed(  # noqa: E731
        n, cfg.hidden_size, dtype=self.dtype, param_dtype=self.param_dtype,
        embedding_init=_kernel_init(names), name=name)
    x = embed(cfg.vocab_size, ('vocab', 'embed'), 'word_embeddings')(input_ids)
    x = x + embed(cfg.max_position_embeddings, (None, 'embed'), 'position_embeddings')(
        jnp.arange(seq_len)[None, :])
    if cfg.use_token_type_embeddings:
      if token_type_ids is None:
        token_type_ids = jnp.zeros_like(input_ids)
      x = x + embed(cfg.type_vocab_size, (None, 'embed'), 'token_type_embeddings')(
          token_type_ids)
    elif token_type_ids is not None:
      raise ValueError('token_type_ids given, but the config has use_token_type_embeddings=False')
    x = nn.LayerNorm(epsilon=cfg.layer_norm_eps, use_fast_variance=False, dtype=self.dtype,
                     param_dtype=self.param_dtype, name='LayerNorm')(x)
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
          features=(heads, head_dim), axis=-1, dtype=self.dtype, param_dtype=self.param_dtype,
          kernel_init=_kernel_init(('embed', 'heads', 'kv')),
          bias_init=_bias_init(('heads', 'kv')), name=name)(x)

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
        weights, deterministic=deterministic)
    context = jnp.einsum('bhqk,bhkd->bqhd', weights.astype(self.dtype), value)
    context = (context.astype(jnp.float32) / denominator).astype(self.dtype)
    return nn.DenseGeneral(
        features=cfg.hidden_size, axis=(-2, -1), dtype=self.dtype, param_dtype=self.param_dtype,
        kernel_init=_kernel_init(('heads', 'kv', 'embed')), name='output')(context)


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
        epsilon=cfg.layer_norm_eps, use_fast_variance=False, dtype=self.dtype,
        param_dtype=self.param_dtype, name=name)
    dropout = nn.Dropout(rate=cfg.hidden_dropout_prob)
    attended = BertSelfAttention(cfg, self.dtype, self.param_dtype, name='attention')(
        x, attention_bias, deterministic)
    x = layer_norm('attention_LayerNorm')(x + dropout(attended, deterministic=deterministic))
    h = nn.Dense(cfg.intermediate_size, dtype=self.dtype, param_dtype=self.param_dtype,
                 kernel_init=_kernel_init(('embed', 'mlp')), bias_init=_bias_init(('mlp',)),
                 name='intermediate')(x)
    h = nn.gelu(h, approximate=False)
    h = nn.Dense(cfg.hidden_size, dtype=self.dtype, param_dtype=self.param_dtype,
                 kernel_init=_kernel_init(('mlp', 'embed')), name='output')(h)
    return layer_norm('output_LayerNorm')(x + dropout(h, deterministic=deterministic))


class BertEncoder(nn.Module):
  """BERT encoder returning the last hidden state (no pooler)."""
  config: BertConfig
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, input_ids: Array, attention_mask: Array,
               token_type_ids: Array | None = None, deterministic: bool = True) -> Array:
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
      raise ValueError(f'input_ids {input_ids.shape} and attention_mask {attention_mask.shape} '
                       'must both be [B, T]')
    x = BertEmbeddings(self.config, self.dtype, self.param_dtype, name='embeddings')(
        input_ids, token_type_ids, deterministic)
    keep = attention_mask.astype(jnp.bool_)[:, None, None, :]
    attention_bias = jnp.where(keep, 0.0, _MASK_VALUE).astype(jnp.float32)  # [B, 1, 1, T]
    for i in range(self.config.num_hidden_layers):
      x = BertLayer(self.config, self.dtype, self.param_dtype, name=f'layer_{i}')(
          x, attention_bias, deterministic)
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


def l2_normalize(x: Array, eps: float = 1e-12) -> Array:
  """Divides rows of float [..., H] by their L2 norm (clamped at eps, as torch F.normalize)."""
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


# ---------------------------------------------------------------------------------------------
# Checkpoint conversion.


def _hf_layer_norm(state: dict[str, np.ndarray], prefix: str) -> Params:
  return {'scale': state.pop(f'{prefix}.weight'), 'bias': state.pop(f'{prefix}.bias')}


def _expected_shapes(config: BertConfig) -> dict[str, tuple[int, ...]]:
  """HF key -> shape for every tensor the encoder needs (token-type table included if any)."""
  h, i = config.hidden_size, config.intermediate_size
  shapes = {
      'embeddings.word_embeddings.weight': (config.vocab_size, h),
      'embeddings.position_embeddings.weight': (config.max_position_embeddings, h),
      'embeddings.LayerNorm.weight': (h,),
      'embeddings.LayerNorm.bias': (h,),
  }
  if config.use_token_type_embeddings:
    shapes['embeddings.token_type_embeddings.weight'] = (config.type_vocab_size, h)
  for n in range(config.num_hidden_layers):
    p = f'encoder.layer.{n}'
    for name in ('attention.self.query', 'attention.self.key', 'attention.self.value',
                 'attention.output.dense', 'output.dense'):
      shapes[f'{p}.{name}.weight'] = (h, h) if name != 'output.dense' else (h, i)
      shapes[f'{p}.{name}.bias'] = (h,)
    shapes[f'{p}.intermediate.dense.weight'] = (i, h)
    shapes[f'{p}.intermediate.dense.bias'] = (i,)
    for name in ('attention.output.LayerNorm', 'output.LayerNorm'):
      shapes[f'{p}.{name}.weight'] = (h,)
      shapes[f'{p}.{name}.bias'] = (h,)
  return shapes


def _canonical_keys(state_dict: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """Strips a `bert.` prefix and renames old-style LayerNorm `gamma`/`beta` to `weight`/`bias`."""
  out: dict[str, np.ndarray] = {}
  for key, value in state_dict.items():
    name = key[len('bert.'):] if key.startswith('bert.') else key
    if name.endswith('LayerNorm.gamma'):
      name = name[:-len('gamma')] + 'weight'
    elif name.endswith('LayerNorm.beta'):
      name = name[:-len('beta')] + 'bias'
    if name in out:
      raise ValueError(f'state dict has two entries for {name!r} (e.g. with and without the '
                       f"'bert.' prefix); the second is {key!r}")
    out[name] = np.asarray(value)
  return out


def params_from_torch_state_dict(state_dict: Mapping[str, np.ndarray], config: BertConfig,
                                 dtype: Any = np.float32) -> Params:
  """Maps an HF BERT state dict ({name: NumPy array}) to this module's params tree.

  Keys may carry a `bert.` prefix. `pooler.*`, `cls.*` (pre-training heads) and
  `embeddings.position_ids` are ignored; any other unknown key, a missing key or a wrong shape
  raises ValueError naming the keys. With `config.use_token_type_embeddings=False`, a token-type
  table in the checkpoint is folded in: row 0 is added to every position embedding.

  Returns:
    Nested dict of NumPy arrays of `dtype` (unboxed), ready for `BertEncoder(config).apply`.
  """
  state = _canonical_keys(state_dict)
  for key in list(state):
    if key in _IGNORED_KEYS or key.startswith(_IGNORED_PREFIXES):
      del state[key]
  token_type_table = None
  if not config.use_token_type_embeddings:
    token_type_table = state.pop('embeddings.token_type_embeddings.weight', None)

  expected = _expected_shapes(config)
  missing = sorted(k for k in expected if k not in state)
  unexpected = sorted(k for k in state if k not in expected)
  if missing or unexpected:
    raise ValueError(f'state dict does not match BertConfig: missing keys {missing}; '
                     f'unexpected keys {unexpected}')
  wrong = [f'{k}: {state[k].shape} != {s}' for k, s in expected.items() if state[k].shape != s]
  if wrong:
    raise ValueError(f'state dict shapes do not match BertConfig: {wrong}')
  state = {k: v.astype(dtype) for k, v in state.items()}

  h, heads, head_dim = config.hidden_size, config.num_attention_heads, config.head_dim
  positions = state.pop('embeddings.position_embeddings.weight')
  if token_type_table is not None:
    positions = positions + token_type_table[0].astype(dtype)[None, :]
  embeddings: Params = {
      'word_embeddings': {'embedding': state.pop('embeddings.word_embeddings.weight')},
      'position_embeddings': {'embedding': positions},
      'LayerNorm': _hf_layer_norm(state, 'embeddings.LayerNorm'),
  }
  if config.use_token_type_embeddings:
    embeddings['token_type_embeddings'] = {
        'embedding': state.pop('embeddings.token_type_embeddings.weight')}
  params: Params = {'embeddings': embeddings}

  def dense(prefix: str) -> Params:
    return {'kernel': state.pop(f'{prefix}.weight').T, 'bias': state.pop(f'{prefix}.bias')}

  for n in range(config.num_hidden_layers):
    p = f'encoder.layer.{n}'
    attention: Params = {}
    for name in ('query', 'key', 'value'):
      w = dense(f'{p}.attention.self.{name}')
      attention[name] = {'kernel': w['kernel'].reshape(h, heads, head_dim),
                         'bias': w['bias'].reshape(heads, head_dim)}
    out = dense(f'{p}.attention.output.dense')
    attention['output'] = {'kernel': out['kernel'].reshape(heads, head_dim, h),
                           'bias': out['bias']}
    params[f'layer_{n}'] = {
        'attention': attention,
        'attention_LayerNorm': _hf_layer_norm(state, f'{p}.attention.output.LayerNorm'),
        'intermediate': dense(f'{p}.intermediate.dense'),
        'output': dense(f'{p}.output.dense'),
        'output_LayerNorm': _hf_layer_norm(state, f'{p}.output.LayerNorm'),
    }
  assert not state, f'unconsumed keys {sorted(state)}'
  return jax.tree.map(np.ascontiguousarray, params)


def _read_state_dict(model_dir: str, trust_pickle: bool) -> dict[str, np.ndarray]:
  """Reads model.safetensors (or its sharded index), or a trusted pytorch_model.bin, as NumPy."""
  single = os.path.join(model_dir, 'model.safetensors')
  index = os.path.join(model_dir, 'model.safetensors.index.json')
  pickled = os.path.join(model_dir, 'pytorch_model.bin')
  if os.path.isfile(single) or os.path.isfile(index):
    from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
    if os.path.isfile(single):
      return dict(load_file(single))
    with open(index) as f:
      shards = sorted(set(json.load(f)['weight_map'].values()))
    state: dict[str, np.ndarray] = {}
    for shard in shards:
      state.update(load_file(os.path.join(model_dir, shard)))
    return state
  if os.path.isfile(pickled):
    if not trust_pickle:
      raise ValueError(
          f'{model_dir} has only pytorch_model.bin, a pickle file; unpickling can run arbitrary '
          'code from the file. Convert it to model.safetensors, or pass trust_pickle=True if you '
          'trust its source (it is then read with torch.load(weights_only=True)).')
    import torch  # pylint: disable=g-import-not-at-top
    loaded = torch.load(pickled, map_location='cpu', weights_only=True)
    not_tensors = [k for k, v in loaded.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
      raise ValueError(f'{pickled} is not a flat state dict; non-tensor entries {not_tensors}')
    return {k: v.detach().float().numpy() if v.is_floating_point() else v.numpy()
            for k, v in loaded.items()}
  raise ValueError(f'{model_dir} has no model.safetensors, model.safetensors.index.json or '
                   'pytorch_model.bin')


def load_pretrained(model_dir: str, *, trust_pickle: bool = False,
                    use_token_type_embeddings: bool = True) -> tuple[BertConfig, Params]:
  """Loads an HF BERT checkpoint directory (config.json + model.safetensors) without torch.

  Args:
    model_dir: directory written by `save_pretrained` (or a sentence-transformers model dir).
    trust_pickle: allow reading a `pytorch_model.bin` (pickle) when no safetensors exist.
    use_token_type_embeddings: False gives the BLIP/LARP variant (token-type row 0 folded into
      the position table).

  Returns:
    (config, params) with params a nested dict of NumPy float32 arrays.
  """
  if not os.path.isdir(model_dir):
    raise FileNotFoundError(f'model directory {model_dir!r} does not exist')
  config_path = os.path.join(model_dir, 'config.json')
  if not os.path.isfile(config_path):
    raise FileNotFoundError(f'{config_path} not found (an HF BERT config.json is required)')
  with open(config_path) as f:
    config = BertConfig.from_hf_config_dict(
        json.load(f), use_token_type_embeddings=use_token_type_embeddings)
  state = _read_state_dict(model_dir, trust_pickle)
  return config, params_from_torch_state_dict(state, config)


# ---------------------------------------------------------------------------------------------
# Tokenisation and batched encoding.


def load_tokenizer(model_dir: str) -> Any:
  """Loads the HF tokenizer saved in `model_dir` (offline: local files only)."""
  if not os.path.isdir(model_dir):
    raise FileNotFoundError(f'model directory {model_dir!r} does not exist')
  from transformers import AutoTokenizer  # pylint: disable=g-import-not-at-top
  return AutoTokenizer.from_pretrained(model_dir, local_files_only=True)


def tokenize(tokenizer: Any, texts: Sequence[str], max_length: int) -> dict[str, np.ndarray]:
  """Tokenizes texts, truncated and padded to exactly max_length.

  Returns:
    {'input_ids': int32 [N, max_length], 'attention_mask': int32 [N, max_length]}.
  """
  enc = tokenizer(list(texts), padding='max_length', truncation=True, max_length=max_length,
                  return_tensors='np', return_token_type_ids=False)
  return {'input_ids': enc['input_ids'].astype(np.int32),
          'attention_mask': enc['attention_mask'].astype(np.int32)}


def token_lengths(tokenizer: Any, texts: Sequence[str]) -> np.ndarray:
  """int32 [N]: tokens per text, special tokens included, before truncation."""
  enc = tokenizer(list(texts), truncation=False, padding=False, return_attention_mask=False,
                  return_token_type_ids=False, verbose=False)
  return np.asarray([len(ids) for ids in enc['input_ids']], np.int32)


@functools.lru_cache(maxsize=8)
def make_encode_fn(config: BertConfig, *, pooling: str, normalize: bool,
                   dtype: Any = jnp.float32) -> Callable[[Params, Array, Array], Array]:
  """Returns jitted `(params, input_ids [B,T], attention_mask [B,T]) -> float32 [B, H]`.

  Cached per (config, pooling, normalize, dtype), so repeated `encode_texts` calls reuse the
  compiled function.
  """
  if pooling not in _POOLING_METHODS:
    raise ValueError(f'unknown pooling {pooling!r}; expected one of {_POOLING_METHODS}')
  module = BertEncoder(config, dtype=dtype)

  @jax.jit
  def encode(params: Params, input_ids: Array, attention_mask: Array) -> Array:
    hidden = module.apply({'params': params}, input_ids, attention_mask, deterministic=True)
    embeddings = pool(hidden, attention_mask, pooling)
    return l2_normalize(embeddings) if normalize else embeddings

  return encode


def encode_texts(config: BertConfig, params: Params, tokenizer: Any, texts: Iterable[str], *,
                 pooling: str = 'mean', normalize: bool = False, max_length: int = 128,
                 batch_size: int = 64, progress: bool = True,
                 return_num_truncated: bool = False) -> np.ndarray | tuple[np.ndarray, int]:
  """Encodes texts to float32 [N, H] embeddings, in input order.

  Every batch has the fixed shape [batch_size, max_length] (the last one is padded by repeating
  its final row, and the extra rows dropped), so the encoder compiles once. Texts longer than
  max_length tokens are truncated.

  Returns:
    float32 [N, H]; with `return_num_truncated`, also the number of truncated texts.
  """
  texts = list(texts)
  bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
  if bad:
    raise ValueError(f'texts must be strings; items at indices {bad[:20]} are not')
  if batch_size < 1:
    raise ValueError(f'batch_size must be positive, got {batch_size}')
  if not 2 <= max_length <= config.max_position_embeddings:
    raise ValueError(f'max_length must be in [2, {config.max_position_embeddings}], '
                     f'got {max_length}')
  encode = make_encode_fn(config, pooling=pooling, normalize=normalize)
  from tqdm.auto import tqdm  # pylint: disable=g-import-not-at-top

  outputs: list[np.ndarray] = []
  num_truncated = 0
  in_flight: tuple[Array, int] | None = None  # dispatched batch, number of real rows
  with tqdm(total=len(texts), unit='text', disable=not progress, desc='encoding') as bar:
    for start in range(0, len(texts), batch_size):
      chunk = texts[start:start + batch_size]
      num_truncated += int(np.sum(token_lengths(tokenizer, chunk) > max_length))
      tokens = tokenize(tokenizer, chunk, max_length)
      pad = batch_size - len(chunk)
      if pad:
        tokens = {k: np.pad(v, ((0, pad), (0, 0)), mode='edge') for k, v in tokens.items()}
      result = encode(params, tokens['input_ids'], tokens['attention_mask'])
      if in_flight is not None:  # overlap tokenisation of this batch with the previous compute
        outputs.append(np.asarray(in_flight[0])[:in_flight[1]])
        bar.update(in_flight[1])
      in_flight = (result, len(chunk))
    if in_flight is not None:
      outputs.append(np.asarray(in_flight[0])[:in_flight[1]])
      bar.update(in_flight[1])
  embeddings = (np.concatenate(outputs).astype(np.float32) if outputs
                else np.zeros((0, config.hidden_size), np.float32))
  return (embeddings, num_truncated) if return_num_truncated else embeddings
