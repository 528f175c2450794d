"""MOSTRA session data: MSSD-style CSV logs -> padded candidate sets with features and labels.

Raw input (one directory; `data_pipelines/demo/sessions.py` writes exactly this):
  log_*.csv         Spotify MSSD session logs (`MSSD_LOG_COLUMNS`) plus `user_id`. One session is
                    one candidate SET of tracks for one user; `not_skipped` marks the streamed.
  tf_*.csv          MSSD track features (`MSSD_TRACK_COLUMNS`) plus `artist_id`, `boost` (0/1) and
                    `genres` ('|'-joined names, may be empty).
  user_history.csv  `user_id, track_id, plays`: what each user played BEFORE the logged period.

Labels per user-track pair, order `OBJECTIVES = (SAT, BOOST, EXPOSURE, DISCOVERY)` (paper Sec. 3.2):
  SAT        `not_skipped` (track completion).
  BOOST      the track's `boost` flag (editorial annotation).
  EXPOSURE   the artist is emerging: artist popularity, defined as the mean `us_popularity_estimate`
             of the artist's tracks in tf_*.csv, lies in the inter-quartile range [q25, q75] (both
             ends included; numpy 'linear' percentiles over artists, one value per artist).
  DISCOVERY  the user never played the track's artist before this session: the artist is in none of
             the user's `user_history.csv` tracks nor in any of the user's EARLIER logged sessions
             (order: date, hour_of_day of the first position, session_id; skipped plays count as
             plays). Tracks of one session do not make each other non-discoveries.

Features per pair (App. A, Table 2, as far as MSSD-style data allows; names in `feature_names`):
  user_emb_*     play-weighted mean of the track embeddings of the user's history tracks (paper:
                 "weighted average of the contextual vectors of the tracks the user has played");
                 zeros for a user without history.
  track_emb_*    `acoustic_vector_0..7` stand in for the learnt 40-d word2vec track vector (MSSD's
                 only learnt track vector; the paper's model is not available).
  popularity     `us_popularity_estimate`.
  genre_<name>   multi-hot genres (not normalised).
  the 16 acoustic features in `ACOUSTIC_FEATURES` (`mode` major=1, minor=0; `key` and
                 `time_signature` are the two MSSD columns left out to make 16).
  duration       track length in seconds.
  cosine, euclidean   between user and track embedding (raw, before normalisation).
  genre_affinity the user's history genre distribution (play-weighted, sums to 1) at the track's
                 best genre: max over the track's genres (paper: "taking the maximum affinity").
  Not available: the user's country. The session id is kept as `session_ids` (not a feature).
All features except the genre multi-hot are z-scored with mean/std of the TRAIN split's valid
positions; the stats are in metadata.json.

Output directory: `{train,valid,test}.npz`, `vocab.npz` (id strings), `metadata.json`. Per split:
  features float32 [S, N, F]; mask bool [S, N]; labels float32 [S, N, 4]; cosine float32 [S, N]
  (raw user-track cosine, the relevance-ranker baseline score); track_ids int32 [S, N] (-1 = pad);
  user_ids int32 [S]; session_ids int32 [S] (rows of vocab['session_ids']). N = max_set_size (100,
  the paper's padding). Padded positions are all zero. Splits are user-disjoint by default (paper
  Sec. 5: "no user in any two splits"); `split_by='session'` splits sessions at random instead.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import glob
import json
import math
import os
import time
from collections.abc import Iterator, Sequence
from typing import Any

from absl import logging
import grain
import numpy as np

OBJECTIVES = ('SAT', 'BOOST', 'EXPOSURE', 'DISCOVERY')
SPLITS = ('train', 'valid', 'test')
MAX_SET_SIZE = 100
EMBEDDING_DIM = 8
GENRE_SEPARATOR = '|'
FORMAT_VERSION = 1

MSSD_LOG_COLUMNS = (
    'session_id', 'session_position', 'session_length', 'track_id_clean', 'skip_1', 'skip_2',
    'skip_3', 'not_skipped', 'context_switch', 'no_pause_before_play', 'short_pause_before_play',
    'long_pause_before_play', 'hist_user_behavior_n_seekfwd', 'hist_user_behavior_n_seekback',
    'hist_user_behavior_is_shuffle', 'hour_of_day', 'date', 'premium', 'context_type',
    'hist_user_behavior_reason_start', 'hist_user_behavior_reason_end')
LOG_EXTENSION_COLUMNS = ('user_id',)
EMBEDDING_COLUMNS = tuple(f'acoustic_vector_{i}' for i in range(EMBEDDING_DIM))
MSSD_TRACK_COLUMNS = (
    'track_id', 'duration', 'release_year', 'us_popularity_estimate', 'acousticness',
    'beat_strength', 'bounciness', 'danceability', 'dyn_range_mean', 'energy', 'flatness',
    'instrumentalness', 'key', 'liveness', 'loudness', 'mechanism', 'mode', 'organism',
    'speechiness', 'tempo', 'time_signature', 'valence') + EMBEDDING_COLUMNS
TRACK_EXTENSION_COLUMNS = ('artist_id', 'boost', 'genres')
HISTORY_COLUMNS = ('user_id', 'track_id', 'plays')
ACOUSTIC_FEATURES = (
    'acousticness', 'beat_strength', 'bounciness', 'danceability', 'dyn_range_mean', 'energy',
    'flatness', 'instrumentalness', 'liveness', 'loudness', 'mechanism', 'mode', 'organism',
    'speechiness', 'tempo', 'valence')

_LOG_INT_COLUMNS = (
    'session_position', 'session_length', 'context_switch', 'no_pause_before_play',
    'short_pause_before_play', 'long_pause_before_play', 'hist_user_behavior_n_seekfwd',
    'hist_user_behavior_n_seekback', 'hour_of_day')
_LOG_BOOL_COLUMNS = ('skip_1', 'skip_2', 'skip_3', 'not_skipped', 'hist_user_behavior_is_shuffle',
                     'premium')
_TRACK_FLOAT_COLUMNS = tuple(c for c in MSSD_TRACK_COLUMNS if c not in ('track_id', 'mode'))
_OPTIONAL_TRACK_COLUMNS = ('genres',)  # may be empty
_BOOLS = {'true': 1.0, 'false': 0.0, '1': 1.0, '0': 0.0}
_MODES = {'major': 1.0, 'minor': 0.0}


# ----------------------------------------------------------------------------------- reading


@dataclasses.dataclass
class ValidationReport:
  """Counts of skipped input rows per reason ('<file kind>/<reason>') and the first examples."""
  max_examples: int = 5
  counts: dict[str, int] = dataclasses.field(default_factory=dict)
  examples: dict[str, list[str]] = dataclasses.field(default_factory=dict)

  def add(self, reason: str, where: str, detail: str) -> None:
    self.counts[reason] = self.counts.get(reason, 0) + 1
    shown = self.examples.setdefault(reason, [])
    if len(shown) < self.max_examples:
      shown.append(f'{where}: {detail}')

  @property
  def total(self) -> int:
    return sum(self.counts.values())

  def to_dict(self) -> dict[str, Any]:
    return {'total_skipped_rows': self.total, 'counts': dict(sorted(self.counts.items())),
            'examples': dict(sorted(self.examples.items()))}

  def summary(self) -> str:
    lines = [f'{self.total} bad rows skipped']
    for reason, count in sorted(self.counts.items()):
      lines.append(f'  {reason}: {count}, e.g. ' + ' | '.join(self.examples[reason]))
    return '\n'.join(lines)


@dataclasses.dataclass(frozen=True)
class TrackTable:
  """Valid rows of tf_*.csv; row t is track index t everywhere downstream."""
  track_ids: tuple[str, ...]
  index: dict[str, int]
  artist_ids: tuple[str, ...]     # artist vocabulary, in order of first appearance
  artist: np.ndarray              # int32 [T] row of artist_ids
  boost: np.ndarray               # float32 [T] 0/1
  genre_names: tuple[str, ...]    # sorted genre vocabulary
  genres: np.ndarray              # float32 [T, G] multi-hot
  popularity: np.ndarray          # float64 [T] us_popularity_estimate
  duration: np.ndarray            # float64 [T] seconds
  acoustic: np.ndarray            # float64 [T, 16] in ACOUSTIC_FEATURES order
  embedding: np.ndarray           # float64 [T, 8] acoustic_vector_0..7


@dataclasses.dataclass(frozen=True)
class Session:
  """One logged session (candidate set), rows ordered by session_position."""
  session_id: str
  user_id: str
  date: str
  hour: int
  positions: np.ndarray    # int32 [n]
  tracks: np.ndarray       # int32 [n] rows of the TrackTable
  not_skipped: np.ndarray  # float32 [n]


@dataclasses.dataclass(frozen=True)
class RawSessions:
  tracks: TrackTable
  history: dict[str, tuple[np.ndarray, np.ndarray]]  # user -> (track rows int32, plays float64)
  sessions: tuple[Session, ...]                      # chronological, see `session_order_key`
  report: ValidationReport


def _read_rows(path: str, required: Sequence[str]) -> Iterator[tuple[int, list[str], dict]]:
  """Yields (line number, raw fields, {column: field}); raises ValueError on a bad header."""
  with open(path, newline='') as f:
    reader = csv.reader(f)
    header = next(reader, None)
    if header is None:
      raise ValueError(f'{path}: empty file, expected columns {list(required)}')
    header = [h.strip() for h in header]
    missing = [c for c in required if c not in header]
    if missing:
      raise ValueError(f'{path}: missing columns {missing}')
    for row in reader:
      if not row:
        continue
      record = dict(zip(header, row)) if len(row) == len(header) else None
      yield reader.line_num, row, record


def _parse_float(value: str) -> float:
  x = float(value)
  if not math.isfinite(x):
    raise ArithmeticError(value)
  return x


def _parse_fields(record: dict[str, str], ints: Sequence[str] = (), floats: Sequence[str] = (),
                  bools: Sequence[str] = (), required: Sequence[str] = (),
                  optional: Sequence[str] = ()) -> dict[str, Any]:
  """Parses a record; raises KeyError (missing), ArithmeticError (NaN/inf), ValueError (syntax)."""
  out = {}
  for column in required:
    value = record[column].strip()
    if not value and column not in optional:
      raise KeyError(column)
    out[column] = value
  for column in ints:
    out[column] = int(out[column])
  for column in floats:
    out[column] = _parse_float(out[column])
  for column in bools:
    if out[column].lower() not in _BOOLS:
      raise ValueError(f'{column}={out[column]!r} is not a boolean')
    out[column] = _BOOLS[out[column].lower()]
  return out


def _parse_or_report(report: ValidationReport, kind: str, where: str, row: list[str],
                     record: dict[str, str] | None, **spec: Sequence[str]) -> dict | None:
  if record is None:
    report.add(f'{kind}/wrong_field_count', where, f'{len(row)} fields: {row[:4]}')
    return None
  try:
    return _parse_fields(record, **spec)
  except KeyError as e:
    report.add(f'{kind}/missing_field', where, f'empty {e.args[0]!r} in {row[:4]}')
  except ArithmeticError as e:
    report.add(f'{kind}/non_finite', where, f'{e.args[0]!r} in {row[:4]}')
  except ValueError as e:
    report.add(f'{kind}/unparseable', where, f'{e} in {row[:4]}')
  return None


def read_track_features(paths: Sequence[str], report: ValidationReport) -> TrackTable:
  """Reads tf_*.csv files; bad or duplicated track rows are reported and skipped."""
  columns = MSSD_TRACK_COLUMNS + TRACK_EXTENSION_COLUMNS
  parsed = []
  seen = set()
  for path in paths:
    for line, row, record in _read_rows(path, columns):
      where = f'{os.path.basename(path)}:{line}'
      fields = _parse_or_report(report, 'tracks', where, row, record, required=columns,
                                optional=_OPTIONAL_TRACK_COLUMNS,
                                floats=_TRACK_FLOAT_COLUMNS + ('boost',))
      if fields is None:
        continue
      if fields['mode'] not in _MODES:
        report.add('tracks/unparseable', where, f"mode={fields['mode']!r} not major/minor")
        continue
      if fields['boost'] not in (0.0, 1.0):
        report.add('tracks/unparseable', where, f"boost={fields['boost']} not 0/1")
        continue
      if fields['track_id'] in seen:
        report.add('tracks/duplicate_track_id', where, fields['track_id'])
        continue
      seen.add(fields['track_id'])
      fields['mode'] = _MODES[fields['mode']]
      parsed.append(fields)
  if not parsed:
    raise ValueError(f'no valid track rows in {list(paths)}')
  track_ids = tuple(f['track_id'] for f in parsed)
  artist_index: dict[str, int] = {}
  artist = np.array([artist_index.setdefault(f['artist_id'], len(artist_index)) for f in parsed],
                    np.int32)
  track_genres = [[g.strip() for g in f['genres'].split(GENRE_SEPARATOR) if g.strip()]
                  for f in parsed]
  genre_names = tuple(sorted({g for gs in track_genres for g in gs}))
  genre_index = {g: i for i, g in enumerate(genre_names)}
  genres = np.zeros((len(parsed), len(genre_names)), np.float32)
  for t, gs in enumerate(track_genres):
    genres[t, [genre_index[g] for g in gs]] = 1.0
  column = lambda name: np.array([f[name] for f in parsed], np.float64)
  return TrackTable(
      track_ids=track_ids, index={t: i for i, t in enumerate(track_ids)},
      artist_ids=tuple(artist_index), artist=artist,
      boost=column('boost').astype(np.float32), genre_names=genre_names, genres=genres,
      popularity=column('us_popularity_estimate'), duration=column('duration'),
      acoustic=np.stack([column(c) for c in ACOUSTIC_FEATURES], axis=1),
      embedding=np.stack([column(c) for c in EMBEDDING_COLUMNS], axis=1))


def read_user_history(path: str, tracks: TrackTable, report: ValidationReport
                      ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Reads user_history.csv -> {user_id: (track rows int32 [h], plays float64 [h])}."""
  rows: dict[str, dict[int, float]] = {}
  for line, row, record in _read_rows(path, HISTORY_COLUMNS):
    where = f'{os.path.basename(path)}:{line}'
    fields = _parse_or_report(report, 'history', where, row, record, required=HISTORY_COLUMNS,
                              floats=('plays',))
    if fields is None:
      continue
    if fields['plays'] <= 0:
      report.add('history/unparseable', where, f"plays={fields['plays']} must be > 0")
      continue
    track = tracks.index.get(fields['track_id'])
    if track is None:
      report.add('history/unknown_track', where, fields['track_id'])
      continue
    user = rows.setdefault(fields['user_id'], {})
    user[track] = user.get(track, 0.0) + fields['plays']
  return {u: (np.array(list(p), np.int32), np.array(list(p.values()), np.float64))
          for u, p in rows.items()}


