"""Smoke/parity tests of benchmarks/larp_step.py (no timing): the torch WTC/TTC losses of
tests/reference_larp_torch.py equal larp_jax.losses.larp, and one step of each implementation
(ours: the loop's `jit_train_step` of `larp_job.make_state`'s state) from the same weights gives
the same loss and the same queue/table writes when train-mode regularisation is off."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import reference_larp_torch as torch_ref
from benchmarks import larp_step
from larp_jax.jobs import larp_setup
from larp_jax.losses import larp as larp_losses

BATCH = 2


def _unit_rows(rng, n, d):
  x = rng.standard_normal((n, d)).astype(np.float32)
  return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_torch_losses_match_contrastive():
  rng = np.random.default_rng(0)
  b, q, d, g = 6, 10, 8, 3
  audio, text, audio_m, text_m = (_unit_rows(rng, b, d) for _ in range(4))
  queue_audio, queue_text = _unit_rows(rng, q, d), _unit_rows(rng, q, d)
  ids = np.array([3, 5, 3, 7, 9, 1], np.int32)  # a duplicate id in the batch
  queue_ids = np.array([5, -1, 9, 2, -1, 3, 4, -1, 8, 0], np.int32)  # and some in the queue
  groups = rng.integers(-1, 5, size=(b, g)).astype(np.int32)
  queue_groups = rng.integers(-1, 5, size=(q, g)).astype(np.int32)
  partner = np.array([3, 4, 5, 0, 1, 2], np.int32)
  temp = 0.07
  t = lambda x: torch.from_numpy(np.asarray(x))  # noqa: E731
  ti = lambda x: torch.from_numpy(np.asarray(x, np.int64))  # noqa: E731

  for use_ids in (False, True):
    want, _ = larp_losses.wtc_loss(
        audio,
        text,
        audio_m,
        text_m,
        queue_audio,
        queue_text,
        temp,
        ids=ids if use_ids else None,
        queue_ids=queue_ids if use_ids else None,
    )
    got = torch_ref.torch_wtc_loss(
        t(audio),
        t(text),
        t(audio_m),
        t(text_m),
        t(queue_audio),
        t(queue_text),
        torch.tensor(temp),
        ids=ti(ids) if use_ids else None,
        queue_ids=ti(queue_ids) if use_ids else None,
    )
    np.testing.assert_allclose(float(got), float(want), rtol=1e-5)
  for positives in ('pair', 'cooccurrence'):
    want, _ = larp_losses.ttc_loss(
        audio,
        text,
        audio_m,
        text_m,
        queue_audio,
        queue_text,
        temp,
        partner=partner,
        groups=groups,
        queue_groups=queue_groups,
        positives=positives,
    )
    cooc = positives == 'cooccurrence'
    got = torch_ref.torch_ttc_loss(
        t(audio),
        t(text),
        t(audio_m),
        t(text_m),
        t(queue_audio),
        t(queue_text),
        torch.tensor(temp),
        ti(partner),
        ti(groups) if cooc else None,
        ti(queue_groups) if cooc else None,
    )
    np.testing.assert_allclose(float(got), float(want), rtol=1e-5)


def test_random_batch_layout():
  groups = larp_step.random_groups(50, 4, seed=0)
  batch = larp_step.random_batch(1, 2, 4, 800, 12, 30522, groups)
  a, b = batch['a']['track_index'], batch['b']['track_index']
  for i, p in enumerate(batch['playlist_index']):  # partners share the sampled playlist
    assert p in groups[a[i]] and p in groups[b[i]]
  mask, ids = batch['a']['attention_mask'], batch['a']['input_ids']
  assert (ids[:, 0] == larp_step.CLS_ID).all() and (ids[mask == 0] == larp_step.PAD_ID).all()
  assert (ids[np.arange(4), mask.sum(1) - 1] == larp_step.SEP_ID).all()
  with pytest.raises(ValueError, match='num_train_tracks'):
    larp_step.random_batch(1, 1, 51, 800, 12, 30522, groups)


def test_one_step_each_agrees_without_regularisation():
  """`test` variant (HTS-AT small on 1 s, MiniLM, queue 64), B = 2, stage 1, same weights.

  A second step (first non-zero learning rate of the warm-up) checks the optimizer, the text-tower
  learning-rate multiplier and the EMA through the updated projections and a text-tower bias.
  Tolerances (measured differences ~1e-6): losses 1e-4 absolute, momentum features written to the
  queue and online features written to the lookup tables (unit vectors) 2e-5 absolute, updated
  projection weights 1e-6 for all but 0.1% (Adam's normalised steps of weights whose gradient is
  ~eps may differ, up to the step size 1e-4: measured 3 of 98304), momentum weights likewise 1e-7
  (EMA moves them by 5e-3 of a step), text-bias steps 1e-6 (steps ~1e-5). At init the
  InfoNCE loss is compared loosely with log(B + Q): within a factor 2 either way (measured 4.42 vs
  log 66 = 4.19).
  """
  torch.set_num_threads(2)
  config = larp_step.load_config('test')
  groups = larp_step.random_groups(
      40, int(config.loss.group_width), seed=0, num_playlists=20, playlist_length=6
  )
  ours = larp_step.build_ours(config, 1, groups, total_steps=4, regularisation=False)
  cfg = ours.cfg
  setup = larp_step.build_torch(config, ours, larp_setup.text_model_dir(config))
  batch = larp_step.random_batch(
      3,
      1,
      BATCH,
      cfg.audio.clip_samples,
      int(config.data.build.max_text_length),
      cfg.text.vocab_size,
      groups,
  )

  state, metrics = ours.step(ours.state, ours.inputs(batch))
  ours_loss = float(metrics['loss/total'])
  torch_loss = torch_ref.torch_train_step(setup, torch_ref.torch_batch(batch), 1, config.loss)

  log_keys = math.log(BATCH + config.loss.queue_size)
  assert math.isfinite(ours_loss) and math.isfinite(torch_loss)
  assert 0.5 * log_keys < ours_loss < 2.0 * log_keys, (ours_loss, log_keys)
  np.testing.assert_allclose(torch_loss, ours_loss, atol=1e-4)

  ms = jax.device_get(state.model_state)
  assert int(ms['queue_ptr']) == setup.queue_ptr == BATCH
  np.testing.assert_array_equal(ms['queues']['ids'], setup.queues['ids'].numpy())
  np.testing.assert_array_equal(ms['queues']['groups'], setup.queues['groups'].numpy())
  for name in ('audio', 'text'):
    np.testing.assert_allclose(
        ms['queues'][name][:BATCH],
        setup.queues[name][:BATCH].numpy(),
        atol=2e-5,
        err_msg=f'momentum {name} features',
    )
    rows = batch['track_index']
    table = getattr(setup, f'{name}_table').numpy()
    np.testing.assert_allclose(
        ms[f'{name}_table'][rows], table[rows], atol=2e-5, err_msg=f'online {name} features'
    )
    assert np.abs(ms[f'{name}_table'][rows]).sum() > 0
  assert float(jnp.asarray(metrics['temperature'])) == pytest.approx(
      float(setup.model.temperature().detach()), abs=1e-6
  )

  # Step 2 (lr 1e-4, text tower x0.1): the Adam updates, lr multipliers and EMA agree.
  def text_bias(params_or_module):
    if isinstance(params_or_module, dict):
      return np.asarray(params_or_module['text_encoder']['layer_0']['output']['bias'])
    return params_or_module.text_encoder.encoder.layer[0].output.dense.bias.detach().numpy().copy()

  text_before = text_bias(jax.device_get(state.params))
  proj_before = {
      k: np.asarray(v['kernel'])
      for k, v in jax.device_get(state.params).items()
      if k.endswith('_proj')
  }
  batch = larp_step.random_batch(
      4,
      1,
      BATCH,
      cfg.audio.clip_samples,
      int(config.data.build.max_text_length),
      cfg.text.vocab_size,
      groups,
  )
  state, metrics = ours.step(state, ours.inputs(batch))
  torch_loss = torch_ref.torch_train_step(setup, torch_ref.torch_batch(batch), 1, config.loss)
  np.testing.assert_allclose(torch_loss, float(metrics['loss/total']), atol=1e-4)
  params = jax.device_get(state.params)
  momentum = jax.device_get(state.model_state['momentum'])
  for name in ('audio_proj', 'text_proj'):
    diff = np.abs(params[name]['kernel'].T - getattr(setup.model, name).weight.detach().numpy())
    # Adam normalises each gradient, so weights whose gradient is ~eps can step differently.
    assert diff.max() < 2.5e-4 and np.mean(diff > 1e-6) < 1e-3, (name, diff.max())
    ema_diff = np.abs(
        momentum[name]['kernel'].T - getattr(setup.momentum_model, name).weight.numpy()
    )
    assert ema_diff.max() < 2e-6 and np.mean(ema_diff > 1e-7) < 1e-3, (name, ema_diff.max())
    assert np.abs(momentum[name]['kernel'] - proj_before[name]).max() > 2e-7  # EMA moved it
  text_step_ours = text_bias(params) - text_before
  text_step_torch = text_bias(setup.model) - text_before
  assert 5e-6 < np.abs(text_step_ours).max() < 2e-5  # lr 1e-4 x multiplier 0.1
  np.testing.assert_allclose(text_step_torch, text_step_ours, atol=1e-6)
