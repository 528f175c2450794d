"""LFM-2b / LFM-1b format readers (data_pipelines/lfm_tables.py, data_pipelines/listening.py).

Fixtures are tiny TSVs written here as plain strings (bz2 / gzip via the stdlib); expectations come
from an independent read of the same files with Python's csv + bz2/gzip + datetime modules.
"""

import bz2
import calendar
import csv
import datetime
import gzip
import io
import pathlib

import numpy as np
import pytest

from data_pipelines import lfm_tables
from data_pipelines import listening

USERS = [
    ('user_id', 'country', 'age', 'gender', 'creation_time'),
    ('u1', 'US', '25', 'm', '2023-05-01 10:00:00'),
    ('u2', 'DE', '-1', 'f', '2023-06-02 11:30:00'),
    ('u3', '', '', '', ''),
    ('u4', 'SE', '41', 'n', '2024-01-01 00:00:00'),
]
ARTISTS = [
    ('artist_id', 'artist_name'),
    ('10', 'Alpha'),
    ('11', 'Beta'),
    ('12', 'Alpha'),  # ambiguous name: 'Alpha' -> first id, 10
    ('13', 'Gamma'),
]
TRACKS = [
    ('track_id', 'artist_name', 'track_name'),
    ('100', 'Alpha', 'a one'),
    ('101', 'Beta', 'b one'),
    ('102', 'Gamma', 'g one'),
    ('103', 'Delta', 'not in artists.tsv'),
    ('104', 'Alpha', 'a two'),
]
EVENTS = [
    ('user_id', 'track_id', 'album_id', 'timestamp'),
    ('u2', '101', '1', '2024-01-03 08:00:00'),
    ('u1', '100', '1', '2024-01-02 10:00:00'),
    ('u1', '102', '', '2024-01-01 09:00:00'),
    ('u1', '101', '2', '2024-01-02 10:00:00'),  # same time as the 100 play: sorted by track
    ('u4', '103', '3', '2024-02-01 23:59:59'),
    ('u2', '104', '4', '2024-01-03 07:00:00'),
    ('u1', '100', '1', '2024-01-05 12:00:00'),
]
URIS = [('track_id', 'uri'), ('100', 'spotify:track:A'), ('102', 'spotify:track:C')]
ONBOARDING = [
    ('user_id', 'timestamp', 'artist_ids', 'languages'),
    ('u4', '2024-01-01 00:05:00', '13,11', 'sv,en'),
    ('u2', '2023-06-02 11:33:00', '', 'de'),
]
DEVICES = [
    ('user_id', 'timestamp', 'device'),
    ('u1', '2024-01-01 09:00:00', 'ios'),
    ('u1', '2023-12-01 09:00:00', 'web'),
    ('u4', '2024-02-01 23:59:59', 'tv'),
]
FOLLOWS = [
    ('user_id', 'artist_id', 'timestamp'),
    ('u1', '13', '2024-01-04 00:00:00'),
    ('u2', '10', '2024-01-03 09:00:00'),
]
ARTIST_COUNTRIES = [('artist_id', 'country'), ('10', 'US'), ('11', 'GB'), ('13', 'SE')]
OPTIONAL = {
    'spotify-uris.tsv': URIS,
    'onboarding.tsv': ONBOARDING,
    'devices.tsv': DEVICES,
    'follows.tsv': FOLLOWS,
    'artist-countries.tsv': ARTIST_COUNTRIES,
}


def _write(path: pathlib.Path, rows, compress=None) -> pathlib.Path:
  text = ''.join('\t'.join(r) + '\n' for r in rows).encode('utf-8')
  if compress == 'bz2':
    path = path.with_name(path.name + '.bz2')
    text = bz2.compress(text)
  elif compress == 'gz':
    path = path.with_name(path.name + '.gz')
    text = gzip.compress(text)
  path.write_bytes(text)
  return path


def _fixture(directory: pathlib.Path, compress=None, optional=True, events=EVENTS, **replace):
  tables = {'users.tsv': USERS, 'artists.tsv': ARTISTS, 'tracks.tsv': TRACKS}
  tables['listening-events.tsv'] = events
  if optional:
    tables.update(OPTIONAL)
  tables.update({k.replace('_', '-') + '.tsv': v for k, v in replace.items()})
  for name, rows in tables.items():
    _write(directory / name, rows, compress)
  return directory


