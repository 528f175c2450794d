"""LARP's strict cold-start split, TTC pair mining, TPC playlist sequences and evaluation halves.

Pure Python/NumPy, shared by the MPD and LFM builders (an LFM user is a "playlist").

Cold-start split (LARP paper Sec. 2 and 4.1; official `generate_splits.py`, seed 45):
  1. All distinct tracks are shuffled (seeded). The first `train_tracks` of them are the training
     tracks. The rest form the evaluation pool. With `valid_tracks=None` (the official procedure)
     validation playlists draw from the whole pool and test playlists from the pool minus every
     validation track; with `valid_tracks` set, the pool is cut up front into a validation pool and
     a test pool (useful for small catalogues, where validation would otherwise use up the pool).
  2. Playlists are visited in a seeded random order. A playlist restricted to the validation pool
     becomes a validation playlist if it keeps MORE than `min_playlist_length` tracks (paper: 10);
     it is truncated to its first `max_playlist_length` (101) tracks. Test playlists are chosen the
     same way from the remaining playlists, restricted to test-eligible tracks.
  3. Training playlists are all other playlists restricted to the training tracks (at least
     `min_train_playlist_length` of them, truncated to `max_playlist_length`).
  So train, valid and test tracks are pairwise disjoint and no playlist is in two splits
  (the paper's S ∩ S̄ = ∅ and P ∩ P̄ = ∅). Duplicate tracks inside a playlist are kept
  once.

Track indices: each split has its own index space 0..N_split-1 in the order of `*_uris`; padded
arrays use pad id = N_split (so a table with one extra row can be gathered safely).
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class Playlist:
  """A playlist (MPD) or a user's listening collection (LFM): ordered, distinct track uris."""

  pid: int
  name: str
  track_uris: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class SplitConfig:
  """Cold-start split settings.

  Attributes:
    train_tracks: number of training tracks (int, or a whole float >= 1) or a fraction of all
      tracks (float in (0, 1)). Official LARP: 100,000.
    valid_tracks: None for the official sequential procedure, else the size (int or fraction of
      all tracks) of a validation track pool cut up front; the test pool is the remainder.
    num_valid_playlists: validation playlists to select (official: 1,000).
    num_test_playlists: test playlists to select (official: 1,000).
    min_playlist_length: evaluation playlists need MORE than this many tracks (paper: 10).
    max_playlist_length: playlists are truncated to their first this-many tracks (101).
    min_train_playlist_length: training playlists need at least this many training tracks.
    max_train_playlists: keep at most this many training playlists (a seeded random subset, in
      input order; 0 = all). The paper's LFM training set has 1,000 users (Table 1).
    seed: split seed (official: 45).
  """

  train_tracks: float | int = 0.5
  valid_tracks: float | int | None = None
  num_valid_playlists: int = 1000
  num_test_playlists: int = 1000
  min_playlist_length: int = 10
  max_playlist_length: int = 101
  min_train_playlist_length: int = 2
  max_train_playlists: int = 0
  seed: int = 45

  def __post_init__(self):
    check_size(self.train_tracks, 'SplitConfig.train_tracks')
    if self.valid_tracks is not None:
      check_size(self.valid_tracks, 'SplitConfig.valid_tracks')
    for name in ('num_valid_playlists', 'num_test_playlists', 'min_playlist_length'):
      if getattr(self, name) < 0:
        raise ValueError(f'SplitConfig.{name} must be >= 0, got {getattr(self, name)}')
    if self.max_playlist_length <= self.min_playlist_length:
      raise ValueError(
          f'SplitConfig.max_playlist_length ({self.max_playlist_length}) must exceed '
          f'min_playlist_length ({self.min_playlist_length})'
      )
    if self.min_train_playlist_length < 1:
      raise ValueError(
          'SplitConfig.min_train_playlist_length must be >= 1, '
          f'got {self.min_train_playlist_length}'
      )


@dataclasses.dataclass(frozen=True)
class ColdStartSplit:
  """Result of `cold_start_split`: uris per role, playlists restricted to their split's tracks.

  Attributes:
    train_uris: training tracks; position = training track index.
    train_playlists: training playlists (only training tracks), in input order.
    valid_playlists: validation playlists (only validation tracks, truncated).
    test_playlists: test playlists (only test tracks, truncated).
    report: counts and notes for the dataset metadata.
  """

  train_uris: tuple[str, ...]
  train_playlists: tuple[Playlist, ...]
  valid_playlists: tuple[Playlist, ...]
  test_playlists: tuple[Playlist, ...]
  report: dict[str, Any]

  @property
  def valid_uris(self) -> tuple[str, ...]:
    """Validation tracks (candidate set): the union of validation playlists, first-seen order."""
    return union_uris(self.valid_playlists)

  @property
  def test_uris(self) -> tuple[str, ...]:
    """Test tracks (candidate set): the union of test playlists, first-seen order."""
    return union_uris(self.test_playlists)


