"""Checks and standardisation of the inputs of heads on frozen user vectors (shared by
``transfer_heads`` and ``transfer_retrieval``): every model's vectors over the same users, finite
rows, integer ids in range, per-model standardisation over the training users with zero padding to
the widest model (see ``transfer_heads``' module docstring for why padding changes nothing)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def check_user_vectors(user_vectors: Mapping[str, Any]) -> tuple[tuple[str, ...], list[np.ndarray]]:
  """Names and float32 [U, D_name] arrays; every model must have the same U rows."""
  if not isinstance(user_vectors, Mapping) or not user_vectors:
    raise ValueError('user_vectors must be a non-empty mapping name -> float [U, D] array.')
  names = tuple(user_vectors)
  arrays = [np.asarray(user_vectors[n], np.float32) for n in names]
  rows = arrays[0].shape[0] if arrays[0].ndim == 2 else None
  for name, arr in zip(names, arrays):
    if arr.ndim != 2 or arr.shape[1] == 0:
      raise ValueError(f"user_vectors['{name}'] must be [U, D] with D > 0, got {arr.shape}.")
    if arr.shape[0] != rows:
      raise ValueError(
          f"user_vectors['{name}'] has {arr.shape[0]} rows, user_vectors['{names[0]}'] {rows}:"
          ' every model needs the same U users.'
      )
  return names, arrays


def check_finite_rows(name: str, array: np.ndarray, rows: np.ndarray) -> None:
  """Raise if any of ``array[rows]`` is NaN or inf (only the rows a task uses are checked)."""
  bad = ~np.isfinite(array[rows]).all(axis=1)
  if bad.any():
    raise ValueError(
        f'{name} has {int(bad.sum())} non-finite (NaN/inf) rows among the users/items used,'
        f' e.g. row {int(rows[np.argmax(bad)])}.'
    )


def check_item_features(item_features: Any) -> np.ndarray:
  """float32 [I, F], finite."""
  items = np.asarray(item_features, np.float32)
  if items.ndim != 2 or items.size == 0 or not np.isfinite(items).all():
    raise ValueError(f'item_features must be a non-empty finite [I, F] array, got {items.shape}.')
  return items


def check_ids(name: str, ids: Any, size: int, shape: tuple[int, ...] | None = None) -> np.ndarray:
  """int64 ids in [0, size); ``shape`` if given must match."""
  ids = np.asarray(ids)
  if ids.size and not np.issubdtype(ids.dtype, np.integer):
    raise ValueError(f'{name} must hold integer ids, got dtype {ids.dtype}.')
  ids = ids.astype(np.int64)
  if shape is not None and ids.shape != shape:
    raise ValueError(f'{name} must have shape {shape}, got {ids.shape}.')
  if ids.size and (ids.min() < 0 or ids.max() >= size):
    raise ValueError(f'{name} must lie in [0, {size}), got range [{ids.min()}, {ids.max()}].')
  return ids


def _check_pairs(name: str, pairs: Any, num_users: int, num_items: int, labelled: bool):
  user = np.asarray(pairs[0]).reshape(-1)
  if user.size == 0:
    raise ValueError(f'{name} is empty: need at least one (user, item) pair.')
  user = check_ids(f'{name}.user', user, num_users)
  item = check_ids(f'{name}.item', np.asarray(pairs[1]).reshape(-1), num_items, user.shape)
  if not labelled:
    return user, item, None
  label = np.asarray(pairs[2], np.float32).reshape(-1)
  if label.shape != user.shape or not np.isin(label, (0.0, 1.0)).all():
    raise ValueError(f'{name}.label must be 0/1 of shape {user.shape}, got shape {label.shape}.')
  return user, item, label


def standardiser(arrays: Sequence[np.ndarray], rows: np.ndarray):
  """Per-model mean / std over ``rows`` (unique users), padded to D_max.

  Returns:
    (mean float32 [Mdl, D_max], std float32 [Mdl, D_max], informative bool [Mdl, D_max]): padded
    columns get mean 0, std 1 (so they stay exactly 0); columns constant over ``rows`` get std 1
    and ``informative = False`` (their first-layer weights are 0, see `init_mlp`).
  """
  d_max = max(a.shape[1] for a in arrays)
  mean = np.zeros((len(arrays), d_max), np.float32)
  std = np.ones((len(arrays), d_max), np.float32)
  informative = np.zeros((len(arrays), d_max), bool)
  for m, arr in enumerate(arrays):
    sub = arr[rows].astype(np.float64)
    mu, sd = sub.mean(axis=0), sub.std(axis=0)
    d = arr.shape[1]
    informative[m, :d] = sd > 1e-12 * np.maximum(1.0, np.abs(mu))
    mean[m, :d] = mu
    std[m, :d] = np.where(informative[m, :d], sd, 1.0)
  return mean, std, informative


def stacked_vectors(arrays: Sequence[np.ndarray], rows, mean, std, informative) -> np.ndarray:
  """Standardised, zero-padded ``arrays[m][rows]``: float32 [Mdl, len(rows), D_max]; columns that
  are not ``informative`` (padding, constant over the training users) are exactly 0."""
  out = np.zeros((len(arrays), rows.size, mean.shape[1]), np.float32)
  for m, arr in enumerate(arrays):
    d = arr.shape[1]
    out[m, :, :d] = np.where(informative[m, :d], (arr[rows] - mean[m, :d]) / std[m, :d], 0.0)
  return out


def item_standardiser(items: np.ndarray, enabled: bool) -> tuple[np.ndarray, np.ndarray]:
  """float32 [F] mean / std over all catalogue rows (0 / 1 when ``enabled`` is False)."""
  mean, sd = items.mean(axis=0, dtype=np.float64), items.std(axis=0, dtype=np.float64)
  if not enabled:
    mean, sd = np.zeros_like(mean), np.ones_like(sd)
  return mean.astype(np.float32), np.where(sd > 1e-12, sd, 1.0).astype(np.float32)
