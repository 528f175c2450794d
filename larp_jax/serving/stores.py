"""Serving stores ((user_id, batch id) -> (z, as_of, updated_at)) and event sources.

Stores (the same methods; the updater writes one micro-batch with one ``write`` call):
  * ``SQLiteStore(path)``: the embedded default. One transaction per micro-batch writes the
    vectors and appends the newly applied events to an ``events`` log (event_id primary key),
    so a restarted updater rebuilds its state from the log (``applied_events``) and re-delivered
    events are recognised as applied.
  * ``RedisStore(client)``: hash ``<prefix>:vec:<batch>:<user>`` {z, as_of, updated_at}, set
    ``<prefix>:users:<batch>``, hash ``<prefix>:events`` (event_id -> JSON), written in one
    MULTI/EXEC transaction per micro-batch.
A vector is only replaced by one with an equal or later ``as_of`` (a late batch run never
overwrites a fresher NRT vector).

Sources (``poll(max_events, timeout_s) -> [(token, Event)]`` and ``ack(tokens)``):
  * ``JsonLinesSource(path)``: one JSON event a line, read as the file grows (tail).
  * ``QueueSource(queue)``: an in-process ``queue.Queue`` of events or dicts.
  * ``RedisStreamSource(client, stream, group, consumer)``: a consumer group (at-least-once):
    on start the consumer's own pending entries are re-read; every poll first reclaims entries
    pending longer than ``min_idle_ms`` in other (dead) consumers with XAUTOCLAIM; entries are
    XACKed only after the micro-batch holding them is written.
"""

from __future__ import annotations

import json
import os
import queue as queue_lib
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np

from larp_jax.serving import incremental


class Vector(NamedTuple):
  """A served vector: z float32 [k], as_of (feature time, unix s), updated_at (wall time)."""

  z: np.ndarray
  as_of: int
  updated_at: float


class Row(NamedTuple):
  """One vector to write: (user_id, batch_id, z float32 [k], as_of)."""

  user_id: str
  batch_id: str
  z: np.ndarray
  as_of: int


def _encode_event(e: incremental.Event) -> str:
  return json.dumps(incremental.event_to_dict(e), separators=(",", ":"))


class SQLiteStore:
  """The embedded store (one file; ``':memory:'`` for tests)."""

  def __init__(self, path: str):
    if path != ":memory:":
      os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    self.path = path
    self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    self.db.execute("PRAGMA journal_mode=WAL")
    self.db.execute("PRAGMA synchronous=NORMAL")
    self.db.execute(
        "CREATE TABLE IF NOT EXISTS vectors (user_id TEXT, batch_id TEXT, z BLOB, as_of INTEGER,"
        " updated_at REAL, PRIMARY KEY (user_id, batch_id))"
    )
    self.db.execute("CREATE TABLE IF NOT EXISTS events (event_id TEXT PRIMARY KEY, body TEXT)")

  def write(
      self, rows: Sequence[Row], events: Sequence[incremental.Event], updated_at: float
  ) -> None:
    """Writes vectors and appends applied events, atomically."""
    self.db.execute("BEGIN")
    try:
      self.db.executemany(
          "INSERT INTO vectors VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id, batch_id) DO UPDATE"
          " SET z = excluded.z, as_of = excluded.as_of, updated_at = excluded.updated_at"
          " WHERE excluded.as_of >= vectors.as_of",
          [
              (
                  r.user_id,
                  r.batch_id,
                  np.asarray(r.z, np.float32).tobytes(),
                  int(r.as_of),
                  updated_at,
              )
              for r in rows
          ],
      )
      self.db.executemany(
          "INSERT OR IGNORE INTO events VALUES (?, ?)",
          [(e.event_id, _encode_event(e)) for e in events],
      )
      self.db.execute("COMMIT")
    except BaseException:
      self.db.execute("ROLLBACK")
      raise

  def get(self, user_id: str, batch_id: str) -> Vector | None:
    row = self.db.execute(
        "SELECT z, as_of, updated_at FROM vectors WHERE user_id = ? AND batch_id = ?",
        (user_id, batch_id),
    ).fetchone()
    if row is None:
      return None
    return Vector(np.frombuffer(row[0], np.float32).copy(), int(row[1]), float(row[2]))

  def users(self, batch_id: str) -> list[str]:
    """User ids with a vector of ``batch_id``."""
    rows = self.db.execute("SELECT user_id FROM vectors WHERE batch_id = ?", (batch_id,))
    return [r[0] for r in rows]

  def batch_ids(self) -> list[str]:
    return [r[0] for r in self.db.execute("SELECT DISTINCT batch_id FROM vectors")]

  def applied_events(self) -> Iterator[incremental.Event]:
    for (body,) in self.db.execute("SELECT body FROM events"):
      yield incremental.event_from_dict(json.loads(body))

  def num_applied(self) -> int:
    return int(self.db.execute("SELECT COUNT(*) FROM events").fetchone()[0])

  def close(self) -> None:
    self.db.close()


