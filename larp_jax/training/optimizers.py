"""Optimizers from config: a schedule, a base rule, and per-subtree multipliers or freezing.

``config.optimizer.rules`` is an ordered tuple of ``(regex, multiplier | 'frozen')`` pairs matched
against each parameter's path, its keys joined by ``'/'`` (``'text_encoder/layer_0/query/kernel'``).
The first rule whose regex matches (``re.search``) decides; parameters no rule matches train at
the base learning rate. Groups are built with ``optax.multi_transform``, so a frozen subtree gets
a zero update and holds no optimizer moments (its state is ``optax.MaskedNode``), and a subtree
with multiplier ``m`` gets ``m`` times the base update (Adam's update is proportional to its
learning rate, so this is an ``m`` times smaller learning rate). Frozen gradients are zeroed
before global-norm clipping, so they do not shrink the others' updates.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import jax
import optax

FROZEN = "frozen"


def warmup_cosine(
    learning_rate: float, warmup_steps: int, total_steps: int, end_value: float = 0.0
) -> optax.Schedule:
  """Linear warm-up from 0 to ``learning_rate``, then cosine decay to ``end_value``."""
  warmup_steps = max(0, min(int(warmup_steps), int(total_steps) - 1))
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0,
      peak_value=learning_rate,
      warmup_steps=warmup_steps,
      decay_steps=max(int(total_steps), warmup_steps + 1),
      end_value=end_value,
  )


def make_schedule(config: Any, total_steps: int) -> optax.Schedule:
  """The learning-rate schedule of ``config`` (warm-up + cosine) over ``total_steps``."""
  return warmup_cosine(
      config.learning_rate,
      config.get("warmup_steps", 0),
      total_steps,
      config.get("end_learning_rate", 0.0),
  )


def _base_transform(config: Any, schedule: optax.Schedule) -> optax.GradientTransformation:
  name = config.get("name", "adam")
  kwargs = dict(b1=config.get("b1", 0.9), b2=config.get("b2", 0.999), eps=config.get("eps", 1e-8))
  if name == "adam":
    return optax.adam(schedule, **kwargs)
  if name == "sgd":
    return optax.sgd(schedule, momentum=config.get("momentum", 0.0) or None)
  if name == "adamw":
    return optax.adamw(schedule, weight_decay=config.get("weight_decay", 0.0), **kwargs)
  raise ValueError(f"config.optimizer.name={name!r}: expected 'adam', 'adamw' or 'sgd'.")


def parse_rules(rules: Sequence[Any] | None) -> tuple[tuple[str, float | str], ...]:
  """Validates ``(regex, multiplier | 'frozen')`` pairs; errors name ``config.optimizer.rules``."""
  out = []
  for i, rule in enumerate(rules or ()):
    if len(rule) != 2:
      raise ValueError(
          f"config.optimizer.rules[{i}]={rule!r}: expected (regex, multiplier) "
          f"or (regex, {FROZEN!r})."
      )
    pattern, action = rule
    try:
      re.compile(pattern)
    except re.error as e:
      raise ValueError(f"config.optimizer.rules[{i}]: bad regex {pattern!r}: {e}") from e
    if action != FROZEN:
      if isinstance(action, str) or not float(action) > 0:
        raise ValueError(
            f"config.optimizer.rules[{i}]={rule!r}: the action must be a positive "
            f"multiplier or {FROZEN!r}."
        )
      action = float(action)
    out.append((str(pattern), action))
  return tuple(out)


def path_name(path: Sequence[Any]) -> str:
  """'/'-joined key names of a ``jax.tree_util`` key path."""
  parts = []
  for key in path:
    for attr in ("key", "name", "idx"):
      if hasattr(key, attr):
        parts.append(str(getattr(key, attr)))
        break
    else:
      parts.append(str(key))
  return "/".join(parts)


def _label(name: str, rules: Sequence[tuple[str, float | str]]) -> str:
  for i, (pattern, _) in enumerate(rules):
    if re.search(pattern, name):
      return f"rule_{i}"
  return "default"


def param_labels(params: Any, rules: Sequence[tuple[str, float | str]]) -> Any:
  """A tree like ``params`` of group labels: ``'rule_<i>'`` (first matching rule) or 'default'."""
  return jax.tree_util.tree_map_with_path(lambda p, _: _label(path_name(p), rules), params)


def frozen_mask(params: Any, rules: Sequence[Any] | None) -> Any:
  """bool tree like ``params``: True where the first matching rule is 'frozen'."""
  rules = parse_rules(rules)
  labels = param_labels(params, rules)
  frozen = {f"rule_{i}" for i, (_, action) in enumerate(rules) if action == FROZEN}
  return jax.tree.map(lambda label: label in frozen, labels)


def make_optimizer(config: Any, total_steps: int) -> optax.GradientTransformation:
  """The optimizer of ``config.optimizer`` over ``total_steps`` updates.

  Config keys: ``name`` ('adam'|'adamw'|'sgd'), ``learning_rate``, ``end_learning_rate``,
  ``warmup_steps``, ``b1``, ``b2``, ``eps``, ``weight_decay`` (adamw), ``momentum`` (sgd),
  ``grad_clip_norm`` (0: off), ``rules`` (ordered ``(regex, multiplier | 'frozen')`` pairs).
  """
  schedule = make_schedule(config, total_steps)
  base = _base_transform(config, schedule)
  rules = parse_rules(config.get("rules", None))
  clip = config.get("grad_clip_norm", 0.0)
  if not rules:
    return optax.chain(optax.clip_by_global_norm(clip), base) if clip else base
  transforms = {"default": base}
  zero_frozen = {"default": optax.identity()}
  for i, (_, action) in enumerate(rules):
    label = f"rule_{i}"
    if action == FROZEN:
      transforms[label] = optax.set_to_zero()
      zero_frozen[label] = optax.set_to_zero()
    else:
      transforms[label] = base if action == 1.0 else optax.chain(base, optax.scale(action))
      zero_frozen[label] = optax.identity()
  labels = lambda params: param_labels(params, rules)  # noqa: E731
  grouped = optax.multi_transform(transforms, labels)
  if not clip:
    return grouped
  return optax.chain(
      optax.multi_transform(zero_frozen, labels), optax.clip_by_global_norm(clip), grouped
  )
