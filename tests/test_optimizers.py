"""Optimizer construction: schedules and per-subtree learning-rate multipliers."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from larp_jax.training import optimizers


def test_lr_multiplier_scales_only_the_named_subtree():
  config = ml_collections.ConfigDict(
      dict(name="adam", learning_rate=1e-3, warmup_steps=0, rules=(("^text_encoder/", 0.1),))
  )
  tx = optimizers.make_optimizer(config, total_steps=100)
  params = {"text_encoder": {"w": jnp.ones(3)}, "audio_proj": {"w": jnp.ones(3)}}
  grads = jax.tree.map(lambda x: jnp.full_like(x, 0.5), params)
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(
      updates["text_encoder"]["w"], 0.1 * updates["audio_proj"]["w"], rtol=1e-6
  )
  assert float(jnp.abs(updates["audio_proj"]["w"]).min()) > 0


def test_warmup_then_cosine_to_zero():
  schedule = optimizers.warmup_cosine(1.0, warmup_steps=10, total_steps=110)
  assert float(schedule(0)) == 0.0
  np.testing.assert_allclose(float(schedule(10)), 1.0, rtol=1e-6)
  np.testing.assert_allclose(float(schedule(110)), 0.0, atol=1e-6)


def test_unknown_optimizer_is_named():
  with pytest.raises(ValueError, match="config.optimizer.name='lamb'"):
    optimizers.make_optimizer(ml_collections.ConfigDict(dict(name="lamb", learning_rate=1.0)), 10)
