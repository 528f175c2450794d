"""MSSD as shipped: streaming build (data_pipelines/mssd_sessions.py) and the MOSTRA job on it.

The files are written here with MSSD's own columns (optionally plus user_id / artist_id / boost /
genres); expected labels and counts are computed here from the rows written, independently of the
pipeline.
"""

import csv
import gzip
import json
import os

import numpy as np
import pytest

from data_pipelines import mssd_sessions
from test_sessions import MSSD_LOG, MSSD_TF
import job_runs  # tests/job_runs.py


def _write_csv(path, header, rows):
  opener = gzip.open if path.endswith('.gz') else open
  with opener(path, 'wt', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(header)
    writer.writerows(rows)


def write_mssd(root, *, optional=False, seed=0, num_tracks=80, num_sessions=60):
  """MSSD-layout files; returns what the test needs to know about them."""
  rng = np.random.default_rng(seed)
  track_ids = [f't{i:04d}' for i in range(num_tracks)]
  artists = [f'a{i % 17}' for i in range(num_tracks)]
  popularity = rng.uniform(0, 100, num_tracks).round(3)
  boost = (rng.random(num_tracks) < 0.2).astype(int)
  tf_header = MSSD_TF + (['artist_id', 'boost', 'genres'] if optional else [])
  tf_rows, nan_cells = [], 0
  for t in range(num_tracks):
    row = {c: f'{rng.random():.4f}' for c in MSSD_TF}
    row.update(track_id=track_ids[t], mode=rng.choice(['major', 'minor']))
    row['us_popularity_estimate'] = str(popularity[t])
    if t % 11 == 3:
      row['energy'] = 'nan' if t % 2 else ''  # imputed, counted
      nan_cells += 1
    row.update(artist_id=artists[t], boost=str(boost[t]), genres='rock|pop' if t % 3 else '')
    tf_rows.append([row[c] for c in tf_header])
  os.makedirs(os.path.join(root, 'track_features'), exist_ok=True)
  os.makedirs(os.path.join(root, 'training_set'), exist_ok=True)
  half = num_tracks // 2
  _write_csv(os.path.join(root, 'track_features', 'tf_000000000000.csv'), tf_header, tf_rows[:half])
  _write_csv(
      os.path.join(root, 'track_features', 'tf_000000000001.csv.gz'), tf_header, tf_rows[half:]
  )
  log_header = MSSD_LOG + (['user_id'] if optional else [])
  files = [[], []]
  sessions = []  # (key, user, context, [(track, not_skipped)]) in reading order
  filtered_rows = 0
  for s in range(num_sessions):
    length = int(rng.integers(5, 21))
    tracks = list(rng.choice(num_tracks, length, replace=False))
    if s % 7 == 2:
      tracks[-1] = tracks[0]  # a repeated track
    plays = [(int(t), bool(rng.random() < 0.55)) for t in tracks]
    context = 'editorial_playlist' if s % 9 == 4 else 'radio'
    user = f'u{s % max(13, num_sessions // 3)}'
    sessions.append((f's{s:04d}', user, context, plays))
    if context != 'radio':
      filtered_rows += length
    for p, (t, done) in enumerate(plays, start=1):
      row = {c: '0' for c in MSSD_LOG}
      row.update(
          session_id=f's{s:04d}',
          session_position=str(p),
          session_length=str(length),
          track_id_clean=track_ids[t],
          not_skipped='true' if done else 'false',
          context_type=context,
          date='2018-07-15',
          user_id=user,
      )
      if (s + p) % 5 == 0:
        row['skip_1'] = ''  # an empty field in a column the pipeline does not use
        row['hist_user_behavior_reason_end'] = ''
      files[s * 2 // num_sessions].append([row[c] for c in log_header])
  _write_csv(
      os.path.join(root, 'training_set', 'log_0_20180715_000000000000.csv'), log_header, files[0]
  )
  _write_csv(
      os.path.join(root, 'training_set', 'log_1_20180715_000000000000.csv.gz'), log_header, files[1]
  )
  return {
      'sessions': sessions,
      'artists': artists,
      'popularity': popularity,
      'boost': boost,
      'nan_cells': nan_cells,
      'filtered_rows': filtered_rows,
      'track_ids': track_ids,
  }


def expected_labels(info, *, optional, radio_only=True):
  """{session key: {track id: [SAT, (BOOST, EXPOSURE, DISCOVERY)]}} from the rows written."""
  names = sorted(set(info['artists']))
  artist_pop = {
      a: np.mean([p for b, p in zip(info['artists'], info['popularity']) if b == a]) for a in names
  }
  values = np.array(list(artist_pop.values()))
  q25, q75 = np.percentile(values, [25, 75])
  seen = {}
  out = {}
  for key, user, context, plays in info['sessions']:
    if radio_only and context != 'radio':
      continue
    per_track = {}
    for t, done in plays:
      per_track[t] = per_track.get(t, False) or done
    labels = {}
    for t, sat in per_track.items():
      row = [float(sat)]
      if optional:
        a = info['artists'][t]
        row += [
            float(info['boost'][t]),
            float(q25 <= artist_pop[a] <= q75),
            float(a not in seen.get(user, set())),
        ]
      labels[info['track_ids'][t]] = row
    if optional:
      seen.setdefault(user, set()).update(info['artists'][t] for t in per_track)
    out[key] = labels
  return out


def _built_labels(out_dir):
  track_ids = np.load(os.path.join(out_dir, 'tracks.npz'))['track_ids']
  built = {}
  for split in mssd_sessions.SPLITS:
    for record in mssd_sessions.iter_records(out_dir, split):
      built[record['key']] = {
          str(track_ids[t]): row.tolist() for t, row in zip(record['tracks'], record['labels'])
      }
  return built


@pytest.mark.parametrize('optional', [False, True])
def test_build_reads_mssd_as_shipped(tmp_path, optional):
  info = write_mssd(str(tmp_path / 'mssd'), optional=optional)
  metadata = mssd_sessions.build(
      str(tmp_path / 'mssd'), str(tmp_path / 'out'), context_types=('radio',)
  )
  if optional:
    assert metadata['objectives'] == ['SAT', 'BOOST', 'EXPOSURE', 'DISCOVERY']
    assert metadata['unavailable_objectives'] == {}
    assert metadata['split']['by'] == 'user'
  else:
    assert metadata['objectives'] == ['SAT']
    assert set(metadata['unavailable_objectives']) == {'BOOST', 'EXPOSURE', 'DISCOVERY'}
    assert 'user_id' in metadata['unavailable_objectives']['DISCOVERY']
    assert metadata['split']['by'] == 'session'
  expected = expected_labels(info, optional=optional)
  assert _built_labels(str(tmp_path / 'out')) == expected
  counts = metadata['counts']
  radio_rows = sum(len(p) for _, _, c, p in info['sessions'] if c == 'radio')
  assert counts['log/rows_used'] == radio_rows  # empty unused fields drop nothing
  assert counts['log/filtered_context'] == info['filtered_rows']
  repeats = sum(len(p) - len({t for t, _ in p}) for _, _, c, p in info['sessions'] if c == 'radio')
  assert counts['sessions/repeated_track_plays_merged'] == repeats > 0
  assert counts['imputed/energy'] == info['nan_cells'] > 0
  assert sum(metadata['sets'].values()) == len(expected)
  # Normalisation stats from the train split only; load_split applies them.
  train = mssd_sessions.load_split(str(tmp_path / 'out'), 'train')
  assert train['features'].shape[1:] == (20, metadata['num_features'])
  valid_rows = train['features'][train['mask']]
  normalised = [not n.startswith('genre_') for n in metadata['feature_names']]
  np.testing.assert_allclose(valid_rows.mean(0)[normalised], 0.0, atol=1e-4)
  assert not train['features'][~train['mask']].any()


def test_long_sessions_are_split_and_counted(tmp_path):
  info = write_mssd(str(tmp_path / 'mssd'), optional=True)
  metadata = mssd_sessions.build(str(tmp_path / 'mssd'), str(tmp_path / 'out'), max_set_size=8)
  sizes = [len({t for t, _ in p}) for _, _, _, p in info['sessions']]  # no radio filter here
  assert metadata['counts']['sessions/long_split'] == sum(n > 8 for n in sizes)
  assert metadata['counts']['sessions/extra_sets'] == sum(-(-n // 8) - 1 for n in sizes)
  assert sum(metadata['sets'].values()) == sum(-(-n // 8) for n in sizes)
  assert 'log/filtered_context' not in metadata['counts']


def test_bad_layout_and_header_name_the_file(tmp_path):
  with pytest.raises(ValueError, match='training_set/log_'):
    os.makedirs(tmp_path / 'empty' / 'track_features')
    _write_csv(str(tmp_path / 'empty' / 'track_features' / 'tf_0.csv'), ['track_id'], [['t']])
    mssd_sessions.build(str(tmp_path / 'empty'), str(tmp_path / 'out'))
  write_mssd(str(tmp_path / 'mssd'))
  path = str(tmp_path / 'mssd' / 'training_set' / 'log_0_20180715_000000000000.csv')
  _write_csv(path, [c for c in MSSD_LOG if c != 'not_skipped'], [])
  with pytest.raises(
      ValueError,
      match=r"log_0_20180715_000000000000.csv: missing required columns \['not_skipped'\]",
  ):
    mssd_sessions.build(str(tmp_path / 'mssd'), str(tmp_path / 'out2'))


# ------------------------------------------------------------------------------ end to end


def launch(workdir, variant, overrides, cache_dir, timeout=600):
  """`python -m experiments.train_mostra` in a fresh 1-device process (``job_runs.train_mostra``:
  XLA backend optimisation off, a shared compilation cache); returns (results.json, stdout)."""
  stdout, _ = job_runs.train_mostra(workdir, cache_dir, variant, overrides, timeout)
  with open(os.path.join(workdir, 'results.json')) as f:
    return json.load(f), stdout


@pytest.fixture(scope='module')
def mssd_runs(tmp_path_factory):
  cache = tmp_path_factory.mktemp('jax_cache')
  out = {}
  for optional in (False, True):
    root = tmp_path_factory.mktemp(f'mssd_{optional}')
    write_mssd(str(root / 'mssd'), optional=optional, num_sessions=120)
    out[optional] = launch(
        str(root / 'work'),
        'test',
        {
            'scorers': "('SetRank_RMSE',)",
            'data.source': 'mssd',
            'data.manual_dir': str(root / 'mssd'),
            'data.max_set_size': 20,
            'data.context_types': "('radio',)",
            'data.split_fractions': '(0.6,0.2,0.2)',
            # The job builds through either route (tests/test_beam_builds.py: the same data).
            'data.builder': 'beam' if optional else 'inprocess',
        },
        cache,
    )
  return out


def test_mssd_only_columns_train_and_report_sat_naming_the_rest(mssd_runs):
  results, stdout = mssd_runs[False]
  assert 'BOOST: unavailable (needs' in stdout and 'DISCOVERY: unavailable' in stdout
  assert results['meta/objectives'] == ['SAT']
  for objective in ('BOOST', 'EXPOSURE', 'DISCOVERY'):
    assert 'needs' in results[f'meta/unavailable/{objective}']
    assert not any(k.endswith(f'/{objective}') for k in results if not k.startswith('meta/'))
  for row in (
      'SetRank_RMSE',
      'Sort(same relevance)',
      'MOSTRA(eps=0.05)',
      'MOSTRA-WtSUM(alpha=0.5)',
  ):
    assert 0.0 <= results[f'{row}/ndcg@5/SAT'] <= 1.0


def test_optional_columns_report_all_four(mssd_runs):
  results, _ = mssd_runs[True]
  assert results['meta/objectives'] == ['SAT', 'BOOST', 'EXPOSURE', 'DISCOVERY']
  assert not any(k.startswith('meta/unavailable/') for k in results)
  for objective in ('SAT', 'BOOST', 'EXPOSURE', 'DISCOVERY'):
    assert 0.0 <= results[f'MOSTRA(eps=0.05)/ndcg@5/{objective}'] <= 1.0
  assert 'claim/holds' in results
