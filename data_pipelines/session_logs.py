"""Reading and validating MSSD-style raw session CSVs (the input of `data_pipelines/sessions.py`).

Raw input (one directory; `data_pipelines/demo/sessions.py` writes exactly this):
  log_*.csv         Spotify MSSD session logs (`MSSD_LOG_COLUMNS`) plus `user_id`. One session is
                    one candidate SET of tracks for one user; `not_skipped` marks the streamed.
  tf_*.csv          MSSD track features (`MSSD_TRACK_COLUMNS`) plus `artist_id`, `boost` (0/1) and
                    `genres` ('|'-joined names, may be empty).
  user_history.csv  `user_id, track_id, plays`: what each user played BEFORE the logged period.

`read_raw_sessions(raw_dir)` returns a `RawSessions`: the valid track rows as a `TrackTable` (row t
is track index t downstream), each user's history and the sessions in chronological order
(`session_order_key`). Bad rows never stop a read: they are skipped and counted per reason in a
`ValidationReport` ('<file kind>/<reason>', first examples kept).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import glob
import math
import os
from collections.abc import Iterator, Sequence
from typing import Any

from absl import logging
import numpy as np

EMBEDDING_DIM = 8
GENRE_SEPARATOR = '|'

MSSD_LOG_COLUMNS = (
    'session_id',
    'session_position',
    'session_length',
    'track_id_clean',
    'skip_1',
    'skip_2',
    'skip_3',
    'not_skipped',
    'context_switch',
    'no_pause_before_play',
    'short_pause_before_play',
    'long_pause_before_play',
    'hist_user_behavior_n_seekfwd',
    'hist_user_behavior_n_seekback',
    'hist_user_behavior_is_shuffle',
    'hour_of_day',
    'date',
    'premium',
    'context_type',
    'hist_user_behavior_reason_start',
    'hist_user_behavior_reason_end',
)
LOG_EXTENSION_COLUMNS = ('user_id',)
EMBEDDING_COLUMNS = tuple(f'acoustic_vector_{i}' for i in range(EMBEDDING_DIM))
MSSD_TRACK_COLUMNS = (
    'track_id',
    'duration',
    'release_year',
    'us_popularity_estimate',
    'acousticness',
    'beat_strength',
    'bounciness',
    'danceability',
    'dyn_range_mean',
    'energy',
    'flatness',
    'instrumentalness',
    'key',
    'liveness',
    'loudness',
    'mechanism',
    'mode',
    'organism',
    'speechiness',
    'tempo',
    'time_signature',
    'valence',
) + EMBEDDING_COLUMNS
TRACK_EXTENSION_COLUMNS = ('artist_id', 'boost', 'genres')
HISTORY_COLUMNS = ('user_id', 'track_id', 'plays')
ACOUSTIC_FEATURES = (
    'acousticness',
    'beat_strength',
    'bounciness',
    'danceability',
    'dyn_range_mean',
    'energy',
    'flatness',
    'instrumentalness',
    'liveness',
    'loudness',
    'mechanism',
    'mode',
    'organism',
    'speechiness',
    'tempo',
    'valence',
)

_LOG_INT_COLUMNS = (
    'session_position',
    'session_length',
    'context_switch',
    'no_pause_before_play',
    'short_pause_before_play',
    'long_pause_before_play',
    'hist_user_behavior_n_seekfwd',
    'hist_user_behavior_n_seekback',
    'hour_of_day',
)
_LOG_BOOL_COLUMNS = (
    'skip_1',
    'skip_2',
    'skip_3',
    'not_skipped',
    'hist_user_behavior_is_shuffle',
    'premium',
)
_TRACK_FLOAT_COLUMNS = tuple(c for c in MSSD_TRACK_COLUMNS if c not in ('track_id', 'mode'))
_OPTIONAL_TRACK_COLUMNS = ('genres',)  # may be empty
_BOOLS = {'true': 1.0, 'false': 0.0, '1': 1.0, '0': 0.0}
_MODES = {'major': 1.0, 'minor': 0.0}


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
    return {
        'total_skipped_rows': self.total,
        'counts': dict(sorted(self.counts.items())),
        'examples': dict(sorted(self.examples.items())),
    }

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
  artist_ids: tuple[str, ...]  # artist vocabulary, in order of first appearance
  artist: np.ndarray  # int32 [T] row of artist_ids
  boost: np.ndarray  # float32 [T] 0/1
  genre_names: tuple[str, ...]  # sorted genre vocabulary
  genres: np.ndarray  # float32 [T, G] multi-hot
  popularity: np.ndarray  # float64 [T] us_popularity_estimate
  duration: np.ndarray  # float64 [T] seconds
  acoustic: np.ndarray  # float64 [T, 16] in ACOUSTIC_FEATURES order
  embedding: np.ndarray  # float64 [T, 8] acoustic_vector_0..7


@dataclasses.dataclass(frozen=True)
class Session:
  """One logged session (candidate set), rows ordered by session_position."""

  session_id: str
  user_id: str
  date: str
  hour: int
  positions: np.ndarray  # int32 [n]
  tracks: np.ndarray  # int32 [n] rows of the TrackTable
  not_skipped: np.ndarray  # float32 [n]


@dataclasses.dataclass(frozen=True)
class RawSessions:
  tracks: TrackTable
  history: dict[str, tuple[np.ndarray, np.ndarray]]  # user -> (track rows int32, plays float64)
  sessions: tuple[Session, ...]  # chronological, see `session_order_key`
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


def _parse_fields(
    record: dict[str, str],
    ints: Sequence[str] = (),
    floats: Sequence[str] = (),
    bools: Sequence[str] = (),
    required: Sequence[str] = (),
    optional: Sequence[str] = (),
) -> dict[str, Any]:
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


def _parse_or_report(
    report: ValidationReport,
    kind: str,
    where: str,
    row: list[str],
    record: dict[str, str] | None,
    **spec: Sequence[str],
) -> dict | None:
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
      fields = _parse_or_report(
          report,
          'tracks',
          where,
          row,
          record,
          required=columns,
          optional=_OPTIONAL_TRACK_COLUMNS,
          floats=_TRACK_FLOAT_COLUMNS + ('boost',),
      )
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
  artist = np.array(
      [artist_index.setdefault(f['artist_id'], len(artist_index)) for f in parsed], np.int32
  )
  track_genres = [
      [g.strip() for g in f['genres'].split(GENRE_SEPARATOR) if g.strip()] for f in parsed
  ]
  genre_names = tuple(sorted({g for gs in track_genres for g in gs}))
  genre_index = {g: i for i, g in enumerate(genre_names)}
  genres = np.zeros((len(parsed), len(genre_names)), np.float32)
  for t, gs in enumerate(track_genres):
    genres[t, [genre_index[g] for g in gs]] = 1.0
  column = lambda name: np.array([f[name] for f in parsed], np.float64)
  return TrackTable(
      track_ids=track_ids,
      index={t: i for i, t in enumerate(track_ids)},
      artist_ids=tuple(artist_index),
      artist=artist,
      boost=column('boost').astype(np.float32),
      genre_names=genre_names,
      genres=genres,
      popularity=column('us_popularity_estimate'),
      duration=column('duration'),
      acoustic=np.stack([column(c) for c in ACOUSTIC_FEATURES], axis=1),
      embedding=np.stack([column(c) for c in EMBEDDING_COLUMNS], axis=1),
  )


def read_user_history(
    path: str, tracks: TrackTable, report: ValidationReport
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Reads user_history.csv -> {user_id: (track rows int32 [h], plays float64 [h])}."""
  rows: dict[str, dict[int, float]] = {}
  for line, row, record in _read_rows(path, HISTORY_COLUMNS):
    where = f'{os.path.basename(path)}:{line}'
    fields = _parse_or_report(
        report, 'history', where, row, record, required=HISTORY_COLUMNS, floats=('plays',)
    )
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
  return {
      u: (np.array(list(p), np.int32), np.array(list(p.values()), np.float64))
      for u, p in rows.items()
  }


