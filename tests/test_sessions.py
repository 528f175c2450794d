"""MOSTRA sessions data: demo generator (MSSD-style CSVs) and the sessions pipeline."""

import csv
import filecmp
import json
import os

import numpy as np
import pytest

from data_pipelines import session_batches as B
from data_pipelines import session_logs as logs
from data_pipelines import sessions as S
from data_pipelines.demo import sessions as demo

# The MSSD columns, written out here (not imported) so a drift in the library is caught.
MSSD_LOG = [
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
]
MSSD_TF = [
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
] + [f'acoustic_vector_{i}' for i in range(8)]
LOG_COLUMNS = MSSD_LOG + ['user_id']
TF_COLUMNS = MSSD_TF + ['artist_id', 'boost', 'genres']

SMALL = demo.DemoSessionsConfig(
    num_users=150, num_sessions=800, num_artists=200, num_tracks=2000, sessions_per_file=300, seed=7
)


@pytest.fixture(scope='module')
def demo_data(tmp_path_factory):
  root = tmp_path_factory.mktemp('demo_sessions')
  summary = demo.write_demo_sessions(str(root / 'raw'), SMALL)
  metadata = S.build_session_arrays(str(root / 'raw'), str(root / 'arrays'), seed=3)
  return {
      'raw_dir': str(root / 'raw'),
      'dir': str(root / 'arrays'),
      'summary': summary,
      'metadata': metadata,
      'arrays': S.load_sessions(str(root / 'arrays')),
  }


def _valid_labels(arrays):
  return np.concatenate([arrays[s]['labels'][arrays[s]['mask']] for s in S.SPLITS])


# ---------------------------------------------------------------------------------- generator


def test_generator_is_deterministic(tmp_path):
  config = demo.DemoSessionsConfig(
      num_users=20, num_sessions=40, num_artists=30, num_tracks=200, sessions_per_file=15, seed=5
  )
  first = demo.write_demo_sessions(str(tmp_path / 'a'), config)
  second = demo.write_demo_sessions(str(tmp_path / 'b'), config)
  assert (
      first['files']
      == second['files']
      == ['tf_000.csv', 'user_history.csv', 'log_000.csv', 'log_001.csv', 'log_002.csv']
  )
  match, mismatch, errors = filecmp.cmpfiles(
      tmp_path / 'a', tmp_path / 'b', first['files'], shallow=False
  )
  assert (mismatch, errors) == ([], [])
  demo.write_demo_sessions(
      str(tmp_path / 'c'), demo.DemoSessionsConfig(**{**config.__dict__, 'seed': 6})
  )
  assert not filecmp.cmp(
      tmp_path / 'a' / 'log_000.csv', tmp_path / 'c' / 'log_000.csv', shallow=False
  )


def test_csv_columns_are_mssd_plus_extensions(demo_data):
  raw = demo_data['raw_dir']
  read_header = lambda name: next(csv.reader(open(os.path.join(raw, name))))
  logs = sorted(f for f in os.listdir(raw) if f.startswith('log_'))
  assert len(logs) == 3  # 800 sessions, 300 a file
  for name in logs:
    assert read_header(name) == LOG_COLUMNS
  assert read_header('tf_000.csv') == TF_COLUMNS
  assert read_header('user_history.csv') == ['user_id', 'track_id', 'plays']
  with open(os.path.join(raw, 'tf_000.csv')) as f:
    rows = list(csv.DictReader(f))
  assert {r['mode'] for r in rows} == {'major', 'minor'}
  assert {r['boost'] for r in rows} == {'0', '1'}
  assert all(r['genres'] for r in rows)
  with open(os.path.join(raw, logs[0])) as f:
    rows = list(csv.DictReader(f))
  lengths = [int(r['session_length']) for r in rows if r['session_position'] == '1']
  assert min(lengths) >= 10 and max(lengths) <= 60 and len(set(lengths)) > 20
  assert all(r['not_skipped'] == ('false' if r['skip_3'] == 'true' else 'true') for r in rows)