def union_uris(playlists: Iterable[Playlist]) -> tuple[str, ...]:
  """Distinct uris of several playlists, first-seen order."""
  seen: dict[str, None] = {}
  for playlist in playlists:
    for uri in playlist.track_uris:
      seen.setdefault(uri, None)
  return tuple(seen)


def dedupe(uris: Iterable[str]) -> tuple[str, ...]:
  """Distinct items, first occurrence order."""
  return tuple(dict.fromkeys(uris))


def check_size(value: float | int, name: str) -> None:
  """Validates a split size: an int count >= 0, an integral float >= 1 (a count that went through
  a float-typed config field), or a fraction in (0, 1)."""
  if isinstance(value, bool) or not isinstance(value, numbers.Real):
    raise ValueError(f'{name} must be an int count or a float fraction, got {value!r}')
  if isinstance(value, numbers.Integral) or (float(value) >= 1.0 and float(value).is_integer()):
    if value < 0:
      raise ValueError(f'{name} must be >= 0, got {value}')
  elif not 0.0 < float(value) < 1.0:
    raise ValueError(
        f'{name}={value!r}: a count must be a whole number, a fraction must be in (0, 1)'
    )


def _resolve_count(value: float | int, total: int, name: str) -> int:
  check_size(value, name)
  if isinstance(value, numbers.Integral) or float(value) >= 1.0:
    return min(int(value), total)
  return int(round(float(value) * total))


def _restrict(
    playlist: Playlist, keep: Mapping[str, Any] | set[str], max_length: int | None
) -> Playlist:
  uris = tuple(u for u in dedupe(playlist.track_uris) if u in keep)
  if max_length is not None:
    uris = uris[:max_length]
  return Playlist(playlist.pid, playlist.name, uris)


def cold_start_split(
    playlists: Sequence[Playlist],
    config: SplitConfig,
    on_skip: Callable[[str, str], None] | None = None,
) -> ColdStartSplit:
  """Splits playlists into strict cold-start train / valid / test parts (see module docstring).

  Args:
    playlists: all playlists; pids must be distinct.
    config: split settings.
    on_skip: called as `on_skip(reason, example)` for every playlist left out of all splits:
      'empty_playlist' (no tracks at all), 'train_playlist_too_short' (fewer than
      `min_train_playlist_length` training tracks once restricted to them) and
      'train_playlist_over_cap' (beyond `max_train_playlists`). The report also counts them
      (`num_empty_playlists`, `num_short_train_playlists`, `num_train_playlists_over_cap`).

  Returns:
    A ColdStartSplit.

  Raises:
    ValueError: duplicate pids, or no playlist qualifies for validation or test (the message gives
      the counts, so the lengths/sizes in the config can be adjusted).
  """
  pids = [p.pid for p in playlists]
  if len(set(pids)) != len(pids):
    raise ValueError('playlist pids must be distinct')
  all_uris = union_uris(playlists)
  num_tracks = len(all_uris)
  rng = np.random.default_rng(config.seed)
  track_order = rng.permutation(num_tracks)
  num_train = _resolve_count(config.train_tracks, num_tracks, 'train_tracks')
  train_set = {all_uris[i] for i in track_order[:num_train]}
  rest = [all_uris[i] for i in track_order[num_train:]]
  if config.valid_tracks is None:
    valid_pool, test_pool = set(rest), set(rest)
  else:
    num_valid_pool = _resolve_count(config.valid_tracks, num_tracks, 'valid_tracks')
    valid_pool, test_pool = set(rest[:num_valid_pool]), set(rest[num_valid_pool:])

  visit = rng.permutation(len(playlists))
  chosen: set[int] = set()
  valid: list[Playlist] = []
  for i in visit:
    if len(valid) >= config.num_valid_playlists:
      break
    candidate = _restrict(playlists[i], valid_pool, config.max_playlist_length)
    if len(candidate.track_uris) > config.min_playlist_length:
      valid.append(candidate)
      chosen.add(int(i))
  valid_track_set = set(union_uris(valid))
  test_pool = test_pool - valid_track_set
  test: list[Playlist] = []
  for i in visit:
    if len(test) >= config.num_test_playlists:
      break
    if int(i) in chosen:
      continue
    candidate = _restrict(playlists[i], test_pool, config.max_playlist_length)
    if len(candidate.track_uris) > config.min_playlist_length:
      test.append(candidate)
      chosen.add(int(i))
  if not valid or not test:
    raise ValueError(
        f'cold-start split found {len(valid)} validation and {len(test)} test playlists with more '
        f'than min_playlist_length={config.min_playlist_length} held-out tracks (catalogue: '
        f'{num_tracks} tracks, {len(playlists)} playlists, {num_train} training tracks); lower '
        'train_tracks or min_playlist_length, or use longer playlists'
    )

  train_uris = tuple(all_uris[i] for i in track_order[:num_train])
  train_playlists = []
  num_empty = num_short = 0
  for i, playlist in enumerate(playlists):
    if i in chosen:
      continue
    if not playlist.track_uris:
      num_empty += 1
      if on_skip is not None:
        on_skip('empty_playlist', f'pid {playlist.pid}')
      continue
    restricted = _restrict(playlist, train_set, config.max_playlist_length)
    if len(restricted.track_uris) >= config.min_train_playlist_length:
      train_playlists.append(restricted)
    else:
      num_short += 1
      if on_skip is not None:
        on_skip(
            'train_playlist_too_short',
            f'pid {playlist.pid}: {len(restricted.track_uris)} training tracks '
            f'< min_train_playlist_length={config.min_train_playlist_length}',
        )
  num_capped = 0
  if config.max_train_playlists and len(train_playlists) > config.max_train_playlists:
    keep = set(rng.permutation(len(train_playlists))[: config.max_train_playlists].tolist())
    num_capped = len(train_playlists) - len(keep)
    if on_skip is not None:
      for i in sorted(set(range(len(train_playlists))) - keep):
        on_skip('train_playlist_over_cap', f'pid {train_playlists[i].pid}')
    train_playlists = [p for i, p in enumerate(train_playlists) if i in keep]
  report = {
      'num_input_playlists': len(playlists),
      'num_input_tracks': num_tracks,
      'num_train_tracks': len(train_uris),
      'num_train_playlists': len(train_playlists),
      'num_valid_playlists': len(valid),
      'num_test_playlists': len(test),
      'num_empty_playlists': num_empty,
      'num_short_train_playlists': num_short,
      'num_train_playlists_over_cap': num_capped,
      'requested_valid_playlists': config.num_valid_playlists,
      'requested_test_playlists': config.num_test_playlists,
      'track_pools': 'sequential' if config.valid_tracks is None else 'partitioned',
  }
  return ColdStartSplit(train_uris, tuple(train_playlists), tuple(valid), tuple(test), report)


