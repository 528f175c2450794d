"""Tests for the demo catalogue generator (data_pipelines/demo/catalogue.py)."""

import dataclasses
import json
import pathlib
import re

import numpy as np
import pytest
import soundfile

from data_pipelines.demo import audio_synthesis
from data_pipelines.demo import catalogue
from data_pipelines.demo import latent_catalogue

TINY = latent_catalogue.CatalogueConfig(
    num_tracks=120, num_playlists=60, clip_seconds=1.0, sample_rate=8000, slice_size=25
)
_TRACK_KEYS = {
    'pos',
    'track_uri',
    'track_name',
    'artist_uri',
    'artist_name',
    'album_uri',
    'album_name',
    'duration_ms',
}


@pytest.fixture(scope='module')
def tiny_dir(tmp_path_factory) -> pathlib.Path:
  out = tmp_path_factory.mktemp('tiny_catalogue')
  catalogue.write_catalogue(out, TINY, lfm=True)
  return out


def _files(root: pathlib.Path) -> dict[str, bytes]:
  return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob('*')) if p.is_file()}


def test_same_seed_gives_byte_identical_files(tiny_dir, tmp_path):
  catalogue.write_catalogue(tmp_path / 'again', TINY, lfm=True, workers=1)
  first, second = _files(tiny_dir), _files(tmp_path / 'again')
  assert first.keys() == second.keys()
  assert len([k for k in first if k.endswith('.wav')]) == TINY.num_tracks
  different = [k for k in first if first[k] != second[k]]
  assert not different, different[:5]
  # And a different seed changes the data.
  catalogue.write_catalogue(tmp_path / 'other', dataclasses.replace(TINY, seed=1), audio=False)
  assert (tmp_path / 'other/data/mpd.slice.0-24.json').read_bytes() != (
      tiny_dir / 'data/mpd.slice.0-24.json'
  ).read_bytes()


def test_parallel_audio_matches_serial(tiny_dir, tmp_path):
  audio_synthesis.write_audio(latent_catalogue.build_catalogue(TINY), tmp_path, workers=2)
  serial = {p.name: p.read_bytes() for p in (tiny_dir / 'audio').iterdir()}
  parallel = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
  assert serial == parallel


def test_audio_synthesis_is_order_independent():
  cat = latent_catalogue.build_catalogue(TINY)
  later = audio_synthesis.synthesize_track(cat, 7)
  for i in range(5):
    audio_synthesis.synthesize_track(cat, i)
  np.testing.assert_array_equal(audio_synthesis.synthesize_track(cat, 7), later)


def test_writes_valid_mpd_slices(tiny_dir):
  paths = sorted((tiny_dir / 'data').glob('mpd.slice.*.json'))
  assert [p.name for p in paths] == [
      'mpd.slice.0-24.json',
      'mpd.slice.25-49.json',
      'mpd.slice.50-59.json',
  ]
  pids, uris = [], set()
  for path in paths:
    payload = json.loads(path.read_text())
    assert set(payload['info']) == {'generated_on', 'slice', 'version'}
    assert payload['info']['slice'] == path.name[len('mpd.slice.') : -len('.json')]
    for playlist in payload['playlists']:
      pids.append(playlist['pid'])
      assert isinstance(playlist['name'], str) and playlist['name']
      assert playlist['num_tracks'] == len(playlist['tracks']) > 0
      assert playlist['num_artists'] == len({t['artist_uri'] for t in playlist['tracks']})
      assert playlist['duration_ms'] == sum(t['duration_ms'] for t in playlist['tracks'])
      for pos, track in enumerate(playlist['tracks']):
        assert set(track) == _TRACK_KEYS
        assert track['pos'] == pos
        assert re.fullmatch(r'spotify:track:[0-9A-Za-z]{22}', track['track_uri'])
        assert re.fullmatch(r'spotify:artist:[0-9A-Za-z]{22}', track['artist_uri'])
        assert re.fullmatch(r'spotify:album:[0-9A-Za-z]{22}', track['album_uri'])
        assert all(track[k].strip() for k in ('track_name', 'artist_name', 'album_name'))
        uris.add(track['track_uri'])
      assert len({t['track_uri'] for t in playlist['tracks']}) == playlist['num_tracks']
  assert pids == list(range(TINY.num_playlists))
  for uri in uris:
    info = soundfile.info(str(tiny_dir / 'audio' / f'{uri.split(":")[-1]}.wav'))
    assert (info.samplerate, info.channels, info.frames) == (8000, 1, 8000)


