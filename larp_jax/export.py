"""Embedding export: arrays + ids to ``.npz`` with a manifest naming where they came from.

The manifest's ``embedding_space_id`` identifies the space the vectors live in (checkpoint +
config hash): vectors with different ids must not be compared. This is the "batch management"
of embedding versions: a consumer stores the id with every vector it caches.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def config_hash(config: Any) -> str:
  """sha256 (first 16 hex) of a config's JSON form (ml_collections ConfigDict or mapping)."""
  text = (
      config.to_json(sort_keys=True)
      if hasattr(config, "to_json")
      else json.dumps(config, sort_keys=True, default=str)
  )
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def embedding_space_id(checkpoint_path: str, cfg_hash: str) -> str:
  return hashlib.sha256(f"{os.path.abspath(checkpoint_path)}|{cfg_hash}".encode()).hexdigest()[:16]


def batch_id(
    kind: str,
    *,
    arrays: Mapping[str, np.ndarray] | None = None,
    upstream: Mapping[str, str] | None = None,
    details: Mapping[str, Any] | None = None,
) -> str:
  """A batch id minted from what the batch is: its kind, its weights or vectors (bytes), the
  upstream batch ids it was built from and its data cut / settings (16 hex of a sha256).

  The same inputs give the same id; a retrain that changes any weight gives a new one.
  """
  digest = hashlib.sha256(kind.encode())
  for name in sorted(arrays or {}):
    value = np.ascontiguousarray(arrays[name])
    digest.update(f"|{name}|{value.dtype}|{value.shape}|".encode())
    digest.update(value.tobytes())
  digest.update(json.dumps(dict(upstream or {}), sort_keys=True).encode())
  digest.update(json.dumps(dict(details or {}), sort_keys=True, default=str).encode())
  return f"{kind}-{digest.hexdigest()[:16]}"


def export_embeddings(
    path: str,
    ids: Sequence[str],
    embeddings: Mapping[str, np.ndarray],
    *,
    checkpoint_path: str,
    config: Any,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
  """Writes ``path`` (.npz: ``ids`` + one float32 [N, D] array per name) and ``path.manifest.json``.

  Args:
    path: output .npz file.
    ids: N track ids (strings), row order of every array.
    embeddings: e.g. {'audio': [N,256], 'text': [N,256], 'fused': [N,256]}.
    checkpoint_path: the weights that produced them.
    config: the run's config (hashed into the manifest).
    extra: more manifest fields.

  Returns:
    The manifest dict.
  """
  ids = np.asarray(list(ids), dtype=str)
  arrays = {}
  for name, value in embeddings.items():
    value = np.asarray(value, np.float32)
    if value.ndim != 2 or value.shape[0] != len(ids):
      raise ValueError(f"embeddings[{name!r}] has shape {value.shape}; expected [{len(ids)}, D].")
    if not np.isfinite(value).all():
      raise ValueError(f"embeddings[{name!r}] contains NaN or inf; refusing to export.")
    arrays[name] = value
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + ".tmp.npz"
  np.savez(tmp, ids=ids, **arrays)
  os.replace(tmp, path)
  cfg_hash = config_hash(config)
  manifest = {
      "file": os.path.basename(path),
      "num_items": len(ids),
      "arrays": {k: list(v.shape) for k, v in arrays.items()},
      "checkpoint": os.path.abspath(checkpoint_path),
      "config_hash": cfg_hash,
      "embedding_space_id": embedding_space_id(checkpoint_path, cfg_hash),
      "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
      **dict(extra or {}),
  }
  with open(path + ".manifest.json", "w") as f:
    json.dump(manifest, f, indent=1)
  return manifest


def load_embeddings(path: str) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, Any]]:
  """Reads an export: (ids [N] str, {name: [N, D]}, manifest)."""
  with np.load(path) as data:
    arrays = {k: data[k] for k in data.files if k != "ids"}
    ids = data["ids"]
  with open(path + ".manifest.json") as f:
    manifest = json.load(f)
  return ids, arrays, manifest
