"""The paper presets' data settings build from files in the distributed MPD format (MP3 and OGG
audio named by Spotify track id), with every bad input reported by name; eval.ks is checked
against the built splits; clips are stored once."""

import collections
import json
import pathlib

import numpy as np
import pytest
import soundfile

from configs import common
from data_pipelines import larp_clips, mpd, playlist_audio, playlist_datasets, splits
from data_pipelines.demo import catalogue, latent_catalogue
from larp_jax.jobs import larp_setup

RATE, CLIP = 8000, 0.5


def _preset_build(variant, **overrides):
  """The preset's data settings with counts for the split sizes, at a tiny audio size."""
  config = common.load_config(
      f'larp:{variant}',
      **{
          'data.build.train_tracks': 50,
          'data.build.valid_tracks': 35,
          'data.build.num_valid_playlists': 6,
          'data.build.num_test_playlists': 6,
          'data.build.min_playlist_length': 4,
          'data.build.sample_rate': RATE,
          'data.build.clip_seconds': CLIP,
          **overrides,
      },
  )
  return dict(config.data.build)


def _needed_train_uris(raw_dir, build):
  """Training uris of the split the builder will make (bad audio does not change the split)."""
  report = playlist_audio.SkipReport()
  source = mpd.read_mpd_slices(raw_dir, report)
  files = playlist_audio.index_audio_dir(raw_dir / 'audio')
  playlists = [
      splits.Playlist(p.pid, p.name, kept)
      for p in source.playlists
      if (kept := tuple(u for u in p.track_uris if source.tracks[u].audio_key in files))
  ]
  config = playlist_datasets._as_config('mpd', build).split_config()
  return splits.cold_start_split(playlists, config).train_uris


