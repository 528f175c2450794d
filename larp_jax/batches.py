"""Batch management of a transfer-learning chain of embedding spaces (paper 001, Sec. 4.4, Fig. 6).

A ``Registry`` keeps one manifest per model of the chain (``<root>/<model>.manifest.json``):
its batches, each with its ``batch_id`` (minted by ``larp_jax.export.batch_id`` from weights,
upstream ids and data cut), the ``upstream`` batch ids it was trained on and a ``status``
(``current`` | ``legacy``), plus who uses each batch. The paper's rules, as enforced here:

  1. Inputs are checked: a model refuses to train or predict on vectors of a batch its manifest
     does not name (``check_inputs``; the error names both ids), and vectors of different batches
     are never compared (``compare``).
  2. A downstream model uses user and item vectors from the same upstream audio batch
     (``check_same_ancestor``; Fig. 6).
  3. Retraining an upstream makes every downstream model stale (``stale_models``: a model whose
     current batch names upstream ids that are no longer those upstreams' current ones, or whose
     upstream is stale), to be retrained in topological order (``retrain_stale``) while serving
     continues on the batches their manifests name (legacy), switching each when it is done.
  4. Rotation keeps two batches per model (current + legacy) and refuses to evict a legacy batch
     still in use (by a downstream batch that names it, or a registered consumer), naming the user.
  5. A retrain mints a new id (the weights differ); publishing the same id again is a no-op.
  6. Adding items to a stable space (``add_items``: new tracks through the frozen encoder + PCA,
     ``pca_fold_in``; collaborative fold-in with fixed factors, ``als_fold_in``) keeps the batch id
     and leaves the existing rows bit-identical.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from larp_jax import export as export_lib

KEEP = 2  # batches kept per model: current + legacy
STATUSES = ("current", "legacy")


class BatchError(ValueError):
  """Inputs, comparisons or a publication that batch management refuses."""


class BatchInUseError(BatchError):
  """Rotation would evict a batch that something still uses."""


@dataclasses.dataclass
class Batch:
  """One batch of one model (a row of its manifest)."""

  batch_id: str
  upstream: dict[str, str]
  status: str
  created: float
  export: str = ""  # path of its .npz export, whose manifest's 'status' is kept in sync

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


class Registry:
  """The manifests of a chain.

  Args:
    root: directory of the manifests.
    chain: ``{model: [upstream models]}`` (a DAG; models without upstreams map to ``[]``).
  """

  def __init__(self, root: str, chain: Mapping[str, Sequence[str]]):
    self.root = root
    self.chain = {m: list(ups) for m, ups in chain.items()}
    for m, ups in self.chain.items():
      unknown = [u for u in ups if u not in self.chain]
      if unknown:
        raise ValueError(f"chain: model {m!r} names unknown upstream models {unknown}.")
    self.order = self._topological_order()
    os.makedirs(root, exist_ok=True)

  def _topological_order(self) -> list[str]:
    order, state = [], {}

    def visit(m, path):
      if state.get(m) == "done":
        return
      if state.get(m) == "open":
        raise ValueError(f"chain has a cycle: {' -> '.join(path + [m])}.")
      state[m] = "open"
      for u in self.chain[m]:
        visit(u, path + [m])
      state[m] = "done"
      order.append(m)

    for m in self.chain:
      visit(m, [])
    return order

  # ---- manifests -----------------------------------------------------------------------------
  def _path(self, model: str) -> str:
    if model not in self.chain:
      raise KeyError(f"model {model!r} is not in the chain {sorted(self.chain)}.")
    return os.path.join(self.root, f"{model}.manifest.json")

  def _load(self, model: str) -> dict[str, Any]:
    path = self._path(model)
    if not os.path.exists(path):
      return {"model": model, "upstream_models": self.chain[model], "batches": [], "users": {}}
    with open(path) as f:
      return json.load(f)

  def _save(self, model: str, manifest: dict[str, Any]) -> None:
    path = self._path(model)
    with open(path + ".tmp", "w") as f:
      json.dump(manifest, f, indent=1, sort_keys=True)
    os.replace(path + ".tmp", path)
    for b in manifest["batches"]:
      if b.get("export") and os.path.exists(b["export"] + ".manifest.json"):
        with open(b["export"] + ".manifest.json") as f:
          exported = json.load(f)
        if exported.get("status") != b["status"]:
          exported["status"] = b["status"]
          with open(b["export"] + ".manifest.json", "w") as f:
            json.dump(exported, f, indent=1)

  def batches(self, model: str) -> list[Batch]:
    return [Batch(**b) for b in self._load(model)["batches"]]

  def batch(self, model: str, batch_id: str) -> Batch:
    for b in self.batches(model):
      if b.batch_id == batch_id:
        return b
    raise BatchError(
        f"{model}: batch {batch_id} is not in its manifest (kept: "
        f"{[b.batch_id for b in self.batches(model)]})."
    )

  def current(self, model: str) -> Batch | None:
    return next((b for b in self.batches(model) if b.status == "current"), None)

  def legacy(self, model: str) -> Batch | None:
    return next((b for b in self.batches(model) if b.status == "legacy"), None)

  # ---- use -----------------------------------------------------------------------------------
  def acquire(self, model: str, batch_id: str, user: str) -> None:
    """Registers ``user`` (e.g. 'serving:nrt-updater') as a consumer of a kept batch."""
    self.batch(model, batch_id)
    manifest = self._load(model)
    users = manifest["users"].setdefault(batch_id, [])
    if user not in users:
      users.append(user)
    self._save(model, manifest)

  def release(self, model: str, batch_id: str, user: str) -> None:
    manifest = self._load(model)
    users = manifest["users"].get(batch_id, [])
    if user in users:
      users.remove(user)
    self._save(model, manifest)

  def users_of(self, model: str, batch_id: str) -> list[str]:
    """Who still uses a batch: its registered consumers, and every downstream batch that names
    it and is current or itself in use (a legacy downstream batch nobody serves does not count,
    so a finished chain retrain frees the old batches)."""
    out = list(self._load(model)["users"].get(batch_id, []))
    for down, ups in self.chain.items():
      if model in ups:
        for b in self.batches(down):
          if b.upstream.get(model) == batch_id and (
              b.status == "current" or self.users_of(down, b.batch_id)
          ):
            out.append(f"{down}:{b.batch_id}")
    return out

  # ---- publication and rotation --------------------------------------------------------------
  def publish(
      self, model: str, batch_id: str, upstream: Mapping[str, str], export: str = ""
  ) -> Batch:
    """Makes ``batch_id`` the current batch of ``model`` (the previous current one becomes
    legacy; beyond ``KEEP`` the oldest legacy one is evicted unless still in use).

    ``upstream`` must name one kept batch of every upstream model of ``model``.
    """
    upstream = dict(upstream)
    if sorted(upstream) != sorted(self.chain[model]):
      raise BatchError(
          f"{model}: upstream ids for {sorted(upstream)}; its chain names {self.chain[model]}."
      )
    for up, up_id in upstream.items():
      self.batch(up, up_id)  # raises if the upstream manifest does not name it
    manifest = self._load(model)
    kept = [Batch(**b) for b in manifest["batches"]]
    for b in kept:
      if b.batch_id == batch_id:
        if b.upstream != upstream:
          raise BatchError(
              f"{model}: batch {batch_id} was published with upstream {b.upstream}, now {upstream}."
          )
        if b.status == "current":
          return b  # the same batch again: nothing to do
        raise BatchError(f"{model}: batch {batch_id} is legacy; a rollback needs a new batch id.")
    new = Batch(batch_id, upstream, "current", time.time(), export)
    survivors = [new] + sorted(kept, key=lambda b: -b.created)
    for b in survivors[KEEP:]:
      users = self.users_of(model, b.batch_id)
      if users:
        raise BatchInUseError(
            f"{model}: publishing {batch_id} would evict legacy batch {b.batch_id}, still used by "
            f"{users}; switch or release them first."
        )
    for b in survivors[1:KEEP]:
      b.status = "legacy"
    manifest["batches"] = [b.to_dict() for b in survivors[:KEEP]]
    for b in survivors[KEEP:]:
      manifest["users"].pop(b.batch_id, None)
    self._save(model, manifest)
    return new

  def stale_models(self) -> list[str]:
    """Models to retrain, in topological order: the current batch names upstream ids that are not
    the upstreams' current ones, or an upstream is stale (or has no batch yet)."""
    stale: list[str] = []
    for m in self.order:
      cur = self.current(m)
      ups = self.chain[m]
      if cur is None and ups:
        stale.append(m)
        continue
      for u in ups:
        up_cur = self.current(u)
        if u in stale or up_cur is None or cur.upstream.get(u) != up_cur.batch_id:
          stale.append(m)
          break
    return stale

  # ---- checks --------------------------------------------------------------------------------
  def check_inputs(self, model: str, batch_id: str, inputs: Mapping[str, str]) -> None:
    """Refuses inputs (``{upstream model: batch id of the vectors}``) that the manifest of
    ``model``'s batch ``batch_id`` does not name."""
    b = self.batch(model, batch_id)
    for up, got in inputs.items():
      want = b.upstream.get(up)
      if want is None:
        raise BatchError(f"{model} batch {batch_id} has no upstream {up!r} (has {b.upstream}).")
      if got != want:
        raise BatchError(
            f"{model} batch {batch_id} was trained on {up} batch {want}; refusing inputs of "
            f"{up} batch {got}."
        )

  def check_training_inputs(self, model: str, inputs: Mapping[str, str]) -> None:
    """A new batch trains on the current batch of every upstream."""
    for up in self.chain[model]:
      cur = self.current(up)
      got = inputs.get(up)
      if cur is None or got != cur.batch_id:
        raise BatchError(
            f"training {model}: {up} inputs are of batch {got}; its current batch is "
            f"{None if cur is None else cur.batch_id}."
        )

  def ancestor(self, model: str, batch_id: str, target: str) -> str | None:
    """The batch id of ``target`` that ``model``'s batch was (transitively) built from."""
    if model == target:
      return batch_id
    for up, up_id in self.batch(model, batch_id).upstream.items():
      found = self.ancestor(up, up_id, target)
      if found is not None:
        return found
    return None

  def check_same_ancestor(
      self, a: tuple[str, str], b: tuple[str, str], target: str = "audio"
  ) -> str:
    """Refuses a pair of inputs ``(model, batch id)`` (e.g. user vectors and item vectors) that
    descend from different ``target`` batches; returns the shared one."""
    ida, idb = self.ancestor(*a, target), self.ancestor(*b, target)
    if ida is None or idb is None or ida != idb:
      raise BatchError(
          f"{a[0]} batch {a[1]} comes from {target} batch {ida}, {b[0]} batch {b[1]} from "
          f"{target} batch {idb}: a downstream model needs both from the same {target} batch."
      )
    return ida