def _read_direct(path: pathlib.Path) -> list[dict[str, str]]:
  opener = {'.bz2': bz2.open, '.gz': gzip.open}.get(path.suffix, open)
  with opener(path, 'rt', encoding='utf-8', newline='') as f:
    return list(csv.DictReader(f, delimiter='\t', quoting=csv.QUOTE_NONE))


def _utc(text: str) -> int:
  return calendar.timegm(datetime.datetime.strptime(text, '%Y-%m-%d %H:%M:%S').timetuple())


@pytest.mark.parametrize('compress', [None, 'bz2', 'gz'])
def test_load_matches_direct_csv_read(tmp_path, compress):
  _fixture(tmp_path, compress)
  data = listening.load_listening(tmp_path, progress=False)
  suffix = {'bz2': '.bz2', 'gz': '.gz'}.get(compress, '')
  users = _read_direct(tmp_path / f'users.tsv{suffix}')
  assert data.user_ids.tolist() == [r['user_id'] for r in users]
  assert data.countries == ('DE', 'GB', 'SE', 'US')  # users' and artists' countries
  assert [data.countries[c] if c >= 0 else '' for c in data.user_country] == [
      r['country'] for r in users
  ]
  assert data.user_age.tolist() == [
      int(r['age']) if r['age'] not in ('', '-1') else -1 for r in users
  ]
  assert [data.genders[g] if g >= 0 else '' for g in data.user_gender] == [
      r['gender'] for r in users
  ]
  assert data.user_created.tolist() == [
      _utc(r['creation_time']) if r['creation_time'] else -1 for r in users
  ]
  assert data.user_created.dtype == np.int64 and data.user_age.dtype == np.int32
  # Events: per user, (time, track) sorted, from the direct read.
  events = _read_direct(tmp_path / f'listening-events.tsv{suffix}')
  track_ids = data.track_ids.tolist()
  for u, user in enumerate(data.user_ids.tolist()):
    expected = sorted((_utc(r['timestamp']), r['track_id']) for r in events if r['user_id'] == user)
    expected.sort(key=lambda x: (x[0], track_ids.index(x[1])))
    tracks, times = data.user_events(u)
    assert [(int(t), track_ids[m]) for m, t in zip(tracks, times)] == expected
  assert data.num_events == len(events) and data.user_offsets[-1] == len(events)
  assert data.event_user.dtype == np.int32 and data.event_track.dtype == np.int32
  assert data.event_time.dtype == np.int64 and data.user_offsets.dtype == np.int64
  assert np.all(np.diff(data.event_user) >= 0)
  # Tracks -> artists by name; uris.
  names = {r['track_id']: r['artist_name'] for r in _read_direct(tmp_path / f'tracks.tsv{suffix}')}
  got = {t: data.artist_names[a] for t, a in zip(track_ids, data.track_artist)}
  assert got == names
  assert data.artist_ids[data.track_artist[track_ids.index('100')]] == '10'  # first 'Alpha' id
  assert data.track_uri.tolist() == ['spotify:track:A', '', 'spotify:track:C', '', '']
  counts = data.report.counts()
  tracks_file = f'tracks.tsv{suffix}'  # reports name the file read
  assert counts[f'{tracks_file}/ambiguous_artist_name'] == 2  # tracks 100 and 104
  assert counts[f'{tracks_file}/new_artist_from_name'] == 1  # 'Delta'
  example = data.report.examples(tracks_file, 'new_artist_from_name')[0]
  assert example.startswith(f'{tracks_file}:5:') and "'Delta'" in example
  assert data.report.total == 3 and not data.messages
  for table in listening.TABLES:
    assert data.has(table)


