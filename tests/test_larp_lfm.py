"""LARP's LFM builder reads LFM-2b (bz2 TSVs) and LFM-1b (headerless .txt) as distributed, with
the lfm preset's data settings; bad audio and bad rows are reported by file name / line."""

import json
import pathlib

import numpy as np
import pytest
import soundfile

import larp_lfm_files
from configs import common
from data_pipelines import lfm, lfm_tables, playlist_audio, playlist_datasets, splits
from data_pipelines.demo import catalogue, latent_catalogue

RATE = 8000


def _config(name='x'):
  return common.load_config(
      'larp:lfm',
      **{
          'data.build.name': name,
          'data.build.train_tracks': 50,
          'data.build.valid_tracks': 35,
          'data.build.num_valid_playlists': 6,
          'data.build.num_test_playlists': 6,
          'data.build.min_playlist_length': 4,
          'data.build.max_train_playlists': 30,
          'data.build.sample_rate': RATE,
          'data.build.clip_seconds': 0.5,
      },
  )


@pytest.fixture(scope='module')
def raw(tmp_path_factory):
  """The demo catalogue as LFM-2b and LFM-1b files; a missing, a corrupt and a truncated audio
  file among the training tracks."""
  raw = tmp_path_factory.mktemp('mpd_raw')
  catalogue.write_catalogue(
      raw,
      latent_catalogue.CatalogueConfig(
          num_tracks=120, num_playlists=60, clip_seconds=1.0, sample_rate=RATE
      ),
  )
  dirs = {}
  for layout in ('lfm2b_bz2', 'lfm1b_txt'):
    dirs[layout] = tmp_path_factory.mktemp(layout)
    meta = larp_lfm_files.lfm_from_mpd(raw, dirs[layout], lfm1b=layout == 'lfm1b_txt')
  audio = raw / 'audio'
  missing = meta[sorted(meta)[0]]['track_uri'].split(':')[-1]
  (audio / f'{missing}.wav').unlink()
  source = lfm.read_lfm(dirs['lfm2b_bz2'], playlist_audio.SkipReport())
  files = playlist_audio.index_audio_dir(audio)
  playlists = [
      splits.Playlist(p.pid, p.name, kept)
      for p in source.playlists
      if (kept := tuple(u for u in p.track_uris if source.tracks[u].audio_key in files))
  ]
  split_config = playlist_datasets._as_config('lfm', dict(_config().data.build)).split_config()
  train = splits.cold_start_split(playlists, split_config).train_uris
  corrupt, truncated = (audio / f'{source.tracks[u].audio_key}.wav' for u in train[:2])
  corrupt.write_bytes(b'not audio' * 100)
  wave, _ = soundfile.read(str(truncated), dtype='float32')
  truncated.unlink()
  truncated = truncated.with_suffix('.mp3')  # cut to a quarter: its header promises 3 s
  soundfile.write(str(truncated), np.tile(wave, 3), RATE, format='MP3')
  truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 4])
  return {
      'dirs': dirs,
      'meta': meta,
      'corrupt': corrupt.name,
      'missing': missing,
      'truncated': truncated.name,
  }


def _build(manual, data_dir, name):
  build = dict(_config(name).data.build)
  return pathlib.Path(playlist_datasets.build_dataset('lfm', manual, data_dir, build))


@pytest.mark.parametrize('layout', ['lfm2b_bz2', 'lfm1b_txt'])
def test_lfm_as_distributed_builds_with_the_preset(raw, tmp_path, layout):
  manual = raw['dirs'][layout]
  built = _build(manual, tmp_path / 'tfds', layout)
  meta = playlist_audio.load_metadata(built)
  skipped = meta['skipped']
  assert meta['counts']['num_train_tracks'] == 48  # 50 drawn, 2 with unusable audio
  assert meta['counts']['num_train_playlists'] <= 30  # the cap on training users
  assert skipped['train_playlist_over_cap']['count'] >= 1
  assert raw['missing'] in ' '.join(skipped['missing_audio']['examples'])
  assert raw['corrupt'] in ' '.join(skipped['corrupt_audio']['examples'])
  truncated = skipped['short_audio']['examples']
  assert any(raw['truncated'] in e and e.startswith('truncated audio file') for e in truncated)
  if layout == 'lfm2b_bz2':
    unknown = skipped['unknown_track']
    assert unknown['count'] == 1 and unknown['examples'][0].startswith('listening-events.tsv.bz2:')
  # Captions carry the album found through the events' album ids; audio by Spotify id.
  data = lfm.read_lfm(manual, playlist_audio.SkipReport())
  for track_id in list(data.tracks)[:5]:
    want = raw['meta'][track_id]
    assert data.tracks[track_id].album == want['album_name']
    assert data.tracks[track_id].audio_key == want['track_uri'].split(':')[-1]
  for playlist in data.playlists:  # distinct tracks per user
    assert len(set(playlist.track_uris)) == len(playlist.track_uris)