def compare(a: np.ndarray, a_batch: str, b: np.ndarray, b_batch: str) -> np.ndarray:
  """Dot products ``a [N, D] @ b [M, D].T`` -> float32 [N, M], refused across batches."""
  if a_batch != b_batch:
    raise BatchError(f"refusing to compare vectors of batch {a_batch} with vectors of {b_batch}.")
  return np.asarray(a, np.float32) @ np.asarray(b, np.float32).T


def retrain_stale(
    registry: Registry,
    trainers: Mapping[str, Callable[[Mapping[str, str]], tuple[str, str]]],
    on_switch: Callable[[str, Batch, Batch | None], None] | None = None,
) -> list[str]:
  """Retrains every stale model in topological order. ``trainers[model](inputs)`` trains on the
  current upstream batches ``inputs`` and returns ``(batch id, export path)``; until it returns,
  the model's previous batch keeps serving. After each publication ``on_switch(model, new,
  previous)`` runs (e.g. the updater starts serving the new batch as current and the old as
  legacy). Returns the models retrained."""
  done = []
  for model in registry.stale_models():
    if model not in trainers:
      raise KeyError(f"model {model!r} is stale but has no trainer (have {sorted(trainers)}).")
    inputs = {u: registry.current(u).batch_id for u in registry.chain[model]}
    registry.check_training_inputs(model, inputs)
    previous = registry.current(model)
    batch_id, export = trainers[model](inputs)
    new = registry.publish(model, batch_id, inputs, export)
    if on_switch is not None:
      on_switch(model, new, previous)
    done.append(model)
  return done