def test_platform_tables(tmp_path):
  data = listening.load_listening(_fixture(tmp_path), progress=False)
  uid = data.user_ids.tolist()
  aid = data.artist_ids.tolist()
  # Onboarding CSR against the direct read.
  on_time = np.full(data.num_users, -1)
  for r in _read_direct(tmp_path / 'onboarding.tsv'):
    u = uid.index(r['user_id'])
    on_time[u] = _utc(r['timestamp'])
    lo, hi = data.onboarding_artist_offsets[u], data.onboarding_artist_offsets[u + 1]
    assert [aid[a] for a in data.onboarding_artists[lo:hi]] == [
        x for x in r['artist_ids'].split(',') if x
    ]
    lo, hi = data.onboarding_language_offsets[u], data.onboarding_language_offsets[u + 1]
    assert [data.languages[x] for x in data.onboarding_languages[lo:hi]] == r['languages'].split(
        ','
    )
  np.testing.assert_array_equal(data.onboarding_time, on_time)
  assert data.onboarding_artist_offsets[-1] == data.onboarding_artists.size == 2
  # Devices sorted by (user, time).
  rows = sorted(
      (uid.index(r['user_id']), _utc(r['timestamp']), r['device'])
      for r in _read_direct(tmp_path / 'devices.tsv')
  )
  got = [
      (int(u), int(t), data.devices[d])
      for u, t, d in zip(data.device_user, data.device_time, data.device_index)
  ]
  assert got == rows
  rows = sorted(
      (uid.index(r['user_id']), _utc(r['timestamp']), r['artist_id'])
      for r in _read_direct(tmp_path / 'follows.tsv')
  )
  got = [
      (int(u), int(t), aid[a])
      for u, t, a in zip(data.follow_user, data.follow_time, data.follow_artist)
  ]
  assert got == rows
  countries = {
      r['artist_id']: r['country'] for r in _read_direct(tmp_path / 'artist-countries.tsv')
  }
  got = {a: data.countries[c] for a, c in zip(aid, data.artist_country) if c >= 0}
  assert got == countries


def test_missing_optional_tables(tmp_path, capsys):
  data = listening.load_listening(_fixture(tmp_path, optional=False), progress=False)
  for table in listening.TABLES:
    assert not data.has(table)
  assert data.onboarding_artists is None and data.follow_time is None and data.devices == ()
  text = ' '.join(data.messages)
  for name in (
      'onboarding.tsv',
      'devices.tsv',
      'follows.tsv',
      'artist-countries.tsv',
      'spotify-uris.tsv',
  ):
    assert f'{name} absent' in text
  assert 'devices.tsv absent' in capsys.readouterr().out
  assert data.track_uri.tolist() == [''] * 5 and data.num_events == len(EVENTS) - 1


def test_unix_and_datetime_timestamps_agree(tmp_path):
  unix = [EVENTS[0]] + [(*r[:3], str(_utc(r[3]))) for r in EVENTS[1:]]
  (tmp_path / 'a').mkdir()
  (tmp_path / 'b').mkdir()
  a = listening.load_listening(_fixture(tmp_path / 'a'), progress=False)
  b = listening.load_listening(_fixture(tmp_path / 'b', events=unix), progress=False)
  np.testing.assert_array_equal(a.event_time, b.event_time)
  np.testing.assert_array_equal(a.event_track, b.event_track)
  utc = datetime.timezone.utc
  ten = int(datetime.datetime(2024, 1, 2, 10, tzinfo=utc).timestamp())
  expected = {
      '2024-01-02T10:00:00Z': ten,
      '2024-01-02T12:00:00+02:00': ten,
      '2024-01-02 10:00:00': ten,
      '2024-01-02': int(datetime.datetime(2024, 1, 2, tzinfo=utc).timestamp()),
      str(ten): ten,
      f'{ten}.7': ten,
  }
  for value, seconds in expected.items():
    assert lfm_tables.parse_time(value) == seconds, value
  values, ok = lfm_tables.convert(np.asarray([*expected, 'junk']), 'time')
  assert ok.tolist() == [True] * len(expected) + [False]
  assert values[: len(expected)].tolist() == list(expected.values())


