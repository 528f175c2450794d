"""The run layer: freezing by optimizer rules, warm start by init_from, finished runs skipped."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import toy as toy_config
from data_pipelines import toy as toy_data
from larp_jax.jobs import toy_job
from larp_jax.models import toy_transformer
from larp_jax.training import checkpoint, mesh as mesh_lib, optimizers, runs, state as state_lib
from larp_jax.training import step as step_lib


def _state(config, devices):
  mesh = mesh_lib.make_mesh(config.mesh, devices=devices)
  model = toy_transformer.ToyTransformer(toy_job.model_config(config))
  tx = optimizers.make_optimizer(config.optimizer, config.loop.num_train_steps)
  state, shardings = state_lib.create_train_state(
      toy_job.init_fn(model, config),
      tx,
      mesh,
      mesh_lib.logical_axis_rules(config.mesh),
      jax.random.PRNGKey(config.seed),
      learning_rate_fn=optimizers.make_schedule(config.optimizer, config.loop.num_train_steps),
  )
  return mesh, model, state, shardings


def _flat(tree):
  return {
      optimizers.path_name(p): np.asarray(x)
      for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]
  }


def test_frozen_subtree_is_bit_identical_and_has_no_optimizer_moments():
  config = toy_config.get_config("test")
  config.mesh.shape = (1, 1)
  config.optimizer.rules = (("^attn_0/", "frozen"), ("^embed/", 0.5))
  mesh, model, state, shardings = _state(config, jax.devices()[:1])
  before = _flat(jax.tree.map(jnp.array, state.params))
  data = iter(
      toy_data.toy_dataset(
          seed=0,
          num_examples=100,
          vocab_size=config.data.vocab_size,
          seq_len=config.data.seq_len,
          batch_size=config.batch_size,
      ).to_iter_dataset()
  )
  step = step_lib.jit_train_step(toy_job.make_train_step(model), shardings, mesh)
  for _ in range(4):
    state, metrics = step(state, step_lib.place_inputs(next(data), mesh))
  after = _flat(state.params)
  frozen = [k for k in before if k.startswith("attn_0/")]
  assert frozen and all((before[k] == after[k]).all() for k in frozen)
  trained = [k for k in before if not k.startswith("attn_0/")]
  assert all(not (before[k] == after[k]).all() for k in trained if before[k].size > 1)
  # Adam holds mu and nu for every trained array and nothing for the frozen ones.
  moments = sum(x.size for x in jax.tree.leaves(state.opt_state) if x.ndim > 0)
  assert moments == 2 * sum(after[k].size for k in trained)
  assert {"grad_norm", "param_norm", "learning_rate"} <= set(metrics)


def test_frozen_gradients_do_not_enter_clipping():
  config = toy_config.get_config("test").optimizer
  config.update(
      name="sgd", learning_rate=1.0, warmup_steps=0, grad_clip_norm=1.0, rules=(("^a$", "frozen"),)
  )
  tx = optimizers.make_optimizer(config, 10)
  params = {"a": jnp.zeros(1), "b": jnp.zeros(1)}
  updates, _ = tx.update({"a": jnp.array([100.0]), "b": jnp.array([0.5])}, tx.init(params), params)
  assert float(updates["a"][0]) == 0.0
  np.testing.assert_allclose(float(updates["b"][0]), -0.5, rtol=1e-6)  # not clipped by 'a'


def test_bad_rule_is_named():
  config = toy_config.get_config("test").optimizer
  config.rules = (("^a", "freeze"),)
  with pytest.raises(ValueError, match=r"config.optimizer.rules\[0\]"):
    optimizers.make_optimizer(config, 10)


def test_init_from_loads_exactly_the_selected_subtree(tmp_path):
  config = toy_config.get_config("test")
  config.mesh.shape = (1, 1)
  _, _, source, _ = _state(config, jax.devices()[:1])
  source_flat = _flat({"params": source.params, "model_state": source.model_state})
  np.savez(tmp_path / "source.npz", **source_flat)
  config.seed = 7  # a different fresh initialisation
  _, _, fresh, _ = _state(config, jax.devices()[:1])
  fresh_flat = _flat({"params": fresh.params})
  entry = {
      "path": str(tmp_path / "source.npz"),
      "include": ("^params/attn_0/",),
      "exclude": ("/out/",),
  }
  loaded = _flat({"params": runs.apply_init_from(fresh, (entry,), tmp_path).params})
  selected = [k for k in loaded if k.startswith("params/attn_0/") and "/out/" not in k]
  assert selected and any("/out/" in k for k in loaded if k.startswith("params/attn_0/"))
  for key, value in loaded.items():
    expected = source_flat[key] if key in selected else fresh_flat[key]
    np.testing.assert_array_equal(value, expected, err_msg=key)
    if key not in selected:
      assert not np.array_equal(value, source_flat[key]) or value.std() == 0, key


def test_init_from_into_a_prefix_and_missing_keys_are_named(tmp_path):
  config = toy_config.get_config("test")
  config.mesh.shape = (1, 1)
  _, _, state, _ = _state(config, jax.devices()[:1])
  attn = _flat(state.params["attn_0"])
  bare = {k: np.full_like(v, 0.25) for k, v in attn.items()}
  loaded = runs.apply_init_from(
      state,
      ({"path": "pretrained", "into": "params/attn_0"},),
      tmp_path,
      {"pretrained": lambda: bare},
  )
  assert all((v == 0.25).all() for v in _flat(loaded.params["attn_0"]).values())
  partial = dict(list(bare.items())[1:])
  missing = sorted(bare)[0] if sorted(bare)[0] not in partial else list(bare)[0]
  with pytest.raises(
      ValueError, match=r"lacks 1 of the \d+ selected keys, e.g. " rf"\['params/attn_0/{missing}'\]"
  ):
    runs.apply_init_from(
        state,
        ({"path": "pretrained", "into": "params/attn_0"},),
        tmp_path,
        {"pretrained": lambda: partial},
    )
  with pytest.raises(ValueError, match="does not exist"):
    runs.apply_init_from(state, ({"path": str(tmp_path / "nope")},), tmp_path)


def test_finished_run_is_skipped_without_building_anything(tmp_path):
  config = toy_config.get_config("test")
  config.loop.update(num_train_steps=4, eval_every_steps=0)
  first = toy_job.train_and_evaluate(config, str(tmp_path))
  assert first.stop_reason == "completed" and runs.is_finished(tmp_path)

  def fail(*_):
    raise AssertionError("a finished run must not build its data")

  again = toy_job.train_and_evaluate(config, str(tmp_path), data=fail)
  assert again.state is None and again.stop_reason == "completed"
  assert again.history == first.history


def test_a_run_with_a_frozen_subtree_trains_and_checkpoints(tmp_path):
  config = toy_config.get_config("test")
  config.optimizer.rules = (("^attn_0/", "frozen"),)
  config.loop.update(num_train_steps=6, eval_every_steps=0, checkpoint_every_steps=3)
  _, _, fresh, _ = _state(config, jax.devices())
  first = toy_job.train_and_evaluate(config, str(tmp_path))
  assert first.stop_reason == "completed" and first.step == 6
  saved = checkpoint.load_params(tmp_path / "checkpoints" / "6" / "state")
  before, after = _flat(fresh.params), _flat(saved["params"])
  assert all((before[k] == after[k]).all() for k in before if k.startswith("attn_0/"))
  assert not all((before[k] == after[k]).all() for k in before)


def test_extra_inputs_are_replicated_step_arguments(tmp_path):
  """A non-batch input reaches the step as a placed argument (replicated by default), the same
  array every step, and the run still checkpoints its data position."""
  config = toy_config.get_config("test")
  config.loop.update(num_train_steps=3, eval_every_steps=0)
  model = toy_transformer.ToyTransformer(toy_job.model_config(config))
  base_step = toy_job.make_train_step(model)
  seen = []

  def make_step(context):
    def step(state, inputs):
      table = inputs["extra"]["table"]
      seen.append(table.shape)  # traced: an argument, not a constant
      new_state, metrics = base_step(state, {"tokens": inputs["tokens"]})
      metrics["table_sum"] = table.sum()
      return new_state, metrics

    return step

  result = runs.train_run(
      config,
      tmp_path,
      init_fn=toy_job.init_fn(model, config),
      make_step=make_step,
      train_data=toy_job.train_data(config),
      extra_inputs=lambda context: {"table": np.arange(12, dtype=np.int32).reshape(3, 4)},
  )
  assert result.stop_reason == "completed" and result.step == 3
  assert seen == [(3, 4)]  # traced once
  assert result.train_metrics["table_sum"] == 66
