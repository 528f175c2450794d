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
train-split mean/std, objectives, counts; written last, atomically: the completion marker).
Features are stored raw; `load_split` normalises. `mssd_shards.shard_sets` turns one log file
into its records; `build` runs it file after file, `data_pipelines.mssd_sessions_beam` one Beam
task per file (the same bytes).
"""

from __future__ import annotations

import csv
import glob
import json
import math
import os
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from array_record.python import array_record_module

from data_pipelines import build_once
from data_pipelines import mssd_shards
from data_pipelines import session_logs

OBJECTIVES = ('SAT', 'BOOST', 'EXPOSURE', 'DISCOVERY')
SPLITS = ('train', 'valid', 'test')
FORMAT = 'mssd_sessions/1'
METADATA_FILE = 'metadata.json'  # written last: the completion marker
# MSSD's track-feature columns (the one list lives in session_logs), without the id column.
TRACK_FEATURES = session_logs.MSSD_TRACK_COLUMNS[1:]
_MODES = {'major': 1.0, 'minor': 0.0}
UNAVAILABLE_REASONS = {
    'BOOST': 'needs a `boost` column in track_features/tf_*.csv (not in MSSD)',
    'EXPOSURE': 'needs an `artist_id` column in track_features/tf_*.csv (not in MSSD)',
    'DISCOVERY': 'needs `user_id` in training_set/log_*.csv and `artist_id` in tf_*.csv '
    '(neither is in MSSD)',
}


def find_files(manual_dir: str, folder: str, prefix: str) -> list[str]:
  """`manual_dir/<folder>/<prefix>_*.csv[.gz]` (or directly in manual_dir), sorted; ValueError
  naming the layout when there are none."""
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


# -------------------------------------------------------------------------------- tracks


def read_tracks(paths: Sequence[str], counts: mssd_shards.Counts) -> dict[str, Any]:
  """Track table: ids, index, raw features float32 [T, F] (imputed), artist, boost, genres."""
  ids, index, rows, artist, boost, genres = [], {}, [], [], [], []
  columns = None
  for path in paths:
    for line, col, row, width in mssd_shards.csv_rows(path, ('track_id',)):
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
        if value not in mssd_shards.BOOLS:
          counts.add('tracks/bad_boost')
          continue
        boost.append(mssd_shards.BOOLS[value])
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


# -------------------------------------------------------------------------------- build


def check_build_args(max_set_size: int, split_fractions: Sequence[float]) -> None:
  """ValueError unless split_fractions are 3 non-negative numbers summing to 1 and
  max_set_size >= 1."""
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


def log_files(manual_dir: str, context_types: Sequence[str]) -> tuple[list[str], bool]:
  """(the log files in reading order, whether they have user_id) from the first file's header;
  ValueError when context_types are given and there is no context_type column."""
  log_paths = find_files(manual_dir, 'training_set', 'log')
  with mssd_shards.open_csv(log_paths[0]) as f:
    log_header = [h.strip() for h in next(csv.reader(f), [])]
  if context_types and 'context_type' not in log_header:
    raise ValueError(
        f'{log_paths[0]}: context_types={tuple(context_types)} needs a context_type column'
    )
  return log_paths, 'user_id' in log_header


def shard_name(log_path: str) -> str:
  """The output shard name of a log file: `<split>/<shard_name>.array_record`."""
  return os.path.basename(log_path).split('.')[0]


def build_metadata(
    *,
    tracks: dict[str, Any],
    objectives: Sequence[str],
    unavailable: dict[str, str],
    stats: mssd_shards.TrainStats,
    max_set_size: int,
    context_types: Sequence[str],
    has_user: bool,
    seed: int,
    split_fractions: Sequence[float],
    sets: Sequence[int],
    counts: mssd_shards.Counts,
    manual_dir: str,
    log_paths: Sequence[str],
    seconds: float,
) -> dict[str, Any]:
  """The build's metadata.json (both routes)."""
  mean, std = stats.mean_std(tracks['names'])
  return {
      'format': FORMAT,
      'objectives': list(objectives),
      'unavailable_objectives': unavailable,
      'feature_names': tracks['names'],
      'num_features': tracks['features'].shape[1],
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
      'seconds': round(seconds, 3),
  }


