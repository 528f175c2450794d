"""Checkpoint converter: prefix layouts, orbax round trip, refusal on unmatched/missing keys."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
import safetensors.numpy
import torch

import reference_htsat
from experiments import convert_checkpoint
from larp_jax.models import htsat, htsat_convert

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = htsat.htsat_config('small')


@pytest.fixture(scope='module')
def torch_state():
  """A real torch HTS-AT state dict of the 'small' variant (random, perturbed), as tensors."""
  torch.manual_seed(0)
  model = reference_htsat.create_reference_htsat('small', CONFIG)
  reference_htsat.randomize_state(model, seed=3)
  return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope='module')
def expected_variables(torch_state):
  return htsat_convert.convert_torch_state_dict(
      {k: v.numpy() for k, v in torch_state.items()}, CONFIG
  )


def _restore(output_dir):
  return ocp.StandardCheckpointer().restore(
      os.path.join(output_dir, convert_checkpoint.VARIABLES_NAME)
  )


def _assert_same_tree(restored, expected):
  flat_r = jax.tree_util.tree_flatten_with_path(restored)[0]
  flat_e = jax.tree_util.tree_flatten_with_path(expected)[0]
  assert [p for p, _ in flat_r] == [p for p, _ in flat_e]
  for (path, r), (_, e) in zip(flat_r, flat_e):
    np.testing.assert_array_equal(np.asarray(r), np.asarray(e), err_msg=str(path))


def _wrap(state, layout):
  """Lays out a bare state dict as the given checkpoint family would store it."""
  if layout == 'bare':
    return dict(state)
  if layout == 'htsat_lightning':  # official HTS-AT .ckpt
    return {'state_dict': {f'sed_model.{k}': v for k, v in state.items()}, 'epoch': 3}
  if layout == 'clap_ddp':  # CLAP training checkpoint: DDP 'module.' + audio_branch + text tower
    sd = {f'module.audio_branch.{k}': v for k, v in state.items()}
    sd['module.text_branch.embeddings.word_embeddings.weight'] = torch.zeros(4, 2)
    sd['module.logit_scale_a'] = torch.tensor(1.0)
    return {'state_dict': sd, 'epoch': 10}
  if layout == 'larp':  # LARP checkpoint: 'model' with online and momentum towers
    sd = {f'audio_encoder.{k}': v for k, v in state.items()}
    sd.update({f'audio_encoder_m.{k}': v for k, v in list(state.items())[:3]})
    sd['audio_proj.weight'] = torch.zeros(256, 256)
    sd['text_queue'] = torch.zeros(256, 8)
    return {'model': sd, 'optimizer': {'state': {}}, 'epoch': 1}
  raise ValueError(layout)


@pytest.mark.parametrize(
    'layout,prefix',
    [
        ('bare', ''),
        ('htsat_lightning', 'sed_model.'),
        ('clap_ddp', 'audio_branch.'),
        ('larp', 'audio_encoder.'),
    ],
)
def test_round_trip_through_torch_file_and_orbax(
    tmp_path, torch_state, expected_variables, layout, prefix
):
  path = str(tmp_path / 'weights.pt')
  torch.save(_wrap(torch_state, layout), path)
  report = convert_checkpoint.convert_file(path, 'small', str(tmp_path / 'out'))
  assert report['prefix'] == prefix
  assert not report['unmatched'] and not report['missing'] and report['written']
  assert len(report['matched']) == 86 and len(report['ignored']) == 11
  assert (
      len(report['foreign']) == {'bare': 0, 'htsat_lightning': 0, 'clap_ddp': 2, 'larp': 5}[layout]
  )
  restored = _restore(str(tmp_path / 'out'))
  _assert_same_tree(restored, expected_variables)
  # Spot-check the layouts: Linear transposed, Conv2d (O,I,kh,kw) -> (kh,kw,I,O), BN stats.
  qkv = restored['params']['layers_1']['blocks_0']['attn']['qkv']['kernel']
  np.testing.assert_array_equal(qkv, torch_state['layers.1.blocks.0.attn.qkv.weight'].numpy().T)
  conv = restored['params']['tscam_conv']['kernel']
  np.testing.assert_array_equal(
      conv, torch_state['tscam_conv.weight'].numpy().transpose(2, 3, 1, 0)
  )
  np.testing.assert_array_equal(
      restored['batch_stats']['bn0']['var'], torch_state['bn0.running_var'].numpy()
  )
  with open(tmp_path / 'out' / convert_checkpoint.REPORT_NAME) as f:
    assert json.load(f)['matched'] == report['matched']


def test_safetensors_input(tmp_path, torch_state, expected_variables):
  path = str(tmp_path / 'weights.safetensors')
  # save_file writes raw memory order, so views (melW is a transpose) must be made contiguous.
  safetensors.numpy.save_file(
      {f'audio_branch.{k}': np.ascontiguousarray(v.numpy()) for k, v in torch_state.items()}, path
  )
  report = convert_checkpoint.convert_file(path, 'small', str(tmp_path / 'out'))
  assert report['prefix'] == 'audio_branch.'
  _assert_same_tree(_restore(str(tmp_path / 'out')), expected_variables)


def _run_cli(*args):
  return subprocess.run(
      [sys.executable, '-m', 'experiments.convert_checkpoint', *args],
      cwd=REPO_ROOT,
      capture_output=True,
      text=True,
      timeout=300,
      check=False,
  )


def test_cli_refuses_unmatched_and_missing_keys_unless_allowed(tmp_path, torch_state):
  state = {f'audio_branch.{k}': v for k, v in torch_state.items()}
  state['audio_branch.layers.0.blocks.0.attn.gate.weight'] = torch.zeros(3)  # no such weight
  del state['audio_branch.norm.weight']  # a missing variable
  path = str(tmp_path / 'bad.pt')
  torch.save({'state_dict': state}, path)

  refused = _run_cli(f'--input={path}', '--variant=small', f'--output={tmp_path / "refused"}')
  assert refused.returncode == 1, refused.stderr[-2000:]
  assert 'refusing' in refused.stderr
  assert 'audio_branch.layers.0.blocks.0.attn.gate.weight' in refused.stderr
  assert 'params/norm/scale' in refused.stderr
  assert not (tmp_path / 'refused' / convert_checkpoint.VARIABLES_NAME).exists()
  with open(tmp_path / 'refused' / convert_checkpoint.REPORT_NAME) as f:
    report = json.load(f)
  assert report['unmatched'] == ['audio_branch.layers.0.blocks.0.attn.gate.weight']
  assert report['missing'] == ['params/norm/scale'] and not report['written']

  allowed = _run_cli(
      f'--input={path}', '--variant=small', f'--output={tmp_path / "allowed"}', '--allow_unmatched'
  )
  assert allowed.returncode == 0, allowed.stderr[-2000:]
  assert 'unmatched: audio_branch.layers.0.blocks.0.attn.gate.weight' in allowed.stdout
  assert 'missing: params/norm/scale' in allowed.stdout
  restored = _restore(str(tmp_path / 'allowed'))
  np.testing.assert_array_equal(
      restored['params']['norm']['bias'], torch_state['norm.bias'].numpy()
  )
  np.testing.assert_array_equal(restored['params']['norm']['scale'], np.ones(CONFIG.num_features))


def test_strict_conversion_names_bad_keys(torch_state):
  state = {k: v.numpy() for k, v in torch_state.items()}
  with pytest.raises(ValueError, match=r'layers\.9\.blocks\.0\.norm1\.weight'):
    htsat_convert.convert_torch_state_dict(
        {**state, 'layers.9.blocks.0.norm1.weight': np.ones(4)}, CONFIG
    )
  with pytest.raises(ValueError, match='params/bn0/scale'):
    htsat_convert.convert_torch_state_dict(
        {k: v for k, v in state.items() if k != 'bn0.weight'}, CONFIG
    )


def test_wrong_variant_or_frontend_is_a_shape_or_constant_error(torch_state):
  state = {k: v.numpy() for k, v in torch_state.items()}
  with pytest.raises(ValueError, match='patch_embed.proj.weight: shape'):
    htsat_convert.convert_torch_state_dict(state, htsat.htsat_config('small', embed_dim=48))
  with pytest.raises(ValueError, match='logmel_extractor.melW'):
    htsat_convert.convert_torch_state_dict(state, htsat.htsat_config('small', fmax=7000.0))


def test_prefix_detection_errors(torch_state):
  state = {k: v.numpy() for k, v in torch_state.items()}
  with pytest.raises(ValueError, match='no HTS-AT weights'):
    htsat_convert.conversion_report({f'encoder.{k}': v for k, v in state.items()}, CONFIG)
  both = {**state, **{f'sed_model.{k}': v for k, v in state.items()}}
  with pytest.raises(ValueError, match='ambiguous'):
    htsat_convert.conversion_report(both, CONFIG)
  report = htsat_convert.conversion_report(both, CONFIG, prefix='sed_model.')
  assert not report['unmatched'] and len(report['foreign']) == len(state)


# ------------------------------------------- config.model.audio_checkpoint (the job's warm start)


def _larp_state_from_checkpoint(checkpoint_path):
  """The stage-1 LARP state the job builds with config.model.audio_checkpoint set."""
  from configs import larp as larp_config
  from larp_jax.jobs import larp_job, larp_setup
  from larp_jax.models import larp_encoder
  from larp_jax.training import mesh as mesh_lib
  from larp_jax.training import runs

  config = larp_config.get_config('test')
  config.model.audio_checkpoint = checkpoint_path
  model = larp_encoder.LARP(larp_setup.model_config(config))
  mesh = mesh_lib.make_mesh({'shape': (1, 1)}, devices=jax.devices()[:1])
  run_config = runs.run_config(config, init_from=larp_setup.run_init_from(config, 'stage1'))
  state, _ = runs.create_state(
      run_config,
      mesh,
      larp_job.make_init_fn(config, model, 4, 8, group_width=2),
      10,
      init_sources=larp_setup.init_sources(config),
  )
  return config, state


def _relative_error(got, want):
  return float(np.linalg.norm(np.asarray(got) - want) / np.linalg.norm(want))


def test_audio_checkpoint_gives_laion_clap_embeddings(tmp_path, torch_state):
  """A laion_clap HTS-AT (random init) saved by torch.save initialises the job's audio tower."""
  import flax.linen as nn

  path = str(tmp_path / 'clap.pt')
  torch.save(_wrap(torch_state, 'clap_ddp'), path)
  config, state = _larp_state_from_checkpoint(path)
  audio_cfg = htsat.htsat_config('small', **dict(config.model.audio_overrides))
  reference = reference_htsat.create_reference_htsat('small', audio_cfg)
  reference.load_state_dict(torch_state)
  wave = np.random.default_rng(0).uniform(-0.5, 0.5, (2, audio_cfg.clip_samples))
  want = reference_htsat.run_reference(reference, wave)['embedding']

  params, model_state = nn.meta.unbox(state.params), nn.meta.unbox(state.model_state)
  for tower in (params['audio_encoder'], model_state['momentum']['audio_encoder']):
    variables = {'params': tower, 'batch_stats': model_state['batch_stats']['audio_encoder']}
    got = htsat.HTSAT(audio_cfg).apply(variables, wave.astype(np.float32))['embedding']
    assert _relative_error(got, want) <= 1e-4
  # The audio-only row of the report (and the CO-Playlist run's start) use the same tower.
  from larp_jax.jobs import larp_setup

  variables = larp_setup.audio_only_variables(config)
  got = htsat.HTSAT(audio_cfg).apply(variables, wave.astype(np.float32))['embedding']
  assert _relative_error(got, want) <= 1e-4


def _pretrained(path):
  from configs import larp as larp_config
  from larp_jax.jobs import larp_setup

  config = larp_config.get_config('test')
  config.model.audio_checkpoint = path
  return larp_setup.pretrained_audio_variables(config)


def test_audio_checkpoint_reads_converted_dirs_and_is_strict(tmp_path, torch_state):
  path = str(tmp_path / 'clap.pt')
  torch.save(_wrap(torch_state, 'clap_ddp'), path)
  convert_checkpoint.convert_file(path, 'small', str(tmp_path / 'converted'))
  _assert_same_tree(_pretrained(str(tmp_path / 'converted')), _pretrained(path))
  state = {f'audio_branch.{k}': v for k, v in torch_state.items()}
  state['audio_branch.layers.0.blocks.0.attn.gate.weight'] = torch.zeros(3)
  torch.save({'state_dict': state}, str(tmp_path / 'bad.pt'))
  with pytest.raises(ValueError, match=r'bad\.pt.*layers\.0\.blocks\.0\.attn\.gate\.weight'):
    _pretrained(str(tmp_path / 'bad.pt'))
