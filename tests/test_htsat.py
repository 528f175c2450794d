"""HTS-AT in flax vs laion_clap's PyTorch HTS-AT (random init, eval mode), plus train-mode checks.

The torch reference is `laion_clap.clap_module.htsat.create_htsat_model` with the packaged
HTSAT-tiny / HTSAT-base audio cfg (imported via tests/reference_htsat.py). Every float parameter
and bn0's running statistics are perturbed before conversion, so biases, LayerNorm affine params
and the eval BatchNorm path all carry non-trivial values. Tolerance for every output:
max |ours - torch| <= 1e-4 * max |torch| (observed ~1e-6 on CPU).
"""

import dataclasses

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import reference_htsat
from larp_jax.models import htsat, htsat_convert, swin

RTOL = 1e-4
OUTPUT_KEYS = ('embedding', 'clipwise_output', 'framewise_output', 'fine_grained_embedding')


def _parity_case(variant: str, batch: int):
  torch.manual_seed(0)
  torch.set_num_threads(2)
  config = htsat.htsat_config(variant)
  model = reference_htsat.create_reference_htsat(
      variant, None if variant in ('tiny', 'base') else config
  )
  reference_htsat.randomize_state(model, seed=1)
  state_dict = reference_htsat.numpy_state_dict(model)
  waveform = (0.3 * np.random.default_rng(0).normal(size=(batch, config.clip_samples))).astype(
      np.float32
  )
  return config, state_dict, waveform, reference_htsat.run_reference(model, waveform)


@pytest.fixture(scope='module', params=[('tiny', 2), ('base', 1), ('small', 2)], ids=lambda p: p[0])
def parity_case(request):
  return _parity_case(*request.param)


def test_matches_laion_clap_htsat_in_eval_mode(parity_case):
  config, state_dict, waveform, reference = parity_case
  variables, report = htsat_convert.convert_torch_state_dict(state_dict, config, return_report=True)
  assert not report['unmatched'] and not report['missing'] and report['prefix'] == ''
  assert 'bn0.running_mean' in report['matched'] and 'head.weight' in report['ignored']
  outputs = jax.jit(lambda v, w: htsat.HTSAT(config).apply(v, w, train=False))(variables, waveform)
  batch, frames, channels = waveform.shape[0], config.target_frames, config.num_features
  chex.assert_shape(outputs['embedding'], (batch, channels))
  chex.assert_shape(outputs['clipwise_output'], (batch, config.num_classes))
  chex.assert_shape(outputs['framewise_output'], (batch, frames, config.num_classes))
  chex.assert_shape(outputs['fine_grained_embedding'], (batch, frames, channels))
  errors = {}
  for key in OUTPUT_KEYS:
    ours, theirs = np.asarray(outputs[key]), reference[key]
    assert ours.dtype == np.float32 and ours.shape == theirs.shape, key
    errors[key] = float(np.abs(ours - theirs).max() / np.abs(theirs).max())
  print(f'{config.variant}: max relative errors {errors}')
  assert all(e <= RTOL for e in errors.values()), errors
  # The outputs are not degenerate: examples differ and frames differ.
  assert np.abs(reference['embedding'][0] - reference['embedding'][-1]).max() > 0 or batch == 1
  assert reference['framewise_output'][0].std(axis=0).max() > 1e-3


def test_constants_match_torch_buffers():
  torch.manual_seed(0)
  model = reference_htsat.create_reference_htsat('tiny')
  for layer in model.layers:
    for block in layer.blocks:
      window = block.window_size
      np.testing.assert_array_equal(
          swin.relative_position_index(window), block.attn.relative_position_index.numpy()
      )
      if block.shift_size:
        res = block.input_resolution
        np.testing.assert_array_equal(
            swin.shifted_window_mask(res[0], res[1], window, block.shift_size),
            block.attn_mask.numpy(),
        )
      else:
        assert block.attn_mask is None


@pytest.mark.parametrize('in_size,out_size', [(1001, 1024), (401, 512), (5, 17), (7, 7), (3, 2)])
def test_bicubic_resize_matches_torch_interpolate(in_size, out_size):
  x = np.random.default_rng(in_size).normal(size=(2, in_size, 6)).astype(np.float32)
  reference = torch.nn.functional.interpolate(
      torch.from_numpy(x)[:, None], (out_size, 6), mode='bicubic', align_corners=True
  )[:, 0]
  ours = np.asarray(htsat.bicubic_resize(jnp.asarray(x), out_size, axis=1))
  np.testing.assert_allclose(ours, reference.numpy(), rtol=1e-5, atol=1e-5)


