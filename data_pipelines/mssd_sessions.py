"""The Spotify MSSD as shipped -> MOSTRA candidate sets in array_record shards, read in a stream.

Layout read (`manual_dir`, as the dataset is distributed; each file plain `.csv` or `.csv.gz`):
  training_set/log_*.csv      session logs, MSSD's columns. Used: session_id, session_position,
                              track_id_clean, not_skipped (required); context_type (the radio
                              filter), user_id (optional, not in MSSD). Other columns are not read
                              (an empty field there never drops a row).
  track_features/tf_*.csv     track features, MSSD's columns. Used: track_id (required) and the
                              numeric features present (`TRACK_FEATURES`, `mode` major=1/minor=0);
                              optional artist_id, boost (0/1), genres ('|'-joined) (not in MSSD).
  user_history.csv            optional `user_id, track_id, plays` (plays before the logs).

Objectives (OBJECTIVES order, SAT first) are derived from the columns present:
  SAT        not_skipped.                                          always
  BOOST      the track's `boost` flag.                             needs tf `boost`
  EXPOSURE   artist popularity (mean us_popularity_estimate of its tracks) in the inter-quartile
             range of artist popularities (as data_pipelines/sessions.py).
                                                                   needs tf `artist_id`
  DISCOVERY  the user never played the artist before this session (user_history.csv and the
             user's sessions earlier in reading order: files by name, rows in file order).
                                                                   needs log `user_id`, tf
                                                                   `artist_id`
The others are listed in metadata['unavailable_objectives'] with the reason; nothing fails.

Rules (each counted in metadata['counts']):
  * a bad row (wrong field count, empty/unparseable used field, unknown track) is skipped:
    `log/<reason>`, `tracks/<reason>`; a repeated track id in tf files keeps the first row.
  * NaN/inf/empty track features are imputed with the column's mean over the tracks where it is
    finite (`imputed/<column>`); a column absent from the files is left out of the features.
  * radio filter: with `context_types` non-empty, rows whose context_type is not listed are
    dropped (`log/filtered_context`); the paper studies radio sessions (on in the paper preset).
  * a track repeated within a session is one candidate whose SAT is 1 if any of its plays was
    not skipped (`sessions/repeated_track_plays_merged`); a repeated position keeps the first row.
  * a session longer than `max_set_size` candidates is cut into consecutive candidate sets of
    `max_set_size` (`sessions/long_split`, `sessions/extra_sets`); MSSD's sessions are <= 20.
  * rows of one session must be contiguous in a file (as in MSSD); a session id met again after
    another session in the same file is dropped (`log/non_contiguous_session`).
Splits: by a seeded hash of user_id (user-disjoint, paper Sec. 5), or of session_id when the logs
have no user_id (`split_by` in the metadata says which).

Memory: logs are streamed row by row; at most one session's rows are held. What grows is the
track table (MSSD: 3.7M tracks) and, with user_id, each user's set of artists seen.

Output `out_dir`: `<split>/<log file>.array_record` (one shard per log file and split; one record
per candidate set, `encode_record`), `tracks.npz` (track ids), `metadata.json` (feature names,
train-split mean/std, objectives, counts). Features are stored raw; `load_split` normalises.
"""

from __future__ import annotations

import csv
import glob
import gzip
import hashlib
import io
import json
import math
import os
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from array_record.python import array_record_module

from data_pipelines import session_logs

OBJECTIVES = ('SAT', 'BOOST', 'EXPOSURE', 'DISCOVERY')
SPLITS = ('train', 'valid', 'test')
FORMAT = 'mssd_sessions/1'
# MSSD's track-feature columns (the one list lives in session_logs), without the id column.
TRACK_FEATURES = session_logs.MSSD_TRACK_COLUMNS[1:]
LOG_REQUIRED = ('session_id', 'session_position', 'track_id_clean', 'not_skipped')
_BOOLS = {'true': 1.0, 'false': 0.0, '1': 1.0, '0': 0.0}
_MODES = {'major': 1.0, 'minor': 0.0}
UNAVAILABLE_REASONS = {
    'BOOST': 'needs a `boost` column in track_features/tf_*.csv (not in MSSD)',
    'EXPOSURE': 'needs an `artist_id` column in track_features/tf_*.csv (not in MSSD)',
    'DISCOVERY': 'needs `user_id` in training_set/log_*.csv and `artist_id` in tf_*.csv '
    '(neither is in MSSD)',
}