def test_artists_joined_by_id(tmp_path):
  tracks = [('track_id', 'track_name', 'artist_id'), ('100', 'x', '12'), ('101', 'y', '99')]
  events = [EVENTS[0], ('u1', '100', '', '1704067200'), ('u1', '101', '', '1704067201')]
  _fixture(tmp_path, optional=False, events=events, tracks=tracks)
  data = listening.load_listening(tmp_path, progress=False)
  assert data.artist_ids[data.track_artist].tolist()[0] == '12' and data.track_artist[1] == -1
  assert data.report.counts() == {'tracks.tsv/unknown_artist_id_set_missing': 1}
  assert data.num_artists == 4  # no artists made from names


def test_bad_rows_counted_by_file_and_line(tmp_path):
  events = [
      EVENTS[0],
      ('u1', '100', '1', '2024-01-02 10:00:00'),  # line 2 ok
      ('u1', '100', '2024-01-02 10:00:00'),  # line 3: 3 fields
      ('u1', '100', '1', 'yesterday'),  # line 4: bad timestamp
      ('u1', '999', '1', '2024-01-02 10:00:00'),  # line 5: unknown track
      ('zz', '100', '1', '2024-01-02 10:00:00'),  # line 6: unknown user
      ('u2', '101', '1', ''),  # line 7: empty timestamp
      ('u2', '101', '1', '1704067200'),  # line 8 ok
  ]
  users = USERS + [('u1', 'GB', '30', 'f', '')]  # line 6 of users.tsv: duplicate id
  _fixture(tmp_path, optional=False, events=events, users=users)
  data = listening.load_listening(tmp_path, progress=False)
  counts = data.report.counts()
  for reason, line in (
      ('wrong_field_count', 3),
      ('bad_time_timestamp', 4),
      ('unknown_track', 5),
      ('unknown_user', 6),
      ('empty_timestamp', 7),
  ):
    assert counts[f'listening-events.tsv/{reason}'] == 1, reason
    example = data.report.examples('listening-events.tsv', reason)[0]
    assert example.startswith(f'listening-events.tsv:{line}:'), example
  assert counts['users.tsv/duplicate_user_id'] == 1
  assert data.report.examples('users.tsv', 'duplicate_user_id')[0].startswith('users.tsv:6:')
  assert data.num_events == 2 and data.num_users == 4
  assert data.user_country[0] == data.countries.index('US')  # the first row of u1 wins
  assert 'listening-events.tsv' in data.report.summary()
  assert set(data.report.to_json()) == set(counts)


def test_missing_required_column_names_it(tmp_path):
  users = [('userid_x', 'country'), ('u1', 'US')]
  _fixture(tmp_path, optional=False, users=users)
  with pytest.raises(ValueError, match=r"users\.tsv.*'user_id'.*userid_x"):
    listening.load_listening(tmp_path, progress=False)
  events = [('user_id', 'track_id', 'album_id'), ('u1', '100', '1')]
  _fixture(tmp_path, optional=False, events=events)
  with pytest.raises(ValueError, match=r"listening-events\.tsv.*'timestamp'"):
    listening.load_listening(tmp_path, progress=False)
  (tmp_path / 'tracks.tsv').unlink()
  with pytest.raises(ValueError, match='tracks.tsv'):
    listening.load_listening(tmp_path, progress=False)


def test_lfm1b_names_and_headerless_events(tmp_path):
  users = [
      ('user_id', 'country', 'age', 'gender', 'playcount', 'registered_unixtime'),
      ('7', 'AT', '30', 'm', '12', '1100000000'),
      ('8', 'UK', '-1', 'n', '3', '1200000000'),
  ]
  _write(tmp_path / 'LFM-1b_users.txt', users, 'bz2')
  _write(tmp_path / 'LFM-1b_artists.txt', [('1', 'Alpha'), ('2', 'Beta')])
  _write(tmp_path / 'LFM-1b_tracks.txt', [('5', 'song', '2'), ('6', 'other', '1')])
  les = [
      ('7', '2', '9', '5', '1300000000'),
      ('8', '1', '9', '6', '1300000001'),
      ('7', '1', '9', '6', '1299999999'),
  ]
  _write(tmp_path / 'LFM-1b_LEs.txt', les, 'bz2')
  data = listening.load_listening(tmp_path, progress=True)  # the tqdm path over a .bz2
  assert data.user_ids.tolist() == ['7', '8'] and data.user_created.tolist() == [
      1100000000,
      1200000000,
  ]
  assert data.artist_names[data.track_artist].tolist() == ['Beta', 'Alpha']
  tracks, times = data.user_events(0)
  assert data.track_ids[tracks].tolist() == ['6', '5'] and times.tolist() == [
      1299999999,
      1300000000,
  ]
  assert data.report.total == 0