def test_generator_labels_match_pipeline_labels(demo_data):
  labels = _valid_labels(demo_data['arrays'])
  assert len(labels) == demo_data['summary']['num_rows']
  assert dict(zip(S.OBJECTIVES, labels.sum(0).astype(int).tolist())) == (
      demo_data['summary']['label_counts']
  )


def test_labels_recomputed_from_the_csv_rows(demo_data):
  """All four labels per (session, track) from the CSV rows, by code written here (plain csv,
  no pipeline or generator function), against the built arrays."""
  raw = demo_data['raw_dir']
  read = lambda name: list(csv.DictReader(open(os.path.join(raw, name))))
  tracks = {r['track_id']: r for r in read('tf_000.csv')}
  by_artist = {}
  for r in tracks.values():
    by_artist.setdefault(r['artist_id'], []).append(float(r['us_popularity_estimate']))
  artist_pop = {a: sum(v) / len(v) for a, v in by_artist.items()}
  q25, q75 = np.percentile(sorted(artist_pop.values()), [25, 75])
  known = {}
  for r in read('user_history.csv'):
    known.setdefault(r['user_id'], set()).add(tracks[r['track_id']]['artist_id'])
  sessions = {}
  for name in sorted(f for f in os.listdir(raw) if f.startswith('log_')):
    for r in read(name):
      sessions.setdefault(r['session_id'], []).append(r)
  order = sorted(
      sessions, key=lambda k: (sessions[k][0]['date'], int(sessions[k][0]['hour_of_day']), k)
  )
  expected = {}
  for key in order:
    rows = sorted(sessions[key], key=lambda r: int(r['session_position']))
    user = rows[0]['user_id']
    seen = known.setdefault(user, set())
    labels = []
    for r in rows:
      t = tracks[r['track_id_clean']]
      labels.append(
          [
              float(r['not_skipped'] == 'true'),
              float(t['boost'] == '1'),
              float(q25 <= artist_pop[t['artist_id']] <= q75),
              float(t['artist_id'] not in seen),
          ]
      )
    seen.update(tracks[r['track_id_clean']]['artist_id'] for r in rows)
    expected[key] = labels
  vocab = S.load_vocab(demo_data['dir'])
  got = {}
  for split in S.SPLITS:
    a = demo_data['arrays'][split]
    for row, session in enumerate(a['session_ids']):
      got[str(vocab['session_ids'][session])] = a['labels'][row][a['mask'][row]].tolist()
  assert got == expected


def test_fig2_tendencies_hold(demo_data):
  """Paper Fig. 2: DISCOVERY is skipped more; EXPOSURE and BOOST ~uncorrelated with SAT."""
  sat, boost, exposure, discovery = _valid_labels(demo_data['arrays']).T
  assert len(sat) > 20_000
  skip_discovery, skip_other = 1 - sat[discovery == 1].mean(), 1 - sat[discovery == 0].mean()
  assert skip_discovery - skip_other > 0.15, (skip_discovery, skip_other)
  # 1/sqrt(n) < 0.007 here, so 0.03 is > 4 standard errors.
  assert abs(np.corrcoef(exposure, sat)[0, 1]) < 0.03
  assert abs(np.corrcoef(boost, sat)[0, 1]) < 0.03
  # Fig. 2(a): set-level SAT falls with the share of DISCOVERY tracks in the set.
  mask = np.concatenate([demo_data['arrays'][s]['mask'] for s in S.SPLITS])
  labels = np.concatenate([demo_data['arrays'][s]['labels'] for s in S.SPLITS])
  share = labels.sum(1) / mask.sum(1)[:, None]
  assert np.corrcoef(share[:, 3], share[:, 0])[0, 1] < -0.2
  assert abs(np.corrcoef(share[:, 2], share[:, 0])[0, 1]) < 0.1
  # Label rates in plausible ranges (DISCOVERY/BOOST minority, EXPOSURE ~ half the artists).
  rates = dict(zip(S.OBJECTIVES, _valid_labels(demo_data['arrays']).mean(0)))
  assert 0.45 < rates['SAT'] < 0.7 and 0.04 < rates['BOOST'] < 0.12
  assert 0.35 < rates['EXPOSURE'] < 0.65 and 0.1 < rates['DISCOVERY'] < 0.3


# --------------------------------------------------------------------------- hand-built log

