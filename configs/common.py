"""Sections every config shares, and variant selection. Configs import only this and ml_collections.

A config file defines ``get_config(arg)``; ``arg`` is what follows the colon in
``--config=configs/<job>.py:<arg>``: a variant name, optionally followed by comma-separated
overrides, e.g. ``configs/larp.py:demo,batch_size=8,loop.log_every_steps=5``. Override values are
Python literals (``8``, ``0.1``, ``'adam'``, ``(1, 2)``) or bare strings. ``load_config`` does the
same from Python (notebooks, tests).
"""

from __future__ import annotations

import ast
import importlib.util
import os
from collections.abc import Callable, Mapping
from typing import Any

import ml_collections

# Logical axis names used by larp_jax models -> mesh axes ('data', 'model'). The one copy.
AXIS_RULES = (
    ("batch", "data"),  # examples of a batch
    ("table_rows", "data"),  # rows of queues and N x D lookup tables
    ("vocab", "model"),  # embedding-table rows
    ("mlp", "model"),  # hidden width of feed-forward layers
    ("heads", "model"),  # attention heads
    ("embed", None),  # model width (replicated)
    ("kv", None),  # per-head width (replicated)
)


def mesh(shape: tuple[int, ...] = (-1, 1)) -> ml_collections.ConfigDict:
  """The device-mesh section: ``(data, model)`` sizes, -1 = all remaining devices."""
  c = ml_collections.ConfigDict()
  c.shape = shape  # (data, model); one -1 takes the remaining devices
  c.logical_axis_rules = AXIS_RULES  # logical name -> mesh axis
  return c


def optimizer(**overrides: Any) -> ml_collections.ConfigDict:
  """The optimizer section (see ``larp_jax/training/optimizers.py``)."""
  c = ml_collections.ConfigDict()
  c.name = "adam"  # 'adam' | 'adamw' | 'sgd'
  c.learning_rate = 1e-3  # peak learning rate
  c.end_learning_rate = 0.0  # cosine decay target
  c.warmup_steps = 0  # linear warm-up from 0
  c.b1 = 0.9  # Adam beta1
  c.b2 = 0.999  # Adam beta2
  c.eps = 1e-8  # Adam epsilon
  c.weight_decay = 0.0  # adamw only
  c.momentum = 0.0  # sgd only
  c.grad_clip_norm = 0.0  # global-norm clipping; 0 = off
  c.rules = ()  # ordered (regex over 'a/b/c' param paths, multiplier | 'frozen')
  c.update(overrides)
  return c


def loop(*, omit: tuple[str, ...] = (), **overrides: Any) -> ml_collections.ConfigDict:
  """The loop section (see ``larp_jax/training/loop.py``).

  ``num_train_steps`` is absent unless given: a job that derives a run's length (LARP: from
  epochs) sets it per run. ``omit`` drops keys a job derives (no placeholder it overwrites).
  """
  c = ml_collections.ConfigDict()
  c.log_every_steps = 50  # training metrics to TensorBoard/logs
  c.eval_every_steps = 0  # 0 = only at the end
  c.checkpoint_every_steps = 500  # plus one at the end and on preemption
  c.keep_checkpoints = 2  # newest checkpoints kept
  c.early_stopping_metric = ""  # validation metric selecting the best weights; '' = none
  c.early_stopping_mode = "max"  # 'max' | 'min'
  c.early_stopping_patience = 0  # evaluations without improvement before stopping; 0 = never
  c.progress = True  # tqdm bar on process 0
  c.update(overrides)
  for key in omit:
    del c[key]
  return c


def init_from(
    path: str = "", *, include: tuple[str, ...] = (), exclude: tuple[str, ...] = (), into: str = ""
) -> ml_collections.ConfigDict:
  """One warm-start entry (see ``larp_jax/training/runs.py``)."""
  c = ml_collections.ConfigDict()
  c.path = path  # 'run:<name>', a checkpoint/run/params dir, a .npz, or a job's source name
  c.include = include  # regexes over target paths; () = all under `into`
  c.exclude = exclude  # regexes kept at their fresh initialisation
  c.into = into  # target prefix for the source's root ('' = state root)
  return c


def _literal(text: str) -> Any:
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def _split_overrides(text: str) -> list[str]:
  """Splits 'a=1,b=(1, 2),c=x' on commas outside brackets and quotes."""
  parts, depth, quote, current = [], 0, "", []
  for ch in text:
    if quote:
      quote = "" if ch == quote else quote
    elif ch in "'\"":
      quote = ch
    elif ch in "([{":
      depth += 1
    elif ch in ")]}":
      depth -= 1
    elif ch == "," and depth == 0:
      parts.append("".join(current))
      current = []
      continue
    current.append(ch)
  if current:
    parts.append("".join(current))
  return [p.strip() for p in parts if p.strip()]


def apply_overrides(
    config: ml_collections.ConfigDict, overrides: Mapping[str, Any], config_file: str = "config"
) -> ml_collections.ConfigDict:
  """Sets dotted keys (``'loop.log_every_steps'``); errors name unknown keys."""
  for dotted, value in overrides.items():
    parent = config
    *parts, last = dotted.split(".")
    for part in parts:
      if part not in parent:
        raise ValueError(f"{config_file}: unknown key {dotted!r} (no {part!r}).")
      parent = parent[part]
    if last not in parent:
      raise ValueError(f"{config_file}: unknown key {dotted!r}; known here: {sorted(parent)}.")
    current = parent[last]
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
      value = float(value)
    parent[last] = value
  return config


def select_variant(
    arg: str | None, variants: Mapping[str, Callable[[], Any]], config_file: str, default: str
) -> ml_collections.ConfigDict:
  """Builds ``variant[,key=value...]`` of a config file's variants.

  Raises:
    ValueError naming the config file, an unknown variant and the known ones, or a bad override.
  """
  name, _, rest = (arg or default).partition(",")
  name = name.strip() or default
  if name not in variants:
    raise ValueError(
        f"Unknown variant {name!r} for {config_file}: choose one of "
        f"{sorted(variants)} (e.g. --config={config_file}:{default})."
    )
  config = variants[name]()
  config.variant = name
  overrides = {}
  for item in _split_overrides(rest):
    key, eq, value = item.partition("=")
    if not eq:
      raise ValueError(f"{config_file}:{arg}: override {item!r} is not key=value.")
    overrides[key.strip()] = _literal(value.strip())
  return apply_overrides(config, overrides, config_file)


def load_config(spec: str, **overrides: Any) -> ml_collections.ConfigDict:
  """A config from Python: ``load_config('larp:test', batch_size=8)`` or a file path spec.

  Args:
    spec: ``'<job>[:<variant>[,key=value...]]'`` (a file under this directory) or
      ``'path/to/file.py[:...]'``.
    overrides: dotted keys, passed as ``**{'loop.log_every_steps': 5}``.
  """
  path, _, arg = spec.partition(":")
  if not path.endswith(".py"):
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{path}.py")
  if not os.path.exists(path):
    raise ValueError(f"load_config({spec!r}): no config file {path}.")
  module_spec = importlib.util.spec_from_file_location(
      f"_larp_jax_config_{os.path.basename(path)[:-3]}", path
  )
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  config = module.get_config(arg or None)
  return apply_overrides(config, overrides, path)
