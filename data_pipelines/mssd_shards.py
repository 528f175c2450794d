"""One MSSD log file -> candidate sets: the unit both MSSD build routes share.

`data_pipelines.mssd_sessions.build` (in-process) runs `shard_sets` over the log files one after
the other; `data_pipelines.mssd_sessions_beam` runs it once per file on Beam workers. The rules
(bad rows, the radio filter, repeats, long sessions, splits) are documented in
`data_pipelines/mssd_sessions.py`; the record format is `encode_record`.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

LOG_REQUIRED = ('session_id', 'session_position', 'track_id_clean', 'not_skipped')
BOOLS = {'true': 1.0, 'false': 0.0, '1': 1.0, '0': 0.0}


class Counts(dict):
  """Counts of skipped / repaired items by rule ('log/unknown_track', ...)."""

  def add(self, key: str, n: int = 1) -> None:
    self[key] = self.get(key, 0) + n


def open_csv(path: str):
  """A text stream of a plain or .gz csv file."""
  if path.endswith('.gz'):
    return io.TextIOWrapper(gzip.open(path, 'rb'), newline='')
  return open(path, newline='')


def csv_rows(path: str, required: Sequence[str]) -> Iterator[tuple[int, dict[str, int], list[str]]]:
  """(line, column index, fields) per data row; ValueError naming the file on a bad header."""
  with open_csv(path) as f:
    reader = csv.reader(f)
    header = [h.strip() for h in next(reader, [])]
    missing = [c for c in required if c not in header]
    if missing:
      raise ValueError(f'{path}: missing required columns {missing} (header: {header[:8]}...)')
    index = {c: i for i, c in enumerate(header)}
    for row in reader:
      if row:
        yield reader.line_num, index, row, len(header)


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
  """`encode_record`'s inverse: features float32 [n, F], labels float32 [n, J], tracks int32 [n],
  key str."""
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


def split_of(key: str, fractions: Sequence[float], seed: int) -> int:
  """Split index (0 train, 1 valid, 2 test) of a user or session id: a seeded blake2b hash
  (stable across processes and runs, unlike Python's hash)."""
  digest = hashlib.blake2b(f'{seed}:{key}'.encode(), digest_size=8).digest()
  u = int.from_bytes(digest, 'little') / 2**64
  return int(np.searchsorted(np.cumsum(fractions)[:2], u, side='right'))


def iter_sessions(
    path: str,
    tracks: dict[str, Any],
    *,
    has_user: bool,
    context_types: Sequence[str],
    counts: Counts,
) -> Iterator[tuple[str, str, dict[int, tuple[int, float]]]]:
  """The sessions of one log file in reading order: (session id, user id or '', {position:
  (track row, SAT)}), rows streamed one at a time (module docstring rules, counted in `counts`
  as `log/<reason>`)."""
  current, user, rows, finished = None, '', {}, set()
  for _, col, row, width in csv_rows(path, LOG_REQUIRED):
    if len(row) != width:
      counts.add('log/wrong_field_count')
      continue
    session = row[col['session_id']].strip()
    if context_types and row[col['context_type']].strip() not in context_types:
      counts.add('log/filtered_context')
      continue
    if session != current:
      if current is not None and rows:
        yield current, user, rows
      finished.add(current)
      if session in finished:
        counts.add('log/non_contiguous_session')
        current, rows = None, {}
        continue
      current, rows = session, {}
      user = row[col['user_id']].strip() if has_user else ''
    try:
      position = int(row[col['session_position']])
      sat = BOOLS[row[col['not_skipped']].strip().lower()]
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
    yield current, user, rows


def session_candidates(
    rows: dict[int, tuple[int, float]], counts: Counts
) -> tuple[np.ndarray, np.ndarray]:
  """A session's candidates in position order, repeated tracks merged (SAT = any play not
  skipped): track rows int32 [n], SAT float32 [n]."""
  by_track: dict[int, float] = {}
  for position in sorted(rows):
    track, sat = rows[position]
    if track in by_track:
      counts.add('sessions/repeated_track_plays_merged')
    by_track[track] = max(by_track.get(track, 0.0), sat)
  return np.fromiter(by_track, np.int32), np.fromiter(by_track.values(), np.float32)


def discovery_flags(artists: np.ndarray, known: set) -> np.ndarray:
  """DISCOVERY float32 [n]: 1 where the artist is not in `known` (the user's artists before
  this session), which then gets this session's artists."""
  flags = np.array([a not in known for a in artists.tolist()], np.float32)
  known.update(artists.tolist())
  return flags


# (session index in its file, user id, artists int [n]) -> DISCOVERY float32 [n]
Discovery = Callable[[int, str, np.ndarray], np.ndarray]


def shard_sets(
    path: str,
    tracks: dict[str, Any],
    *,
    objectives: Sequence[str],
    has_user: bool,
    context_types: Sequence[str],
    split_fractions: Sequence[float],
    seed: int,
    max_set_size: int,
    counts: Counts,
    discovery: Discovery | None = None,
) -> Iterator[tuple[int, bytes, np.ndarray]]:
  """The candidate sets of one log file in reading order: (split index, `encode_record` bytes,
  features float32 [n, F] of the set). `discovery` gives the DISCOVERY labels (needed when it is
  an objective): the in-process build keeps every user's artists as it reads, in file order;
  the Beam route looks up flags computed per user beforehand."""
  for index, (session, user, rows) in enumerate(
      iter_sessions(path, tracks, has_user=has_user, context_types=context_types, counts=counts)
  ):
    track_rows, sat = session_candidates(rows, counts)
    columns = [sat]
    if 'BOOST' in objectives:
      columns.append(tracks['boost'][track_rows])
    artists = tracks['artist'][track_rows] if 'artist' in tracks else None
    if 'EXPOSURE' in objectives:
      columns.append(tracks['emerging'][artists].astype(np.float32))
    if 'DISCOVERY' in objectives:
      columns.append(discovery(index, user, artists))
    labels = np.stack(columns, axis=1)
    features = tracks['features'][track_rows]
    split = split_of(user if has_user else session, split_fractions, seed)
    pieces = range(0, len(track_rows), max_set_size)
    if len(pieces) > 1:
      counts.add('sessions/long_split')
      counts.add('sessions/extra_sets', len(pieces) - 1)
    for k, lo in enumerate(pieces):
      hi = lo + max_set_size
      key = session if len(pieces) == 1 else f'{session}#{k}'
      record = encode_record(features[lo:hi], labels[lo:hi], track_rows[lo:hi], key)
      yield split, record, features[lo:hi]


class TrainStats:
  """Feature mean / std over the train split's candidates, accumulated set by set in float64
  in reading order (the order fixes the rounding, so both build routes add in it)."""

  def __init__(self, num_features: int):
    self.stats = np.zeros((3, num_features))  # count, sum, sum of squares

  def add(self, features: np.ndarray) -> None:
    """One train set's features float32 [n, F]."""
    x = features.astype(np.float64)
    self.stats[0] += len(x)
    self.stats[1] += x.sum(0)
    self.stats[2] += (x * x).sum(0)

  def mean_std(self, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """float64 [F] each; genre columns (multi-hot) keep mean 0, std 1; std < 1e-6 -> 1."""
    n = np.maximum(self.stats[0], 1)
    mean = self.stats[1] / n
    std = np.sqrt(np.maximum(self.stats[2] / n - mean**2, 0.0))
    is_genre = np.array([c.startswith('genre_') for c in names], bool)
    mean = np.where(is_genre, 0.0, mean)
    std = np.where(is_genre | (std < 1e-6), 1.0, std)
    return mean, std