def add_items(path: str, new_ids: Sequence[str], new_rows: Mapping[str, np.ndarray]) -> dict:
  """Appends items to a stable-space export (``export.export_embeddings`` format) in place: the
  batch id stays, existing rows are copied unchanged (bit-identical), ``num_items`` grows and
  the additions are logged in the manifest. Ids already present are refused."""
  ids, arrays, manifest = export_lib.load_embeddings(path)
  new_ids = np.asarray(list(new_ids), dtype=str)
  dup = sorted(set(ids.tolist()) & set(new_ids.tolist()))
  if dup:
    raise BatchError(f"{path}: items {dup[:5]} are already in the space; updates need a retrain.")
  if sorted(new_rows) != sorted(arrays):
    raise BatchError(f"{path}: new rows for {sorted(new_rows)}; the export has {sorted(arrays)}.")
  out = {}
  for name, old in arrays.items():
    rows = np.asarray(new_rows[name], np.float32)
    if rows.shape != (len(new_ids), old.shape[1]):
      raise BatchError(
          f"{path}: new rows[{name!r}] {rows.shape}; expected ({len(new_ids)}, " f"{old.shape[1]})."
      )
    out[name] = np.concatenate([old, rows])
  all_ids = np.concatenate([ids, new_ids])
  tmp = path + ".tmp.npz"
  np.savez(tmp, ids=all_ids, **out)
  os.replace(tmp, path)
  manifest["num_items"] = len(all_ids)
  manifest["arrays"] = {k: list(v.shape) for k, v in out.items()}
  manifest.setdefault("additions", []).append(
      {"count": len(new_ids), "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
  )
  with open(path + ".manifest.json", "w") as f:
    json.dump(manifest, f, indent=1)
  return manifest


def pca_fold_in(raw: np.ndarray, components: np.ndarray, mean: np.ndarray) -> np.ndarray:
  """New items through a frozen PCA: float32 [n, k] = (raw [n, D] - mean [D]) @ components.T."""
  raw = np.asarray(raw, np.float64)
  if raw.ndim != 2 or raw.shape[1] != components.shape[1]:
    raise ValueError(f"raw {raw.shape} does not match PCA components {components.shape}.")
  return ((raw - mean) @ np.asarray(components, np.float64).T).astype(np.float32)


def als_fold_in(user_factors: np.ndarray, interactions: np.ndarray, regularization: float):
  """Collaborative fold-in with fixed factors: each new item's vector solves the ALS item step,
  ``(U^T U + reg I) v = U^T c`` (U float [S, k] the frozen user/session factors, c float [n, S]
  the new items' interactions). Returns float32 [n, k]."""
  u = np.asarray(user_factors, np.float64)
  c = np.asarray(interactions, np.float64)
  if c.ndim != 2 or c.shape[1] != u.shape[0]:
    raise ValueError(f"interactions {c.shape} must be [n, {u.shape[0]}] (users of the factors).")
  gram = u.T @ u + regularization * np.eye(u.shape[1])
  return np.linalg.solve(gram, u.T @ c.T).T.astype(np.float32)