def session_order_key(session: Session) -> tuple[str, int, str]:
  """Chronological order of sessions: (date, hour_of_day, session_id)."""
  return (session.date, session.hour, session.session_id)


def read_session_logs(
    paths: Sequence[str], tracks: TrackTable, report: ValidationReport
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
      f = _parse_or_report(
          report,
          'log',
          where,
          row,
          record,
          required=columns,
          ints=_LOG_INT_COLUMNS,
          bools=_LOG_BOOL_COLUMNS,
      )
      if f is None:
        continue
      try:
        datetime.date.fromisoformat(f['date'])
      except ValueError:
        report.add('log/unparseable', where, f"date={f['date']!r} is not YYYY-MM-DD")
        continue
      if not 1 <= f['session_position'] <= f['session_length'] or not 0 <= f['hour_of_day'] < 24:
        report.add(
            'log/bad_position',
            where,
            f"position {f['session_position']} of {f['session_length']}, "
            f"hour {f['hour_of_day']}",
        )
        continue
      track = tracks.index.get(f['track_id_clean'])
      if track is None:
        report.add('log/unknown_track', where, f['track_id_clean'])
        continue
      session = grouped.setdefault(
          f['session_id'], {'user_id': f['user_id'], 'date': f['date'], 'rows': {}, 'tracks': set()}
      )
      if (f['user_id'], f['date']) != (session['user_id'], session['date']):
        report.add(
            'log/inconsistent_session',
            where,
            f"session {f['session_id']} has user/date {session['user_id']}/"
            f"{session['date']}, row has {f['user_id']}/{f['date']}",
        )
        continue
      if f['session_position'] in session['rows']:
        report.add(
            'log/duplicate_position',
            where,
            f"session {f['session_id']} position {f['session_position']}",
        )
        continue
      if track in session['tracks']:
        report.add(
            'log/repeated_track', where, f"session {f['session_id']} repeats {f['track_id_clean']}"
        )
        continue
      session['tracks'].add(track)
      session['rows'][f['session_position']] = (track, f['not_skipped'], f['hour_of_day'])
  sessions = []
  for session_id, s in grouped.items():
    positions = sorted(s['rows'])
    sessions.append(
        Session(
            session_id=session_id,
            user_id=s['user_id'],
            date=s['date'],
            hour=s['rows'][positions[0]][2],
            positions=np.array(positions, np.int32),
            tracks=np.array([s['rows'][p][0] for p in positions], np.int32),
            not_skipped=np.array([s['rows'][p][1] for p in positions], np.float32),
        )
    )
  return tuple(sorted(sessions, key=session_order_key))


def read_raw_sessions(raw_dir: str, max_examples: int = 5) -> RawSessions:
  """Reads tf_*.csv, user_history.csv (optional) and log_*.csv from `raw_dir`."""
  tf_paths = sorted(glob.glob(os.path.join(raw_dir, 'tf_*.csv')))
  log_paths = sorted(glob.glob(os.path.join(raw_dir, 'log_*.csv')))
  if not tf_paths or not log_paths:
    raise ValueError(
        f'{raw_dir}: expected tf_*.csv and log_*.csv files, found '
        f'{len(tf_paths)} and {len(log_paths)}'
    )
  report = ValidationReport(max_examples=max_examples)
  tracks = read_track_features(tf_paths, report)
  history_path = os.path.join(raw_dir, 'user_history.csv')
  history = read_user_history(history_path, tracks, report) if os.path.exists(history_path) else {}
  sessions = read_session_logs(log_paths, tracks, report)
  if report.total:
    logging.warning('sessions data in %s: %s', raw_dir, report.summary())
  return RawSessions(tracks=tracks, history=history, sessions=sessions, report=report)
