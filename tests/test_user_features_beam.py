"""The Beam batch path of paper 001's user features equals the in-process path (issue 11, item 4).

One tiny LFM-2b-format fixture (the demo generator, 22 users, ~1.5k events; the events file with
bad lines appended and bz2-compressed), random seeded track spaces, a cut time T plus new users'
own snapshot times; the Beam pipeline (DirectRunner) must give `features_matrix`'s features for
every requested (user, time), count the bad event lines as `load_listening` does, and the CLI
(`run`) must give the same shards' contents.
"""

import bz2
import glob

import numpy as np
import pytest

from data_pipelines import lfm_tables
from data_pipelines import listening as listening_lib
from data_pipelines import user_features as uf
from data_pipelines.demo import latent_catalogue, listening_logs

beam = pytest.importorskip('apache_beam')
pytest.importorskip('array_record')

from data_pipelines import user_features_beam as ufb  # noqa: E402

DAY = uf.DAY_SECONDS


def _fixture(root):
  """Writes the tables, appends bad event lines, compresses the events file; returns the dir and
  the number of bad lines appended."""
  manual = root / 'lfm'
  listening_logs.generate(
      manual,
      listening_logs.DemoListeningConfig(num_established=16, num_new=6, mean_plays=60.0, seed=3),
      latent_catalogue.CatalogueConfig(num_tracks=300, num_playlists=20),
  )
  events = manual / 'listening-events.tsv'
  lines = events.read_text().splitlines()
  user, track, album, stamp = lines[1].split('\t')
  bad = [
      'garbage without any tab',  # wrong_field_count
      '',  # a blank line: wrong_field_count
      f'{user}\t{track}\t{album}\tnot-a-time',  # bad_time_timestamp
      f'{user}\t\t{album}\t{stamp}',  # empty_track_id
      f'{user}\tno-such-track\t{album}\t{stamp}',  # unknown_track
      f'no-such-user\t{track}\t{album}\t{stamp}',  # unknown_user
      f'{user}\t{track}\t{album}\t{stamp}\textra',  # wrong_field_count
  ]
  middle = len(lines) // 2
  lines = lines[:middle] + bad[:4] + lines[middle:] + bad[4:]
  (manual / 'listening-events.tsv.bz2').write_bytes(
      bz2.compress(('\n'.join(lines) + '\n').encode())
  )
  events.unlink()
  return manual, len(bad)


def _spaces(listening, audio_dim=8, collab_dim=6) -> uf.TrackSpaces:
  rng = np.random.default_rng(0)
  audio = rng.normal(size=(listening.num_tracks, audio_dim)).astype(np.float32)
  collab = rng.normal(size=(listening.num_tracks, collab_dim)).astype(np.float32)
  fill_audio, fill_collab = audio.astype(np.float64).mean(0), collab.astype(np.float64).mean(0)
  artist_audio = np.tile(fill_audio.astype(np.float32), (listening.num_artists, 1))
  artist_collab = np.tile(fill_collab.astype(np.float32), (listening.num_artists, 1))
  for a in range(listening.num_artists):
    rows = listening.track_artist == a
    if rows.any():
      artist_audio[a] = audio[rows].mean(0)
      artist_collab[a] = collab[rows].mean(0)
  return uf.TrackSpaces(
      audio,
      collab,
      artist_audio,
      artist_collab,
      fill_audio,
      fill_collab,
      {'audio': 'a0', 'collaborative': 'c0'},
  )