# Artists: A (t1 pop 10), B (t2 pop 20, t5 pop 30 -> 25), C (t3 pop 30), D (t4 pop 50).
# Artist popularities [10, 25, 30, 50]: q25 = 21.25, q75 = 35 -> emerging = {B, C}.
TRACKS = [  # id, artist, popularity, boost, genres, acoustic_vector
    ('t1', 'A', 10, 0, 'rock', [1, 0, 0, 0, 0, 0, 0, 0]),
    ('t2', 'B', 20, 1, 'pop|rock', [1, 1, 0, 0, 0, 0, 0, 0]),
    ('t3', 'C', 30, 0, 'jazz', [0, 1, 0, 0, 0, 0, 0, 0]),
    ('t4', 'D', 50, 1, '', [0, 0, 1, 0, 0, 0, 0, 0]),
    ('t5', 'B', 30, 0, 'pop', [0, 0, 0, 1, 0, 0, 0, 0]),
]
HISTORY = [('u1', 't1', 3), ('u1', 't3', 1)]  # u2 has no history
# session, position, length, track, not_skipped, user, date, hour. Rows out of order on purpose:
# sd is written last but is u2's earliest session (hour 8 < 11), so sc's t1 is not a discovery.
LOG = [
    ('sa', 3, 3, 't4', 'true', 'u1', '2018-07-15', 10),
    ('sa', 1, 3, 't2', 'true', 'u1', '2018-07-15', 10),
    ('sa', 2, 3, 't3', 'false', 'u1', '2018-07-15', 10),
    ('sb', 1, 2, 't5', 'false', 'u1', '2018-07-16', 9),
    ('sb', 2, 2, 't1', 'true', 'u1', '2018-07-16', 9),
    ('sc', 1, 3, 't5', 'true', 'u2', '2018-07-15', 11),
    ('sc', 2, 3, 't2', 'false', 'u2', '2018-07-15', 11),
    ('sc', 3, 3, 't1', 'true', 'u2', '2018-07-15', 11),
    ('sd', 1, 1, 't1', 'true', 'u2', '2018-07-15', 8),
]
# By hand: [SAT, BOOST, EXPOSURE, DISCOVERY] per session in chronological order, by position.
EXPECTED = {
    'sd': [[1, 0, 0, 1]],  # u2 never played A
    'sa': [[1, 1, 1, 1], [0, 0, 1, 0], [1, 1, 0, 1]],  # t3's artist C is in u1's history
    'sc': [[1, 0, 1, 1], [0, 1, 1, 1], [1, 0, 0, 0]],  # t5, t2 both B: same session -> both 1
    'sb': [[0, 0, 1, 0], [1, 0, 0, 0]],
}  # B played in sa, A in history


def _tf_row(track_id, artist, popularity, boost, genres, vector):
  row = {c: '0.5' for c in TF_COLUMNS}
  row.update(
      track_id=track_id,
      artist_id=artist,
      us_popularity_estimate=str(popularity),
      boost=str(boost),
      genres=genres,
      mode='major',
      key='3',
      time_signature='4',
      duration='200.0',
  )
  row.update({f'acoustic_vector_{i}': str(v) for i, v in enumerate(vector)})
  return row


def _log_row(session, position, length, track, not_skipped, user, date, hour):
  skipped = 'false' if not_skipped == 'true' else 'true'
  return dict(
      session_id=session,
      session_position=str(position),
      session_length=str(length),
      track_id_clean=track,
      skip_1='false',
      skip_2=skipped,
      skip_3=skipped,
      not_skipped=not_skipped,
      context_switch='0',
      no_pause_before_play='1',
      short_pause_before_play='0',
      long_pause_before_play='0',
      hist_user_behavior_n_seekfwd='0',
      hist_user_behavior_n_seekback='0',
      hist_user_behavior_is_shuffle='false',
      hour_of_day=str(hour),
      date=date,
      premium='true',
      context_type='radio',
      hist_user_behavior_reason_start='trackdone',
      hist_user_behavior_reason_end='trackdone',
      user_id=user,
  )