@pytest.fixture(scope='module')
def small_init():
  """A 1 s 'small' config and its flax init (compiled once for the train-mode tests)."""
  config = htsat.htsat_config('small', clip_samples=16000)
  waveform = np.random.default_rng(0).normal(size=(4, config.clip_samples)).astype(np.float32)
  variables = jax.jit(htsat.HTSAT(config).init, static_argnames='train')(
      jax.random.PRNGKey(0), waveform, train=False
  )
  return config, waveform, nn.meta.unbox(variables)


def test_train_mode_is_stochastic_and_eval_is_deterministic(small_init):
  config, waveform, variables = small_init
  model = htsat.HTSAT(config)

  @jax.jit
  def train_apply(v, key):
    return model.apply(v, waveform, train=True, rngs={'dropout': key}, mutable=['batch_stats'])

  out_a, state_a = train_apply(variables, jax.random.PRNGKey(1))
  out_a2, _ = train_apply(variables, jax.random.PRNGKey(1))
  out_b, _ = train_apply(variables, jax.random.PRNGKey(2))
  np.testing.assert_array_equal(out_a['embedding'], out_a2['embedding'])
  assert np.abs(out_a['embedding'] - out_b['embedding']).max() > 1e-4
  # bn0 running stats move towards the batch statistics in train mode.
  assert not np.allclose(
      state_a['batch_stats']['bn0']['mean'], variables['batch_stats']['bn0']['mean']
  )
  eval_apply = jax.jit(lambda v: model.apply(v, waveform, train=False))
  np.testing.assert_array_equal(
      eval_apply(variables)['embedding'], eval_apply(variables)['embedding']
  )
  assert np.abs(eval_apply(variables)['embedding'] - out_a['embedding']).max() > 1e-4
  with pytest.raises(Exception, match='dropout'):
    model.apply(variables, waveform, train=True, mutable=['batch_stats'])


def test_spec_augment_zeroes_time_and_mel_stripes():
  config = htsat.htsat_config('small')
  x = jnp.ones((8, 401, 32))
  out = np.asarray(htsat.spec_augment(x, jax.random.PRNGKey(0), config))
  zero_frames = (out == 0).all(axis=2).sum(axis=1)
  zero_bins = (out == 0).all(axis=1).sum(axis=1)
  assert np.all(zero_frames <= 2 * (config.time_drop_width - 1)) and zero_frames.max() > 0
  assert np.all(zero_bins <= 2 * (config.freq_drop_width - 1)) and zero_bins.max() > 0
  assert np.all((out == 0) | (out == 1))


def test_drop_path_alone_makes_train_mode_stochastic(small_init):
  """With SpecAugment off, train outputs depend on the rng only through drop-path."""
  config, waveform, variables = small_init
  model = htsat.HTSAT(dataclasses.replace(config, spec_augment=False, drop_path_rate=0.5))
  apply = jax.jit(
      lambda key: model.apply(
          variables, waveform, train=True, rngs={'dropout': key}, mutable=['batch_stats']
      )[0]
  )
  diff = np.abs(
      apply(jax.random.PRNGKey(1))['embedding'] - apply(jax.random.PRNGKey(2))['embedding']
  ).max()
  assert diff > 1e-4


def test_configs_and_bad_inputs():
  tiny, base, small = (htsat.htsat_config(v) for v in ('tiny', 'base', 'small'))
  assert (tiny.num_features, base.num_features, small.num_features) == (768, 1024, 256)
  assert tiny.target_frames == 1024 and small.target_frames == 512
  with pytest.raises(ValueError, match='unknown HTS-AT variant'):
    htsat.htsat_config('huge')
  with pytest.raises(ValueError, match='frames'):
    htsat.htsat_config('small', clip_samples=16000 * 6)  # 601 frames > 512
  with pytest.raises(ValueError, match='window'):
    htsat.htsat_config('small', window_size=5)
  model = htsat.HTSAT(htsat.htsat_config('small'))
  with pytest.raises(ValueError, match='batch, samples'):
    model.init(jax.random.PRNGKey(0), jnp.zeros((64000,)))
  with pytest.raises(ValueError, match='does not fit'):
    model.init(jax.random.PRNGKey(0), jnp.zeros((1, 16000 * 6)))