def write_outputs(out_dir: str, tracks: dict[str, Any], metadata: dict[str, Any]) -> None:
  """tracks.npz, then metadata.json (atomically, last: the build's completion marker)."""
  np.savez(os.path.join(out_dir, 'tracks.npz'), track_ids=np.array(tracks['ids']))
  build_once.write_json_atomic(os.path.join(out_dir, METADATA_FILE), metadata)


def build(
    manual_dir: str,
    out_dir: str,
    *,
    max_set_size: int = 20,
    context_types: Sequence[str] = (),
    split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> dict[str, Any]:
  """Streams `manual_dir` (module docstring) into array_record shards in `out_dir`, in-process,
  one log file after the other (`data_pipelines.mssd_sessions_beam.build`: the same under Beam).

  Returns the metadata (also written to out_dir/metadata.json).
  """
  check_build_args(max_set_size, split_fractions)
  start = time.perf_counter()
  counts = mssd_shards.Counts()
  tracks = read_tracks(find_files(manual_dir, 'track_features', 'tf'), counts)
  log_paths, has_user = log_files(manual_dir, context_types)
  objectives, unavailable = available_objectives(tracks, has_user)
  seen = read_history(manual_dir, tracks, counts) if 'DISCOVERY' in objectives else {}
  stats = mssd_shards.TrainStats(tracks['features'].shape[1])
  sets = [0, 0, 0]
  os.makedirs(out_dir, exist_ok=True)

  def discovery(index: int, user: str, artists: np.ndarray) -> np.ndarray:
    del index  # the users' artists are kept in reading order
    return mssd_shards.discovery_flags(artists, seen.setdefault(user, set()))

  for path in log_paths:
    writers = {}
    for k, split in enumerate(SPLITS):
      os.makedirs(os.path.join(out_dir, split), exist_ok=True)
      writers[k] = array_record_module.ArrayRecordWriter(
          os.path.join(out_dir, split, f'{shard_name(path)}.array_record'), 'group_size:1'
      )
    for split, record, features in mssd_shards.shard_sets(
        path,
        tracks,
        objectives=objectives,
        has_user=has_user,
        context_types=context_types,
        split_fractions=split_fractions,
        seed=seed,
        max_set_size=max_set_size,
        counts=counts,
        discovery=discovery,
    ):
      writers[split].write(record)
      sets[split] += 1
      if split == 0:
        stats.add(features)
    for writer in writers.values():
      writer.close()
  metadata = build_metadata(
      tracks=tracks,
      objectives=objectives,
      unavailable=unavailable,
      stats=stats,
      max_set_size=max_set_size,
      context_types=context_types,
      has_user=has_user,
      seed=seed,
      split_fractions=split_fractions,
      sets=sets,
      counts=counts,
      manual_dir=manual_dir,
      log_paths=log_paths,
      seconds=time.perf_counter() - start,
  )
  write_outputs(out_dir, tracks, metadata)
  return metadata


def read_history(
    manual_dir: str, tracks: dict[str, Any], counts: mssd_shards.Counts
) -> dict[str, set]:
  """user_history.csv (optional) -> user id -> artist rows played before the logs; bad rows
  counted as 'history/skipped'."""
  path = os.path.join(manual_dir, 'user_history.csv')
  seen: dict[str, set] = {}
  if not os.path.exists(path):
    return seen
  for _, col, row, width in mssd_shards.csv_rows(path, ('user_id', 'track_id')):
    track = tracks['index'].get(row[col['track_id']].strip()) if len(row) == width else None
    if track is None:
      counts.add('history/skipped')
      continue
    seen.setdefault(row[col['user_id']].strip(), set()).add(int(tracks['artist'][track]))
  return seen


# -------------------------------------------------------------------------------- read


def load_metadata(data_dir: str) -> dict[str, Any]:
  with open(os.path.join(data_dir, METADATA_FILE)) as f:
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
        yield mssd_shards.decode_record(reader.read([i])[0])
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