def _write(path, columns, rows):
  with open(path, 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(columns)
    for row in rows:
      writer.writerow([row[c] for c in columns] if isinstance(row, dict) else row)


def _write_hand_built(raw_dir, extra_tf=(), extra_log=(), extra_history=()):
  os.makedirs(raw_dir, exist_ok=True)
  _write(
      os.path.join(raw_dir, 'tf_000.csv'),
      TF_COLUMNS,
      [_tf_row(*t) for t in TRACKS] + list(extra_tf),
  )
  _write(
      os.path.join(raw_dir, 'user_history.csv'),
      ['user_id', 'track_id', 'plays'],
      HISTORY + list(extra_history),
  )
  _write(
      os.path.join(raw_dir, 'log_000.csv'),
      LOG_COLUMNS,
      [_log_row(*r) for r in LOG] + list(extra_log),
  )


def _labels_by_session(raw):
  return {s.session_id: labels.tolist() for s, labels in zip(raw.sessions, S.derive_labels(raw))}


def test_labels_match_hand_computed(tmp_path):
  _write_hand_built(str(tmp_path))
  raw = logs.read_raw_sessions(str(tmp_path))
  assert raw.report.total == 0
  assert [s.session_id for s in raw.sessions] == ['sd', 'sa', 'sc', 'sb']  # chronological
  assert [raw.tracks.track_ids[t] for t in raw.sessions[1].tracks] == ['t2', 't3', 't4']
  popularity, emerging, (q25, q75) = S.emerging_artists(
      raw.tracks.artist, raw.tracks.popularity, len(raw.tracks.artist_ids)
  )
  np.testing.assert_allclose(popularity, [10, 25, 30, 50])
  assert (q25, q75) == (21.25, 35.0) and emerging.tolist() == [False, True, True, False]
  assert _labels_by_session(raw) == EXPECTED


def test_hand_built_features(tmp_path):
  _write_hand_built(str(tmp_path / 'raw'))
  metadata = S.build_session_arrays(
      str(tmp_path / 'raw'), str(tmp_path / 'out'), split_fractions=(1.0, 0.0, 0.0)
  )
  train = S.load_sessions(str(tmp_path / 'out'))['train']
  vocab = S.load_vocab(str(tmp_path / 'out'))
  names = metadata['feature_names']
  assert metadata['genre_names'] == ['jazz', 'pop', 'rock']
  assert len(names) == 8 + 8 + 1 + 3 + 16 + 1 + 3 == metadata['num_features']
  raw_features = train['features'] * np.float32(metadata['feature_std']) + np.float32(
      metadata['feature_mean']
  )
  sa = list(vocab['session_ids'][train['session_ids']]).index('sa')
  assert vocab['user_ids'][train['user_ids'][sa]] == 'u1'
  # u1 embedding = (3 * t1 + 1 * t3) / 4 = (0.75, 0.25, 0, ...); genres: rock 0.75, jazz 0.25.
  by_name = dict(zip(names, raw_features[sa, 0]))  # pair (u1, t2)
  np.testing.assert_allclose(
      [by_name['user_emb_0'], by_name['user_emb_1']], [0.75, 0.25], atol=1e-5
  )
  np.testing.assert_allclose(by_name['cosine'], 1.0 / np.sqrt(1.25), atol=1e-5)
  np.testing.assert_allclose(train['cosine'][sa, 0], 1.0 / np.sqrt(1.25), atol=1e-6)
  np.testing.assert_allclose(by_name['euclidean'], np.sqrt(0.625), atol=1e-5)
  np.testing.assert_allclose(by_name['genre_affinity'], 0.75, atol=1e-5)  # max(pop 0, rock .75)
  assert [by_name['genre_jazz'], by_name['genre_pop'], by_name['genre_rock']] == [0, 1, 1]
  np.testing.assert_allclose(by_name['popularity'], 20.0, atol=1e-4)
  np.testing.assert_allclose(
      dict(zip(names, raw_features[sa, 2]))['genre_affinity'], 0.0, atol=1e-5
  )  # t4 has no genre
  sc = list(vocab['session_ids'][train['session_ids']]).index('sc')  # u2: no history
  np.testing.assert_allclose(train['cosine'][sc, :3], 0.0)
  assert metadata['users_without_history'] == 1


def test_bad_rows_are_counted_reported_and_skipped(tmp_path):
  bad_tf = [
      _tf_row('t6', 'E', 'nan', 0, 'rock', [0] * 8),  # NaN popularity
      _tf_row('t1', 'A', 10, 0, 'rock', [1] + [0] * 7),
  ]  # duplicated track id
  good = _log_row('sa', 1, 3, 't2', 'true', 'u1', '2018-07-15', 10)
  bad_log = [
      {**good, 'skip_1': ''},  # missing field
      {**good, 'session_id': 'se', 'track_id_clean': 't9'},  # unknown track
      {**good, 'session_position': '2', 'track_id_clean': 't5'},  # duplicate position 2
      {**good, 'session_id': 'se', 'track_id_clean': 't6'},  # track dropped (NaN)
      {**good, 'session_position': '5', 'hour_of_day': 'NaN'},  # unparseable int
      {**good, 'session_position': '5', 'not_skipped': 'maybe'},  # unparseable bool
      {**good, 'session_position': '9', 'track_id_clean': 't5'},  # position > length
      {**good, 'session_position': '3', 'user_id': 'u2'},  # other user, same session
      list(good.values()) + ['extra'],
  ]  # wrong field count
  bad_history = [('u1', 't9', 2), ('u2', 't1', 'inf')]
  _write_hand_built(str(tmp_path), bad_tf, bad_log, bad_history)
  raw = logs.read_raw_sessions(str(tmp_path), max_examples=2)
  assert raw.report.counts == {
      'tracks/non_finite': 1,
      'tracks/duplicate_track_id': 1,
      'history/unknown_track': 1,
      'history/non_finite': 1,
      'log/missing_field': 1,
      'log/unknown_track': 2,
      'log/duplicate_position': 1,
      'log/unparseable': 2,
      'log/bad_position': 1,
      'log/inconsistent_session': 1,
      'log/wrong_field_count': 1,
  }
  assert raw.report.total == 13
  assert raw.report.examples['log/unknown_track'] == ['log_000.csv:12: t9', 'log_000.csv:14: t6']
  assert raw.report.examples['tracks/non_finite'][0].startswith('tf_000.csv:7: ')
  assert len(raw.report.examples['log/unparseable']) == 2
  assert 'log/unknown_track: 2' in raw.report.summary()
  assert _labels_by_session(raw) == EXPECTED  # good rows kept, bad ones ignored
  with pytest.raises(ValueError, match='missing columns'):
    with open(tmp_path / 'log_000.csv', 'w') as f:
      f.write(','.join(c for c in LOG_COLUMNS if c != 'user_id') + '\n')
    logs.read_raw_sessions(str(tmp_path))


def test_truncation_and_split_errors(tmp_path):
  _write_hand_built(str(tmp_path / 'raw'))
  metadata = S.build_session_arrays(
      str(tmp_path / 'raw'), str(tmp_path / 'out'), max_set_size=2, split_fractions=(1.0, 0.0, 0.0)
  )
  train = S.load_sessions(str(tmp_path / 'out'))['train']
  assert train['features'].shape[1] == 2 and metadata['truncated_sessions'] == 2  # sa, sc
  assert train['mask'].sum() == 1 + 2 + 2 + 2
  assert metadata['counts']['valid'] == {'sessions': 0, 'users': 0, 'positions': 0}
  with pytest.raises(ValueError, match='split_by'):
    S.build_session_arrays(str(tmp_path / 'raw'), str(tmp_path / 'x'), split_by='track')
  with pytest.raises(ValueError, match='split_fractions'):
    S.build_session_arrays(
        str(tmp_path / 'raw'), str(tmp_path / 'x'), split_fractions=(0.5, 0.1, 0.1)
    )
  with pytest.raises(ValueError, match='train split is empty'):
    S.build_session_arrays(
        str(tmp_path / 'raw'), str(tmp_path / 'x'), split_fractions=(0.0, 0.0, 1.0)
    )


# ----------------------------------------------------------------------------- arrays, splits


def test_padding_masks_and_splits(demo_data):
  arrays, metadata = demo_data['arrays'], demo_data['metadata']
  raw = logs.read_raw_sessions(demo_data['raw_dir'])
  vocab = S.load_vocab(demo_data['dir'])
  f = metadata['num_features']
  users = {}
  for split in S.SPLITS:
    a = arrays[split]
    s = len(a['user_ids'])
    assert a['features'].shape == (s, 100, f) and a['features'].dtype == np.float32
    assert a['labels'].shape == (s, 100, 4) and a['labels'].dtype == np.float32
    assert a['mask'].shape == (s, 100) and a['mask'].dtype == bool
    assert a['cosine'].shape == a['track_ids'].shape == (s, 100)
    lengths = np.array([len(raw.sessions[i].tracks) for i in a['session_ids']])
    np.testing.assert_array_equal(a['mask'].sum(1), lengths)
    np.testing.assert_array_equal(a['mask'], np.arange(100) < lengths[:, None])  # prefix
    pad = ~a['mask']
    assert not a['features'][pad].any() and not a['labels'][pad].any()
    assert not a['cosine'][pad].any() and (a['track_ids'][pad] == -1).all()
    for row, i in enumerate(a['session_ids'][:20]):
      np.testing.assert_array_equal(a['track_ids'][row, : lengths[row]], raw.sessions[i].tracks)
      assert vocab['user_ids'][a['user_ids'][row]] == raw.sessions[i].user_id
    users[split] = set(a['user_ids'].tolist())
    assert metadata['counts'][split]['sessions'] == s
  assert not users['train'] & users['valid'] and not users['train'] & users['test']
  assert not users['valid'] & users['test']  # paper Sec. 5: no user in two splits
  total = sum(metadata['counts'][k]['sessions'] for k in S.SPLITS)
  assert total == SMALL.num_sessions and 0.7 < metadata['counts']['train']['sessions'] / total
  np.testing.assert_array_equal(
      vocab['track_ids'][arrays['train']['track_ids'][0, :3]],
      [raw.tracks.track_ids[t] for t in raw.sessions[arrays['train']['session_ids'][0]].tracks[:3]],
  )


def test_normalisation_stats_come_from_train_only(demo_data):
  metadata, arrays = demo_data['metadata'], demo_data['arrays']
  raw = logs.read_raw_sessions(demo_data['raw_dir'])
  vocab = S.load_vocab(demo_data['dir'])
  user_embedding, genre_dist = S.user_profiles(raw.tracks, raw.history, list(vocab['user_ids']))
  mean, std = np.array(metadata['feature_mean']), np.array(metadata['feature_std'])
  unnormalised = {}
  for split in S.SPLITS:
    a = arrays[split]
    rows, cols = np.nonzero(a['mask'])
    x = S.pair_features(
        raw.tracks, user_embedding, genre_dist, a['user_ids'][rows], a['track_ids'][rows, cols]
    )
    unnormalised[split] = x
    # Every split is normalised with the same (train) statistics.
    np.testing.assert_allclose(a['features'][rows, cols], (x - mean) / std, atol=2e-4)
  normalised = np.array(metadata['normalised'])
  names = np.array(metadata['feature_names'])
  assert names[~normalised].tolist() == [f'genre_{g}' for g in metadata['genre_names']]
  train = unnormalised['train']
  np.testing.assert_allclose(mean[normalised], train.mean(0)[normalised], rtol=1e-6, atol=1e-9)
  np.testing.assert_allclose(std[normalised], train.std(0)[normalised], rtol=1e-6)
  everything = np.concatenate(list(unnormalised.values()))
  assert np.max(np.abs(everything.mean(0) - mean)[normalised] / std[normalised]) > 1e-3
  assert (mean[~normalised] == 0).all() and (std[~normalised] == 1).all()
  with open(os.path.join(demo_data['dir'], 'metadata.json')) as f:
    assert json.load(f)['feature_mean'] == metadata['feature_mean']


# ----------------------------------------------------------------------------------- batches


def _fake_split(num_sessions, max_set_size=5, num_features=3):
  rng = np.random.default_rng(0)
  lengths = rng.integers(1, max_set_size + 1, size=num_sessions)
  mask = np.arange(max_set_size) < lengths[:, None]
  return {
      'features': rng.normal(size=(num_sessions, max_set_size, num_features)).astype(np.float32)
      * mask[..., None],
      'mask': mask,
      'labels': np.zeros((num_sessions, max_set_size, 4), np.float32),
      'cosine': np.zeros((num_sessions, max_set_size), np.float32),
      'track_ids': np.where(mask, 1, -1).astype(np.int32),
      'user_ids': np.arange(num_sessions, dtype=np.int32) % 3,
      'session_ids': np.arange(num_sessions, dtype=np.int32),
  }


def _session_ids(dataset, n=None):
  it = iter(dataset)
  return [next(it)['session_ids'].tolist() for _ in range(n or len(dataset))]


def test_batches_fixed_shape_deterministic_and_per_epoch():
  split = _fake_split(23)
  ds = B.session_batches(split, batch_size=4, seed=1, num_epochs=3)
  assert len(ds) == 3 * 5  # 23 // 4 = 5 full batches an epoch
  batch = ds[0]
  assert batch['features'].shape == (4, 5, 3) and batch['mask'].shape == (4, 5)
  assert batch['labels'].shape == (4, 5, 4) and batch['session_valid'].tolist() == [True] * 4
  ids = _session_ids(ds)
  assert ids == _session_ids(B.session_batches(split, batch_size=4, seed=1, num_epochs=3))
  assert ids != _session_ids(B.session_batches(split, batch_size=4, seed=2, num_epochs=3))
  epochs = [sum(ids[5 * e : 5 * (e + 1)], []) for e in range(3)]
  assert all(len(set(e)) == 20 for e in epochs)  # no repeat inside an epoch
  assert epochs[0] != epochs[1]  # reshuffled each epoch
  row = ids[0][0]
  np.testing.assert_array_equal(batch['features'][0], split['features'][row])
  forever = B.session_batches(split, batch_size=4, seed=1, num_epochs=None)
  assert _session_ids(forever, 15) == ids


def test_eval_batches_pad_last_batch():
  split = _fake_split(10)
  ds = B.session_batches(split, batch_size=4, shuffle=False, drop_remainder=False)
  batches = [ds[i] for i in range(len(ds))]
  assert len(batches) == 3 and all(b['mask'].shape == (4, 5) for b in batches)
  valid = np.concatenate([b['session_valid'] for b in batches])
  ids = np.concatenate([b['session_ids'] for b in batches])
  assert ids[valid].tolist() == list(range(10)) and valid.sum() == 10
  last = batches[-1]
  assert not last['mask'][2:].any() and not last['features'][2:].any()
  assert (last['track_ids'][2:] == -1).all()


def test_batches_resume_from_iterator_state():
  split = _fake_split(23)
  ds = B.session_batches(split, batch_size=4, seed=4, num_epochs=None)
  it = iter(ds)
  for _ in range(7):  # into the second epoch
    next(it)
  state = json.loads(json.dumps(it.get_state()))  # what a checkpoint stores
  expected = [next(it)['session_ids'].tolist() for _ in range(6)]
  resumed = iter(B.session_batches(split, batch_size=4, seed=4, num_epochs=None))
  resumed.set_state(state)
  assert [next(resumed)['session_ids'].tolist() for _ in range(6)] == expected


def test_batches_shard_hosts_disjointly():
  split = _fake_split(23)
  shards = [
      sum(
          _session_ids(
              B.session_batches(split, batch_size=2, seed=0, shard_index=i, shard_count=2)
          ),
          [],
      )
      for i in range(2)
  ]
  assert len(shards[0]) == len(shards[1]) == 10 and not set(shards[0]) & set(shards[1])
  with pytest.raises(ValueError, match='shard_index'):
    B.session_batches(split, batch_size=2, shard_index=2, shard_count=2)


def test_demo_batches_feed_a_trainer(demo_data):
  train = demo_data['arrays']['train']
  batch = B.session_batches(train, batch_size=8, seed=0)[0]
  f = demo_data['metadata']['num_features']
  assert batch['features'].shape == (8, 100, f) and batch['features'].dtype == np.float32
  assert np.isfinite(batch['features']).all() and batch['mask'].any(1).all()