class RedisStore:
  """Vectors and the applied-event log in Redis (``client``: a ``redis.Redis``)."""

  def __init__(self, client, prefix: str = "larp"):
    self.r = client
    self.prefix = prefix

  def _key(self, batch_id: str, user_id: str) -> str:
    return f"{self.prefix}:vec:{batch_id}:{user_id}"

  def write(
      self, rows: Sequence[Row], events: Sequence[incremental.Event], updated_at: float
  ) -> None:
    """Vectors (only where as_of does not go back) and events in one MULTI/EXEC."""
    old = {}
    if rows:
      with self.r.pipeline(transaction=False) as p:
        for r in rows:
          p.hget(self._key(r.batch_id, r.user_id), "as_of")
        old = dict(zip(range(len(rows)), p.execute()))
    with self.r.pipeline(transaction=True) as p:
      for i, r in enumerate(rows):
        if old.get(i) is not None and int(old[i]) > int(r.as_of):
          continue
        p.hset(
            self._key(r.batch_id, r.user_id),
            mapping={
                "z": np.asarray(r.z, np.float32).tobytes(),
                "as_of": int(r.as_of),
                "updated_at": repr(float(updated_at)),
            },
        )
        p.sadd(f"{self.prefix}:users:{r.batch_id}", r.user_id)
        p.sadd(f"{self.prefix}:batches", r.batch_id)
      if events:
        p.hset(f"{self.prefix}:events", mapping={e.event_id: _encode_event(e) for e in events})
      p.execute()

  def get(self, user_id: str, batch_id: str) -> Vector | None:
    d = self.r.hgetall(self._key(batch_id, user_id))
    if not d:
      return None
    return Vector(
        np.frombuffer(d[b"z"], np.float32).copy(), int(d[b"as_of"]), float(d[b"updated_at"])
    )

  def users(self, batch_id: str) -> list[str]:
    return sorted(u.decode() for u in self.r.smembers(f"{self.prefix}:users:{batch_id}"))

  def batch_ids(self) -> list[str]:
    return sorted(b.decode() for b in self.r.smembers(f"{self.prefix}:batches"))

  def applied_events(self) -> Iterator[incremental.Event]:
    for _, body in self.r.hscan_iter(f"{self.prefix}:events", count=1000):
      yield incremental.event_from_dict(json.loads(body))

  def num_applied(self) -> int:
    return int(self.r.hlen(f"{self.prefix}:events"))

  def close(self) -> None:
    self.r.close()


def _as_event(item: Any) -> incremental.Event:
  if isinstance(item, incremental.Event):
    return item
  if isinstance(item, dict):
    return incremental.event_from_dict(item)
  raise TypeError(f"an event source item must be an Event or a dict, got {type(item).__name__}.")


class JsonLinesSource:
  """Events from a JSON-lines file, read as it grows; tokens are line numbers (no ack needed:
  a restart re-reads the file and the updater skips the events it already applied)."""

  def __init__(self, path: str):
    if not os.path.exists(path):
      raise FileNotFoundError(f"events file {path!r} does not exist.")
    self.path = path
    self.f = open(path)  # pylint: disable=consider-using-with
    self.line = 0
    self._partial = ""

  def poll(self, max_events: int, timeout_s: float = 0.0):
    out = []
    deadline = time.monotonic() + timeout_s
    while len(out) < max_events:
      text = self.f.readline()
      if not text:
        if time.monotonic() >= deadline or out:
          break
        time.sleep(0.01)
        continue
      if not text.endswith("\n"):  # a line still being written
        self._partial += text
        continue
      text, self._partial = self._partial + text, ""
      self.line += 1
      if text.strip():
        try:
          out.append((self.line, _as_event(json.loads(text))))
        except (json.JSONDecodeError, ValueError) as err:
          raise ValueError(f"{self.path}:{self.line}: bad event: {err}") from err
    return out

  def ack(self, tokens: Iterable[Any]) -> None:
    del tokens

  def close(self) -> None:
    self.f.close()


