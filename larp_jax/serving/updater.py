"""The NRT updater (paper 001, Sec. 4.2-4.3, Fig. 5): events -> day bins -> z -> serving store.

``Updater.process(events)`` applies a micro-batch of listening / onboarding / registration /
device events to the per-user state (``incremental.IncrementalFeatures``, de-duplicated by event
id), then, for every served batch (the current one and, during an upstream retrain, the legacy
one -- each with its own track spaces, standardisation and encoder), recomputes the features of
the users the micro-batch changed at their as-of time, standardises them, runs the jitted
encoder once on the stack and writes ``(user_id, batch id) -> (z, as_of, updated_at)`` together
with the applied events in one store transaction.

  * Cold start (Fig. 5): a new user's registration and onboarding events are ordinary events, so
    the micro-batch that holds them writes the user's first vector.
  * Onboarding counts while the user is younger than ``spec.onboarding_days`` (the one feature
    function decides at each t); ``daily_refresh(t)`` recomputes every known user at t, so the
    users with no event since (returning after inactivity, onboarding window closed) are served
    from the daily batch run; ``daily_batch_run`` does the same from the full logs through the
    batch feature pipeline for users the NRT state does not hold.
  * Restart: ``recover()`` replays the store's applied-event log into fresh state; a re-delivered
    event is then a duplicate and is acknowledged without being applied again.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import numpy as np

from data_pipelines import user_features
from larp_jax.serving import incremental
from larp_jax.serving import stores


def jitted_encoder(model, params, chunk: int = 256) -> Callable[[np.ndarray], np.ndarray]:
  """``x [N, d] float32 standardised -> z [N, k] float32`` with ``model.encode`` under one jit.

  Rows run in chunks of exactly ``chunk`` (the last padded by repeating its final row): one
  compiled shape, and a row's z does not depend on how many users share its micro-batch (XLA's
  CPU matmuls round differently for different batch shapes), so replays give identical bits.
  """
  fn = jax.jit(lambda p, x: model.apply({"params": p}, x, method=model.encode))

  def encode(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    out = []
    for start in range(0, len(x), chunk):
      part = x[start : start + chunk]
      n = len(part)
      if n < chunk:
        part = np.concatenate([part, np.repeat(part[-1:], chunk - n, axis=0)])
      out.append(np.asarray(fn(params, part))[:n])
    if not out:
      return np.zeros((0, model.config.latent_dim), np.float32)
    return np.concatenate(out)

  return encode


@dataclasses.dataclass
class ServedBatch:
  """One batch of the user model the store serves.

  Attributes:
    batch_id: its id (the user-rep manifest's ``batch_id``).
    spaces: the track spaces it was trained on (``spaces.batch_ids`` = its upstream ids).
    spec: the full ``FeatureSpec`` (drop=()) of those spaces.
    columns: int64 [d] kept columns; mean / std: float32 [d] standardisation statistics.
    encode: standardised ``x [N, d] -> z [N, k]`` (``jitted_encoder``).
    status: 'current' | 'legacy'.
  """

  batch_id: str
  spaces: user_features.TrackSpaces
  spec: user_features.FeatureSpec
  columns: np.ndarray
  mean: np.ndarray
  std: np.ndarray
  encode: Callable[[np.ndarray], np.ndarray]
  status: str = "current"

  def vectors(self, features: np.ndarray) -> np.ndarray:
    """float32 [N, k] from full features float32 [N, spec.dim]."""
    if features.ndim != 2 or features.shape[1] != self.spec.dim:
      raise ValueError(
          f"batch {self.batch_id}: features of shape {features.shape}; expected [N, "
          f"{self.spec.dim}]."
      )
    x = ((features[:, self.columns] - self.mean) / self.std).astype(np.float32)
    return self.encode(x)


def served_batch(
    batch_id: str, model, params, inputs, spaces, spec, status: str = "current"
) -> ServedBatch:
  """A ``ServedBatch`` from a trained autoencoder (``user_rep_job.train_autoencoder`` outputs:
  model, params and its ``AutoencoderInputs``)."""
  if status not in ("current", "legacy"):
    raise ValueError(f"status={status!r}; expected 'current' or 'legacy'.")
  return ServedBatch(
      batch_id,
      spaces,
      spec,
      np.asarray(inputs.columns),
      np.asarray(inputs.mean),
      np.asarray(inputs.std),
      jitted_encoder(model, params),
      status,
  )


def _spaces_key(spaces) -> str:
  return json.dumps(dict(spaces.batch_ids), sort_keys=True) + f"#{id(spaces)}"


@dataclasses.dataclass
class Stats:
  """What one ``process`` call did."""

  received: int = 0
  applied: int = 0
  users: int = 0
  rows: int = 0
  seconds: float = 0.0


class Updater:
  """Applies micro-batches of events and writes the vectors of every served batch.

  Args:
    store: a ``stores.SQLiteStore`` or ``stores.RedisStore``.
    served: the batches to serve (at least one).
  """

  def __init__(self, store, served: Sequence[ServedBatch]):
    if not served:
      raise ValueError("Updater needs at least one served batch.")
    self.store = store
    self.served: list[ServedBatch] = []
    self.states: dict[str, incremental.IncrementalFeatures] = {}
    for b in served:
      self._attach(b)

  def _attach(self, b: ServedBatch) -> incremental.IncrementalFeatures:
    if any(s.batch_id == b.batch_id for s in self.served):
      raise ValueError(f"batch {b.batch_id} is already served.")
    key = _spaces_key(b.spaces)
    if key not in self.states:
      self.states[key] = incremental.IncrementalFeatures(b.spaces, b.spec)
    self.served.append(b)
    return self.states[key]

  def state_of(self, batch_id: str) -> incremental.IncrementalFeatures:
    for b in self.served:
      if b.batch_id == batch_id:
        return self.states[_spaces_key(b.spaces)]
    raise KeyError(f"batch {batch_id} is not served (served: {[b.batch_id for b in self.served]}).")

  def recover(self) -> int:
    """Replays the store's applied-event log into the state (after a restart); returns how
    many events it holds. Writes nothing."""
    n = 0
    for e in self.store.applied_events():
      for state in self.states.values():
        state.apply(e)
      n += 1
    return n

  def add_batch(self, b: ServedBatch, *, backfill: bool = True) -> int:
    """Starts serving ``b`` (e.g. a retrained model): its state is rebuilt from the event log and,
    with ``backfill``, every user's vector of ``b`` is written. Returns the rows written."""
    key = _spaces_key(b.spaces)
    fresh = key not in self.states
    state = self._attach(b)
    if fresh:
      for e in self.store.applied_events():
        state.apply(e)
    if not backfill:
      return 0
    users = [u for u, s in state.users.items() if s.as_of is not None]
    rows = self._rows(b, state, users, None)
    self.store.write(rows, [], time.time())
    return len(rows)

  def set_status(self, batch_id: str, status: str) -> None:
    for b in self.served:
      if b.batch_id == batch_id:
        b.status = status
        return
    raise KeyError(f"batch {batch_id} is not served.")

  def remove_batch(self, batch_id: str) -> None:
    """Stops serving a batch (its vectors stay in the store until rotation evicts them)."""
    self.served = [b for b in self.served if b.batch_id != batch_id]
    used = {_spaces_key(b.spaces) for b in self.served}
    self.states = {k: v for k, v in self.states.items() if k in used}

  def _rows(self, b: ServedBatch, state, users: Sequence[str], t: int | None) -> list[stores.Row]:
    if not users:
      return []
    times = [state.as_of(u) if t is None else max(int(t), state.as_of(u) or t) for u in users]
    x = np.stack([state.features(u, ti) for u, ti in zip(users, times)])
    z = b.vectors(x)
    return [stores.Row(u, b.batch_id, z[i], times[i]) for i, u in enumerate(users)]

  def process(self, events: Iterable[incremental.Event]) -> Stats:
    """One micro-batch: apply, re-infer the changed users for every served batch, write."""
    start = time.perf_counter()
    stats = Stats()
    new, touched = [], {}
    for e in events:
      stats.received += 1
      applied = False
      for state in self.states.values():
        applied |= state.apply(e)
      if applied:
        new.append(e)
        touched[e.user_id] = None
    rows = []
    for b in self.served:
      state = self.states[_spaces_key(b.spaces)]
      users = [u for u in touched if state.users[u].as_of is not None]
      rows.extend(self._rows(b, state, users, None))
    if new or rows:
      self.store.write(rows, new, time.time())
    stats.applied, stats.users, stats.rows = len(new), len(touched), len(rows)
    stats.seconds = time.perf_counter() - start
    return stats

  def run(
      self,
      source,
      *,
      max_batch: int = 1024,
      poll_timeout_s: float = 0.05,
      stop_after_idle_s: float | None = 1.0,
      max_events: int | None = None,
      on_commit: Callable[[Sequence[Any], Stats], None] | None = None,
  ) -> Stats:
    """Consumes ``source`` until it is idle for ``stop_after_idle_s`` (None: forever), a queue
    source is closed, or ``max_events`` were received. Acks each micro-batch after its write."""
    total = Stats()
    idle_since = time.monotonic()
    while max_events is None or total.received < max_events:
      limit = max_batch if max_events is None else min(max_batch, max_events - total.received)
      polled = source.poll(limit, poll_timeout_s)
      if not polled:
        if getattr(source, "closed", False):
          break
        if stop_after_idle_s is not None and time.monotonic() - idle_since > stop_after_idle_s:
          break
        continue
      idle_since = time.monotonic()
      stats = self.process([e for _, e in polled])
      source.ack([tok for tok, _ in polled])
      if on_commit is not None:
        on_commit(polled, stats)
      for f in ("received", "applied", "users", "rows", "seconds"):
        setattr(total, f, getattr(total, f) + getattr(stats, f))
    return total

  def daily_refresh(self, t: int) -> int:
    """The daily batch run over the NRT state: every known user of every served batch at time
    ``t`` (windows and the onboarding period move on without events). Returns rows written."""
    rows = []
    for b in self.served:
      state = self.states[_spaces_key(b.spaces)]
      users = [u for u, s in state.users.items() if s.as_of is not None]
      rows.extend(self._rows(b, state, users, t))
    self.store.write(rows, [], time.time())
    return len(rows)


def daily_batch_run(store, served: Sequence[ServedBatch], listening, t: int, users=None) -> int:
  """The daily batch run from the logs (users returning after inactivity, whom the NRT state
  does not hold): the batch feature pipeline at ``t`` for ``users`` (indices; default all), each
  served batch's encoder, written with ``as_of = t``. Returns the rows written."""
  users = np.arange(listening.num_users) if users is None else np.asarray(users, np.int64)
  rows = []
  for b in served:
    x = user_features.features_matrix(listening, users, np.full(len(users), t), b.spaces, b.spec)
    z = b.vectors(x)
    rows.extend(
        stores.Row(str(listening.user_ids[u]), b.batch_id, z[i], int(t))
        for i, u in enumerate(users)
    )
  store.write(rows, [], time.time())
  return len(rows)


def user_batch_id(params, inputs, upstream, cut_time) -> str:
  """The user-rep batch id, minted as ``user_rep_job.export_user_vectors`` mints it (weights,
  standardisation statistics, upstream ids, data cut)."""
  from larp_jax import export  # pylint: disable=g-import-not-at-top

  flat = {
      "/".join(str(getattr(k, "key", k)) for k in path): np.asarray(v)
      for path, v in jax.tree_util.tree_leaves_with_path(params)
  }
  return export.batch_id(
      "user-rep",
      arrays={**flat, "mean": inputs.mean, "std": inputs.std},
      upstream=dict(upstream),
      details={"cut_time": cut_time},
  )


def served_from_job(config, workdir: str, *, train: bool = True, name: str = "ae", seed: int = 0):
  """(prepared, ServedBatch, params) of ``user_rep_job``'s model ``name`` in ``workdir``: trained (or
  resumed) with ``train``, else randomly initialised with ``seed`` (smoke tests, benchmarks)."""
  # pylint: disable=g-import-not-at-top
  from flax.core import meta
  from larp_jax.jobs import user_rep_job
  from larp_jax.models import user_autoencoder

  prepared = user_rep_job.prepare(config, workdir)
  if train:
    params, inputs, model = user_rep_job.train_autoencoder(config, workdir, prepared, name)
  else:
    inputs = user_rep_job.autoencoder_inputs(config, prepared, config.ablations[name])
    model = user_autoencoder.UserAutoencoder(
        user_autoencoder.AutoencoderConfig(
            input_dim=len(inputs.columns),
            hidden=tuple(config.model.hidden),
            latent_dim=int(config.model.latent_dim),
        )
    )
    x0 = np.zeros((1, len(inputs.columns)), np.float32)
    params = model.init(jax.random.PRNGKey(seed), x0)["params"]
  params = meta.unbox(params)
  bid = user_batch_id(params, inputs, prepared.spaces.batch_ids, prepared.protocol.cut_time)
  return prepared, served_batch(bid, model, params, inputs, prepared.spaces, prepared.spec), params


def write_events_jsonl(path: str, events: Iterable[incremental.Event]) -> int:
  """Writes events as JSON lines (the embedded source's format); returns how many."""
  n = 0
  with open(path + ".tmp", "w") as f:
    for e in events:
      f.write(json.dumps(incremental.event_to_dict(e), separators=(",", ":")) + "\n")
      n += 1
  os.replace(path + ".tmp", path)
  return n


def serve(
    config,
    workdir: str,
    *,
    events_path: str = "",
    redis_url: str = "",
    stream: str = "larp:events",
    group: str = "nrt-updater",
    consumer: str = "updater-0",
    train: bool = True,
    max_batch: int = 1024,
    stop_after_idle_s: float | None = 2.0,
    demo_users: int | None = None,
) -> dict[str, Any]:
  """The NRT service of ``experiments/serve_user_rep``: the user model of ``workdir`` (trained or
  resumed; random with ``train=False``) served from a JSON-lines file / SQLite store, or from a
  Redis Stream into Redis with ``redis_url``. Without ``events_path`` (embedded) or an empty
  stream (Redis), the demo's events (first ``demo_users`` users) are written first. Recovers
  from the store's event log, consumes until idle, returns a summary."""
  prepared, served, _ = served_from_job(config, workdir, train=train)
  users = None if demo_users is None else range(min(demo_users, prepared.listening.num_users))
  if redis_url:
    import redis  # pylint: disable=g-import-not-at-top

    client = redis.Redis.from_url(redis_url)
    store = stores.RedisStore(client)
    if not client.exists(stream):
      stores.produce(client, stream, incremental.events_from_listening(prepared.listening, users))
    source = stores.RedisStreamSource(client, stream, group, consumer)
  else:
    store = stores.SQLiteStore(os.path.join(workdir, "serving", "vectors.sqlite"))
    if not events_path:
      events_path = os.path.join(workdir, "serving", "demo_events.jsonl")
      if not os.path.exists(events_path):
        write_events_jsonl(
            events_path, incremental.events_from_listening(prepared.listening, users)
        )
    source = stores.JsonLinesSource(events_path)
  up = Updater(store, [served])
  recovered = up.recover()
  stats = up.run(source, max_batch=max_batch, stop_after_idle_s=stop_after_idle_s)
  summary = {
      "batch_id": served.batch_id,
      "upstream": dict(served.spaces.batch_ids),
      "store": "redis" if redis_url else getattr(store, "path", ""),
      "recovered_events": recovered,
      "received": stats.received,
      "applied": stats.applied,
      "vectors_written": stats.rows,
      "users_served": len(store.users(served.batch_id)),
      "events_per_s": stats.received / max(stats.seconds, 1e-9),
      **{f"state/{k}": v for k, v in up.state_of(served.batch_id).counts.items()},
  }
  source.close()
  return summary