def session_order_key(session: Session) -> tuple[str, int, str]:
  """Chronological order of sessions: (date, hour_of_day, session_id)."""
  return (session.date, session.hour, session.session_id)


def read_session_logs(paths: Sequence[str], tracks: TrackTable, report: ValidationReport
                      ) -> tuple[Session, ...]:
  """Reads log_*.csv files into sessions (chronological); bad rows are reported and skipped.

  Bad rows: wrong field count, empty fields, unparseable or non-finite numbers, positions outside
  1..session_length, hour outside 0..23, unknown track ids, user/date differing from the session's
  first row, a (session_id, session_position) seen before, a track repeated within a session.
  """
  columns = MSSD_LOG_COLUMNS + LOG_EXTENSION_COLUMNS
  grouped: dict[str, dict[str, Any]] = {}
  for path in paths:
    for line, row, record in _read_rows(path, columns):
      where = f'{os.path.basename(path)}:{line}'
      f = _parse_or_report(report, 'log', where, row, record, required=columns,
                           ints=_LOG_INT_COLUMNS, bools=_LOG_BOOL_COLUMNS)
      if f is None:
        continue
      try:
        datetime.date.fromisoformat(f['date'])
      except ValueError:
        report.add('log/unparseable', where, f"date={f['date']!r} is not YYYY-MM-DD")
        continue
      if not 1 <= f['session_position'] <= f['session_length'] or not 0 <= f['hour_of_day'] < 24:
        report.add('log/bad_position', where,
                   f"position {f['session_position']} of {f['session_length']}, "
                   f"hour {f['hour_of_day']}")
        continue
      track = tracks.index.get(f['track_id_clean'])
      if track is None:
        report.add('log/unknown_track', where, f['track_id_clean'])
        continue
      session = grouped.setdefault(f['session_id'], {
          'user_id': f['user_id'], 'date': f['date'], 'rows': {}, 'tracks': set()})
      if (f['user_id'], f['date']) != (session['user_id'], session['date']):
        report.add('log/inconsistent_session', where,
                   f"session {f['session_id']} has user/date {session['user_id']}/"
                   f"{session['date']}, row has {f['user_id']}/{f['date']}")
        continue
      if f['session_position'] in session['rows']:
        report.add('log/duplicate_position', where,
                   f"session {f['session_id']} position {f['session_position']}")
        continue
      if track in session['tracks']:
        report.add('log/repeated_track', where,
                   f"session {f['session_id']} repeats {f['track_id_clean']}")
        continue
      session['tracks'].add(track)
      session['rows'][f['session_position']] = (track, f['not_skipped'], f['hour_of_day'])
  sessions = []
  for session_id, s in grouped.items():
    positions = sorted(s['rows'])
    sessions.append(Session(
        session_id=session_id, user_id=s['user_id'], date=s['date'],
        hour=s['rows'][positions[0]][2], positions=np.array(positions, np.int32),
        tracks=np.array([s['rows'][p][0] for p in positions], np.int32),
        not_skipped=np.array([s['rows'][p][1] for p in positions], np.float32)))
  return tuple(sorted(sessions, key=session_order_key))


