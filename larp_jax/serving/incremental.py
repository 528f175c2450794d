"""Near-real-time user features (paper 001, Sec. 4.2): per-user day bins kept incrementally.

The batch path (``data_pipelines/user_features``) builds a user's per-UTC-day float64 sums
(``DayBins``) from the whole log and calls ``features_from_bins``. Here the same bins are kept
event by event -- one play adds its track's audio and collaborative vectors to its day's sums,
O(D) work, O(1) in the history -- and the same ``features_from_bins`` is called, so the NRT
features at time t equal ``user_features(record, t, ...)`` (the one definition, not a decay).

Delivery: **de-duplication by event id** (the issue's first option), not shard ownership with a
last-applied stream id. The Redis source is at-least-once and reclaims a dead consumer's pending
entries with XAUTOCLAIM, so an entry can reach a different consumer, late and out of order;
an id check absorbs that, a per-shard high-water mark does not. Each user keeps the ids of the
events it applied, per day, and forgets them with the day: a day older than the largest horizon
(relative to the user's as-of time) can never count again, so a replay of such an event is
ignored as ``too_old`` -- the result is the same whatever the order.

Order-exact sums: each day's sums are kept as double-double (hi, lo) pairs (two-sum on every
addition, ~106 bits), so the float64 ``hi`` handed to ``features_from_bins`` is the correctly
rounded exact sum of the day's float32 vectors: reordering the stream gives bit-identical bins
(plain float64 accumulation would differ in the last bit between orders).

The as-of time of a user is ``1 + the latest event time`` it applied (features are strictly
before t, so t = last event + 1 s includes the last event); it only grows, whatever the order.

Events (``Event``): ``kind`` is ``'play'`` (``track``: row of the track spaces), ``'onboarding'``
(``artists``, ``languages``: artist / language codes), ``'registration'`` (``country``, ``age``,
``gender`` codes, -1 = missing; ``time`` = creation time) or ``'device'`` (``device`` code).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np

from data_pipelines import user_features

KINDS = ("play", "onboarding", "registration", "device")


class Event(NamedTuple):
  """One event of the stream (JSON form: ``event_to_dict`` / ``event_from_dict``)."""

  event_id: str
  user_id: str
  kind: str
  time: int  # unix seconds UTC (-1: unknown, e.g. a device of unknown first use)
  track: int = -1
  artists: tuple[int, ...] = ()
  languages: tuple[int, ...] = ()
  country: int = -1
  age: int = -1
  gender: int = -1
  device: int = -1


_INT_FIELDS = ("time", "track", "country", "age", "gender", "device")


def event_from_dict(d: Mapping[str, Any]) -> Event:
  """An ``Event`` from its JSON dict; a missing or bad field raises ValueError naming it."""
  for key in ("event_id", "user_id", "kind", "time"):
    if key not in d:
      raise ValueError(f"event {dict(d)!r} has no {key!r} field.")
  if d["kind"] not in KINDS:
    raise ValueError(f"event {d['event_id']!r}: kind={d['kind']!r}; expected one of {KINDS}.")
  if d["kind"] == "play" and int(d.get("track", -1)) < 0:
    raise ValueError(f"play event {d['event_id']!r} has no 'track' (row of the track spaces).")
  kwargs = {k: int(d[k]) for k in _INT_FIELDS if k in d}
  return Event(
      event_id=str(d["event_id"]),
      user_id=str(d["user_id"]),
      kind=str(d["kind"]),
      artists=tuple(int(a) for a in d.get("artists", ())),
      languages=tuple(int(a) for a in d.get("languages", ())),
      **kwargs,
  )


def event_to_dict(e: Event) -> dict[str, Any]:
  """The JSON dict of an event (only the fields its kind uses)."""
  out: dict[str, Any] = {"event_id": e.event_id, "user_id": e.user_id, "kind": e.kind}
  out["time"] = int(e.time)
  if e.kind == "play":
    out["track"] = int(e.track)
  elif e.kind == "onboarding":
    out["artists"], out["languages"] = list(e.artists), list(e.languages)
  elif e.kind == "registration":
    out.update(country=e.country, age=e.age, gender=e.gender)
  else:
    out["device"] = int(e.device)
  return out


def events_from_listening(listening, users: Iterable[int] | None = None) -> list[Event]:
  """Every user's registration, onboarding, device and play events of a ``Listening``, sorted
  by (user, time); ids ``<user>:reg|onb|d<j>|p<i>`` are stable across calls."""
  out = []
  for u in range(listening.num_users) if users is None else users:
    record = user_features.user_record(listening, int(u))
    uid = str(listening.user_ids[u])
    mine = [
        Event(
            f"{uid}:reg",
            uid,
            "registration",
            int(record.created),
            country=record.country,
            age=record.age,
            gender=record.gender,
        )
    ]
    if record.onboarding_time >= 0:
      mine.append(
          Event(
              f"{uid}:onb",
              uid,
              "onboarding",
              int(record.onboarding_time),
              artists=tuple(int(a) for a in record.onboarding_artists),
              languages=tuple(int(a) for a in record.onboarding_languages),
          )
      )
    for j, (d, t) in enumerate(zip(record.device_index, record.device_time)):
      mine.append(Event(f"{uid}:d{j}", uid, "device", int(t), device=int(d)))
    for i, (k, t) in enumerate(zip(record.tracks, record.times)):
      mine.append(Event(f"{uid}:p{i}", uid, "play", int(t), track=int(k)))
    mine.sort(key=lambda e: e.time)
    out.extend(mine)
  return out


class UserState:
  """One user's NRT state: static inputs and the day bins of the last ``max_horizon`` days.

  Bins: ``rows[day]`` indexes ``hi`` / ``lo`` float64 [cap, Da + Dc] (double-double sums of the
  audio then collaborative vectors) and ``count`` float64 [cap].
  """

  __slots__ = (
      "country",
      "age",
      "gender",
      "created",
      "device_index",
      "device_time",
      "onboarding_time",
      "onboarding_artists",
      "onboarding_languages",
      "max_time",
      "rows",
      "hi",
      "lo",
      "count",
      "seen",
      "profile_seen",
  )

  def __init__(self, width: int):
    self.country = self.age = self.gender = self.created = -1
    self.device_index: list[int] = []
    self.device_time: list[int] = []
    self.onboarding_time = -1
    self.onboarding_artists = np.zeros(0, np.int32)
    self.onboarding_languages = np.zeros(0, np.int32)
    self.max_time: int | None = None
    self.rows: dict[int, int] = {}
    self.hi = np.zeros((4, width))
    self.lo = np.zeros((4, width))
    self.count = np.zeros(4)
    self.seen: dict[int, set[str]] = {}  # day -> play ids applied on that day
    self.profile_seen: set[str] = set()  # ids of registration / onboarding / device events

  @property
  def as_of(self) -> int | None:
    """1 + the latest applied event time (None before any timed event)."""
    return None if self.max_time is None else self.max_time + 1


class IncrementalFeatures:
  """Per-user NRT feature state over one pair of track spaces.

  Args:
    spaces: the ``TrackSpaces`` (float32 [M, Da] / [M, Dc]) the features are built from.
    spec: the full ``FeatureSpec`` (drop=()); a served model picks its columns afterwards.
  """

  def __init__(self, spaces: user_features.TrackSpaces, spec: user_features.FeatureSpec):
    self.spaces = spaces
    self.spec = spec
    self.horizon = max(spec.horizons)
    self.da = spaces.audio.shape[1]
    self.table = np.concatenate([spaces.audio, spaces.collab], axis=1).astype(np.float64)
    self.users: dict[str, UserState] = {}
    self.counts = {"applied": 0, "duplicate": 0, "too_old": 0}

  def state(self, user_id: str) -> UserState:
    s = self.users.get(user_id)
    if s is None:
      s = self.users[user_id] = UserState(self.table.shape[1])
    return s

  def apply(self, e: Event) -> bool:
    """Applies one event; False (state unchanged) for a duplicate or a play too old to count."""
    s = self.state(e.user_id)
    if e.kind != "play":
      if e.event_id in s.profile_seen:
        self.counts["duplicate"] += 1
        return False
      s.profile_seen.add(e.event_id)
      if e.kind == "registration":
        s.country, s.age, s.gender, s.created = e.country, e.age, e.gender, e.time
      elif e.kind == "onboarding":
        s.onboarding_time = e.time
        s.onboarding_artists = np.asarray(e.artists, np.int32)
        s.onboarding_languages = np.asarray(e.languages, np.int32)
      else:
        s.device_index.append(e.device)
        s.device_time.append(e.time)
      if e.time >= 0:
        self._advance(s, e.time)
      self.counts["applied"] += 1
      return True
    if not 0 <= e.track < len(self.table):
      raise ValueError(
          f"play event {e.event_id!r}: track {e.track} is not a row of the track spaces "
          f"({len(self.table)} rows, batch {dict(self.spaces.batch_ids)})."
      )
    day = int(e.time // user_features.DAY_SECONDS)
    if s.max_time is not None and day <= (s.max_time + 1) // user_features.DAY_SECONDS - (
        self.horizon
    ):
      self.counts["too_old"] += 1
      return False
    ids = s.seen.setdefault(day, set())
    if e.event_id in ids:
      self.counts["duplicate"] += 1
      return False
    ids.add(e.event_id)
    row = s.rows.get(day)
    if row is None:
      row = self._new_row(s, day)
    _two_sum_add(s.hi, s.lo, row, self.table[e.track])
    s.count[row] += 1.0
    self._advance(s, e.time)
    self.counts["applied"] += 1
    return True

  def _new_row(self, s: UserState, day: int) -> int:
    row = len(s.rows)
    if row == len(s.count):  # grow (amortised doubling)
      s.hi = np.concatenate([s.hi, np.zeros_like(s.hi)])
      s.lo = np.concatenate([s.lo, np.zeros_like(s.lo)])
      s.count = np.concatenate([s.count, np.zeros_like(s.count)])
    s.rows[day] = row
    return row

  def _advance(self, s: UserState, time: int) -> None:
    """Raises the as-of time; evicts days that no longer fall in the largest horizon."""
    old_day = None if s.max_time is None else (s.max_time + 1) // user_features.DAY_SECONDS
    if s.max_time is None or time > s.max_time:
      s.max_time = int(time)
    cutoff = (s.max_time + 1) // user_features.DAY_SECONDS - self.horizon
    if old_day is not None and cutoff + self.horizon == old_day:
      return
    old = [d for d in s.rows if d <= cutoff]
    if not old:
      return
    keep = sorted(d for d in s.rows if d > cutoff)
    idx = np.asarray([s.rows[d] for d in keep], np.int64)
    cap = max(4, len(s.count))
    for name in ("hi", "lo"):
      arr = np.zeros((cap, self.table.shape[1]))
      arr[: len(idx)] = getattr(s, name)[idx]
      setattr(s, name, arr)
    count = np.zeros(cap)
    count[: len(idx)] = s.count[idx]
    s.count = count
    s.rows = {d: i for i, d in enumerate(keep)}
    for d in old:
      s.seen.pop(d, None)

  def bins(self, user_id: str) -> user_features.DayBins:
    """The user's ``DayBins`` (days sorted; float64 sums = the ``hi`` of each pair)."""
    s = self.users[user_id]
    days = np.fromiter(s.rows.keys(), np.int64, len(s.rows))
    idx = np.fromiter(s.rows.values(), np.int64, len(s.rows))
    order = np.argsort(days)
    days, idx = days[order], idx[order]
    hi = s.hi[idx]
    return user_features.DayBins(days, hi[:, : self.da], hi[:, self.da :], s.count[idx])

  def record(self, user_id: str) -> user_features.UserRecord:
    """The static inputs as a ``UserRecord`` (no plays: those are in the bins)."""
    s = self.users[user_id]
    return user_features.UserRecord(
        tracks=np.zeros(0, np.int32),
        times=np.zeros(0, np.int64),
        country=s.country,
        age=s.age,
        gender=s.gender,
        created=s.created,
        device_index=np.asarray(s.device_index, np.int32),
        device_time=np.asarray(s.device_time, np.int64),
        onboarding_time=s.onboarding_time,
        onboarding_artists=s.onboarding_artists,
        onboarding_languages=s.onboarding_languages,
    )

  def as_of(self, user_id: str) -> int | None:
    return self.users[user_id].as_of

  def features(self, user_id: str, t: int | None = None) -> np.ndarray:
    """float32 [spec.dim] features at t (default: the as-of time), via ``features_from_bins``.

    t must not precede the as-of time: evicted days and applied events are not undone.
    """
    s = self.users.get(user_id)
    if s is None:
      raise KeyError(f"no NRT state for user {user_id!r}.")
    if t is None:
      t = s.as_of
      if t is None:
        raise ValueError(f"user {user_id!r} has no timed event yet; pass t.")
    elif s.as_of is not None and t < s.as_of:
      raise ValueError(
          f"features of {user_id!r} at t={t} < its as-of time {s.as_of}: the NRT state only "
          "moves forward (use the batch function for the past)."
      )
    return user_features.features_from_bins(
        self.bins(user_id), self.record(user_id), int(t), self.spaces, self.spec
    )


def _two_sum_add(hi: np.ndarray, lo: np.ndarray, row: int, b: np.ndarray) -> None:
  """(hi, lo)[row] += b in double-double (Knuth two-sum, then a fast renormalisation)."""
  a = hi[row]
  s = a + b
  bp = s - a
  e = (a - (s - bp)) + (b - bp) + lo[row]
  h = s + e
  lo[row] = e - (h - s)
  hi[row] = h
