"""Deterministic MSSD-style demo sessions for MOSTRA (the format data_pipelines/sessions.py reads).

Writes to `out_dir`:
  tf_000.csv        MSSD track features + `artist_id`, `boost` (0/1), `genres` ('|'-joined).
  user_history.csv  `user_id, track_id, plays`: plays before the logged week. DISCOVERY is derived
                    from this file plus each user's earlier logged sessions (see the pipeline).
  log_000.csv ...   MSSD session logs + `user_id`, `sessions_per_file` sessions a file, in
                    chronological order (date, hour_of_day, session_id).

Latent model (seeded numpy; same config -> byte-identical files):
  * genres have unit centroids in R^8; an artist has a primary genre, a vector near its centroid
    and a log-popularity; tracks sit near their artist (`acoustic_vector_0..7` = track vector plus
    small noise) and may carry a second genre (the centroid nearest the track vector).
    `us_popularity_estimate` is the track's popularity percentile; the 16 acoustic scalars are
    noisy projections of the track vector.
  * users have taste vectors (mixtures of 1-3 genre centroids); history = tracks drawn by
    affinity (taste . track vector) and artist popularity.
  * a session (radio-like candidate SET of 10-60 tracks) draws a discovery share ~ Beta(1.2, 5)
    (most sets hold few discoveries) and an emerging-artist share ~ U(0, 1) (EXPOSURE spread
    evenly over sets, paper Fig. 2); each slot is filled from the matching pool (artist
    known/unknown x emerging/not) by affinity-weighted sampling without replacement.
  * P(not skipped) = sigmoid(SAT_BIAS + 3 (affinity - 0.45) - 1.2 DISCOVERY
    + 0.4 (popularity percentile - 0.5) + session effect). BOOST is an independent coin per track
    and EXPOSURE has no direct effect (popularity enters symmetrically around the median), so both
    are nearly uncorrelated with SAT while DISCOVERY tracks are skipped more (paper Fig. 2).

CLI: python -m data_pipelines.demo.sessions --out DIR [--num_users 300 --num_sessions 2000 --seed 0]
(every DemoSessionsConfig field is a flag).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import json
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from data_pipelines import session_logs
from data_pipelines import sessions as sessions_lib

GENRE_NAMES = (
    'rock',
    'pop',
    'hip_hop',
    'electronic',
    'jazz',
    'classical',
    'folk',
    'metal',
    'rnb',
    'country',
    'latin',
    'indie',
    'blues',
    'reggae',
    'soul',
    'punk',
)
SAT_BIAS = 0.5
_UNIT_ACOUSTIC = (
    'acousticness',
    'beat_strength',
    'bounciness',
    'danceability',
    'energy',
    'flatness',
    'instrumentalness',
    'liveness',
    'mechanism',
    'organism',
    'speechiness',
    'valence',
)
_SCALED_ACOUSTIC = {
    'dyn_range_mean': (2.0, 20.0),
    'loudness': (-25.0, 22.0),
    'tempo': (70.0, 110.0),
}  # offset, scale of sigmoid(z)


@dataclasses.dataclass(frozen=True)
class DemoSessionsConfig:
  num_users: int = 300
  num_sessions: int = 2000
  num_artists: int = 400
  num_tracks: int = 4000
  num_genres: int = 12
  min_session_length: int = 10
  max_session_length: int = 60
  min_history_tracks: int = 20
  max_history_tracks: int = 80
  boost_rate: float = 0.08
  sessions_per_file: int = 1000
  start_date: str = '2018-07-15'
  num_days: int = 7
  seed: int = 0


def _check(config: DemoSessionsConfig) -> None:
  if config.num_tracks < config.num_artists or config.num_artists < 4:
    raise ValueError(f'need num_tracks >= num_artists >= 4, got {config}')
  if not 1 <= config.min_session_length <= config.max_session_length <= config.num_tracks:
    raise ValueError(f'bad session lengths in {config}')
  if not 1 <= config.min_history_tracks <= config.max_history_tracks <= config.num_tracks:
    raise ValueError(f'bad history sizes in {config}')
  if config.num_users < 1 or config.num_sessions < 1 or config.num_genres < 2:
    raise ValueError(f'need users, sessions >= 1 and num_genres >= 2, got {config}')


def _normalize(x: np.ndarray) -> np.ndarray:
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _sigmoid(x: np.ndarray) -> np.ndarray:
  return 1.0 / (1.0 + np.exp(-x))


def _uuid(rng: np.random.Generator) -> str:
  h = rng.bytes(16).hex()
  return f'{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}'


def _top_k(keys: np.ndarray, allowed: np.ndarray, k: int) -> np.ndarray:
  """Indices of the (at most) k largest keys where allowed, largest first."""
  candidates = np.flatnonzero(allowed)
  if k <= 0 or not len(candidates):
    return candidates[:0]
  if k < len(candidates):
    candidates = candidates[np.argpartition(-keys[candidates], k - 1)[:k]]
  return candidates[np.argsort(-keys[candidates], kind='stable')]


def _genre_names(num_genres: int) -> tuple[str, ...]:
  return tuple(GENRE_NAMES[g] if g < len(GENRE_NAMES) else f'genre_{g}' for g in range(num_genres))


def _make_tracks(config: DemoSessionsConfig, rng: np.random.Generator) -> dict[str, Any]:
  """Latent catalogue + the tf_*.csv columns (as formatted strings)."""
  a, t, g, d = config.num_artists, config.num_tracks, config.num_genres, session_logs.EMBEDDING_DIM
  centroids = _normalize(rng.normal(size=(g, d)))
  artist_genre = rng.integers(g, size=a)
  artist_vec = _normalize(centroids[artist_genre] + 0.3 * rng.normal(size=(a, d)))
  artist_pop = rng.normal(size=a)
  extra = rng.choice(a, t - a, p=np.exp(0.7 * artist_pop) / np.exp(0.7 * artist_pop).sum())
  artist = rng.permutation(np.concatenate([np.arange(a), extra]))
  vec = _normalize(artist_vec[artist] + 0.25 * rng.normal(size=(t, d)))
  pop_latent = artist_pop[artist] + 0.5 * rng.normal(size=t)
  percentile = (np.argsort(np.argsort(pop_latent)) + 0.5) / t * 100.0
  popularity_text = [f'{p:.4f}' for p in percentile]
  popularity = np.array([float(p) for p in popularity_text])  # exactly what the reader parses
  near = np.argsort(-(vec @ centroids.T), axis=1)[:, :2]
  second = np.where(near[:, 0] == artist_genre[artist], near[:, 1], near[:, 0])
  has_second = rng.random(t) < 0.4
  names = _genre_names(g)
  genres = [
      names[p] + (session_logs.GENRE_SEPARATOR + names[s] if two else '')
      for p, s, two in zip(artist_genre[artist], second, has_second)
  ]
  boost = (rng.random(t) < config.boost_rate).astype(int)
  z = vec @ rng.normal(size=(d, 16)) + 0.5 * rng.normal(size=(t, 16))
  columns: dict[str, list[str]] = {
      'track_id': ['t_' + _uuid(rng) for _ in range(t)],
      'duration': [f'{x:.3f}' for x in np.exp(rng.normal(np.log(210.0), 0.3, size=t))],
      'release_year': [str(int(x)) for x in 1960 + np.floor(58 * rng.beta(4.0, 1.5, size=t))],
      'us_popularity_estimate': popularity_text,
  }
  keys = iter(range(16))
  for name in _UNIT_ACOUSTIC:
    columns[name] = [f'{x:.6f}' for x in _sigmoid(z[:, next(keys)])]
  for name, (offset, scale) in _SCALED_ACOUSTIC.items():
    columns[name] = [f'{x:.4f}' for x in offset + scale * _sigmoid(z[:, next(keys)])]
  columns['mode'] = ['major' if x > 0 else 'minor' for x in z[:, next(keys)]]
  columns['key'] = [str(k) for k in rng.integers(12, size=t)]
  columns['time_signature'] = [str(k) for k in rng.choice([3, 4, 5], size=t, p=[0.1, 0.85, 0.05])]
  acoustic_vec = vec + 0.05 * rng.normal(size=(t, d))
  for i in range(d):
    columns[f'acoustic_vector_{i}'] = [f'{x:.6f}' for x in acoustic_vec[:, i]]
  columns['artist_id'] = [f'a_{k:05d}' for k in artist]
  columns['boost'] = [str(b) for b in boost]
  columns['genres'] = genres
  # EXPOSURE: the artist's mean track popularity lies in the inter-quartile range over artists
  # (written out here, not via the pipeline's function, so the summary is an independent check).
  artist_popularity = np.array([popularity[artist == k].mean() for k in range(a)])
  q25, q75 = np.percentile(artist_popularity, [25.0, 75.0])
  emerging = (artist_popularity >= q25) & (artist_popularity <= q75)
  return {
      'columns': columns,
      'centroids': centroids,
      'artist': artist,
      'artist_pop': artist_pop,
      'vec': vec,
      'percentile': popularity / 100.0,
      'boost': boost,
      'emerging': emerging[artist],
  }


def _write_csv(path: str, header: Sequence[str], rows) -> None:
  with open(path, 'w', newline='') as f:
    writer = csv.writer(f, lineterminator='\n')
    writer.writerow(header)
    writer.writerows(rows)


def _bool(x: bool) -> str:
  return 'true' if x else 'false'


def write_demo_sessions(
    out_dir: str, config: DemoSessionsConfig = DemoSessionsConfig()
) -> dict[str, Any]:
  """Writes the demo CSVs to `out_dir`; returns a summary with the generator's own label rates.

  The summary's `label_counts` are computed from the latent simulation (same definitions as the
  pipeline), so a reader can cross-check its label derivation against them.
  """
  _check(config)
  start = time.perf_counter()
  rng = np.random.default_rng(config.seed)
  os.makedirs(out_dir, exist_ok=True)
  catalogue = _make_tracks(config, rng)
  tf_columns = session_logs.MSSD_TRACK_COLUMNS + session_logs.TRACK_EXTENSION_COLUMNS
  cols = catalogue['columns']
  _write_csv(os.path.join(out_dir, 'tf_000.csv'), tf_columns, zip(*(cols[c] for c in tf_columns)))
  artist, vec, artist_pop = catalogue['artist'], catalogue['vec'], catalogue['artist_pop']
  track_ids, emerging = cols['track_id'], catalogue['emerging']

  # Users: taste vectors, activity, premium, pre-log history.
  u = config.num_users
  taste = np.zeros((u, vec.shape[1]))
  for i in range(u):
    favourites = rng.choice(config.num_genres, rng.integers(1, 4), replace=False)
    taste[i] = rng.dirichlet(np.ones(len(favourites))) @ catalogue['centroids'][favourites]
  taste = _normalize(taste + 0.25 * rng.normal(size=taste.shape))
  activity = rng.lognormal(0.0, 0.7, size=u)
  premium = rng.random(u) < 0.7
  user_ids = [f'u_{i:05d}' for i in range(u)]
  known = np.zeros((u, config.num_artists), bool)
  history_rows = []
  for i in range(u):
    size = rng.integers(config.min_history_tracks, config.max_history_tracks + 1)
    keys = 4.0 * (vec @ taste[i]) + 0.8 * artist_pop[artist] + rng.gumbel(size=len(vec))
    played = _top_k(keys, np.ones(len(vec), bool), size)
    known[i, artist[played]] = True
    history_rows += [
        (user_ids[i], track_ids[k], int(n)) for k, n in zip(played, rng.geometric(0.3, size=size))
    ]
  _write_csv(os.path.join(out_dir, 'user_history.csv'), session_logs.HISTORY_COLUMNS, history_rows)

  # Sessions in chronological order (the pipeline's `session_order_key`).
  s = config.num_sessions
  first_day = datetime.date.fromisoformat(config.start_date)
  diurnal = 1.0 + np.sin((np.arange(24) - 9.0) / 24.0 * 2 * np.pi)
  meta = sorted(
      (
          (first_day + datetime.timedelta(days=int(day))).isoformat(),
          int(hour),
          '0_' + _uuid(rng),
          int(user),
      )
      for day, hour, user in zip(
          rng.integers(config.num_days, size=s),
          rng.choice(24, size=s, p=diurnal / diurnal.sum()),
          rng.choice(u, size=s, p=activity / activity.sum()),
      )
  )
  log_columns = session_logs.MSSD_LOG_COLUMNS + session_logs.LOG_EXTENSION_COLUMNS
  counts = np.zeros(len(sessions_lib.OBJECTIVES), np.int64)
  files, rows, num_rows = [], [], 0
  for n, (date, hour, session_id, user) in enumerate(meta):
    length = int(rng.integers(config.min_session_length, config.max_session_length + 1))
    disc_slots = rng.random(length) < rng.beta(1.2, 5.0)
    emerg_slots = rng.random(length) < rng.random()
    affinity = vec @ taste[user]
    keys = 3.0 * affinity + 0.3 * artist_pop[artist] + rng.gumbel(size=len(vec))
    is_new = ~known[user, artist]
    free = np.ones(len(vec), bool)
    chosen = []
    for new in (True, False):
      for emerg in (True, False):
        want = int(np.sum((disc_slots == new) & (emerg_slots == emerg)))
        for allowed in ((is_new == new) & (emerging == emerg), is_new == new, free):
          picked = _top_k(keys, allowed & free, want)
          free[picked] = False
          chosen.append(picked)
          want -= len(picked)
    tracks = rng.permutation(np.concatenate(chosen))
    discovery = is_new[tracks]
    logit = (
        SAT_BIAS
        + 3.0 * (affinity[tracks] - 0.45)
        - 1.2 * discovery
        + 0.4 * (catalogue['percentile'][tracks] - 0.5)
        + rng.normal(0.0, 0.6)
    )
    sat = rng.random(length) < _sigmoid(logit)
    known[user, artist[tracks]] = True
    counts += [sat.sum(), catalogue['boost'][tracks].sum(), emerging[tracks].sum(), discovery.sum()]
    skip_2 = ~sat & (rng.random(length) < 0.7)
    skip_1 = skip_2 & (rng.random(length) < 0.6)
    pause = rng.choice(3, size=length, p=[0.85, 0.1, 0.05])
    shuffle = _bool(rng.random() < 0.3)
    for p in range(length):
      start_reason = (
          rng.choice(['clickrow', 'playbtn', 'appload'])
          if p == 0
          else ('fwdbtn' if not sat[p - 1] else 'trackdone')
      )
      rows.append(
          (
              session_id,
              p + 1,
              length,
              track_ids[tracks[p]],
              _bool(skip_1[p]),
              _bool(skip_2[p]),
              _bool(not sat[p]),
              _bool(sat[p]),
              int(p == 0 and rng.random() < 0.05),
              int(pause[p] == 0),
              int(pause[p] == 1),
              int(pause[p] == 2),
              int(rng.poisson(0.3)) if not sat[p] else 0,
              int(rng.poisson(0.1)),
              shuffle,
              hour,
              date,
              _bool(premium[user]),
              'radio',
              start_reason,
              'trackdone' if sat[p] else 'fwdbtn',
              user_ids[user],
          )
      )
    num_rows += length
    if (n + 1) % config.sessions_per_file == 0 or n + 1 == s:
      files.append(f'log_{len(files):03d}.csv')
      _write_csv(os.path.join(out_dir, files[-1]), log_columns, rows)
      rows = []
  return {
      'out_dir': out_dir,
      'files': ['tf_000.csv', 'user_history.csv'] + files,
      'num_sessions': s,
      'num_rows': num_rows,
      'num_users': u,
      'num_tracks': config.num_tracks,
      'num_history_rows': len(history_rows),
      'label_counts': dict(zip(sessions_lib.OBJECTIVES, counts.tolist())),
      'label_rates': dict(zip(sessions_lib.OBJECTIVES, (counts / num_rows).round(4).tolist())),
      'seconds': round(time.perf_counter() - start, 3),
  }


def main(argv: Sequence[str] | None = None) -> None:
  defaults = DemoSessionsConfig()
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--out', required=True, help='output directory')
  for field in dataclasses.fields(DemoSessionsConfig):
    parser.add_argument(
        f'--{field.name}',
        type=type(getattr(defaults, field.name)),
        default=getattr(defaults, field.name),
    )
  args = vars(parser.parse_args(argv))
  out = args.pop('out')
  print(json.dumps(write_demo_sessions(out, DemoSessionsConfig(**args)), indent=1))


if __name__ == '__main__':
  main()