def read_raw_sessions(raw_dir: str, max_examples: int = 5) -> RawSessions:
  """Reads tf_*.csv, user_history.csv (optional) and log_*.csv from `raw_dir`."""
  tf_paths = sorted(glob.glob(os.path.join(raw_dir, 'tf_*.csv')))
  log_paths = sorted(glob.glob(os.path.join(raw_dir, 'log_*.csv')))
  if not tf_paths or not log_paths:
    raise ValueError(f'{raw_dir}: expected tf_*.csv and log_*.csv files, found '
                     f'{len(tf_paths)} and {len(log_paths)}')
  report = ValidationReport(max_examples=max_examples)
  tracks = read_track_features(tf_paths, report)
  history_path = os.path.join(raw_dir, 'user_history.csv')
  history = read_user_history(history_path, tracks, report) if os.path.exists(history_path) else {}
  sessions = read_session_logs(log_paths, tracks, report)
  if report.total:
    logging.warning('sessions data in %s: %s', raw_dir, report.summary())
  return RawSessions(tracks=tracks, history=history, sessions=sessions, report=report)


# ------------------------------------------------------------------------------------ labels


def emerging_artists(track_artist: np.ndarray, track_popularity: np.ndarray, num_artists: int
                     ) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
  """EXPOSURE definition. Returns (artist popularity float64 [A], emerging bool [A], (q25, q75)).

  Artist popularity = mean us_popularity_estimate of the artist's tracks; emerging = inside the
  inter-quartile range of artist popularities, both ends included.
  """
  counts = np.bincount(track_artist, minlength=num_artists)
  if np.any(counts == 0):
    raise ValueError(f'artists without tracks: {np.flatnonzero(counts == 0)[:5].tolist()}')
  popularity = np.bincount(track_artist, weights=track_popularity, minlength=num_artists) / counts
  q25, q75 = np.percentile(popularity, [25.0, 75.0])
  return popularity, (popularity >= q25) & (popularity <= q75), (float(q25), float(q75))