@pytest.fixture(scope='module')
def raw(tmp_path_factory):
  """A demo catalogue re-encoded as MP3/OGG, one empty playlist, a missing, a corrupt, a
  truncated and a short audio file."""
  out = tmp_path_factory.mktemp('mpd_raw')
  catalogue.write_catalogue(
      out,
      latent_catalogue.CatalogueConfig(
          num_tracks=120, num_playlists=60, clip_seconds=1.0, sample_rate=RATE
      ),
  )
  slice_path = next((out / 'data').glob('mpd.slice.*.json'))
  payload = json.loads(slice_path.read_text())
  payload['playlists'].append(dict(payload['playlists'][0], pid=10_000, tracks=[], num_tracks=0))
  slice_path.write_text(json.dumps(payload))
  audio = out / 'audio'
  for i, wav in enumerate(sorted(audio.glob('*.wav'))):  # half MP3, half OGG/Vorbis
    wave, rate = soundfile.read(str(wav), dtype='float32')
    if i % 2:
      soundfile.write(str(wav.with_suffix('.mp3')), wave, rate, format='MP3')
    else:
      soundfile.write(str(wav.with_suffix('.ogg')), wave, rate, format='OGG', subtype='VORBIS')
    wav.unlink()
  missing = payload['playlists'][1]['tracks'][0]['track_uri'].split(':')[-1]
  next(audio.glob(f'{missing}.*')).unlink()
  ids = [u.split(':')[-1] for u in _needed_train_uris(out, _preset_build('mpd'))]
  names = {}
  for kind, track_id in zip(('corrupt', 'truncated', 'short'), ids[:3]):
    next(audio.glob(f'{track_id}.*')).unlink()
    if kind == 'corrupt':
      path = audio / f'{track_id}.ogg'
      path.write_bytes(b'not an ogg file' * 40)
    elif kind == 'truncated':  # an MP3 cut to a quarter: its header still promises 3 s
      path = audio / f'{track_id}.mp3'
      tone = 0.3 * np.sin(np.arange(3 * RATE) / 5).astype(np.float32)
      soundfile.write(str(path), tone, RATE, format='MP3')
      path.write_bytes(path.read_bytes()[: path.stat().st_size // 4])
    else:  # 0.2 s, shorter than the 0.5 s clip
      path = audio / f'{track_id}.ogg'
      soundfile.write(str(path), 0.3 * np.ones(RATE // 5, np.float32), RATE, format='OGG')
    names[kind] = path.name
  return {'dir': out, 'missing': missing, **names}


@pytest.fixture(scope='module')
def built(raw, tmp_path_factory):
  build = _preset_build('mpd')
  assert build['train_tracks'] == 50 and isinstance(build['train_tracks'], int)
  data_dir = tmp_path_factory.mktemp('tfds')
  return pathlib.Path(playlist_datasets.build_dataset('mpd', raw['dir'], data_dir, build))


def test_preset_counts_build_and_every_bad_file_is_reported(raw, built):
  meta = playlist_audio.load_metadata(built)
  skipped = meta['skipped']
  # 50 training tracks were drawn; the three with unusable audio are reported and dropped.
  assert meta['counts']['num_train_tracks'] == 47
  assert raw['missing'] in ' '.join(skipped['missing_audio']['examples'])
  assert raw['corrupt'] in ' '.join(skipped['corrupt_audio']['examples'])
  short = skipped['short_audio']['examples']
  assert any(raw['truncated'] in e and e.startswith('truncated audio file') for e in short)
  assert any(raw['short'] in e and e.startswith('short audio file') for e in short)
  assert skipped['empty_playlist']['count'] == 1
  assert 'pid 10000' in skipped['empty_playlist']['examples'][0]
  assert json.loads((built / playlist_audio.SKIP_REPORT_FILE).read_text()) == skipped
  # Clips are stored once: no scratch chunk is left, and the estimate matches the records.
  assert not list(built.parent.glob('larp_clips_*'))
  records = sum(p.stat().st_size for p in built.glob('*.array_record*'))
  counts = meta['counts']
  estimate = larp_clips.storage_estimate(
      playlist_datasets._as_config('mpd', _preset_build('mpd')),
      counts['num_train_tracks'] + counts['num_valid_tracks'] + counts['num_test_tracks'],
      counts['num_train_playlists'] + counts['num_valid_playlists'] + counts['num_test_playlists'],
      counts['num_pairs'],
  )
  assert 0.5 < records / estimate['record_bytes'] < 1.5, (records, estimate)


def test_short_audio_is_padded_only_when_asked(raw, tmp_path):
  build = _preset_build('mpd', **{'data.build.pad_short_audio': True})
  meta = playlist_audio.load_metadata(
      playlist_datasets.build_dataset('mpd', raw['dir'], tmp_path, dict(build, name='padded'))
  )
  padded = ' '.join(meta['skipped']['padded_short_audio']['examples'])
  assert raw['short'] in padded and raw['truncated'] in padded
  assert meta['counts']['num_train_tracks'] == 49  # only the corrupt file is dropped


def test_eval_ks_are_checked_against_the_splits(built):
  sizes = larp_setup.check_eval_ks(common.load_config('larp:demo', **{'eval.ks': (5,)}), str(built))
  assert set(sizes) == {'valid', 'test'}
  limit = min(v['num_tracks'] - v['max_seeds'] for v in sizes.values())
  config = common.load_config('larp:demo', **{'eval.ks': (10, limit + 1)})
  with pytest.raises(ValueError, match=rf'config.eval.ks=\(10, {limit + 1}\).*valid: \d+ tracks'):
    larp_setup.check_eval_ks(config, str(built))


def test_counts_survive_float_conversion():
  # ml_collections turns a command-line count into a float for float fields: still a count.
  cfg = splits.SplitConfig(train_tracks=100_000.0)
  assert splits._resolve_count(cfg.train_tracks, 10**6, 'train_tracks') == 100_000
  with pytest.raises(ValueError, match='train_tracks=0.5 and train_fraction=0.5'):
    playlist_audio.LarpDataConfig(name='x', train_tracks=0.5, train_fraction=0.5)
  with pytest.raises(ValueError, match='whole number'):
    splits.SplitConfig(train_tracks=2.5)


def test_build_checks_the_disk_before_decoding(raw, tmp_path, monkeypatch):
  free = collections.namedtuple('usage', 'total used free')(10**9, 10**9 - 1000, 1000)
  monkeypatch.setattr(playlist_audio.shutil, 'disk_usage', lambda path: free)
  build = dict(_preset_build('mpd'), name='no_room')
  with pytest.raises(ValueError, match=r'needs about .* GiB .* but only 0.00 GiB are free'):
    playlist_datasets.build_dataset('mpd', raw['dir'], tmp_path, build)
  assert not list(tmp_path.rglob('clips_*.npy'))  # failed before any clip was decoded


def test_each_clip_is_stored_once(raw, tmp_path, monkeypatch):
  """Scratch chunks are deleted as their records are written: while the track records are
  generated, the chunks left on disk only shrink, and none is left once they are written."""
  left = []
  pop = larp_clips.ClipStore.pop

  def counting_pop(self, uri):
    clip = pop(self, uri)
    left.append(len(list(self.scratch_dir.glob('clips_*.npy'))))
    return clip

  monkeypatch.setattr(larp_clips.ClipStore, 'pop', counting_pop)
  build = dict(_preset_build('mpd'), name='chunks', scratch_chunk_clips=8)
  playlist_datasets.build_dataset('mpd', raw['dir'], tmp_path, build)
  assert left[0] >= 10 and left[-1] == 0  # 100+ clips in chunks of 8
  assert all(a >= b for a, b in zip(left, left[1:]))


def test_build_dataset_launcher_reports_and_writes_the_skip_report(raw, tmp_path, capsys):
  """experiments/build_dataset.py: builds what the job would train on, prints the skip report by
  file and writes it to WORKDIR/skip_report.json; eval.ks beyond the splits is an error."""
  overrides = {
      f'data.build.{k}': v
      for k, v in _preset_build('mpd').items()
      if k in ('train_tracks', 'valid_tracks', 'num_valid_playlists', 'num_test_playlists')
      or k in ('min_playlist_length', 'sample_rate', 'clip_seconds')
  }
  config = common.load_config(
      'larp:mpd',
      **overrides,
      **{
          'data.manual_dir': str(raw['dir']),
          'data.data_dir': str(tmp_path / 'data'),
          'model.text_model_fallback': 'minilm',
          'eval.ks': (5, 10_000),
      },
  )
  out = larp_setup.build_and_report(config, str(tmp_path / 'work'))
  printed = capsys.readouterr().out
  assert raw['corrupt'] in printed and raw['truncated'] in printed and raw['short'] in printed
  assert 'config.eval.ks=(5, 10000)' in out['eval_ks_error'] and 'ERROR' in printed
  saved = json.loads((tmp_path / 'work' / playlist_audio.SKIP_REPORT_FILE).read_text())
  assert saved == out['skipped'] and saved['missing_audio']['count'] == 1
