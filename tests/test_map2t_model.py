"""MAP-2T towers: gates in [0, 1], the imputed podcast centroid, one step on 8 devices == 1 device."""

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from configs import common
from larp_jax.jobs import map2t_inputs
from larp_jax.jobs import map2t_job
from larp_jax.models import map2t
from larp_jax.training import mesh as mesh_lib
from larp_jax.training import runs
from larp_jax.training import step as step_lib

DM, DP, D, N = 6, 5, 8, 12


def _model(modalities=("music", "podcast"), fusion="gated"):
  return map2t.MAP2T(map2t.MAP2TConfig(dim=D, hidden=16, modalities=modalities, fusion=fusion))


def _inputs(rng, b=4):
  return {
      "music": rng.normal(size=(b, DM)).astype(np.float32),
      "podcast": rng.normal(size=(b, DP)).astype(np.float32) * 5,
      "audiobook": rng.normal(size=(b, D)).astype(np.float32),
  }


def test_gates_lie_in_unit_interval_and_shapes():
  rng = np.random.default_rng(0)
  users, items = _inputs(rng), rng.normal(size=(N, D)).astype(np.float32)
  for modalities in (("music", "podcast"), ("music", "podcast", "audiobook")):
    model = _model(modalities)
    params = model.init(jax.random.PRNGKey(0), users, items)
    u, v, aux = model.apply(params, users, items)
    assert u.shape == (4, D) and v.shape == (N, D)
    for gate in (aux["podcast_gate"], aux["fusion_gate"]):
      g = np.asarray(gate)
      assert g.min() >= 0.0 and g.max() <= 1.0
    if len(modalities) == 3:  # the per-dimension softmax gate sums to one over the inputs
      np.testing.assert_allclose(np.asarray(aux["fusion_gate"]).sum(1), 1.0, rtol=1e-5)
  # Two-input fusion is a convex per-dimension mix: u_m where alpha = 1, u_p where alpha = 0.
  model = _model()
  params = model.init(jax.random.PRNGKey(1), users, items)
  u, _, aux = model.apply(params, users, items)
  um = model.apply(params, users["music"], method=lambda m, x: m.towers["music"](x))
  up, _ = model.apply(params, users["podcast"], method=lambda m, x: m.towers["podcast"](x))
  alpha = aux["fusion_gate"]
  np.testing.assert_allclose(u, alpha * um + (1 - alpha) * up, rtol=1e-5, atol=1e-6)


def test_item_tower_has_the_text_residual():
  rng = np.random.default_rng(1)
  model = _model(("music",), "concat")
  users, items = _inputs(rng), rng.normal(size=(N, D)).astype(np.float32)
  params = model.init(jax.random.PRNGKey(0), users, items)
  # Zero every item-tower kernel: v = LN(x) exactly (the residual keeps the text geometry).
  zeroed = jax.tree_util.tree_map_with_path(
      lambda p, x: jnp.zeros_like(x)
      if "item" in jax.tree_util.keystr(p) and "kernel" in jax.tree_util.keystr(p)
      else x,
      params,
  )
  v = np.asarray(model.apply(zeroed, items, method=model.encode_items))
  ln = (items - items.mean(1, keepdims=True)) / np.sqrt(items.var(1, keepdims=True) + 1e-6)
  np.testing.assert_allclose(v, ln, rtol=1e-4, atol=1e-4)


def test_user_without_podcasts_gets_the_imputed_centroid():
  rng = np.random.default_rng(2)
  vectors = rng.normal(size=(6, DP)).astype(np.float32)
  plays = np.asarray([[3, 0, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0], [5, 4, 0, 0, 2, 0]], np.float32)
  counts = sp.csr_matrix(plays)
  for top in (1, 2):
    totals = plays.sum(0)
    expected_centroid = vectors[np.argsort(-totals, kind="stable")[:top]].mean(0)
    centroid = map2t_inputs.popular_centroid(counts, vectors, top)
    np.testing.assert_allclose(centroid, expected_centroid, rtol=1e-6)
    x, observed = map2t_inputs.mean_of_top(counts, vectors, 2, centroid)
    np.testing.assert_array_equal(observed, [True, False, True])
    np.testing.assert_allclose(x[1], expected_centroid, rtol=1e-6)
    np.testing.assert_allclose(x[0], vectors[[0, 2]].mean(0), rtol=1e-6)
    np.testing.assert_allclose(x[2], vectors[[0, 1]].mean(0), rtol=1e-6)


def _step_on(devices, shard_catalogue):
  config = common.load_config("map2t:test")
  config.model.shard_catalogue = shard_catalogue
  config.loss.entropy_weight = 0.1
  model = _model()
  rng = np.random.default_rng(3)
  users = _inputs(rng, b=8)
  items = rng.normal(size=(N, D)).astype(np.float32)
  batch = {
      "music": users["music"],
      "podcast": users["podcast"],
      "positive": rng.integers(0, N, 8).astype(np.int32),
      "extra": map2t_job.padded_catalogue(items, rng.integers(1, 9, N).astype(np.float32), 8),
  }
  mesh = mesh_lib.make_mesh(config.mesh, devices=devices)
  init = lambda key: (model.init(key, users, items)["params"], {})  # noqa: E731
  state, shardings = runs.create_state(config, mesh, init, 10)
  step = step_lib.jit_train_step(
      map2t_job.make_train_step(model, config), shardings, mesh, map2t_job.input_specs(config)
  )
  placed = step_lib.place_inputs(batch, mesh, map2t_job.input_specs(config))
  state, metrics = step(state, placed)
  state, metrics = step(state, placed)
  return jax.device_get(state.params), jax.device_get(metrics)


def test_step_on_eight_devices_equals_one_device():
  assert len(jax.devices()) == 8
  one = _step_on(jax.devices()[:1], False)
  eight = _step_on(jax.devices(), True)  # batch on 8 devices, catalogue rows sharded too
  for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(eight)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=2e-6)


def test_in_batch_switch_steps_with_finite_loss():
  config = common.load_config("map2t:test")
  config.loss.candidates = "in_batch"
  model = _model()
  rng = np.random.default_rng(4)
  users = _inputs(rng, b=8)
  items = rng.normal(size=(N, D)).astype(np.float32)
  batch = {
      "music": users["music"],
      "podcast": users["podcast"],
      "positive": np.asarray([0, 3, 3, 5, 7, 0, 9, 11], np.int32),
      "extra": map2t_job.padded_catalogue(items, rng.integers(1, 9, N).astype(np.float32), 8),
  }
  step = map2t_job.make_train_step(model, config)
  mesh = mesh_lib.make_mesh(config.mesh, devices=jax.devices()[:1])
  init = lambda key: (model.init(key, users, items)["params"], {})  # noqa: E731
  train_state, shardings = runs.create_state(config, mesh, init, 10)
  jitted = step_lib.jit_train_step(step, shardings, mesh, map2t_job.input_specs(config))
  _, metrics = jitted(
      train_state, step_lib.place_inputs(batch, mesh, map2t_job.input_specs(config))
  )
  metrics = jax.device_get(metrics)
  assert np.isfinite(metrics["loss"]) and np.isfinite(metrics["grad_norm"])
