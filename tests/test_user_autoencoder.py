"""Paper 001's autoencoder: Eq. 2 against NumPy, alpha-dropout's moments, 8 devices = 1 device,
bitwise resume through the job layer, and z untouched by the transfer heads."""

from __future__ import annotations

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import common
from data_pipelines import user_features as uf
from data_pipelines import user_protocol
from larp_jax.evaluation import transfer_heads
from larp_jax.jobs import user_rep_job
from larp_jax.losses import reconstruction
from larp_jax.models import user_autoencoder
from larp_jax.training import mesh as mesh_lib
from larp_jax.training import runs
from larp_jax.training import step as step_lib


def test_reconstruction_loss_matches_numpy_formula():
  rng = np.random.default_rng(0)
  widths = [3, 5, 2]
  x, x_hat = rng.normal(size=(7, 10)), rng.normal(size=(7, 10))
  for weighting in ("equal", "per_column"):
    w = reconstruction.column_weights(widths, weighting)
    blocks = np.split(np.arange(10), np.cumsum(widths)[:-1])
    per_user_sq = np.zeros(7)
    for cols in blocks:
      scale = 1.0 / len(cols) if weighting == "equal" else 1.0
      per_user_sq += scale * ((x[:, cols] - x_hat[:, cols]) ** 2).sum(1)
    for squared, want in ((False, np.sqrt(per_user_sq).mean()), (True, per_user_sq.mean())):
      got, _ = reconstruction.reconstruction_loss(
          jnp.asarray(x, jnp.float32),
          jnp.asarray(x_hat, jnp.float32),
          jnp.asarray(w),
          squared=squared,
      )
      np.testing.assert_allclose(float(got), want, rtol=1e-5)
  with pytest.raises(ValueError, match="block_weighting"):
    reconstruction.column_weights(widths, "blocks")


def test_alpha_dropout_keeps_selu_moments():
  # Klambauer et al.: alpha-dropout keeps zero mean / unit variance of SELU activations.
  x = jax.nn.selu(jax.random.normal(jax.random.PRNGKey(0), (400_000,)))
  y = user_autoencoder.alpha_dropout(x, 0.1, jax.random.PRNGKey(1))
  assert abs(float(x.mean()) - float(y.mean())) < 0.01
  assert abs(float(x.std()) - float(y.std())) < 0.01
  assert float(jnp.mean(y == y.min())) == pytest.approx(0.1, abs=0.005)


def _prepared(num_users=96, seed=0):
  spec = uf.FeatureSpec(2, 2, 2, 2, audio_dim=4, collab_dim=3, horizons=(7, 30))
  rng = np.random.default_rng(seed)
  features = rng.normal(size=(num_users, spec.dim)).astype(np.float32)
  split = np.array([0] * 64 + [1] * 16 + [2] * 16, np.int8)[:num_users]
  protocol = user_protocol.Protocol(
      cut_time=0,
      cohort=np.zeros(num_users, np.int8),
      split=split,
      snapshot_time=np.zeros(num_users, np.int64),
      onboarded=np.zeros(num_users, bool),
  )
  return user_rep_job.Prepared(None, protocol, None, spec, features, {})


def _config(**loop):
  config = common.load_config("configs/user_rep.py:test")
  config.loop.update(loop)
  return config


def _steps(config, prepared, devices, num_steps=6):
  inputs = user_rep_job.autoencoder_inputs(config, prepared, ())
  x = inputs.standardise(prepared.features)[inputs.train_rows]
  model = user_rep_job._model(config, x.shape[1])  # pylint: disable=protected-access
  mesh = mesh_lib.make_mesh(config.mesh, devices=devices)
  init = lambda rng: (model.init(rng, jnp.zeros((1, x.shape[1])))["params"], {})
  state, shardings = runs.create_state(config, mesh, init, num_steps)
  step = step_lib.jit_train_step(
      user_rep_job.make_train_step(model, inputs.weights, False), shardings, mesh
  )
  losses = []
  for i in range(num_steps):
    batch = {"x": x[(i * 32) % 64 : (i * 32) % 64 + 32]}
    state, metrics = step(state, step_lib.place_inputs(batch, mesh))
    losses.append(float(metrics["loss"]))
  return state, losses


def test_autoencoder_on_8_devices_equals_1():
  assert jax.device_count() == 8
  prepared = _prepared()
  config = _config()
  config.optimizer.update(name="sgd", learning_rate=0.05, warmup_steps=0, momentum=0.9)
  s1, l1 = _steps(config, prepared, jax.devices()[:1])
  config.mesh.shape = (4, 2)
  s8, l8 = _steps(config, prepared, jax.devices())
  np.testing.assert_allclose(l8, l1, atol=1e-5, rtol=0)
  jax.tree.map(
      lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, rtol=0),
      s8.params,
      s1.params,
  )
  assert l1[-1] < l1[0]


def test_resume_is_bitwise_and_finished_run_is_a_noop(tmp_path):
  prepared = _prepared()
  config = _config(num_train_steps=40, eval_every_steps=10, checkpoint_every_steps=10)
  full, _, model = user_rep_job.train_autoencoder(config, str(tmp_path / "a"), prepared, "ae")
  # The same run interrupted after step 30: drop its last checkpoint and the result files, rerun.
  user_rep_job.train_autoencoder(config, str(tmp_path / "b"), prepared, "ae")
  shutil.rmtree(tmp_path / "b" / "ae" / "checkpoints" / "40")
  (tmp_path / "b" / "ae" / "eval_history.json").unlink()
  resumed, _, _ = user_rep_job.train_autoencoder(config, str(tmp_path / "b"), prepared, "ae")
  history = lambda d: json.loads((tmp_path / d / "ae" / "eval_history.json").read_text())
  assert history("a") == history("b") and history("a")[-1]["step"] == 40
  jax.tree.map(
      lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), full, resumed
  )
  # A finished run trains nothing: its checkpoints are left as they are.
  before = sorted(p.name for p in (tmp_path / "a" / "ae" / "checkpoints").iterdir())
  again, _, _ = user_rep_job.train_autoencoder(config, str(tmp_path / "a"), prepared, "ae")
  assert sorted(p.name for p in (tmp_path / "a" / "ae" / "checkpoints").iterdir()) == before
  jax.tree.map(
      lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), full, again
  )


def test_z_is_unchanged_by_training_heads(tmp_path):
  prepared = _prepared()
  config = _config(num_train_steps=20, eval_every_steps=10, checkpoint_every_steps=10)
  params, inputs, model = user_rep_job.train_autoencoder(config, str(tmp_path), prepared, "ae")
  encode = user_rep_job.encoder_fn(model, params)
  z = encode(inputs.standardise(prepared.features))
  z_copy = z.copy()
  rng = np.random.default_rng(0)
  pairs = transfer_heads.PairSet(
      rng.integers(0, len(z), 200).astype(np.int32),
      rng.integers(0, 10, 200).astype(np.int32),
      rng.integers(0, 2, 200).astype(np.float32),
  )
  transfer_heads.fit_pair_heads(
      {"user_rep": z}, rng.normal(size=(10, 4)).astype(np.float32), pairs, steps=20
  )
  np.testing.assert_array_equal(z, z_copy)
  np.testing.assert_array_equal(encode(inputs.standardise(prepared.features)), z_copy)
