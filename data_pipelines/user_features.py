"""Paper 001's user features at a time t: one pure per-user function (Sec. 3.2.2, 3.3.2, 4.3).

``x_u = [c_u, a_u, v_u]``, laid out in named blocks (``FeatureSpec.blocks()``):

  audio_<h>d, collab_<h>d   for each horizon h (default 7, 30, 182 days): the play-weighted mean
                            of the audio / collaborative vectors of the tracks played in the
                            window (each play counts once). An empty window gives the training
                            mean (``TrackSpaces.fill_*``) and sets the window's flag.
  activity                  per horizon log(1 + plays) and the empty-window flag, then
                            log(1 + days since registration).
  static                    country one-hot, age bucket one-hot (+ missing), gender one-hot
                            (+ missing), device multi-hot (devices first seen before t).
  onboarding                mean audio and collaborative vectors of the chosen artists (an
                            artist's vector = the mean of its tracks'), language multi-hot and an
                            "imputed" flag. Used while the user is younger than
                            ``onboarding_days`` (default 90) and the onboarding happened before
                            t; otherwise imputed (training means, no languages, flag 1) -- Sec.
                            4.3: onboarding counts "for a few months", then stops.

Windows are on UTC day boundaries: horizon h at time t covers the plays with timestamp < t on the
UTC days ``day(t) − h + 1 … day(t)`` (h calendar days, today's partial). Features are computed
from per-day float64 sums (``day_bins``): the batch path builds the bins from a user's events;
the near-real-time path keeps the same bins incrementally and calls the same
``features_from_bins`` -- one definition, exact (not a decayed approximation).

Everything is strictly before t: an event at exactly t (play, onboarding, device) does not count,
so adding events at or after the cut changes nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

DAY_SECONDS = 86_400
BLOCK_GROUPS = ("modality", "static", "onboarding")  # what ablations may drop


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
  """What the features contain and how wide each block is.

  Attributes:
    horizons: window lengths in days.
    onboarding_days: onboarding counts while the user is younger than this.
    age_edges: age bucket boundaries (years); buckets ``< e0, [e0, e1), …, >= e_last`` + missing.
    num_countries / num_genders / num_devices / num_languages: vocabulary sizes.
    audio_dim / collab_dim: widths of the two track spaces.
    drop: block groups left out of x (``'modality'``: every audio_/collab_ block; ``'static'``;
      ``'onboarding'``) -- the paper's ablations.
  """

  num_countries: int
  num_genders: int
  num_devices: int
  num_languages: int
  audio_dim: int = 80
  collab_dim: int = 80
  horizons: tuple[int, ...] = (7, 30, 182)
  onboarding_days: int = 90
  age_edges: tuple[int, ...] = (18, 25, 35, 45, 55, 65)
  drop: tuple[str, ...] = ()

  def __post_init__(self):
    bad = [g for g in self.drop if g not in BLOCK_GROUPS]
    if bad:
      raise ValueError(f"FeatureSpec.drop has unknown groups {bad}; known: {BLOCK_GROUPS}.")
    if not self.horizons or min(self.horizons) < 1 or list(self.horizons) != sorted(self.horizons):
      raise ValueError(f"horizons={self.horizons} must be increasing positive day counts.")

  def all_blocks(self) -> list[tuple[str, int, str]]:
    """Every block ``(name, width, group)`` before ``drop`` is applied."""
    blocks = []
    for h in self.horizons:
      blocks.append((f"audio_{h}d", self.audio_dim, "modality"))
      blocks.append((f"collab_{h}d", self.collab_dim, "modality"))
    blocks.append(("activity", 2 * len(self.horizons) + 1, "activity"))
    static = self.num_countries + len(self.age_edges) + 2 + self.num_genders + 1 + self.num_devices
    blocks.append(("static", static, "static"))
    blocks.append(
        ("onboarding", self.audio_dim + self.collab_dim + self.num_languages + 1, "onboarding")
    )
    return blocks

  def blocks(self) -> list[tuple[str, int]]:
    """The kept blocks ``(name, width)`` in column order."""
    return [(n, w) for n, w, g in self.all_blocks() if g not in self.drop]

  @property
  def dim(self) -> int:
    return sum(w for _, w in self.blocks())

  def columns(self) -> np.ndarray:
    """int64 indices of the kept columns inside the full (nothing dropped) feature vector."""
    out, start = [], 0
    for _, width, group in self.all_blocks():
      if group not in self.drop:
        out.append(np.arange(start, start + width))
      start += width
    return np.concatenate(out)


@dataclasses.dataclass(frozen=True)
class TrackSpaces:
  """The two frozen upstream track spaces (modality encoders, Sec. 3.2.1).

  Attributes:
    audio: float32 [M, Da] per track (imputed rows already filled).
    collab: float32 [M, Dc] per track.
    artist_audio / artist_collab: float32 [A, D] mean of each artist's tracks (onboarding).
    fill_audio / fill_collab: float64 [D] the training mean, imputing an empty window.
    batch_ids: {'audio': id, 'collaborative': id} of the spaces (batch management).
  """

  audio: np.ndarray
  collab: np.ndarray
  artist_audio: np.ndarray
  artist_collab: np.ndarray
  fill_audio: np.ndarray
  fill_collab: np.ndarray
  batch_ids: Mapping[str, str]


class UserRecord(NamedTuple):
  """One user's raw inputs (any time; the feature function filters by t).

  tracks int32 [n] / times int64 [n]: plays sorted by time; country, age, gender, created: ints
  (-1 = missing); device_index int32 [k] / device_time int64 [k]; onboarding_time (-1 = none),
  onboarding_artists int32 [a], onboarding_languages int32 [l].
  """

  tracks: np.ndarray
  times: np.ndarray
  country: int
  age: int
  gender: int
  created: int
  device_index: np.ndarray
  device_time: np.ndarray
  onboarding_time: int
  onboarding_artists: np.ndarray
  onboarding_languages: np.ndarray


class DayBins(NamedTuple):
  """Per-UTC-day float64 sums of a user's plays: days int64 [n], audio [n, Da], collab [n, Dc],
  count [n] (sorted by day)."""

  days: np.ndarray
  audio: np.ndarray
  collab: np.ndarray
  count: np.ndarray


def utc_day(t) -> np.ndarray:
  """UTC day index (floor division; works for arrays and scalars)."""
  return np.floor_divide(t, DAY_SECONDS)


def day_bins(
    tracks: np.ndarray, times: np.ndarray, t: int, spaces: TrackSpaces, max_horizon: int
) -> DayBins:
  """Sums of the plays with ``times < t`` on the last ``max_horizon`` UTC days up to day(t)."""
  times = np.asarray(times, np.int64)
  tracks = np.asarray(tracks, np.int64)
  keep = (times < t) & (utc_day(times) > utc_day(t) - max_horizon)
  tracks, times = tracks[keep], times[keep]
  if not len(tracks):
    return DayBins(
        np.zeros(0, np.int64),
        np.zeros((0, spaces.audio.shape[1])),
        np.zeros((0, spaces.collab.shape[1])),
        np.zeros(0),
    )
  order = np.argsort(times, kind="stable")
  tracks, days = tracks[order], utc_day(times[order])
  starts = np.flatnonzero(np.r_[True, days[1:] != days[:-1]])
  audio = np.add.reduceat(spaces.audio[tracks].astype(np.float64), starts, axis=0)
  collab = np.add.reduceat(spaces.collab[tracks].astype(np.float64), starts, axis=0)
  count = np.diff(np.r_[starts, len(days)]).astype(np.float64)
  return DayBins(days[starts], audio, collab, count)


def _one_hot(index: int, size: int) -> np.ndarray:
  out = np.zeros(size)
  if 0 <= index < size:
    out[index] = 1.0
  return out


def _mean_rows(table: np.ndarray, rows: np.ndarray, fill: np.ndarray) -> np.ndarray:
  rows = np.asarray(rows, np.int64)
  rows = rows[(rows >= 0) & (rows < len(table))]
  return table[rows].astype(np.float64).mean(0) if len(rows) else np.asarray(fill, np.float64)


def features_from_bins(
    bins: DayBins, record: UserRecord, t: int, spaces: TrackSpaces, spec: FeatureSpec
) -> np.ndarray:
  """float32 [spec.dim] features of a user at time t from its day bins and static inputs."""
  t = int(t)
  today = int(utc_day(t))
  parts: dict[str, np.ndarray] = {}
  counts, flags = [], []
  for h in spec.horizons:
    sel = bins.days > today - h
    n = float(bins.count[sel].sum())
    if n > 0:
      parts[f"audio_{h}d"] = bins.audio[sel].sum(0) / n
      parts[f"collab_{h}d"] = bins.collab[sel].sum(0) / n
    else:
      parts[f"audio_{h}d"] = np.asarray(spaces.fill_audio, np.float64)
      parts[f"collab_{h}d"] = np.asarray(spaces.fill_collab, np.float64)
    counts.append(np.log1p(n))
    flags.append(float(n == 0))
  age_days = max(0.0, (t - record.created) / DAY_SECONDS) if record.created >= 0 else 0.0
  parts["activity"] = np.array(counts + flags + [np.log1p(age_days)])

  age_bucket = (
      int(np.searchsorted(np.asarray(spec.age_edges), record.age, side="right"))
      if record.age >= 0
      else len(spec.age_edges) + 1
  )
  devices = np.zeros(spec.num_devices)
  seen = np.asarray(record.device_index)[np.asarray(record.device_time) < t]
  devices[seen[(seen >= 0) & (seen < spec.num_devices)]] = 1.0
  gender = record.gender if record.gender >= 0 else spec.num_genders
  parts["static"] = np.concatenate(
      [
          _one_hot(record.country, spec.num_countries),
          _one_hot(age_bucket, len(spec.age_edges) + 2),
          _one_hot(gender, spec.num_genders + 1),
          devices,
      ]
  )

  young = record.created >= 0 and (t - record.created) < spec.onboarding_days * DAY_SECONDS
  onboarded = 0 <= record.onboarding_time < t and young and len(record.onboarding_artists) > 0
  languages = np.zeros(spec.num_languages)
  if onboarded:
    artists = record.onboarding_artists
    lang = np.asarray(record.onboarding_languages, np.int64)
    languages[lang[(lang >= 0) & (lang < spec.num_languages)]] = 1.0
  else:
    artists = np.zeros(0, np.int64)
  parts["onboarding"] = np.concatenate(
      [
          _mean_rows(spaces.artist_audio, artists, spaces.fill_audio),
          _mean_rows(spaces.artist_collab, artists, spaces.fill_collab),
          languages,
          [0.0 if onboarded else 1.0],
      ]
  )
  return np.concatenate([parts[name] for name, _ in spec.blocks()]).astype(np.float32)


def user_features(record: UserRecord, t: int, spaces: TrackSpaces, spec: FeatureSpec) -> np.ndarray:
  """float32 [spec.dim]: the features of one user at time t (plays strictly before t)."""
  bins = day_bins(record.tracks, record.times, t, spaces, max(spec.horizons))
  return features_from_bins(bins, record, t, spaces, spec)


def user_record(listening, u: int) -> UserRecord:
  """The ``UserRecord`` of user index ``u`` of a ``data_pipelines.listening.Listening``."""
  start, stop = int(listening.user_offsets[u]), int(listening.user_offsets[u + 1])
  empty_i, empty_t = np.zeros(0, np.int32), np.zeros(0, np.int64)
  if listening.device_user is not None:
    rows = _rows_of(listening, "device", u)
    device_index, device_time = listening.device_index[rows], listening.device_time[rows]
  else:
    device_index, device_time = empty_i, empty_t
  onboarding_time, artists, langs = -1, empty_i, empty_i
  if listening.onboarding_time is not None:
    onboarding_time = int(listening.onboarding_time[u])
    a0, a1 = listening.onboarding_artist_offsets[u], listening.onboarding_artist_offsets[u + 1]
    l0, l1 = listening.onboarding_language_offsets[u], listening.onboarding_language_offsets[u + 1]
    artists = listening.onboarding_artists[a0:a1]
    langs = listening.onboarding_languages[l0:l1]
  return UserRecord(
      tracks=listening.event_track[start:stop],
      times=listening.event_time[start:stop],
      country=int(listening.user_country[u]),
      age=int(listening.user_age[u]),
      gender=int(listening.user_gender[u]),
      created=int(listening.user_created[u]),
      device_index=device_index,
      device_time=device_time,
      onboarding_time=onboarding_time,
      onboarding_artists=artists,
      onboarding_languages=langs,
  )


def _rows_of(listening, table: str, u: int) -> np.ndarray:
  """Row indices of user u in an optional per-event table (sorted index cached on the object)."""
  cache = listening.__dict__.setdefault("_user_rows_cache", {})
  if table not in cache:
    users = getattr(listening, f"{table}_user")
    order = np.argsort(users, kind="stable")
    bounds = np.searchsorted(users[order], np.arange(listening.num_users + 1))
    cache[table] = (order, bounds)
  order, bounds = cache[table]
  return order[bounds[u] : bounds[u + 1]]


def spec_for(listening, audio_dim: int, collab_dim: int, **kwargs) -> FeatureSpec:
  """A ``FeatureSpec`` sized by the vocabularies of a ``Listening``."""
  return FeatureSpec(
      num_countries=len(listening.countries),
      num_genders=len(listening.genders),
      num_devices=len(listening.devices),
      num_languages=len(listening.languages),
      audio_dim=audio_dim,
      collab_dim=collab_dim,
      **kwargs,
  )


def features_matrix(
    listening,
    users: Sequence[int],
    times: Sequence[int],
    spaces: TrackSpaces,
    spec: FeatureSpec,
    *,
    progress: bool = False,
) -> np.ndarray:
  """float32 [len(users), spec.dim]: ``user_features`` of each user at its own time (in-process
  batch path; ``data_pipelines/user_features_beam.py`` runs the same function under Beam)."""
  users = np.asarray(users, np.int64)
  times = np.asarray(times, np.int64)
  if users.shape != times.shape:
    raise ValueError(f"users {users.shape} and times {times.shape} must have the same shape.")
  out = np.zeros((len(users), spec.dim), np.float32)
  iterator = range(len(users))
  if progress:
    import tqdm  # pylint: disable=g-import-not-at-top

    iterator = tqdm.tqdm(iterator, desc="user features", unit="user", leave=False)
  for i in iterator:
    out[i] = user_features(user_record(listening, int(users[i])), int(times[i]), spaces, spec)
  return out


def save_track_spaces(path: str, spaces: TrackSpaces) -> None:
  """Writes ``spaces`` to one ``.npz`` (arrays + batch ids), e.g. as a Beam side input."""
  np.savez(
      path,
      audio=spaces.audio,
      collab=spaces.collab,
      artist_audio=spaces.artist_audio,
      artist_collab=spaces.artist_collab,
      fill_audio=spaces.fill_audio,
      fill_collab=spaces.fill_collab,
      batch_id_names=np.asarray(list(spaces.batch_ids), dtype=str),
      batch_id_values=np.asarray(list(spaces.batch_ids.values()), dtype=str),
  )


def load_track_spaces(path: str) -> TrackSpaces:
  """Reads what ``save_track_spaces`` wrote."""
  with np.load(path) as data:
    ids = dict(zip(data["batch_id_names"].tolist(), data["batch_id_values"].tolist()))
    return TrackSpaces(
        audio=data["audio"],
        collab=data["collab"],
        artist_audio=data["artist_audio"],
        artist_collab=data["artist_collab"],
        fill_audio=data["fill_audio"],
        fill_collab=data["fill_collab"],
        batch_ids=ids,
    )