def _snapshots(listening):
  """(users, times) int64: everyone registered before T at T; users registered in the 30 days
  before T or later also at registration + 2 h (some at both); user 0 not requested."""
  last = int(listening.event_time.max())
  cut = (last // DAY - 7) * DAY + 13 * 3600
  users, times = [], []
  for u in range(1, listening.num_users):
    created = int(listening.user_created[u])
    if created < cut:
      users.append(u)
      times.append(cut)
    if created >= cut - 30 * DAY:
      users.append(u)
      times.append(created + 2 * 3600)
  users, times = np.asarray(users, np.int64), np.asarray(times, np.int64)
  order = np.lexsort((times, users))
  return users[order], times[order], cut


def test_beam_equals_in_process_and_counts_bad_lines(tmp_path):
  manual, num_bad = _fixture(tmp_path)
  listening = listening_lib.load_listening(manual, progress=False)
  spaces = _spaces(listening)
  spaces_path = str(tmp_path / 'spaces.npz')
  uf.save_track_spaces(spaces_path, spaces)
  spec = uf.spec_for(listening, 8, 6)
  users, times, cut = _snapshots(listening)
  assert len(set(users.tolist())) < len(users), 'some user should be requested twice'
  assert (times > cut).any() and (times == cut).any()
  snapshots_path = str(tmp_path / 'snapshots.npz')
  ufb.save_snapshot_times(snapshots_path, users, times)
  expected = uf.features_matrix(listening, users, times, spaces, spec)
  # The fixture exercises every input: onboarding used (its "imputed" flag, the last column, is 0
  # somewhere), devices seen, countries, empty windows and non-empty ones.
  blocks = dict(zip([n for n, _ in spec.blocks()], np.cumsum([0] + [w for _, w in spec.blocks()])))
  static = expected[:, blocks['static'] : blocks['onboarding']]
  assert (expected[:, -1] == 0).any() and (expected[:, -1] == 1).any()
  assert static[:, -spec.num_devices :].any() and static[:, : spec.num_countries].any()
  activity = expected[:, blocks['activity'] : blocks['static']]
  assert (activity[:, 3] == 1).any() and (activity[:, 3] == 0).any()  # 7-day window empty or not

  vocab = ufb.vocab_from_listening(listening)
  prefix = str(tmp_path / 'out' / 'features')
  pipeline = beam.Pipeline(
      options=beam.options.pipeline_options.PipelineOptions(['--direct_num_workers=1'])
  )
  ufb.build_pipeline(
      pipeline,
      manual_dir=str(manual),
      spaces_path=spaces_path,
      spec=spec,
      vocab=vocab,
      snapshot_times_path=snapshots_path,
      output_prefix=prefix,
      num_shards=3,
  )
  result = pipeline.run()
  result.wait_until_finish()

  assert sorted(glob.glob(prefix + '-*')) == [ufb.shard_path(prefix, s, 3) for s in range(3)]
  got_users, got_times, got = ufb.read_features(prefix)
  np.testing.assert_array_equal(got_users, users)
  np.testing.assert_array_equal(got_times, times)
  assert got.shape == (len(users), spec.dim) and got.dtype == np.float32
  np.testing.assert_array_equal(got, expected)  # bit-identical: same function, same event order

  counts = ufb.counters(result)
  events_name = 'listening-events.tsv.bz2'
  reference = {k: v for k, v in listening.report.counts().items() if k.startswith(events_name)}
  assert reference == {
      f'{events_name}/wrong_field_count': 3,
      f'{events_name}/bad_time_timestamp': 1,
      f'{events_name}/empty_track_id': 1,
      f'{events_name}/unknown_track': 1,
      f'{events_name}/unknown_user': 1,
  }
  assert {k: v for k, v in counts.items() if k.startswith(events_name)} == reference
  assert counts['bad_event_lines'] == num_bad
  assert counts['snapshots_written'] == len(users)

  # The CLI: flags + Beam options passed through (DirectRunner by default), the same records.
  cli_prefix = str(tmp_path / 'cli' / 'features')
  ufb.save_vocab(str(tmp_path / 'vocab.npz'), vocab)
  ufb.run(
      [
          'user_features_beam',
          f'--manual_dir={manual}',
          f'--spaces={spaces_path}',
          f'--snapshots={snapshots_path}',
          f'--output={cli_prefix}',
          f'--vocab={tmp_path / "vocab.npz"}',
          '--num_shards=2',
          '--direct_num_workers=1',
      ]
  )
  cli_users, cli_times, cli = ufb.read_features(cli_prefix)
  np.testing.assert_array_equal(cli_users, users)
  np.testing.assert_array_equal(cli_times, times)
  np.testing.assert_array_equal(cli, expected)


def test_records_and_shards_are_stable():
  features = np.arange(5, dtype=np.float32) / 3
  user, t, back = ufb.decode_record(ufb.encode_record(7, 1_700_000_000, features))
  assert (user, t) == (7, 1_700_000_000)
  np.testing.assert_array_equal(back, features)
  assert (ufb.shard_of('12345', 16), ufb.shard_of('1', 1000)) == (4, 710)  # blake2b: fixed forever
  assert len({ufb.shard_of(str(i), 4) for i in range(100)}) == 4


def benchmark(root) -> dict[str, float]:
  """Per-event / per-user cost of the DoFns on this machine, outside Beam (`python
  tests/test_user_features_beam.py`): the fixture's event lines x64 through ParseEvents; every
  fixture user, and one user with its plays tiled to ~17k events (LFM-2b's mean), through
  UserFeatures at 80 + 80 dims; the whole DirectRunner pipeline on the fixture."""
  import collections
  import pathlib
  import time

  root = pathlib.Path(root)
  manual, _ = _fixture(root)
  listening = listening_lib.load_listening(manual, progress=False)
  vocab = ufb.vocab_from_listening(listening)
  spaces = _spaces(listening, 80, 80)
  spaces_path = str(root / 'spaces80.npz')
  uf.save_track_spaces(spaces_path, spaces)
  spec = uf.spec_for(listening, 80, 80)
  out = {}
  grouped = collections.defaultdict(lambda: collections.defaultdict(list))
  find, header = ufb._find, ufb._header  # pylint: disable=protected-access
  for parse in ufb.PARSERS:
    path = find(str(manual), parse.FILES)
    positions, width, skip = header(path, parse.COLUMNS, parse.REQUIRED, parse.HEADERLESS)
    with lfm_tables.open_text(path) as f:
      lines = f.read().splitlines()[skip:]
    dofn = parse(parse.TAG, positions, width, vocab)
    dofn.setup()
    for key, value in dofn.process(lines):
      grouped[key][parse.TAG].append(value)
    if parse.TAG == 'events':  # clean lines, and batches each holding one bad timestamp
      for name, sample in (
          ('clean', [x for x in lines if 'not-a-time' not in x]),
          ('dirty', lines),
      ):
        many = sample * 64
        start = time.perf_counter()
        for lo in range(0, len(many), 4096):
          for _ in dofn.process(many[lo : lo + 4096]):
            pass
        out[f'parse_us_per_{name}_event_line'] = (time.perf_counter() - start) / len(many) * 1e6
  users, times, cut = _snapshots(listening)
  for u, t in zip(users.tolist(), times.tolist()):
    grouped[str(listening.user_ids[u])]['snapshots'].append((u, t))
  features = ufb.UserFeatures(spaces_path, spec, 4, {'events': 'e', 'users': 'u'})
  features.setup()
  elements = [(k, v) for k, v in grouped.items() if v.get('snapshots')]
  start, count = time.perf_counter(), 0
  for _ in range(8):
    for element in elements:
      count += sum(1 for _ in features.process(element))
  out['features_ms_per_small_user_snapshot'] = (time.perf_counter() - start) / count * 1e3
  heavy = max(elements, key=lambda e: sum(len(a) for a, _ in e[1]['events']))
  tracks = np.concatenate([np.frombuffer(a, np.int32) for a, _ in heavy[1]['events']])
  rng = np.random.default_rng(0)
  reps = 17_000 // len(tracks) + 1
  big_tracks = np.tile(tracks, reps)
  big_times = cut - rng.integers(0, 182 * DAY, size=len(big_tracks))  # all inside the window
  element = (
      heavy[0],
      {
          **heavy[1],
          'events': [(big_tracks.tobytes(), big_times.tobytes())],
          'snapshots': [(0, cut)],
      },
  )
  start = time.perf_counter()
  for _ in range(10):
    list(features.process(element))
  out['features_ms_per_17k_event_user'] = (time.perf_counter() - start) / 10 * 1e3
  out['features_us_per_event_17k_user'] = (
      out['features_ms_per_17k_event_user'] * 1e3 / len(big_tracks)
  )
  snapshots_path = str(root / 'snapshots.npz')
  ufb.save_snapshot_times(snapshots_path, users, times)
  start = time.perf_counter()
  pipeline = beam.Pipeline(
      options=beam.options.pipeline_options.PipelineOptions(['--direct_num_workers=1'])
  )
  ufb.build_pipeline(
      pipeline,
      manual_dir=str(manual),
      spaces_path=spaces_path,
      spec=spec,
      vocab=vocab,
      snapshot_times_path=snapshots_path,
      output_prefix=str(root / 'bench' / 'f'),
      num_shards=4,
  )
  pipeline.run().wait_until_finish()
  out['direct_runner_s_fixture'] = time.perf_counter() - start
  out['fixture_events'] = float(listening.num_events)
  return out


if __name__ == '__main__':
  import tempfile

  with tempfile.TemporaryDirectory() as tmp:
    for name, value in benchmark(tmp).items():
      print(f'{name}: {value:.3f}')
