"""HF BERT checkpoints -> `larp_jax.models.bert` parameters (NumPy only; torch only for pickles).

`load_pretrained(model_dir)` reads an HF `save_pretrained` directory (config.json +
model.safetensors, a sharded safetensors index, or, when trusted, pytorch_model.bin) and returns
`(BertConfig, params)`; `params_from_torch_state_dict` maps an in-memory state dict. The params
tree is the one documented in `bert` (unboxed NumPy float32 arrays):

    HF key                                         params path
    embeddings.word_embeddings.weight              embeddings/word_embeddings/embedding
    encoder.layer.<i>.attention.self.query.weight  layer_<i>/attention/query/kernel  (.T, reshaped)
    encoder.layer.<i>.attention.output.dense.*     layer_<i>/attention/output/*
    encoder.layer.<i>.attention.output.LayerNorm.* layer_<i>/attention_LayerNorm/{scale, bias}
    encoder.layer.<i>.intermediate.dense.*         layer_<i>/intermediate/*
    encoder.layer.<i>.output.dense.*               layer_<i>/output/*
    encoder.layer.<i>.output.LayerNorm.*           layer_<i>/output_LayerNorm/{scale, bias}
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

import jax
import numpy as np

from larp_jax.models import bert

# Checkpoint entries that have no counterpart in the encoder and are skipped on purpose:
# the pooler (`add_pooling_layer=False` in LARP), the position-id buffer, and the MLM/NSP heads of
# `BertForPreTraining` checkpoints such as bert-base-uncased (LARP's text encoder).
_IGNORED_KEYS = ('embeddings.position_ids',)
_IGNORED_PREFIXES = ('pooler.', 'cls.')


def _hf_layer_norm(state: dict[str, np.ndarray], prefix: str) -> bert.Params:
  return {'scale': state.pop(f'{prefix}.weight'), 'bias': state.pop(f'{prefix}.bias')}


def _expected_shapes(config: bert.BertConfig) -> dict[str, tuple[int, ...]]:
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
    for name in (
        'attention.self.query',
        'attention.self.key',
        'attention.self.value',
        'attention.output.dense',
        'output.dense',
    ):
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
    name = key[len('bert.') :] if key.startswith('bert.') else key
    if name.endswith('LayerNorm.gamma'):
      name = name[: -len('gamma')] + 'weight'
    elif name.endswith('LayerNorm.beta'):
      name = name[: -len('beta')] + 'bias'
    if name in out:
      raise ValueError(
          f'state dict has two entries for {name!r} (e.g. with and without the '
          f"'bert.' prefix); the second is {key!r}"
      )
    out[name] = np.asarray(value)
  return out


def params_from_torch_state_dict(
    state_dict: Mapping[str, np.ndarray], config: bert.BertConfig, dtype: Any = np.float32
) -> bert.Params:
  """Maps an HF BERT state dict ({name: NumPy array}) to `bert.BertEncoder`'s params tree.

  Keys may carry a `bert.` prefix. `pooler.*`, `cls.*` (pre-training heads) and
  `embeddings.position_ids` are ignored; any other unknown key, a missing key or a wrong shape
  raises ValueError naming the keys. With `config.use_token_type_embeddings=False`, a token-type
  table in the checkpoint is folded in: row 0 is added to every position embedding.

  Returns:
    Nested dict of NumPy arrays of `dtype` (unboxed), ready for `bert.BertEncoder(config).apply`
    (kernels [in, ..., out], e.g. query [H, heads, head_dim]; embedding tables [rows, H]).
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
    raise ValueError(
        f'state dict does not match BertConfig: missing keys {missing}; '
        f'unexpected keys {unexpected}'
    )
  wrong = [f'{k}: {state[k].shape} != {s}' for k, s in expected.items() if state[k].shape != s]
  if wrong:
    raise ValueError(f'state dict shapes do not match BertConfig: {wrong}')
  state = {k: v.astype(dtype) for k, v in state.items()}

  h, heads, head_dim = config.hidden_size, config.num_attention_heads, config.head_dim
  positions = state.pop('embeddings.position_embeddings.weight')
  if token_type_table is not None:
    positions = positions + token_type_table[0].astype(dtype)[None, :]
  embeddings: bert.Params = {
      'word_embeddings': {'embedding': state.pop('embeddings.word_embeddings.weight')},
      'position_embeddings': {'embedding': positions},
      'LayerNorm': _hf_layer_norm(state, 'embeddings.LayerNorm'),
  }
  if config.use_token_type_embeddings:
    embeddings['token_type_embeddings'] = {
        'embedding': state.pop('embeddings.token_type_embeddings.weight')
    }
  params: bert.Params = {'embeddings': embeddings}

  def dense(prefix: str) -> bert.Params:
    return {'kernel': state.pop(f'{prefix}.weight').T, 'bias': state.pop(f'{prefix}.bias')}

  for n in range(config.num_hidden_layers):
    p = f'encoder.layer.{n}'
    attention: bert.Params = {}
    for name in ('query', 'key', 'value'):
      w = dense(f'{p}.attention.self.{name}')
      attention[name] = {
          'kernel': w['kernel'].reshape(h, heads, head_dim),
          'bias': w['bias'].reshape(heads, head_dim),
      }
    out = dense(f'{p}.attention.output.dense')
    attention['output'] = {'kernel': out['kernel'].reshape(heads, head_dim, h), 'bias': out['bias']}
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
          'trust its source (it is then read with torch.load(weights_only=True)).'
      )
    import torch  # pylint: disable=g-import-not-at-top

    loaded = torch.load(pickled, map_location='cpu', weights_only=True)
    not_tensors = [k for k, v in loaded.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
      raise ValueError(f'{pickled} is not a flat state dict; non-tensor entries {not_tensors}')
    return {
        k: v.detach().float().numpy() if v.is_floating_point() else v.numpy()
        for k, v in loaded.items()
    }
  raise ValueError(
      f'{model_dir} has no model.safetensors, model.safetensors.index.json or ' 'pytorch_model.bin'
  )


def load_pretrained(
    model_dir: str, *, trust_pickle: bool = False, use_token_type_embeddings: bool = True
) -> tuple[bert.BertConfig, bert.Params]:
  """Loads an HF BERT checkpoint directory (config.json + model.safetensors) without torch.

  Raises FileNotFoundError for a missing directory or config.json, ValueError for a directory
  without weights, an untrusted pickle or weights that do not fit the config.

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
    config = bert.BertConfig.from_hf_config_dict(
        json.load(f), use_token_type_embeddings=use_token_type_embeddings
    )
  state = _read_state_dict(model_dir, trust_pickle)
  return config, params_from_torch_state_dict(state, config)