def remove_tracks(
    split: ColdStartSplit,
    bad_uris: Iterable[str],
    config: SplitConfig,
    on_skip: Callable[[str, str], None] | None = None,
) -> ColdStartSplit:
  """Drops tracks (e.g. undecodable audio) from a split and re-applies the length rules.

  Training playlists keep >= min_train_playlist_length tracks (others are passed to
  `on_skip('train_playlist_too_short_after_audio_errors', ...)`); evaluation playlists that fall
  to <= min_playlist_length tracks are dropped and listed in report['dropped_eval_playlists'].
  """
  bad = set(bad_uris)
  if not bad:
    return split
  train_uris = tuple(u for u in split.train_uris if u not in bad)
  train_playlists = []
  for playlist in split.train_playlists:
    uris = tuple(u for u in playlist.track_uris if u not in bad)
    if len(uris) >= config.min_train_playlist_length:
      train_playlists.append(Playlist(playlist.pid, playlist.name, uris))
    elif on_skip is not None:
      on_skip('train_playlist_too_short_after_audio_errors', f'pid {playlist.pid}')
  dropped: list[int] = []

  def keep_eval(playlists):
    kept = []
    for playlist in playlists:
      uris = tuple(u for u in playlist.track_uris if u not in bad)
      if len(uris) > config.min_playlist_length:
        kept.append(Playlist(playlist.pid, playlist.name, uris))
      else:
        dropped.append(playlist.pid)
    return tuple(kept)

  valid, test = keep_eval(split.valid_playlists), keep_eval(split.test_playlists)
  if not valid or not test:
    raise ValueError(
        'after removing tracks with unusable audio no validation or test playlist '
        f'is left ({len(bad)} tracks removed)'
    )
  report = dict(split.report)
  report.update(
      num_train_tracks=len(train_uris),
      num_train_playlists=len(train_playlists),
      num_valid_playlists=len(valid),
      num_test_playlists=len(test),
      dropped_eval_playlists=report.get('dropped_eval_playlists', []) + dropped,
  )
  return ColdStartSplit(train_uris, tuple(train_playlists), valid, test, report)


def index_of(uris: Sequence[str]) -> dict[str, int]:
  """uri -> position."""
  return {uri: i for i, uri in enumerate(uris)}


