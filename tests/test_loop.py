"""Loop behaviour: NaN/inf guard, early stopping with best weights, eval history."""

import json
import os

import jax
import jax.numpy as jnp
import pytest

from configs import toy as toy_config
from data_pipelines import toy as toy_data
from larp_jax.jobs import toy_job
from larp_jax.models import toy_transformer
from larp_jax.training import mesh as mesh_lib, optimizers, state as state_lib
from larp_jax.training import checkpoint, loop


def _setup(**loop_overrides):
  config = toy_config.get_config("test")
  config.mesh.shape = (1, 1)
  config.loop.update(**loop_overrides)
  mesh = mesh_lib.make_mesh(config.mesh, devices=jax.devices()[:1])
  rules = mesh_lib.logical_axis_rules(config.mesh)
  model = toy_transformer.ToyTransformer(toy_job.model_config(config))
  tx = optimizers.make_optimizer(config.optimizer, config.loop.num_train_steps)
  dummy = jnp.zeros((1, config.data.seq_len), jnp.int32)
  state, shardings = state_lib.create_train_state(
      lambda rng: (model.init(rng, dummy)["params"], {}), tx, mesh, rules, jax.random.PRNGKey(0)
  )
  data = toy_data.toy_dataset(
      seed=0,
      num_examples=1000,
      vocab_size=config.data.vocab_size,
      seq_len=config.data.seq_len,
      batch_size=config.batch_size,
  )
  return config, mesh, model, state, shardings, iter(data.to_iter_dataset())


def test_nan_guard_names_metric_and_step_and_keeps_checkpoints(tmp_path):
  config, mesh, model, state, shardings, it = _setup(
      num_train_steps=10, log_every_steps=1, checkpoint_every_steps=2, eval_every_steps=0
  )
  good_step = toy_job.make_train_step(model)

  def poisoned_step(state, batch):
    new_state, metrics = good_step(state, batch)
    metrics["loss"] = jnp.where(state.step >= 4, jnp.nan, metrics["loss"])
    return new_state, metrics

  with pytest.raises(loop.NonFiniteMetricError, match=r"'train/loss' is nan at step 5"):
    loop.train_loop(
        config=config.loop,
        workdir=tmp_path,
        state=state,
        state_shardings=shardings,
        mesh=mesh,
        train_step=poisoned_step,
        train_iter=it,
    )
  assert (tmp_path / "non_finite_step_5").exists()
  steps = sorted(int(s) for s in os.listdir(tmp_path / "checkpoints") if s.isdigit())
  assert steps == [2, 4]  # the finite checkpoints survive; resume starts from step 4


def test_early_stopping_keeps_best_weights(tmp_path):
  config, mesh, model, state, shardings, it = _setup(
      num_train_steps=40,
      eval_every_steps=2,
      early_stopping_metric="score",
      early_stopping_mode="max",
      early_stopping_patience=2,
  )
  scores = iter([0.1, 0.5, 0.4, 0.3, 0.9, 0.9])
  seen_params = {}

  def evaluate(state):
    seen_params[int(state.step)] = jax.tree.map(lambda x: jnp.array(x), state.params)
    return {"score": next(scores)}

  result = loop.train_loop(
      config=config.loop,
      workdir=tmp_path,
      state=state,
      state_shardings=shardings,
      mesh=mesh,
      train_step=toy_job.make_train_step(model),
      train_iter=it,
      evaluate=evaluate,
  )
  assert result.stop_reason == "early_stopped"
  assert int(result.state.step) == 8  # evals at 2,4,6,8: best at 4, then two without improvement
  assert result.best == {"step": 4, "score": 0.5}
  best = checkpoint.load_params(result.best_path)
  jax.tree.map(
      lambda a, b: (a == b).all() or pytest.fail("best params differ"),
      best["params"],
      seen_params[4],
  )
  history = json.loads((tmp_path / "eval_history.json").read_text())
  assert [h["step"] for h in history] == [2, 4, 6, 8]