def _band_features(wave: np.ndarray) -> np.ndarray:
  frames = wave[: len(wave) // 256 * 256].reshape(-1, 256) * np.hanning(256)
  spectrum = np.abs(np.fft.rfft(frames, axis=1)).mean(0)
  edges = np.unique(np.geomspace(1, 128, 25).astype(int))
  bands = np.log(np.add.reduceat(spectrum[:129], edges) + 1e-6)
  bands -= bands.mean()
  return bands / np.linalg.norm(bands)


def test_audio_reveals_style(tiny_dir):
  truth = json.loads((tiny_dir / 'ground_truth.json').read_text())
  waves = [
      soundfile.read(str(tiny_dir / 'audio' / f'{t["track_id"]}.wav'))[0] for t in truth['tracks']
  ]
  feats = np.stack([_band_features(w) for w in waves])
  style = np.asarray([t['style'] for t in truth['tracks']])
  sim = feats @ feats.T
  same = (style[:, None] == style[None, :]) & ~np.eye(style.size, dtype=bool)
  assert sim[same].mean() > sim[style[:, None] != style[None, :]].mean() + 0.05
  np.fill_diagonal(sim, -np.inf)
  chance = (np.bincount(style) ** 2).sum() / style.size**2
  nn_accuracy = (style[sim.argmax(1)] == style).mean()
  assert nn_accuracy > max(0.7, 3 * chance), (nn_accuracy, chance)


def test_playlist_kinds_follow_their_theme(tiny_dir):
  truth = json.loads((tiny_dir / 'ground_truth.json').read_text())
  tracks = {t['track_id']: t for t in truth['tracks']}
  playlists = {}
  for path in (tiny_dir / 'data').glob('mpd.slice.*.json'):
    for p in json.loads(path.read_text())['playlists']:
      playlists[p['pid']] = p
  kinds = {p['kind'] for p in truth['playlists']}
  assert kinds == {'style_mood', 'artist', 'theme'}
  cross_style_theme = 0
  for info in truth['playlists']:
    ids = [t['track_uri'].split(':')[-1] for t in playlists[info['pid']]['tracks']]
    noise = set(info['noise_tracks'])
    core = [tracks[i] for i in ids if i not in noise]
    assert len(noise) == len(ids) - len(core) <= 0.15 * len(ids) + 1
    if info['kind'] == 'style_mood':
      assert all(t['style'] == info['style'] for t in core)
    elif info['kind'] == 'artist':
      assert all(t['artist'] in info['artists'] for t in core)
    else:
      word = truth['themes'][info['theme']]
      assert all(word in t['track_name'].split() for t in core)
      cross_style_theme += len({t['style'] for t in core}) > 1
  assert cross_style_theme > 0  # Theme playlists mix styles: only their text reveals them.


def test_lfm_files(tiny_dir):
  counts = (tiny_dir / 'listening_counts.tsv').read_text().splitlines()
  assert counts[0] == 'user_id\ttrack_id\tcount'
  rows = [line.split('\t') for line in counts[1:]]
  assert all(len(r) == 3 and int(r[2]) >= 1 for r in rows)
  total = sum(
      len(playlist['tracks'])
      for path in (tiny_dir / 'data').glob('*.json')
      for playlist in json.loads(path.read_text())['playlists']
  )
  assert len(rows) == total
  table = (tiny_dir / 'tracks.tsv').read_text().splitlines()
  assert table[0] == 'track_id\ttrack_name\tartist_name\talbum_name'
  assert len(table) == TINY.num_tracks + 1
  assert {r[1] for r in rows} <= {line.split('\t')[0] for line in table[1:]}


def test_cli_without_audio(tmp_path):
  catalogue.main(
      [
          '--out',
          str(tmp_path),
          '--num_tracks',
          '40',
          '--num_playlists',
          '12',
          '--no_audio',
          '--seed',
          '3',
      ]
  )
  assert (tmp_path / 'data/mpd.slice.0-11.json').is_file()
  assert not (tmp_path / 'audio').exists()


def test_bad_config_is_rejected():
  with pytest.raises(ValueError, match='num_styles'):
    latent_catalogue.CatalogueConfig(num_styles=99)
  with pytest.raises(ValueError, match='playlist_length'):
    latent_catalogue.CatalogueConfig(playlist_length=(10, 5))