class QueueSource:
  """Events (``Event`` or dict) from an in-process ``queue.Queue``; ``None`` ends the stream."""

  def __init__(self, q: queue_lib.Queue):
    self.q = q
    self.closed = False

  def poll(self, max_events: int, timeout_s: float = 0.0):
    out = []
    try:
      item = self.q.get(timeout=timeout_s) if timeout_s > 0 else self.q.get_nowait()
      while True:
        if item is None:
          self.closed = True
          break
        out.append((None, _as_event(item)))
        if len(out) >= max_events:
          break
        item = self.q.get_nowait()
    except queue_lib.Empty:
      pass
    return out

  def ack(self, tokens: Iterable[Any]) -> None:
    del tokens

  def close(self) -> None:
    pass


def produce(client, stream: str, events: Iterable[incremental.Event], chunk: int = 1000) -> int:
  """XADDs events to a Redis stream (field ``e`` = the JSON event); returns how many."""
  n = 0
  p = client.pipeline(transaction=False)
  for e in events:
    p.xadd(stream, {"e": _encode_event(e)})
    n += 1
    if n % chunk == 0:
      p.execute()
  p.execute()
  return n


class RedisStreamSource:
  """A consumer of a Redis Stream consumer group (at-least-once, dead consumers reclaimed).

  Args:
    client: ``redis.Redis``.
    stream / group / consumer: names; the group is created (from the stream's start) if absent.
    min_idle_ms: entries pending this long in another consumer are reclaimed (XAUTOCLAIM).
  """

  def __init__(self, client, stream: str, group: str, consumer: str, min_idle_ms: int = 5000):
    import redis  # pylint: disable=g-import-not-at-top

    self.r, self.stream, self.group, self.consumer = client, stream, group, consumer
    self.min_idle_ms = int(min_idle_ms)
    try:
      self.r.xgroup_create(stream, group, id="0", mkstream=True)
    except redis.ResponseError as err:
      if "BUSYGROUP" not in str(err):
        raise
    self._own_pending = True  # first read our own pending entries (a restart of this consumer)
    self._claim_cursor = "0-0"
    self.reclaimed = 0

  def _decode(self, entries) -> list:
    out = []
    for entry_id, fields in entries or []:
      if fields is None or b"e" not in fields:  # deleted entry, or not an event
        self.r.xack(self.stream, self.group, entry_id)
        continue
      out.append((entry_id, _as_event(json.loads(fields[b"e"]))))
    return out

  def poll(self, max_events: int, timeout_s: float = 0.0):
    if self._own_pending:
      got = self.r.xreadgroup(self.group, self.consumer, {self.stream: "0"}, count=max_events)
      entries = self._decode(got[0][1] if got else [])
      if entries:
        return entries
      self._own_pending = False
    claimed = self.r.xautoclaim(
        self.stream,
        self.group,
        self.consumer,
        self.min_idle_ms,
        self._claim_cursor,
        count=max_events,
    )
    self._claim_cursor = claimed[0]
    entries = self._decode(claimed[1])
    if entries:
      self.reclaimed += len(entries)
      return entries
    block = int(timeout_s * 1000) if timeout_s > 0 else None
    got = self.r.xreadgroup(
        self.group, self.consumer, {self.stream: ">"}, count=max_events, block=block
    )
    return self._decode(got[0][1] if got else [])

  def ack(self, tokens: Iterable[Any]) -> None:
    tokens = list(tokens)
    if tokens:
      self.r.xack(self.stream, self.group, *tokens)

  def pending(self) -> int:
    return int(self.r.xpending(self.stream, self.group)["pending"])

  def close(self) -> None:
    pass
