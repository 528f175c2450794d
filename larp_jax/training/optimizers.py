"""Optimizers and learning-rate schedules built from config."""

from __future__ import annotations

from typing import Any

import jax
import optax


def warmup_cosine(learning_rate: float, warmup_steps: int, total_steps: int,
                  end_value: float = 0.0) -> optax.Schedule:
  """Linear warm-up from 0 to ``learning_rate``, then cosine decay to ``end_value``."""
  warmup_steps = max(0, min(int(warmup_steps), int(total_steps) - 1))
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=learning_rate, warmup_steps=warmup_steps,
      decay_steps=max(int(total_steps), warmup_steps + 1), end_value=end_value)


def make_optimizer(config: Any, total_steps: int) -> optax.GradientTransformation:
  """Adam(W) with warm-up + cosine, optional global-norm clipping.

  Config keys: ``name`` ('adam'|'adamw'|'sgd'), ``learning_rate``, ``warmup_steps``,
  ``lr_multipliers`` ({top-level param name: factor}),
  ``weight_decay`` (adamw), ``grad_clip_norm`` (0: off), ``b1``, ``b2``, ``eps``.
  """
  schedule = warmup_cosine(config.learning_rate, config.get("warmup_steps", 0), total_steps,
                           config.get("end_learning_rate", 0.0))
  name = config.get("name", "adam")
  kwargs = dict(b1=config.get("b1", 0.9), b2=config.get("b2", 0.999), eps=config.get("eps", 1e-8))
  if name == "adam":
    tx = optax.adam(schedule, **kwargs)
  elif name == "sgd":
    tx = optax.sgd(schedule, momentum=config.get("momentum", 0.0) or None)
  elif name == "adamw":
    tx = optax.adamw(schedule, weight_decay=config.get("weight_decay", 0.0), **kwargs)
  else:
    raise ValueError(f"config.optimizer.name={name!r}: expected 'adam', 'adamw' or 'sgd'.")
  multipliers = dict(config.get("lr_multipliers", None) or {})
  if multipliers:
    tx = _with_lr_multipliers(tx, multipliers)
  clip = config.get("grad_clip_norm", 0.0)
  return optax.chain(optax.clip_by_global_norm(clip), tx) if clip else tx


def _with_lr_multipliers(tx: optax.GradientTransformation,
                         multipliers: dict[str, float]) -> optax.GradientTransformation:
  """Scales the updates of top-level param subtrees, e.g. {'text_encoder': 0.1} for a
  pretrained tower (the update of Adam is proportional to the learning rate)."""

  def labels(params):
    return {k: jax.tree.map(lambda _, k=k: k if k in multipliers else "default", v)
            for k, v in params.items()}

  transforms = {"default": optax.identity(),
                **{k: optax.scale(float(m)) for k, m in multipliers.items()}}
  return optax.chain(tx, optax.multi_transform(transforms, labels))
