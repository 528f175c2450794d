"""Config validation with errors that name the offending key."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any


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
