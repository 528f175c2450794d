"""Config validation with errors that name the offending key."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any


def select_variant(arg: str | None, variants: Mapping[str, Callable[[], Any]],
                   config_file: str, default: str) -> Any:
  """Builds the named variant of a config file's ``get_config(arg)``.

  Raises:
    ValueError naming the config file, the unknown variant and the known ones.
  """
  name = arg or default
  if name not in variants:
    raise ValueError(f"Unknown variant {name!r} for {config_file}: choose one of "
                     f"{sorted(variants)} (e.g. --config={config_file}:{default}).")
  config = variants[name]()
  config.variant = name
  return config


def _lookup(config: Any, dotted: str) -> Any:
  value = config
  for part in dotted.split("."):
    try:
      value = value[part]
    except (KeyError, AttributeError) as e:
      raise ValueError(f"config.{dotted} is missing (no key {part!r}).") from e
  return value


def check_paths_exist(config: Any, keys: Iterable[str]) -> None:
  """Raises ValueError naming ``config.<key>`` for each empty or missing path."""
  for key in keys:
    path = _lookup(config, key)
    if not path:
      raise ValueError(f"config.{key} is empty: set --config.{key}=PATH.")
    if not os.path.exists(os.fspath(path)):
      raise ValueError(f"config.{key}={path!r} does not exist.")


def check_positive(config: Any, keys: Iterable[str]) -> None:
  for key in keys:
    value = _lookup(config, key)
    if not isinstance(value, (int, float)) or value <= 0:
      raise ValueError(f"config.{key}={value!r} must be a positive number.")