def derive_labels(raw: RawSessions) -> list[np.ndarray]:
  """Labels float32 [n, 4] (OBJECTIVES order) for each session of `raw.sessions`."""
  tracks = raw.tracks
  num_artists = len(tracks.artist_ids)
  _, emerging, _ = emerging_artists(tracks.artist, tracks.popularity, num_artists)
  known: dict[str, np.ndarray] = {}
  labels = []
  for session in raw.sessions:  # chronological
    if session.user_id not in known:
      seen = np.zeros(num_artists, bool)
      if session.user_id in raw.history:
        seen[tracks.artist[raw.history[session.user_id][0]]] = True
      known[session.user_id] = seen
    artists = tracks.artist[session.tracks]
    labels.append(np.stack([
        session.not_skipped, tracks.boost[session.tracks], emerging[artists].astype(np.float32),
        (~known[session.user_id][artists]).astype(np.float32)], axis=1))
    known[session.user_id][artists] = True
  return labels


# ---------------------------------------------------------------------------------- features


def feature_names(genre_names: Sequence[str]) -> tuple[str, ...]:
  """Names of the F feature columns, in order."""
  return (tuple(f'user_emb_{i}' for i in range(EMBEDDING_DIM))
          + tuple(f'track_emb_{i}' for i in range(EMBEDDING_DIM)) + ('popularity',)
          + tuple(f'genre_{g}' for g in genre_names) + ACOUSTIC_FEATURES
          + ('duration', 'cosine', 'euclidean', 'genre_affinity'))