class Counts(dict):

  def add(self, key: str, n: int = 1) -> None:
    self[key] = self.get(key, 0) + n


def _open(path: str):
  if path.endswith('.gz'):
    return io.TextIOWrapper(gzip.open(path, 'rb'), newline='')
  return open(path, newline='')


def _files(manual_dir: str, folder: str, prefix: str) -> list[str]:
  found = []
  for base in (os.path.join(manual_dir, folder), manual_dir):
    found = sorted(
        glob.glob(os.path.join(base, f'{prefix}_*.csv'))
        + glob.glob(os.path.join(base, f'{prefix}_*.csv.gz'))
    )
    if found:
      break
  if not found:
    raise ValueError(
        f'manual_dir={manual_dir!r}: no {folder}/{prefix}_*.csv[.gz] files (the MSSD layout)'
    )
  return found


def _rows(path: str, required: Sequence[str]) -> Iterator[tuple[int, dict[str, int], list[str]]]:
  """(line, column index, fields) per data row; ValueError naming the file on a bad header."""
  with _open(path) as f:
    reader = csv.reader(f)
    header = [h.strip() for h in next(reader, [])]
    missing = [c for c in required if c not in header]
    if missing:
      raise ValueError(f'{path}: missing required columns {missing} (header: {header[:8]}...)')
    index = {c: i for i, c in enumerate(header)}
    for row in reader:
      if row:
        yield reader.line_num, index, row, len(header)


# -------------------------------------------------------------------------------- tracks


def read_tracks(paths: Sequence[str], counts: Counts) -> dict[str, Any]:
  """Track table: ids, index, raw features float32 [T, F] (imputed), artist, boost, genres."""
  ids, index, rows, artist, boost, genres = [], {}, [], [], [], []
  columns = None
  for path in paths:
    for line, col, row, width in _rows(path, ('track_id',)):
      if columns is None:
        columns = [c for c in TRACK_FEATURES if c in col]
        has = {c: c in col for c in ('artist_id', 'boost', 'genres')}
      if len(row) != width:
        counts.add('tracks/wrong_field_count')
        continue
      track = row[col['track_id']].strip()
      if not track:
        counts.add('tracks/missing_track_id')
        continue
      if track in index:
        counts.add('tracks/duplicate_track_id')
        continue
      if has['boost']:
        value = row[col['boost']].strip().lower()
        if value not in _BOOLS:
          counts.add('tracks/bad_boost')
          continue
        boost.append(_BOOLS[value])
      values = []
      for c in columns:
        text = row[col[c]].strip()
        if c == 'mode':
          values.append(_MODES.get(text.lower(), math.nan))
          continue
        try:
          values.append(float(text))
        except ValueError:
          values.append(math.nan)
      index[track] = len(ids)
      ids.append(track)
      rows.append(values)
      if has['artist_id']:
        artist.append(row[col['artist_id']].strip() or f'<unknown artist of {track}>')
      if has['genres']:
        genres.append([g.strip() for g in row[col['genres']].split('|') if g.strip()])
  if not ids:
    raise ValueError(f'no valid track rows in {list(paths)}')
  features = np.asarray(rows, np.float64).reshape(len(ids), len(columns))
  for j, c in enumerate(columns):
    bad = ~np.isfinite(features[:, j])
    if bad.any():
      counts.add(f'imputed/{c}', int(bad.sum()))
      fill = features[~bad, j].mean() if (~bad).any() else 0.0
      features[bad, j] = fill
  names = list(columns)
  genre_names = sorted({g for gs in genres for g in gs})
  if genre_names:
    position = {g: i for i, g in enumerate(genre_names)}
    multi_hot = np.zeros((len(ids), len(genre_names)))
    for t, gs in enumerate(genres):
      multi_hot[t, [position[g] for g in gs]] = 1.0
    features = np.concatenate([features, multi_hot], axis=1)
    names += [f'genre_{g}' for g in genre_names]
  out = {'ids': ids, 'index': index, 'features': features.astype(np.float32), 'names': names}
  out['boost'] = np.asarray(boost, np.float32) if has['boost'] else None
  if has['artist_id']:
    artist_index: dict[str, int] = {}
    out['artist'] = np.array([artist_index.setdefault(a, len(artist_index)) for a in artist])
    out['num_artists'] = len(artist_index)
    if 'us_popularity_estimate' in columns:
      pop = features[:, columns.index('us_popularity_estimate')]
      artist_pop = np.bincount(out['artist'], pop) / np.bincount(out['artist'])
      q25, q75 = np.percentile(artist_pop, [25.0, 75.0])
      out['emerging'] = (artist_pop >= q25) & (artist_pop <= q75)
  return out


