"""Smoke job: a tiny transformer on generated sequences, exercising the whole training core."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from data_pipelines import toy as toy_data
from larp_jax.models import toy_transformer
from larp_jax.training import loop, mesh as mesh_lib, optimizers, state as state_lib


def model_config(config: Any) -> toy_transformer.ToyTransformerConfig:
  return toy_transformer.ToyTransformerConfig(
      vocab_size=config.data.vocab_size, max_len=config.data.seq_len,
      num_layers=config.model.num_layers, embed_dim=config.model.embed_dim,
      num_heads=config.model.num_heads, mlp_dim=config.model.mlp_dim,
      dtype=jnp.dtype(config.model.dtype))


def loss_and_metrics(logits: jax.Array, tokens: jax.Array) -> tuple[jax.Array, dict]:
  """Next-token cross-entropy. ``logits [B,T,V] f32``, ``tokens [B,T] int32``."""
  targets = tokens[:, 1:]
  logits = logits[:, :-1]
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()
  accuracy = (logits.argmax(-1) == targets).mean()
  return loss, {"loss": loss, "accuracy": accuracy}


def make_train_step(model: toy_transformer.ToyTransformer):
  """Pure ``(state, batch) -> (state, metrics)``."""

  def train_step(state: state_lib.TrainState, batch):
    def loss_fn(params):
      logits = model.apply({"params": params}, batch["tokens"])
      return loss_and_metrics(logits, batch["tokens"])

    (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    metrics["grad_norm"] = optax.tree.norm(grads)
    metrics["param_norm"] = optax.tree.norm(state.params)
    return state.apply_gradients(grads), metrics

  return train_step


def make_evaluate(model, config, mesh):
  """Held-out accuracy on a fixed set of sequences from a different seed."""
  batch = toy_data.toy_dataset(seed=config.seed + 10_000, num_examples=config.batch_size,
                               vocab_size=config.data.vocab_size, seq_len=config.data.seq_len,
                               batch_size=mesh_lib.host_batch_size(config.batch_size),
                               shuffle=False, repeat=False)[0]

  @jax.jit
  def eval_step(params, tokens):
    return loss_and_metrics(model.apply({"params": params}, tokens), tokens)[1]

  def evaluate(state):
    tokens = mesh_lib.make_global_batch(batch, mesh)["tokens"]
    return {k: float(v) for k, v in eval_step(state.params, tokens).items()}

  return evaluate


def setup(config: Any):
  """Mesh, model, sharded state, step and data iterator for the toy job."""
  mesh = mesh_lib.make_mesh(config.mesh)
  mesh_lib.check_batch_size(config.batch_size, mesh)
  rules = mesh_lib.logical_axis_rules(config.mesh)
  model = toy_transformer.ToyTransformer(model_config(config))
  tx = optimizers.make_optimizer(config.optimizer, config.loop.num_train_steps)
  dummy = jnp.zeros((1, config.data.seq_len), jnp.int32)

  def init_fn(rng):
    return model.init(rng, dummy)["params"], {}

  state, shardings = state_lib.create_train_state(init_fn, tx, mesh, rules,
                                                  jax.random.PRNGKey(config.seed))
  data = toy_data.toy_dataset(seed=config.seed, num_examples=config.data.num_examples,
                              vocab_size=config.data.vocab_size, seq_len=config.data.seq_len,
                              batch_size=mesh_lib.host_batch_size(config.batch_size))
  return mesh, model, state, shardings, iter(data.to_iter_dataset())


def train_and_evaluate(config: Any, workdir: str) -> loop.TrainResult:
  mesh, model, state, shardings, train_iter = setup(config)
  logging.info("toy model: %d parameters, mesh %s", state_lib.count_params(state.params),
               dict(mesh.shape))
  result = loop.train_loop(config=config.loop, workdir=workdir, state=state,
                           state_shardings=shardings, mesh=mesh,
                           train_step=make_train_step(model), train_iter=train_iter,
                           evaluate=make_evaluate(model, config, mesh),
                           hparams={"batch_size": config.batch_size,
                                    "learning_rate": config.optimizer.learning_rate},
                           description="toy")
  final = result.history[-1] if result.history else {}
  print(f"toy: stopped ({result.stop_reason}) at step {int(result.state.step)}; "
        f"eval {', '.join(f'{k}={v:.4f}' for k, v in final.items() if k != 'step')}")
  return result