def test_read_table_chunks_missing_values_and_lines(tmp_path):
  rows = [('a', 'b', 'c'), ('x', '1', '0.5'), ('y', '', ''), ('z', '3', 'nan?'), ('w', 'q', '2')]
  path = _write(tmp_path / 't.tsv', rows, 'bz2')
  columns = {'a': (), 'b': ('bee',), 'c': (), 'absent': ()}
  kinds = {'b': 'int', 'c': 'float'}

  def read(chunk_rows):
    report = lfm_tables.SkipReport()
    chunks = list(
        lfm_tables.read_table(
            path, columns, required=('a',), kinds=kinds, report=report, chunk_rows=chunk_rows
        )
    )
    return lfm_tables.concat_chunks(iter(chunks), kinds), report, len(chunks)

  whole, report, n = read(1 << 20)
  parts, report2, n2 = read(2)
  assert (n, n2) == (1, 2) and 'absent' not in whole
  for key in whole:
    np.testing.assert_array_equal(whole[key], parts[key])
  assert whole['a'].tolist() == ['x', 'y', 'z', 'w']
  assert whole['b'].tolist() == [1, -1, 3, -1] and whole['b'].dtype == np.int64
  assert whole['c'][0] == 0.5 and np.isnan(whole['c'][1:3]).all() and whole['c'][3] == 2.0
  assert whole[lfm_tables.LINE].tolist() == [2, 3, 4, 5]
  assert report.counts() == {
      't.tsv.bz2/b_unparsable_set_missing': 1,
      't.tsv.bz2/c_unparsable_set_missing': 1,
  }
  merged = lfm_tables.SkipReport()
  merged.merge(report)
  merged.merge(report2)
  assert (
      merged.total == 4
      and merged.examples('t.tsv.bz2', 'b_unparsable_set_missing')[0] == "t.tsv.bz2:5: b='q'"
  )
  assert lfm_tables.find_table(tmp_path, ('nope.tsv', 't.tsv')) == path
  assert lfm_tables.find_table(tmp_path, ('nope.tsv',)) is None


def test_write_tsv_round_trip(tmp_path):
  cols = {'id': np.arange(3), 'name': ['a b', 'ç', ''], 'x': np.asarray([0.5, 1.0, -2.0])}
  for compress in (None, 'bz2', 'gz'):
    path = listening.write_tsv(tmp_path / 'w.tsv', ('id', 'name', 'x'), cols, compress)
    rows = _read_direct(path)
    assert [(r['id'], r['name'], float(r['x'])) for r in rows] == [
        ('0', 'a b', 0.5),
        ('1', 'ç', 1.0),
        ('2', '', -2.0),
    ]
  for bad in ('a\tb', 'a\nb', 'a\rb'):
    with pytest.raises(ValueError, match="'name' holds a tab or line break"):
      listening.write_tsv(tmp_path / 'bad.tsv', ('id', 'name'), {'id': [1, 2], 'name': ['x', bad]})


def test_unreadable_files_name_the_file(tmp_path):
  _fixture(tmp_path, optional=False)
  path = tmp_path / 'listening-events.tsv'
  path.write_bytes(b'user_id\ttrack_id\ttimestamp\nu1\t100\t1704067200\nu1\t\xff\xfe\t1\n')
  with pytest.raises(ValueError, match=r'listening-events\.tsv.*unreadable'):
    listening.load_listening(tmp_path, progress=False)
  path.unlink()
  (tmp_path / 'listening-events.tsv.bz2').write_bytes(b'not bz2 at all')
  with pytest.raises(ValueError, match=r'listening-events\.tsv\.bz2.*unreadable'):
    listening.load_listening(tmp_path, progress=False)
