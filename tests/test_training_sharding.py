"""The sharded train step: 8 fake devices on a (4, 2) mesh equal 1 device, with the
requested parameter shardings and no retracing."""

import chex
import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from configs import toy as toy_config
from data_pipelines import toy as toy_data
from larp_jax.jobs import toy_job
from larp_jax.models import toy_transformer
from larp_jax.training import mesh as mesh_lib, optimizers, state as state_lib
from larp_jax.training import step as step_lib

NUM_STEPS = 6


def _run(mesh_shape, devices, optimizer):
  config = toy_config.get_config("test")
  config.optimizer.name = optimizer
  if optimizer == "sgd":
    config.optimizer.update(learning_rate=0.05, warmup_steps=0, momentum=0.9)
  config.mesh.shape = mesh_shape
  mesh = mesh_lib.make_mesh(config.mesh, devices=devices)
  rules = mesh_lib.logical_axis_rules(config.mesh)
  model = toy_transformer.ToyTransformer(toy_job.model_config(config))
  tx = optimizers.make_optimizer(config.optimizer, config.loop.num_train_steps)
  dummy = np.zeros((1, config.data.seq_len), np.int32)
  state, shardings = state_lib.create_train_state(
      lambda rng: (model.init(rng, dummy)["params"], {}),
      tx,
      mesh,
      rules,
      jax.random.PRNGKey(config.seed),
  )
  data = iter(
      toy_data.toy_dataset(
          seed=0,
          num_examples=1000,
          vocab_size=config.data.vocab_size,
          seq_len=config.data.seq_len,
          batch_size=config.batch_size,
      ).to_iter_dataset()
  )
  traced = chex.assert_max_traces(toy_job.make_train_step(model), n=1)
  step = step_lib.jit_train_step(traced, shardings, mesh)
  losses = []
  for _ in range(NUM_STEPS):
    state, metrics = step(state, step_lib.place_inputs(next(data), mesh))
    losses.append(float(metrics["loss"]))
    assert float(metrics["grad_norm"]) > 1e-3  # non-trivial updates are being compared
  chex.clear_trace_counter()
  return state, losses


@pytest.fixture(scope="module")
def runs():
  assert jax.device_count() == 8, "conftest must set 8 fake CPU devices"
  # SGD (with momentum) keeps parameter updates proportional to gradients. Adam divides by
  # sqrt(v): for parameters whose gradients are ~1e-9 it turns summation-order noise into
  # O(lr) updates, so its params are compared separately with a looser bound.
  single = _run((1, 1), jax.devices()[:1], "sgd")
  sharded = _run((4, 2), jax.devices(), "sgd")
  return single, sharded


def test_sharded_adam_losses_match():
  _, l1 = _run((1, 1), jax.devices()[:1], "adamw")
  _, l8 = _run((4, 2), jax.devices(), "adamw")
  np.testing.assert_allclose(l8, l1, atol=1e-5, rtol=0)


def test_sharded_equals_single_device(runs):
  (s1, l1), (s8, l8) = runs
  np.testing.assert_allclose(l8, l1, atol=1e-5, rtol=0)
  jax.tree.map(
      lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, rtol=0),
      s8.params,
      s1.params,
  )


def test_large_kernels_shard_on_model_axis(runs):
  _, (s8, _) = runs
  params = s8.params
  assert params["attn_0"]["qkv"]["kernel"].sharding.spec == P(None, "model")
  assert params["attn_0"]["out"]["kernel"].sharding.spec == P("model", None)
  assert params["mlp_in_0"]["kernel"].sharding.spec == P(None, "model")
  assert params["embed"]["embedding"].sharding.spec == P("model", None)
  # Optimizer moments mirror the params; scalars replicated.
  momentum = [
      x for x in jax.tree.leaves(s8.opt_state) if x.shape == params["attn_0"]["qkv"]["kernel"].shape
  ]
  assert momentum and all(x.sharding.spec == P(None, "model") for x in momentum)
  assert s8.step.sharding.spec == P()
  shard_shape = params["attn_0"]["qkv"]["kernel"].addressable_shards[0].data.shape
  full_shape = params["attn_0"]["qkv"]["kernel"].shape
  assert shard_shape == (full_shape[0], full_shape[1] // 2)
