"""Paper 001's user features: `data_pipelines/user_features.features_matrix` vs a pandas group-by.

    python -m benchmarks.user_features [--num_established 2500] [--num_new 600]
        [--mean_plays 200] [--audio_dim 80] [--collab_dim 80] [--repeats 3] [--warmup 1]
        [--output out.json]

Data (not timed): the demo listening logs (`data_pipelines/demo/listening_logs.generate`, default
size = the user-rep demo's: 2,500 established + 600 new users) written to a temporary directory
and read with `listening.load_listening`; random track spaces (`TrackSpaces`: audio N(0, 1)
[M, audio_dim], collaborative [M, collab_dim], artist vectors, fill vectors) as in
tests/test_user_features.py; the features of `configs/user_rep.py:demo` (horizons 7/30/182
days, onboarding 90 days, age edges), vocabularies from the listening (`spec_for`). Every user
is featurised at its snapshot time as the job does: T (the start of the UTC day 7 days before the
last event's day) for users registered before T, else registration + 1 s.

Ours (timed): `user_features.features_matrix(listening, users, times, spaces, spec)` -- the job's
batch path: per user `user_record` -> `day_bins` (per-UTC-day float64 sums, np.add.reduceat) ->
`features_from_bins` (horizon means, log plays, empty flags, activity, static one-hots, device
multi-hot, onboarding means/languages/flag), float32 [U, dim].

Baseline (timed): `pandas_features`, the same features written the usual way: a DataFrame of the
events merged with the users' snapshot times, filtered to t - 182 d <= day < t, merged with the
track vectors, then per horizon filtered and `groupby('row').mean()` / `.size()`; static blocks
with `pd.get_dummies` of fixed categories, devices by `pd.crosstab`, onboarding by exploding the
chosen artists, merging artist vectors and a groupby mean. Before timing both results are
compared, at the snapshot times and at the end of the logs (where onboarding counts for the new
users): the multi-horizon mean blocks must agree to atol 1e-5 (and so must every other block).

Warm-up calls are excluded; timed calls alternate ours / pandas. users/s = U / median call time,
events/s = E (all events of the listening, each a candidate play) / median call time;
ratio = ours / pandas users/s (> 1: ours faster). The 1-minute load average is recorded.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from typing import Any

import numpy as np

from benchmarks import user_ae_step as common

DAY = 86_400


def _flags(argv: list[str] | None = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog='benchmarks.user_features')
  parser.add_argument('--num_established', type=int, default=2500)
  parser.add_argument('--num_new', type=int, default=600)
  parser.add_argument('--mean_plays', type=float, default=200.0)
  parser.add_argument('--audio_dim', type=int, default=80)
  parser.add_argument('--collab_dim', type=int, default=80)
  parser.add_argument('--repeats', type=int, default=3, help='Timed calls per implementation.')
  parser.add_argument('--warmup', type=int, default=1, help='Untimed calls each.')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--output', default=None, help='Write the results as JSON to this file.')
  args = parser.parse_args(argv)
  for name in ('num_established', 'audio_dim', 'collab_dim', 'repeats'):
    if getattr(args, name) <= 0:
      raise ValueError(f'--{name} must be positive, got {getattr(args, name)}.')
  return args


# ---------------------------------------------------------------------------------------------
# Inputs.


def demo_inputs(args: argparse.Namespace):
  """(listening, users int64 [U], times int64 [U], spaces, spec) of a generated demo."""
  from configs import user_rep  # pylint: disable=g-import-not-at-top
  from data_pipelines import listening as listening_lib  # pylint: disable=g-import-not-at-top
  from data_pipelines import user_features as uf  # pylint: disable=g-import-not-at-top
  from data_pipelines.demo import listening_logs  # pylint: disable=g-import-not-at-top

  demo = listening_logs.DemoListeningConfig(
      num_established=args.num_established,
      num_new=args.num_new,
      mean_plays=args.mean_plays,
      new_user_days=7.0,  # configs/user_rep.py: new users register in the week after T
      seed=args.seed,
  )
  with tempfile.TemporaryDirectory() as directory:
    listening_logs.generate(directory, demo)
    listening = listening_lib.load_listening(directory, progress=False)
  rng = np.random.default_rng(args.seed)
  m, a = listening.num_tracks, listening.num_artists
  da, dc = args.audio_dim, args.collab_dim
  spaces = uf.TrackSpaces(
      audio=rng.normal(size=(m, da)).astype(np.float32),
      collab=rng.normal(size=(m, dc)).astype(np.float32),
      artist_audio=rng.normal(size=(a, da)).astype(np.float32),
      artist_collab=rng.normal(size=(a, dc)).astype(np.float32),
      fill_audio=rng.normal(size=da),
      fill_collab=rng.normal(size=dc),
      batch_ids={'audio': 'a', 'collaborative': 'c'},
  )
  f = user_rep.get_config('demo').features
  spec = uf.spec_for(
      listening,
      da,
      dc,
      horizons=tuple(int(h) for h in f.horizons),
      onboarding_days=int(f.onboarding_days),
      age_edges=tuple(int(e) for e in f.age_edges),
  )
  cut = (int(listening.event_time.max()) // DAY - 7) * DAY
  created = listening.user_created.astype(np.int64)
  times = np.where(created < cut, cut, created + 1).astype(np.int64)
  return listening, np.arange(listening.num_users, dtype=np.int64), times, spaces, spec


# ---------------------------------------------------------------------------------------------
# Baseline.


def _dummies(values: np.ndarray, size: int, rows: int):
  """float64 [rows, size] one-hot of `values` over categories 0..size-1 (others: all zero)."""
  import pandas as pd  # pylint: disable=g-import-not-at-top

  cat = pd.Categorical(values, categories=range(size))
  return pd.get_dummies(cat).to_numpy(np.float64).reshape(rows, size)


def pandas_features(listening, users, times, spaces, spec) -> np.ndarray:
  """float32 [U, spec.dim]: the features of `users` at `times`, pandas group-by style.

  Args:
    listening: a `data_pipelines.listening.Listening` (onboarding and device tables present).
    users: int64 [U] distinct user indices.
    times: int64 [U] unix seconds, each user's snapshot time.
    spaces: the `TrackSpaces`.
    spec: the `FeatureSpec` (nothing dropped).
  """
  import pandas as pd  # pylint: disable=g-import-not-at-top

  if listening.onboarding_time is None or listening.device_user is None:
    raise ValueError('pandas_features needs the onboarding and device tables.')
  if spec.drop:
    raise ValueError('pandas_features computes every block (spec.drop must be empty).')
  n = len(users)
  index = pd.RangeIndex(n)
  snap = pd.DataFrame({'user': users, 'row': np.arange(n), 't': times})
  ev = pd.DataFrame(
      {'user': listening.event_user, 'track': listening.event_track, 'time': listening.event_time}
  ).merge(snap, on='user')
  ev['day'] = ev['time'] // DAY
  ev['today'] = ev['t'] // DAY
  ev = ev[(ev['time'] < ev['t']) & (ev['day'] > ev['today'] - max(spec.horizons))]
  acols = [f'a{i}' for i in range(spaces.audio.shape[1])]
  ccols = [f'c{i}' for i in range(spaces.collab.shape[1])]
  vectors = pd.DataFrame(
      np.hstack([spaces.audio, spaces.collab]).astype(np.float64), columns=acols + ccols
  )
  vectors['track'] = np.arange(len(vectors))
  ev = ev.merge(vectors, on='track', how='left')
  blocks: dict[str, np.ndarray] = {}
  counts, flags = [], []
  for h in spec.horizons:
    window = ev[ev['day'] > ev['today'] - h].groupby('row')
    means = window[acols + ccols].mean().reindex(index)
    count = window.size().reindex(index, fill_value=0).to_numpy(np.float64)
    empty = count == 0
    audio = means[acols].to_numpy(np.float64, copy=True)
    collab = means[ccols].to_numpy(np.float64, copy=True)
    audio[empty], collab[empty] = spaces.fill_audio, spaces.fill_collab
    blocks[f'audio_{h}d'], blocks[f'collab_{h}d'] = audio, collab
    counts.append(np.log1p(count))
    flags.append(empty.astype(np.float64))

  u = pd.DataFrame(
      {
          'country': listening.user_country[users],
          'age': listening.user_age[users],
          'gender': listening.user_gender[users],
          'created': listening.user_created[users].astype(np.int64),
          't': times,
      }
  )
  age_days = np.where(u['created'] >= 0, ((u['t'] - u['created']) / DAY).clip(lower=0), 0.0)
  blocks['activity'] = np.column_stack(counts + flags + [np.log1p(age_days)])

  bucket = np.where(u['age'] >= 0, np.digitize(u['age'], spec.age_edges), len(spec.age_edges) + 1)
  gender = np.where(u['gender'] >= 0, u['gender'], spec.num_genders)
  dev = pd.DataFrame(
      {
          'user': listening.device_user,
          'device': listening.device_index,
          'time': listening.device_time,
      }
  ).merge(snap, on='user')
  dev = dev[(dev['time'] < dev['t']) & (dev['device'] >= 0) & (dev['device'] < spec.num_devices)]
  devices = (
      pd.crosstab(dev['row'], dev['device'])
      .reindex(index=index, columns=range(spec.num_devices), fill_value=0)
      .clip(upper=1)
      .to_numpy(np.float64)
  )
  blocks['static'] = np.hstack(
      [
          _dummies(u['country'], spec.num_countries, n),
          _dummies(bucket, len(spec.age_edges) + 2, n),
          _dummies(gender, spec.num_genders + 1, n),
          devices,
      ]
  )

  a_off, l_off = listening.onboarding_artist_offsets, listening.onboarding_language_offsets
  n_artists = a_off[users + 1] - a_off[users]
  when = listening.onboarding_time[users]
  young = (u['created'] >= 0) & ((u['t'] - u['created']) < spec.onboarding_days * DAY)
  onboarded = ((when >= 0) & (when < times) & young & (n_artists > 0)).to_numpy()
  rows = np.repeat(np.arange(n), n_artists)
  starts = np.repeat(a_off[users], n_artists)
  within = np.arange(len(rows)) - np.repeat(np.cumsum(n_artists) - n_artists, n_artists)
  chosen = pd.DataFrame({'row': rows, 'artist': listening.onboarding_artists[starts + within]})
  chosen = chosen[onboarded[chosen['row']] & chosen['artist'].between(0, listening.num_artists - 1)]
  aa = [f'oa{i}' for i in range(spaces.artist_audio.shape[1])]
  ac = [f'oc{i}' for i in range(spaces.artist_collab.shape[1])]
  artist_vectors = pd.DataFrame(
      np.hstack([spaces.artist_audio, spaces.artist_collab]).astype(np.float64), columns=aa + ac
  )
  artist_vectors['artist'] = np.arange(len(artist_vectors))
  means = chosen.merge(artist_vectors, on='artist').groupby('row')[aa + ac].mean().reindex(index)
  o_audio = means[aa].to_numpy(np.float64, copy=True)
  o_collab = means[ac].to_numpy(np.float64, copy=True)
  missing = np.isnan(o_audio[:, 0])
  o_audio[missing], o_collab[missing] = spaces.fill_audio, spaces.fill_collab
  n_lang = l_off[users + 1] - l_off[users]
  lrows = np.repeat(np.arange(n), n_lang)
  lstarts = np.repeat(l_off[users], n_lang)
  lwithin = np.arange(len(lrows)) - np.repeat(np.cumsum(n_lang) - n_lang, n_lang)
  langs = pd.DataFrame({'row': lrows, 'lang': listening.onboarding_languages[lstarts + lwithin]})
  langs = langs[onboarded[langs['row']] & langs['lang'].between(0, spec.num_languages - 1)]
  languages = (
      pd.crosstab(langs['row'], langs['lang'])
      .reindex(index=index, columns=range(spec.num_languages), fill_value=0)
      .clip(upper=1)
      .to_numpy(np.float64)
  )
  blocks['onboarding'] = np.hstack([o_audio, o_collab, languages, (~onboarded)[:, None]])
  return np.hstack([blocks[name] for name, _ in spec.blocks()]).astype(np.float32)


def check_agreement(ours: np.ndarray, baseline: np.ndarray, spec) -> dict[str, float]:
  """Asserts the multi-horizon mean blocks (then every block) agree to atol 1e-5; returns the
  max absolute difference per block. Raises AssertionError naming the block."""
  out, start = {}, 0
  for name, width in spec.blocks():
    a, b = ours[:, start : start + width], baseline[:, start : start + width]
    out[name] = float(np.max(np.abs(a - b))) if a.size else 0.0
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5, err_msg=f'block {name}')
    start += width
  return out


# ---------------------------------------------------------------------------------------------
# Benchmark.


def run(args: argparse.Namespace) -> dict[str, Any]:
  """Builds the inputs, checks agreement, times alternating calls."""
  from data_pipelines import user_features as uf  # pylint: disable=g-import-not-at-top

  load_before = os.getloadavg()[0]
  start = time.perf_counter()
  listening, users, times, spaces, spec = demo_inputs(args)
  build_s = time.perf_counter() - start
  ours_fn = lambda: uf.features_matrix(listening, users, times, spaces, spec)  # noqa: E731
  pandas_fn = lambda: pandas_features(listening, users, times, spaces, spec)  # noqa: E731
  # check_agreement walks the blocks in column order: the horizon means come first. At the
  # snapshot times no onboarding counts (new users are featurised 1 s after registering), so
  # the end of the logs (every user, onboarded new users young) is checked too.
  max_diff = check_agreement(ours_fn(), pandas_fn(), spec)
  end = np.full_like(times, int(listening.event_time.max()) + 1)
  end_diff = check_agreement(
      uf.features_matrix(listening, users, end, spaces, spec),
      pandas_features(listening, users, end, spaces, spec),
      spec,
  )
  ours_s, pandas_s = common.time_alternating((ours_fn, pandas_fn), args.warmup, args.repeats)
  o, p = statistics.median(ours_s), statistics.median(pandas_s)
  u, e = len(users), int(listening.num_events)
  return {
      'users': u,
      'events': e,
      'dim': int(spec.dim),
      'horizons': list(spec.horizons),
      'audio_dim': args.audio_dim,
      'collab_dim': args.collab_dim,
      'repeats': args.repeats,
      'warmup': args.warmup,
      'build_inputs_s': build_s,
      'ours_call_s': o,
      'pandas_call_s': p,
      'ours_call_s_all': ours_s,
      'pandas_call_s_all': pandas_s,
      'ours_users_per_s': u / o,
      'pandas_users_per_s': u / p,
      'ours_events_per_s': e / o,
      'pandas_events_per_s': e / p,
      'ratio': p / o,
      'max_abs_diff': max_diff,
      'max_abs_diff_end_of_logs': end_diff,
      'parity': {'passed': True, 'atol': 1e-5},
      'load_average_1min': [load_before, os.getloadavg()[0]],
  }


def _print_table(r: dict[str, Any]) -> None:
  print(
      f"user features (paper 001), U={r['users']} users, E={r['events']} events, "
      f"dim={r['dim']}, horizons {r['horizons']} d, audio {r['audio_dim']} / collab "
      f"{r['collab_dim']}"
  )
  means = max(v for k, v in r['max_abs_diff'].items() if k.startswith(('audio_', 'collab_')))
  print(
      f'agreement: max |diff| of the horizon means {means:.2e}, all blocks '
      f"{max(r['max_abs_diff'].values()):.2e} (atol 1e-5): passed"
  )
  print(f"{'implementation':<28}{'call [s]':>10}{'users/s':>12}{'events/s':>14}")
  for label, key in (('ours (features_matrix)', 'ours'), ('pandas group-by', 'pandas')):
    print(
        f"{label:<28}{r[key + '_call_s']:>10.3f}{r[key + '_users_per_s']:>12.0f}"
        f"{r[key + '_events_per_s']:>14.0f}"
    )
  print(f"ratio user_features_users_per_s {r['ratio']:.2f}x")
  common.print_load_line(r, f"{r['repeats']} alternating calls")


def main(argv: list[str] | None = None) -> dict[str, Any]:
  args = _flags(argv)
  results = run(args)
  _print_table(results)
  common.write_json(args.output, results)
  return results


if __name__ == '__main__':
  main()