def available_objectives(tracks: dict[str, Any], has_user: bool) -> tuple[tuple[str, ...], dict]:
  have = {
      'SAT': True,
      'BOOST': tracks['boost'] is not None,
      'EXPOSURE': 'emerging' in tracks,
      'DISCOVERY': 'artist' in tracks and has_user,
  }
  names = tuple(o for o in OBJECTIVES if have[o])
  return names, {o: UNAVAILABLE_REASONS[o] for o in OBJECTIVES if not have[o]}


# ------------------------------------------------------------------------------- records


def encode_record(features: np.ndarray, labels: np.ndarray, tracks: np.ndarray, key: str) -> bytes:
  """One candidate set: int32 (n, F, J) + float32 features [n, F] + labels [n, J] + int32
  track rows [n] + the utf-8 session key."""
  n, f = features.shape
  head = np.array([n, f, labels.shape[1]], np.int32).tobytes()
  return b''.join(
      [
          head,
          features.astype(np.float32).tobytes(),
          labels.astype(np.float32).tobytes(),
          tracks.astype(np.int32).tobytes(),
          key.encode(),
      ]
  )


def decode_record(data: bytes) -> dict[str, Any]:
  n, f, j = np.frombuffer(data[:12], np.int32)
  at = 12
  features = np.frombuffer(data[at : at + 4 * n * f], np.float32).reshape(n, f)
  at += 4 * n * f
  labels = np.frombuffer(data[at : at + 4 * n * j], np.float32).reshape(n, j)
  at += 4 * n * j
  tracks = np.frombuffer(data[at : at + 4 * n], np.int32)
  return {
      'features': features,
      'labels': labels,
      'tracks': tracks,
      'key': data[at + 4 * n :].decode(),
  }


def _split_of(key: str, fractions: Sequence[float], seed: int) -> int:
  digest = hashlib.blake2b(f'{seed}:{key}'.encode(), digest_size=8).digest()
  u = int.from_bytes(digest, 'little') / 2**64
  return int(np.searchsorted(np.cumsum(fractions)[:2], u, side='right'))


# -------------------------------------------------------------------------------- build