def user_profiles(tracks: TrackTable, history: dict[str, tuple[np.ndarray, np.ndarray]],
                  user_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
  """(user embedding float64 [U, 8], history genre distribution float64 [U, G]) from history.

  Embedding = play-weighted mean of history track embeddings; genre distribution = play-weighted
  genre counts normalised to sum 1. Users without history get zeros.
  """
  embedding = np.zeros((len(user_ids), EMBEDDING_DIM))
  genre_dist = np.zeros((len(user_ids), len(tracks.genre_names)))
  for u, user in enumerate(user_ids):
    if user not in history:
      continue
    rows, plays = history[user]
    embedding[u] = plays @ tracks.embedding[rows] / plays.sum()
    counts = plays @ tracks.genres[rows]
    if counts.sum() > 0:
      genre_dist[u] = counts / counts.sum()
  return embedding, genre_dist


def pair_features(tracks: TrackTable, user_embedding: np.ndarray, user_genre_dist: np.ndarray,
                  user_rows: np.ndarray, track_rows: np.ndarray) -> np.ndarray:
  """Unnormalised features float64 [R, F] for R user-track pairs (int [R] row indices)."""
  u = user_embedding[user_rows]
  t = tracks.embedding[track_rows]
  norms = np.linalg.norm(u, axis=1) * np.linalg.norm(t, axis=1)
  cosine = np.where(norms > 0, np.sum(u * t, axis=1) / np.maximum(norms, 1e-12), 0.0)
  genres = tracks.genres[track_rows]
  affinity = np.max(np.where(genres > 0, user_genre_dist[user_rows], 0.0), axis=1,
                    initial=0.0)
  return np.concatenate([
      u, t, tracks.popularity[track_rows, None], genres, tracks.acoustic[track_rows],
      tracks.duration[track_rows, None], cosine[:, None],
      np.linalg.norm(u - t, axis=1)[:, None], affinity[:, None]], axis=1)


# ------------------------------------------------------------------------------- arrays/split


def _split_sessions(sessions: Sequence[Session], fractions: Sequence[float], split_by: str,
                    seed: int) -> np.ndarray:
  """Split index (0 train, 1 valid, 2 test) int [S] per session."""
  if len(fractions) != 3 or min(fractions) < 0 or not math.isclose(sum(fractions), 1.0):
    raise ValueError(f'split_fractions must be 3 non-negative numbers summing to 1, '
                     f'got {fractions}')
  if split_by == 'user':
    keys = np.array([s.user_id for s in sessions])
  elif split_by == 'session':
    keys = np.array([s.session_id for s in sessions])
  else:
    raise ValueError(f"split_by must be 'user' or 'session', got {split_by!r}")
  unique = np.unique(keys)
  order = np.random.default_rng(seed).permutation(len(unique))
  bounds = np.round(np.cumsum(fractions)[:2] * len(unique)).astype(int)
  split_of_key = np.searchsorted(bounds, np.arange(len(unique)), side='right')
  split_of_unique = np.empty(len(unique), int)
  split_of_unique[order] = split_of_key
  return split_of_unique[np.searchsorted(unique, keys)]


def _pad_split(raw: RawSessions, labels: Sequence[np.ndarray], indices: np.ndarray,
               user_index: dict[str, int], user_embedding: np.ndarray,
               user_genre_dist: np.ndarray, max_set_size: int) -> dict[str, np.ndarray]:
  """Unnormalised padded arrays of the sessions `indices` (rows of raw.sessions)."""
  num_features = len(feature_names(raw.tracks.genre_names))
  s, n = len(indices), max_set_size
  out = {'features': np.zeros((s, n, num_features), np.float32), 'mask': np.zeros((s, n), bool),
         'labels': np.zeros((s, n, len(OBJECTIVES)), np.float32),
         'cosine': np.zeros((s, n), np.float32), 'track_ids': np.full((s, n), -1, np.int32),
         'user_ids': np.zeros((s,), np.int32), 'session_ids': np.asarray(indices, np.int32)}
  if not s:
    return out
  sizes = np.array([min(len(raw.sessions[i].tracks), n) for i in indices])
  rows = np.repeat(np.arange(s), sizes)
  cols = np.concatenate([np.arange(k) for k in sizes])
  track_rows = np.concatenate([raw.sessions[i].tracks[:n] for i in indices])
  users = np.array([user_index[raw.sessions[i].user_id] for i in indices], np.int32)
  features = pair_features(raw.tracks, user_embedding, user_genre_dist, users[rows], track_rows)
  out['features'][rows, cols] = features
  out['mask'][rows, cols] = True
  out['labels'][rows, cols] = np.concatenate([labels[i][:n] for i in indices])
  out['cosine'][rows, cols] = features[:, feature_names(raw.tracks.genre_names).index('cosine')]
  out['track_ids'][rows, cols] = track_rows
  out['user_ids'] = users
  return out


def _label_rates(arrays: dict[str, np.ndarray]) -> dict[str, float]:
  valid = arrays['labels'][arrays['mask']]
  return {name: float(valid[:, j].mean()) if len(valid) else float('nan')
          for j, name in enumerate(OBJECTIVES)}


def build_session_arrays(raw_dir: str, out_dir: str, *, max_set_size: int = MAX_SET_SIZE,
                         split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
                         split_by: str = 'user', seed: int = 0) -> dict[str, Any]:
  """Reads `raw_dir`, writes `{train,valid,test}.npz`, `vocab.npz`, `metadata.json` to `out_dir`.

  Sessions longer than `max_set_size` keep their first `max_set_size` positions (counted in
  metadata['truncated_sessions']). Returns the metadata dict (also written as JSON).
  """
  start = time.perf_counter()
  raw = read_raw_sessions(raw_dir)
  if not raw.sessions:
    raise ValueError(f'{raw_dir}: no valid session rows')
  labels = derive_labels(raw)
  user_ids = tuple(sorted({s.user_id for s in raw.sessions} | set(raw.history)))
  user_index = {u: i for i, u in enumerate(user_ids)}
  user_embedding, user_genre_dist = user_profiles(raw.tracks, raw.history, user_ids)
  split_of_session = _split_sessions(raw.sessions, split_fractions, split_by, seed)
  arrays = {name: _pad_split(raw, labels, np.flatnonzero(split_of_session == k), user_index,
                             user_embedding, user_genre_dist, max_set_size)
            for k, name in enumerate(SPLITS)}
  names = feature_names(raw.tracks.genre_names)
  normalised = np.array([not n.startswith('genre_') or n == 'genre_affinity' for n in names])
  train_rows = arrays['train']['features'][arrays['train']['mask']].astype(np.float64)
  if not len(train_rows):
    raise ValueError(f'train split is empty (split_fractions={split_fractions}, {split_by=})')
  mean = np.where(normalised, train_rows.mean(axis=0), 0.0)
  std = train_rows.std(axis=0)
  std = np.where(normalised & (std > 1e-6), std, 1.0)
  for split in arrays.values():
    split['features'] = np.where(split['mask'][..., None],
                                 (split['features'] - mean) / std, 0.0).astype(np.float32)
  _, _, (q25, q75) = emerging_artists(raw.tracks.artist, raw.tracks.popularity,
                                      len(raw.tracks.artist_ids))
  metadata = {
      'format_version': FORMAT_VERSION, 'objectives': list(OBJECTIVES),
      'max_set_size': max_set_size, 'num_features': len(names), 'feature_names': list(names),
      'normalised': normalised.tolist(), 'feature_mean': mean.tolist(),
      'feature_std': std.tolist(), 'genre_names': list(raw.tracks.genre_names),
      'split': {'by': split_by, 'seed': seed, 'fractions': list(split_fractions)},
      'counts': {name: {'sessions': int(len(a['user_ids'])),
                        'users': int(len(np.unique(a['user_ids']))),
                        'positions': int(a['mask'].sum())} for name, a in arrays.items()},
      'label_rates': {name: _label_rates(a) for name, a in arrays.items()},
      'exposure': {'artist_popularity': 'mean us_popularity_estimate of the artist tracks',
                   'q25': q25, 'q75': q75},
      'num_tracks': len(raw.tracks.track_ids), 'num_artists': len(raw.tracks.artist_ids),
      'num_users': len(user_ids), 'users_without_history': len(set(user_ids) - set(raw.history)),
      'truncated_sessions': sum(len(s.tracks) > max_set_size for s in raw.sessions),
      'validation': raw.report.to_dict(), 'raw_dir': os.path.abspath(raw_dir)}
  os.makedirs(out_dir, exist_ok=True)
  for name, split in arrays.items():
    np.savez(os.path.join(out_dir, f'{name}.npz'), **split)
  np.savez(os.path.join(out_dir, 'vocab.npz'), track_ids=np.array(raw.tracks.track_ids),
           user_ids=np.array(user_ids), artist_ids=np.array(raw.tracks.artist_ids),
           track_artist=raw.tracks.artist, genre_names=np.array(raw.tracks.genre_names),
           session_ids=np.array([s.session_id for s in raw.sessions]))
  metadata['build_seconds'] = round(time.perf_counter() - start, 3)
  with open(os.path.join(out_dir, 'metadata.json'), 'w') as f:
    json.dump(metadata, f, indent=1)
  logging.info('sessions arrays in %s: %s', out_dir, metadata['counts'])
  return metadata


# ----------------------------------------------------------------------------------- loading

ARRAY_NAMES = ('features', 'mask', 'labels', 'cosine', 'track_ids', 'user_ids', 'session_ids')


def load_metadata(data_dir: str) -> dict[str, Any]:
  with open(os.path.join(data_dir, 'metadata.json')) as f:
    return json.load(f)


def load_vocab(data_dir: str) -> dict[str, np.ndarray]:
  """Id strings: track_ids [T], user_ids [U], artist_ids [A], genre_names [G], session_ids."""
  with np.load(os.path.join(data_dir, 'vocab.npz')) as vocab:
    return dict(vocab)


def load_sessions(data_dir: str) -> dict[str, dict[str, np.ndarray]]:
  """{split: {array name: array}} for SPLITS; shapes as in the module docstring."""
  out = {}
  for split in SPLITS:
    path = os.path.join(data_dir, f'{split}.npz')
    if not os.path.exists(path):
      raise ValueError(f'{data_dir}: missing {split}.npz (run build_session_arrays first)')
    with np.load(path) as arrays:
      missing = [n for n in ARRAY_NAMES if n not in arrays]
      if missing:
        raise ValueError(f'{path}: missing arrays {missing}')
      out[split] = {n: arrays[n] for n in ARRAY_NAMES}
  return out


class _SessionRecords:
  """Random access to one session per index; index -1 is an all-padding session."""

  def __init__(self, arrays: dict[str, np.ndarray]):
    self._arrays = {n: arrays[n] for n in ARRAY_NAMES}

  def __call__(self, index: int) -> dict[str, np.ndarray]:
    if index < 0:
      record = {n: np.zeros_like(a[0]) for n, a in self._arrays.items()}
      record['track_ids'] = np.full_like(self._arrays['track_ids'][0], -1)
      record['user_ids'] = np.int32(-1)
      record['session_ids'] = np.int32(-1)
      record['session_valid'] = np.False_
      return record
    record = {n: a[index] for n, a in self._arrays.items()}
    record['session_valid'] = np.True_
    return record


def session_batches(arrays: dict[str, np.ndarray], *, batch_size: int, seed: int = 0,
                    shuffle: bool = True, num_epochs: int | None = 1,
                    drop_remainder: bool = True, shard_index: int = 0,
                    shard_count: int = 1) -> grain.MapDataset:
  """Fixed-shape batches of one split as a grain MapDataset (iterate with `iter(...)`).

  Each epoch is a fresh seeded permutation of the (host-local) sessions; batches never cross an
  epoch. `drop_remainder=True` drops each epoch's last partial batch; False pads it with empty
  sessions (mask all False, `session_valid` False) so every session is seen exactly once per
  epoch. `num_epochs=None` repeats forever. Hosts take disjoint, equal-sized slices
  (`shard_index::shard_count`). A batch is the dict of `ARRAY_NAMES` with a leading
  [batch_size] axis plus `session_valid bool [batch_size]`. Resume with the iterator's
  `get_state()` / `set_state(state)` (grain), e.g. through orbax's grain checkpoint handler.
  """
  if batch_size <= 0:
    raise ValueError(f'batch_size must be positive, got {batch_size}')
  if not 0 <= shard_index < shard_count:
    raise ValueError(f'shard_index {shard_index} not in [0, {shard_count})')
  num_local = len(arrays['user_ids']) // shard_count
  order = grain.MapDataset.range(len(arrays['user_ids']))[shard_index::shard_count][:num_local]
  if shuffle:
    order = order.shuffle(seed=seed)
  per_epoch = (num_local // batch_size if drop_remainder
               else -(-num_local // batch_size)) * batch_size
  if per_epoch == 0:
    raise ValueError(f'{num_local} sessions per shard give no batch of {batch_size}')
  order = order.repeat(num_epochs)
  length = per_epoch * num_epochs if num_epochs is not None else per_epoch * (2**62 // per_epoch)

  def session_index(j: int) -> int:
    epoch, k = divmod(j, per_epoch)
    return -1 if k >= num_local else int(order[epoch * num_local + k])

  records = _SessionRecords(arrays)
  return (grain.MapDataset.range(length).map(session_index).map(records)
          .batch(batch_size, drop_remainder=True))


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--raw_dir', required=True)
  parser.add_argument('--out_dir', required=True)
  parser.add_argument('--max_set_size', type=int, default=MAX_SET_SIZE)
  parser.add_argument('--split_by', choices=('user', 'session'), default='user')
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args(argv)
  metadata = build_session_arrays(args.raw_dir, args.out_dir, max_set_size=args.max_set_size,
                                  split_by=args.split_by, seed=args.seed)
  print(json.dumps({k: metadata[k] for k in ('counts', 'label_rates', 'validation',
                                             'build_seconds')}, indent=1))


if __name__ == '__main__':
  main()