def playlist_sequences(
    playlists: Sequence[Playlist], uri_to_index: Mapping[str, int]
) -> list[np.ndarray]:
  """Each playlist as int32 [len] track indices (KeyError-free: all uris must be indexed)."""
  out = []
  for playlist in playlists:
    try:
      out.append(np.asarray([uri_to_index[u] for u in playlist.track_uris], dtype=np.int32))
    except KeyError as e:
      raise ValueError(
          f'playlist {playlist.pid} names track {e.args[0]!r} outside its split'
      ) from e
  return out


def pad_sequences(
    sequences: Sequence[np.ndarray], width: int, pad_id: int
) -> tuple[np.ndarray, np.ndarray]:
  """Pads int sequences to a fixed width.

  Returns:
    (ids int32 [P, width] right-padded with pad_id, lengths int32 [P]).

  Raises:
    ValueError: a sequence is longer than width.
  """
  ids = np.full((len(sequences), width), pad_id, dtype=np.int32)
  lengths = np.zeros((len(sequences),), dtype=np.int32)
  for row, seq in enumerate(sequences):
    if len(seq) > width:
      raise ValueError(f'sequence {row} has length {len(seq)} > width {width}')
    ids[row, : len(seq)] = seq
    lengths[row] = len(seq)
  return ids, lengths


def mine_pairs(
    sequences: Sequence[np.ndarray],
    num_tracks: int,
    *,
    pairs_per_track: int = 5,
    seed: int = 45,
    include_self: bool = False,
) -> np.ndarray:
  """Co-occurring track pairs for TTC (official `mine_pairs_and_parents`, k pairs per track).

  For every training track a that is in some training playlist, its neighbours are the distinct
  tracks sharing at least one training playlist with it (a itself only if include_self, which the
  official code does). `pairs_per_track` neighbours b are drawn uniformly with replacement; each
  pair gets a playlist drawn uniformly among the training playlists containing BOTH a and b (the
  official code draws any playlist containing a), so the TPC playlist always holds the pair.

  Args:
    sequences: training playlists as int32 track-index arrays (distinct entries each).
    num_tracks: number of training tracks N (indices must be < N).
    pairs_per_track: k.
    seed: sampling seed.
    include_self: allow b == a.

  Returns:
    int32 [M, 3] rows (track_a, track_b, playlist_row) where playlist_row indexes `sequences`;
    rows are grouped by track_a in increasing order.
  """
  if pairs_per_track < 1:
    raise ValueError(f'pairs_per_track must be >= 1, got {pairs_per_track}')
  if not sequences:
    return np.zeros((0, 3), np.int32)
  rows = np.concatenate([np.full(len(s), r, np.int64) for r, s in enumerate(sequences)])
  tracks = np.concatenate([np.asarray(s, np.int64) for s in sequences])
  if tracks.size and (tracks.min() < 0 or tracks.max() >= num_tracks):
    raise ValueError(f'track indices must be in [0, {num_tracks})')
  order = np.lexsort((rows, tracks))
  rows, tracks = rows[order], tracks[order]
  starts = np.searchsorted(tracks, np.arange(num_tracks + 1))
  rng = np.random.default_rng(seed)
  out = []
  for a in range(num_tracks):
    rows_a = rows[starts[a] : starts[a + 1]]
    if rows_a.size == 0:
      continue
    neighbours = np.unique(np.concatenate([sequences[r] for r in rows_a]))
    if not include_self:
      neighbours = neighbours[neighbours != a]
    if neighbours.size == 0:
      continue
    for b in neighbours[rng.integers(0, neighbours.size, pairs_per_track)]:
      common = np.intersect1d(rows_a, rows[starts[b] : starts[b + 1]], assume_unique=True)
      out.append((a, int(b), int(common[rng.integers(0, common.size)])))
  return np.asarray(out, dtype=np.int32).reshape(-1, 3)


def seed_ground_truth_halves(
    sequences: Sequence[np.ndarray], seed: int = 45
) -> list[tuple[np.ndarray, np.ndarray]]:
  """Splits each evaluation playlist into seeds and held-out ground truth (official protocol).

  Each playlist's items are shuffled (seeded, one generator over all playlists in order); the first
  round(n / 2) items (Python rounding, as the official code) are seeds, the rest ground truth.

  Returns:
    [(seeds int32 [round(n/2)], ground_truth int32 [n - round(n/2)])] per playlist.
  """
  rng = np.random.default_rng(seed)
  halves = []
  for seq in sequences:
    seq = np.asarray(seq, np.int32)
    shuffled = seq[rng.permutation(seq.size)]
    num_seeds = round(seq.size / 2)
    halves.append((shuffled[:num_seeds], shuffled[num_seeds:]))
  return halves