def build(
    manual_dir: str,
    out_dir: str,
    *,
    max_set_size: int = 20,
    context_types: Sequence[str] = (),
    split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> dict[str, Any]:
  """Streams `manual_dir` (module docstring) into array_record shards in `out_dir`.

  Returns the metadata (also written to out_dir/metadata.json).
  """
  if (
      len(split_fractions) != 3
      or min(split_fractions) < 0
      or not math.isclose(sum(split_fractions), 1)
  ):
    raise ValueError(
        f'split_fractions must be 3 non-negative numbers summing to 1, got {split_fractions}'
    )
  if max_set_size < 1:
    raise ValueError(f'max_set_size must be >= 1, got {max_set_size}')
  start = time.perf_counter()
  counts = Counts()
  tracks = read_tracks(_files(manual_dir, 'track_features', 'tf'), counts)
  log_paths = _files(manual_dir, 'training_set', 'log')
  with _open(log_paths[0]) as f:
    log_header = [h.strip() for h in next(csv.reader(f), [])]
  has_user = 'user_id' in log_header
  if context_types and 'context_type' not in log_header:
    raise ValueError(
        f'{log_paths[0]}: context_types={tuple(context_types)} needs a context_type column'
    )
  objectives, unavailable = available_objectives(tracks, has_user)
  seen = _history(manual_dir, tracks, counts) if 'DISCOVERY' in objectives else {}
  num_features = tracks['features'].shape[1]
  stats = np.zeros((3, num_features))  # count, sum, sum of squares over train candidates
  sets = [0, 0, 0]
  writers = {}
  os.makedirs(out_dir, exist_ok=True)

  def emit(rows: dict[int, tuple[int, float]], session: str, user: str) -> None:
    by_track: dict[int, float] = {}
    for position in sorted(rows):
      track, sat = rows[position]
      if track in by_track:
        counts.add('sessions/repeated_track_plays_merged')
      by_track[track] = max(by_track.get(track, 0.0), sat)
    track_rows = np.fromiter(by_track, np.int32)
    sat = np.fromiter(by_track.values(), np.float32)
    columns = [sat]
    if 'BOOST' in objectives:
      columns.append(tracks['boost'][track_rows])
    artists = tracks['artist'][track_rows] if 'artist' in tracks else None
    if 'EXPOSURE' in objectives:
      columns.append(tracks['emerging'][artists].astype(np.float32))
    if 'DISCOVERY' in objectives:
      known = seen.setdefault(user, set())
      columns.append(np.array([a not in known for a in artists.tolist()], np.float32))
      known.update(artists.tolist())
    labels = np.stack(columns, axis=1)
    features = tracks['features'][track_rows]
    split = _split_of(user if has_user else session, split_fractions, seed)
    pieces = range(0, len(track_rows), max_set_size)
    if len(pieces) > 1:
      counts.add('sessions/long_split')
      counts.add('sessions/extra_sets', len(pieces) - 1)
    for k, lo in enumerate(pieces):
      hi = lo + max_set_size
      key = session if len(pieces) == 1 else f'{session}#{k}'
      writers[split].write(encode_record(features[lo:hi], labels[lo:hi], track_rows[lo:hi], key))
      sets[split] += 1
      if split == 0:
        x = features[lo:hi].astype(np.float64)
        stats[0] += len(x)
        stats[1] += x.sum(0)
        stats[2] += (x * x).sum(0)

  for path in log_paths:
    name = os.path.basename(path).split('.')[0]
    for k, split in enumerate(SPLITS):
      os.makedirs(os.path.join(out_dir, split), exist_ok=True)
      writers[k] = array_record_module.ArrayRecordWriter(
          os.path.join(out_dir, split, f'{name}.array_record'), 'group_size:1'
      )
    current, user, rows, finished = None, '', {}, set()
    for line, col, row, width in _rows(path, LOG_REQUIRED):
      if len(row) != width:
        counts.add('log/wrong_field_count')
        continue
      session = row[col['session_id']].strip()
      if context_types and row[col['context_type']].strip() not in context_types:
        counts.add('log/filtered_context')
        continue
      if session != current:
        if current is not None and rows:
          emit(rows, current, user)
        finished.add(current)
        if session in finished:
          counts.add('log/non_contiguous_session')
          current, rows = None, {}
          continue
        current, rows = session, {}
        user = row[col['user_id']].strip() if has_user else ''
      try:
        position = int(row[col['session_position']])
        sat = _BOOLS[row[col['not_skipped']].strip().lower()]
      except (KeyError, ValueError):
        counts.add('log/unparseable')
        continue
      if not session or (has_user and not user):
        counts.add('log/missing_field')
        continue
      track = tracks['index'].get(row[col['track_id_clean']].strip())
      if track is None:
        counts.add('log/unknown_track')
        continue
      if position in rows:
        counts.add('log/duplicate_position')
        continue
      rows[position] = (track, sat)
      counts.add('log/rows_used')
    if current is not None and rows:
      emit(rows, current, user)
    for writer in writers.values():
      writer.close()
  n = np.maximum(stats[0], 1)
  mean = stats[1] / n
  std = np.sqrt(np.maximum(stats[2] / n - mean**2, 0.0))
  is_genre = np.array([c.startswith('genre_') for c in tracks['names']], bool)
  mean = np.where(is_genre, 0.0, mean)
  std = np.where(is_genre | (std < 1e-6), 1.0, std)
  metadata = {
      'format': FORMAT,
      'objectives': list(objectives),
      'unavailable_objectives': unavailable,
      'feature_names': tracks['names'],
      'num_features': num_features,
      'feature_mean': mean.tolist(),
      'feature_std': std.tolist(),
      'max_set_size': max_set_size,
      'context_types': list(context_types),
      'split': {
          'by': 'user' if has_user else 'session',
          'seed': seed,
          'fractions': list(split_fractions),
      },
      'sets': dict(zip(SPLITS, sets)),
      'counts': dict(sorted(counts.items())),
      'num_tracks': len(tracks['ids']),
      'log_files': [os.path.relpath(p, manual_dir) for p in log_paths],
      'seconds': round(time.perf_counter() - start, 3),
  }
  np.savez(os.path.join(out_dir, 'tracks.npz'), track_ids=np.array(tracks['ids']))
  with open(os.path.join(out_dir, 'metadata.json'), 'w') as f:
    json.dump(metadata, f, indent=1)
  return metadata


def _history(manual_dir: str, tracks: dict[str, Any], counts: Counts) -> dict[str, set]:
  path = os.path.join(manual_dir, 'user_history.csv')
  seen: dict[str, set] = {}
  if not os.path.exists(path):
    return seen
  for line, col, row, width in _rows(path, ('user_id', 'track_id')):
    track = tracks['index'].get(row[col['track_id']].strip()) if len(row) == width else None
    if track is None:
      counts.add('history/skipped')
      continue
    seen.setdefault(row[col['user_id']].strip(), set()).add(int(tracks['artist'][track]))
  return seen


# -------------------------------------------------------------------------------- read


def load_metadata(data_dir: str) -> dict[str, Any]:
  with open(os.path.join(data_dir, 'metadata.json')) as f:
    metadata = json.load(f)
  if metadata.get('format') != FORMAT:
    raise ValueError(f'{data_dir}/metadata.json is not an MSSD sessions build ({FORMAT})')
  return metadata


def split_paths(data_dir: str, split: str) -> list[str]:
  """The array_record shards of one split (for grain's ArrayRecordDataSource)."""
  if split not in SPLITS:
    raise ValueError(f'split must be one of {SPLITS}, got {split!r}')
  return sorted(glob.glob(os.path.join(data_dir, split, '*.array_record')))


def iter_records(data_dir: str, split: str) -> Iterator[dict[str, Any]]:
  for path in split_paths(data_dir, split):
    reader = array_record_module.ArrayRecordReader(path)
    try:
      for i in range(reader.num_records()):
        yield decode_record(reader.read([i])[0])
    finally:
      reader.close()


def load_split(data_dir: str, split: str) -> dict[str, np.ndarray]:
  """One split as the padded arrays of data_pipelines/sessions.py (in memory; for the job).

  features float32 [S, N, F] (normalised with the train mean/std), mask bool [S, N], labels
  float32 [S, N, J] (metadata['objectives']), cosine float32 [S, N] (zeros: no user vectors),
  track_ids int32 [S, N] (-1 = pad), user_ids int32 [S] (zeros), session_ids int32 [S].
  """
  metadata = load_metadata(data_dir)
  n, f, j = metadata['max_set_size'], metadata['num_features'], len(metadata['objectives'])
  records = list(iter_records(data_dir, split))
  s = len(records)
  out = {
      'features': np.zeros((s, n, f), np.float32),
      'mask': np.zeros((s, n), bool),
      'labels': np.zeros((s, n, j), np.float32),
      'cosine': np.zeros((s, n), np.float32),
      'track_ids': np.full((s, n), -1, np.int32),
      'user_ids': np.zeros((s,), np.int32),
      'session_ids': np.arange(s, dtype=np.int32),
  }
  mean = np.asarray(metadata['feature_mean'], np.float32)
  std = np.asarray(metadata['feature_std'], np.float32)
  for i, r in enumerate(records):
    k = len(r['tracks'])
    out['features'][i, :k] = (r['features'] - mean) / std
    out['mask'][i, :k] = True
    out['labels'][i, :k] = r['labels']
    out['track_ids'][i, :k] = r['tracks']
  return out


def load_sessions(data_dir: str) -> dict[str, dict[str, np.ndarray]]:
  return {split: load_split(data_dir, split) for split in SPLITS}
