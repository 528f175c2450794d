"""MOSTRA session data: MSSD-style CSV logs -> padded candidate sets with features and labels.

Raw input: a directory of MSSD-style CSVs (`log_*.csv`, `tf_*.csv`, `user_history.csv`), read and
validated by `data_pipelines.session_logs.read_raw_sessions` (layout in that module's docstring;
`data_pipelines/demo/sessions.py` writes exactly this).

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
  the 16 acoustic features in `session_logs.ACOUSTIC_FEATURES` (`mode` major=1, minor=0; `key`
                 and `time_signature` are the two MSSD columns left out to make 16).
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
import json
import math
import os
import time
from collections.abc import Sequence
from typing import Any

from absl import logging
import numpy as np

from data_pipelines import session_logs

OBJECTIVES = ('SAT', 'BOOST', 'EXPOSURE', 'DISCOVERY')
SPLITS = ('train', 'valid', 'test')
MAX_SET_SIZE = 100
FORMAT_VERSION = 1


# ------------------------------------------------------------------------------------ labels


def emerging_artists(
    track_artist: np.ndarray, track_popularity: np.ndarray, num_artists: int
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


def derive_labels(raw: session_logs.RawSessions) -> list[np.ndarray]:
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
    labels.append(
        np.stack(
            [
                session.not_skipped,
                tracks.boost[session.tracks],
                emerging[artists].astype(np.float32),
                (~known[session.user_id][artists]).astype(np.float32),
            ],
            axis=1,
        )
    )
    known[session.user_id][artists] = True
  return labels


# ---------------------------------------------------------------------------------- features


def feature_names(genre_names: Sequence[str]) -> tuple[str, ...]:
  """Names of the F feature columns, in order."""
  return (
      tuple(f'user_emb_{i}' for i in range(session_logs.EMBEDDING_DIM))
      + tuple(f'track_emb_{i}' for i in range(session_logs.EMBEDDING_DIM))
      + ('popularity',)
      + tuple(f'genre_{g}' for g in genre_names)
      + session_logs.ACOUSTIC_FEATURES
      + ('duration', 'cosine', 'euclidean', 'genre_affinity')
  )


def user_profiles(
    tracks: session_logs.TrackTable,
    history: dict[str, tuple[np.ndarray, np.ndarray]],
    user_ids: Sequence[str],
) -> tuple[np.ndarray, np.ndarray]:
  """(user embedding float64 [U, 8], history genre distribution float64 [U, G]) from history.

  Embedding = play-weighted mean of history track embeddings; genre distribution = play-weighted
  genre counts normalised to sum 1. Users without history get zeros.
  """
  embedding = np.zeros((len(user_ids), session_logs.EMBEDDING_DIM))
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


def pair_features(
    tracks: session_logs.TrackTable,
    user_embedding: np.ndarray,
    user_genre_dist: np.ndarray,
    user_rows: np.ndarray,
    track_rows: np.ndarray,
) -> np.ndarray:
  """Unnormalised features float64 [R, F] for R user-track pairs (int [R] row indices)."""
  u = user_embedding[user_rows]
  t = tracks.embedding[track_rows]
  norms = np.linalg.norm(u, axis=1) * np.linalg.norm(t, axis=1)
  cosine = np.where(norms > 0, np.sum(u * t, axis=1) / np.maximum(norms, 1e-12), 0.0)
  genres = tracks.genres[track_rows]
  affinity = np.max(np.where(genres > 0, user_genre_dist[user_rows], 0.0), axis=1, initial=0.0)
  return np.concatenate(
      [
          u,
          t,
          tracks.popularity[track_rows, None],
          genres,
          tracks.acoustic[track_rows],
          tracks.duration[track_rows, None],
          cosine[:, None],
          np.linalg.norm(u - t, axis=1)[:, None],
          affinity[:, None],
      ],
      axis=1,
  )


# ------------------------------------------------------------------------------- arrays/split


def _split_sessions(
    sessions: Sequence[session_logs.Session], fractions: Sequence[float], split_by: str, seed: int
) -> np.ndarray:
  """Split index (0 train, 1 valid, 2 test) int [S] per session."""
  if len(fractions) != 3 or min(fractions) < 0 or not math.isclose(sum(fractions), 1.0):
    raise ValueError(
        f'split_fractions must be 3 non-negative numbers summing to 1, ' f'got {fractions}'
    )
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


def _pad_split(
    raw: session_logs.RawSessions,
    labels: Sequence[np.ndarray],
    indices: np.ndarray,
    user_index: dict[str, int],
    user_embedding: np.ndarray,
    user_genre_dist: np.ndarray,
    max_set_size: int,
) -> dict[str, np.ndarray]:
  """Unnormalised padded arrays of the sessions `indices` (rows of raw.sessions)."""
  num_features = len(feature_names(raw.tracks.genre_names))
  s, n = len(indices), max_set_size
  out = {
      'features': np.zeros((s, n, num_features), np.float32),
      'mask': np.zeros((s, n), bool),
      'labels': np.zeros((s, n, len(OBJECTIVES)), np.float32),
      'cosine': np.zeros((s, n), np.float32),
      'track_ids': np.full((s, n), -1, np.int32),
      'user_ids': np.zeros((s,), np.int32),
      'session_ids': np.asarray(indices, np.int32),
  }
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
  return {
      name: float(valid[:, j].mean()) if len(valid) else float('nan')
      for j, name in enumerate(OBJECTIVES)
  }


def build_session_arrays(
    raw_dir: str,
    out_dir: str,
    *,
    max_set_size: int = MAX_SET_SIZE,
    split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
    split_by: str = 'user',
    seed: int = 0,
) -> dict[str, Any]:
  """Reads `raw_dir`, writes `{train,valid,test}.npz`, `vocab.npz`, `metadata.json` to `out_dir`.

  Sessions longer than `max_set_size` keep their first `max_set_size` positions (counted in
  metadata['truncated_sessions']). Returns the metadata dict (also written as JSON).
  """
  start = time.perf_counter()
  raw = session_logs.read_raw_sessions(raw_dir)
  if not raw.sessions:
    raise ValueError(f'{raw_dir}: no valid session rows')
  labels = derive_labels(raw)
  user_ids = tuple(sorted({s.user_id for s in raw.sessions} | set(raw.history)))
  user_index = {u: i for i, u in enumerate(user_ids)}
  user_embedding, user_genre_dist = user_profiles(raw.tracks, raw.history, user_ids)
  split_of_session = _split_sessions(raw.sessions, split_fractions, split_by, seed)
  arrays = {
      name: _pad_split(
          raw,
          labels,
          np.flatnonzero(split_of_session == k),
          user_index,
          user_embedding,
          user_genre_dist,
          max_set_size,
      )
      for k, name in enumerate(SPLITS)
  }
  names = feature_names(raw.tracks.genre_names)
  normalised = np.array([not n.startswith('genre_') or n == 'genre_affinity' for n in names])
  train_rows = arrays['train']['features'][arrays['train']['mask']].astype(np.float64)
  if not len(train_rows):
    raise ValueError(f'train split is empty (split_fractions={split_fractions}, {split_by=})')
  mean = np.where(normalised, train_rows.mean(axis=0), 0.0)
  std = train_rows.std(axis=0)
  std = np.where(normalised & (std > 1e-6), std, 1.0)
  for split in arrays.values():
    split['features'] = np.where(
        split['mask'][..., None], (split['features'] - mean) / std, 0.0
    ).astype(np.float32)
  _, _, (q25, q75) = emerging_artists(
      raw.tracks.artist, raw.tracks.popularity, len(raw.tracks.artist_ids)
  )
  metadata = {
      'format_version': FORMAT_VERSION,
      'objectives': list(OBJECTIVES),
      'max_set_size': max_set_size,
      'num_features': len(names),
      'feature_names': list(names),
      'normalised': normalised.tolist(),
      'feature_mean': mean.tolist(),
      'feature_std': std.tolist(),
      'genre_names': list(raw.tracks.genre_names),
      'split': {'by': split_by, 'seed': seed, 'fractions': list(split_fractions)},
      'counts': {
          name: {
              'sessions': int(len(a['user_ids'])),
              'users': int(len(np.unique(a['user_ids']))),
              'positions': int(a['mask'].sum()),
          }
          for name, a in arrays.items()
      },
      'label_rates': {name: _label_rates(a) for name, a in arrays.items()},
      'exposure': {
          'artist_popularity': 'mean us_popularity_estimate of the artist tracks',
          'q25': q25,
          'q75': q75,
      },
      'num_tracks': len(raw.tracks.track_ids),
      'num_artists': len(raw.tracks.artist_ids),
      'num_users': len(user_ids),
      'users_without_history': len(set(user_ids) - set(raw.history)),
      'truncated_sessions': sum(len(s.tracks) > max_set_size for s in raw.sessions),
      'validation': raw.report.to_dict(),
      'raw_dir': os.path.abspath(raw_dir),
  }
  os.makedirs(out_dir, exist_ok=True)
  for name, split in arrays.items():
    np.savez(os.path.join(out_dir, f'{name}.npz'), **split)
  np.savez(
      os.path.join(out_dir, 'vocab.npz'),
      track_ids=np.array(raw.tracks.track_ids),
      user_ids=np.array(user_ids),
      artist_ids=np.array(raw.tracks.artist_ids),
      track_artist=raw.tracks.artist,
      genre_names=np.array(raw.tracks.genre_names),
      session_ids=np.array([s.session_id for s in raw.sessions]),
  )
  metadata['build_seconds'] = round(time.perf_counter() - start, 3)
  with open(os.path.join(out_dir, 'metadata.json'), 'w') as f:
    json.dump(metadata, f, indent=1)
  logging.info('sessions arrays in %s: %s', out_dir, metadata['counts'])
  return metadata


# ----------------------------------------------------------------------------------- loading

ARRAY_NAMES = ('features', 'mask', 'labels', 'cosine', 'track_ids', 'user_ids', 'session_ids')


def load_metadata(data_dir: str) -> dict[str, Any]:
  """The `metadata.json` written by `build_session_arrays` (counts, feature stats, ...)."""
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


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--raw_dir', required=True)
  parser.add_argument('--out_dir', required=True)
  parser.add_argument('--max_set_size', type=int, default=MAX_SET_SIZE)
  parser.add_argument('--split_by', choices=('user', 'session'), default='user')
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args(argv)
  metadata = build_session_arrays(
      args.raw_dir,
      args.out_dir,
      max_set_size=args.max_set_size,
      split_by=args.split_by,
      seed=args.seed,
  )
  print(
      json.dumps(
          {k: metadata[k] for k in ('counts', 'label_rates', 'validation', 'build_seconds')},
          indent=1,
      )
  )


if __name__ == '__main__':
  main()
