"""Each downstream recommender fits a tiny cold-start problem with cluster structure and beats random.

Synthetic data: 8 clusters; track content = cluster centre + noise (D = 32); within a cluster track
popularity is Zipf-skewed. Training and test tracks are disjoint (strict cold start); each playlist
draws its tracks from one cluster. Test playlists: 8 seeds, 8 held-out tracks. Random Recall@10 is
about 10 / 192 ~ 0.05; a ranking that only knows the cluster gets ~0.4.
"""

import time

import numpy as np
import pytest

from larp_jax.evaluation import continuation
from larp_jax.recommenders import clcrec
from larp_jax.recommenders import dropoutnet
from larp_jax.recommenders import itemknn
from larp_jax.recommenders import popularity

NUM_CLUSTERS, DIM = 8, 32


def _tracks(rng, n, centers):
  cluster = np.arange(n) % NUM_CLUSTERS
  content = centers[cluster] + 0.6 * rng.normal(size=(n, DIM))
  return content.astype(np.float32), cluster


def _playlists(rng, cluster, num_playlists, length):
  out = []
  for p in range(num_playlists):
    members = np.nonzero(cluster == p % NUM_CLUSTERS)[0]
    weights = 1.0 / np.arange(1, len(members) + 1) ** 0.8  # Zipf-skewed popularity
    chosen = rng.choice(members, size=length, replace=False, p=weights / weights.sum())
    out.append(rng.permutation(chosen))  # seeds = a random half, as in the official split
  return np.stack(out)


@pytest.fixture(scope='module')
def problem():
  rng = np.random.default_rng(0)
  centers = rng.normal(size=(NUM_CLUSTERS, DIM))
  train_content, train_cluster = _tracks(rng, 320, centers)
  test_content, test_cluster = _tracks(rng, 200, centers)
  train_lists = _playlists(rng, train_cluster, 160, 15)
  train_pairs = np.stack([np.repeat(np.arange(160), 15), train_lists.reshape(-1)], 1)
  test_lists = _playlists(rng, test_cluster, 64, 16)
  return dict(
      train_pairs=train_pairs,
      train_content=train_content,
      test_content=test_content,
      seeds=test_lists[:, :8].astype(np.int32),
      gt=test_lists[:, 8:].astype(np.int32),
  )


def _recall10(problem, score):
  out = continuation.evaluate_continuation(
      lambda ids, mask: score(ids, mask),
      problem['seeds'],
      problem['gt'],
      problem['test_content'].shape[0],
      ks=(10,),
      chunk_size=32,
  )
  return out['recall@10']


@pytest.fixture(scope='module')
def random_recall(problem):
  model = popularity.fit_random(problem['train_pairs'], problem['train_content'], seed=0)
  return _recall10(
      problem, lambda i, m: popularity.score_random(model, i, problem['test_content'], m)
  )


def test_random_is_near_chance_and_deterministic(problem, random_recall):
  assert random_recall < 0.12
  model = popularity.fit_random(None, problem['test_content'], seed=3)
  a = np.asarray(popularity.score_random(model, problem['seeds'][:4], problem['test_content']))
  b = np.asarray(
      popularity.score_random(model, problem['seeds'][:4][::-1], problem['test_content'])
  )
  np.testing.assert_array_equal(a, b[::-1])  # a row's scores do not depend on its batch position


def test_popularity_from_test_seeds_beats_random():
  """Popularity needs popularity skew across the catalogue: playlists drawn from a global Zipf."""
  rng = np.random.default_rng(1)
  n = 200
  weights = 1.0 / np.arange(1, n + 1) ** 1.0
  lists = np.stack(
      [rng.choice(n, size=16, replace=False, p=weights / weights.sum()) for _ in range(64)]
  )
  lists = np.stack([rng.permutation(row) for row in lists]).astype(np.int32)
  data = dict(seeds=lists[:, :8], gt=lists[:, 8:], test_content=np.zeros((n, 1), np.float32))
  model = popularity.fit(popularity.seeds_to_interactions(data['seeds']), data['test_content'])
  assert model.counts.sum() == data['seeds'].size
  recall = _recall10(data, lambda i, m: popularity.score(model, i, data['test_content'], m))
  rand = popularity.fit_random(None, data['test_content'], seed=0)
  random_recall = _recall10(
      data, lambda i, m: popularity.score_random(rand, i, data['test_content'], m)
  )
  assert recall > 2 * random_recall and recall > 0.15, (recall, random_recall)


def test_itemknn_beats_random_and_faiss_matches_dense(problem, random_recall):
  model = itemknn.fit(problem['train_pairs'], problem['train_content'])
  recall = _recall10(problem, lambda i, m: itemknn.score(model, i, problem['test_content'], m))
  assert recall > 4 * random_recall and recall > 0.25
  mean_model = itemknn.fit(None, None, itemknn.ItemKNNConfig(pooling='mean'))
  assert (
      _recall10(problem, lambda i, m: itemknn.score(mean_model, i, problem['test_content'], m))
      == recall
  )
  ids, _ = itemknn.faiss_top_k(model, problem['seeds'][:5], problem['test_content'], 10)
  dense = continuation.recommend_top_k(
      lambda i, m: itemknn.score(model, i, problem['test_content'], m),
      problem['seeds'][:5],
      200,
      10,
  )
  np.testing.assert_array_equal(ids, dense)


def test_dropoutnet_beats_random(problem, random_recall):
  config = dropoutnet.DropoutNetConfig(
      mf_dim=16,
      mf_epochs=5,
      mf_lr=0.05,
      mf_batch_size=256,
      hidden_dims=(64, 32),
      out_dim=32,
      epochs=15,
      lr=0.05,
      batch_size=256,
  )
  start = time.perf_counter()
  model = dropoutnet.fit(problem['train_pairs'], problem['train_content'], config, seed=0)
  fit_seconds = time.perf_counter() - start
  recall = _recall10(problem, lambda i, m: dropoutnet.score(model, i, problem['test_content'], m))
  assert recall > 3 * random_recall and recall > 0.2, (recall, fit_seconds)
  assert model.cold_track_preference.shape == (16,)


def test_clcrec_beats_random(problem, random_recall):
  config = clcrec.CLCRecConfig(
      dim_e=32, hidden_dim=64, epochs=15, batch_size=256, lr=1e-2, temperature=0.2
  )
  model = clcrec.fit(problem['train_pairs'], problem['train_content'], config, seed=0)
  recall = _recall10(problem, lambda i, m: clcrec.score(model, i, problem['test_content'], m))
  assert recall > 3 * random_recall and recall > 0.2, recall


def test_fit_rejects_bad_interactions(problem):
  with pytest.raises(ValueError, match='train_interactions'):
    clcrec.fit(np.array([[0, 999]]), problem['train_content'])
  with pytest.raises(ValueError, match='train_interactions'):
    dropoutnet.fit(np.zeros((3,), np.int64), problem['train_content'])
  with pytest.raises(ValueError, match='seeds'):
    itemknn.score(itemknn.fit(None, None), np.zeros((2, 3), np.float32), problem['test_content'])
