"""Smoke job: a tiny transformer on generated sequences, exercising the whole training core.

One run (``workdir`` itself is the run directory) through ``runs.train_run``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from data_pipelines import toy as toy_data
from larp_jax.models import toy_transformer
from larp_jax.training import mesh as mesh_lib
from larp_jax.training import runs
from larp_jax.training import step as step_lib


def model_config(config: Any) -> toy_transformer.ToyTransformerConfig:
  return toy_transformer.ToyTransformerConfig(
      vocab_size=config.data.vocab_size,
      max_len=config.data.seq_len,
      num_layers=config.model.num_layers,
      embed_dim=config.model.embed_dim,
      num_heads=config.model.num_heads,
      mlp_dim=config.model.mlp_dim,
      dtype=jnp.dtype(config.model.dtype),
  )


def loss_and_metrics(logits: jax.Array, tokens: jax.Array) -> tuple[jax.Array, dict]:
  """Next-token cross-entropy. ``logits [B,T,V] f32``, ``tokens [B,T] int32``."""
  targets = tokens[:, 1:]
  logits = logits[:, :-1]
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()
  accuracy = (logits.argmax(-1) == targets).mean()
  return loss, {"loss": loss, "accuracy": accuracy}


def make_train_step(model: toy_transformer.ToyTransformer):
  """Pure ``(state, batch) -> (state, metrics)``."""

  def train_step(state, batch):
    def loss_fn(params):
      logits = model.apply({"params": params}, batch["tokens"])
      loss, metrics = loss_and_metrics(logits, batch["tokens"])
      return loss, (metrics, None)

    new_state, metrics, _ = step_lib.gradient_step(state, loss_fn)
    return new_state, metrics

  return train_step


def make_evaluate(model, config, mesh):
  """Held-out accuracy on a fixed set of sequences from a different seed."""
  batch = toy_data.toy_dataset(
      seed=config.seed + 10_000,
      num_examples=config.batch_size,
      vocab_size=config.data.vocab_size,
      seq_len=config.data.seq_len,
      batch_size=mesh_lib.host_batch_size(config.batch_size),
      shuffle=False,
      repeat=False,
  )[0]

  @jax.jit
  def eval_step(params, tokens):
    return loss_and_metrics(model.apply({"params": params}, tokens), tokens)[1]

  def evaluate(state):
    tokens = step_lib.place_inputs(batch, mesh)["tokens"]
    return {k: float(v) for k, v in eval_step(state.params, tokens).items()}

  return evaluate


def init_fn(model: toy_transformer.ToyTransformer, config: Any):
  """``rng -> (boxed params, {})`` for ``runs.train_run``."""
  dummy = jnp.zeros((1, config.data.seq_len), jnp.int32)
  return lambda rng: (model.init(rng, dummy)["params"], {})


def train_data(config: Any):
  """``RunContext -> iterator`` of this process's batches."""

  def make(context: runs.RunContext):
    del context
    data = toy_data.toy_dataset(
        seed=config.seed,
        num_examples=config.data.num_examples,
        vocab_size=config.data.vocab_size,
        seq_len=config.data.seq_len,
        batch_size=mesh_lib.host_batch_size(config.batch_size),
    )
    return iter(data.to_iter_dataset())

  return make


def train_and_evaluate(config: Any, workdir: str, *, data=None) -> runs.TrainResult:
  """Trains the toy model in ``workdir``; ``data`` replaces ``train_data(config)`` (tests)."""
  model = toy_transformer.ToyTransformer(model_config(config))
  result = runs.train_run(
      config,
      workdir,
      init_fn=init_fn(model, config),
      make_step=lambda context: make_train_step(model),
      train_data=data or train_data(config),
      evaluate=lambda context: make_evaluate(model, config, context.mesh),
      hparams={"batch_size": config.batch_size, "learning_rate": config.optimizer.learning_rate},
      description="toy",
  )
  final = result.history[-1] if result.history else {}
  step = int(result.state.step) if result.state is not None else final.get("step", 0)
  print(
      f"toy: stopped ({result.stop_reason}) at step {step}; "
      f"eval {', '.join(f'{k}={v:.4f}' for k, v in final.items() if k != 'step')}"
  )
  return result
