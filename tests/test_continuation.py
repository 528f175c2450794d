"""Cold-start continuation protocol on toy cases with known answers."""

import jax.numpy as jnp
import numpy as np
import pytest

from larp_jax.evaluation import continuation
from larp_jax.recommenders import itemknn


def _cluster_playlists(num_clusters=5, per_cluster=12, seeds=6):
  """Tracks in clusters with orthogonal (one-hot) embeddings; one playlist per cluster."""
  n = num_clusters * per_cluster
  emb = np.zeros((n, num_clusters), np.float32)
  emb[np.arange(n), np.arange(n) // per_cluster] = 1.0
  members = np.arange(n).reshape(num_clusters, per_cluster)
  return emb, members[:, :seeds].astype(np.int32), members[:, seeds:].astype(np.int32)


def test_track_embeddings_is_the_mean_of_audio_and_text():
  a, t = np.ones((3, 2), np.float32), np.full((3, 2), 3.0, np.float32)
  np.testing.assert_array_equal(
      np.asarray(continuation.track_embeddings(a, t)), np.full((3, 2), 2.0)
  )
  with pytest.raises(ValueError, match='audio and text'):
    continuation.track_embeddings(a, t[:, :1])


def test_perfect_embeddings_give_recall_one():
  emb, seeds, gt = _cluster_playlists()
  model = itemknn.fit(None, emb)

  def score_fn(ids, mask):
    return itemknn.score(model, ids, emb, seed_mask=mask)

  out = continuation.evaluate_continuation(
      score_fn, seeds, gt, emb.shape[0], ks=(6, 10, 20), chunk_size=2
  )
  # 6 ground-truth tracks and exactly 6 non-seed tracks of the same cluster score 6, all others 0.
  for k in (6, 10, 20):
    assert out[f'recall@{k}'] == pytest.approx(1.0)
  assert out['ndcg@6'] == pytest.approx(1.0)
  assert out['num_playlists'] == 5


def test_seeds_are_masked_and_never_recommended():
  emb, seeds, gt = _cluster_playlists()
  n = emb.shape[0]

  def seeds_first(ids, mask):
    """Seeds get the highest scores, the playlist's ground truth the next ones."""
    rows = []
    for row_ids, row_mask in zip(np.asarray(ids), np.asarray(mask)):
      s = np.zeros(n, np.float32)
      if row_mask.any():
        cluster = row_ids[row_mask][0] // 12
        s[cluster * 12 : (cluster + 1) * 12] = 1.0
        s[row_ids[row_mask]] = 100.0
      rows.append(s)
    return jnp.asarray(np.stack(rows))

  out = continuation.evaluate_continuation(
      seeds_first, seeds, gt, n, ks=(6,), names=('recall', 'precision')
  )
  assert out['recall@6'] == pytest.approx(1.0) and out['precision@6'] == pytest.approx(1.0)
  top = continuation.recommend_top_k(seeds_first, seeds, n, 20, chunk_size=3)
  assert top.shape == (5, 20)
  for row, s in zip(top, seeds):
    assert not set(row.tolist()) & set(s.tolist())


def test_known_partial_answer_chunking_and_playlists_without_ground_truth():
  n = 30
  rng = np.random.default_rng(0)
  fixed = rng.permutation(n).astype(np.float32)  # one global ranking for every playlist
  order = np.argsort(-fixed)

  def score_fn(ids, mask):
    return jnp.broadcast_to(jnp.asarray(fixed), (ids.shape[0], n))

  seeds = np.array([[order[0], -1], [order[5], order[6]], [order[1], -1], [order[2], -1]], np.int32)
  gt = np.array(
      [
          [order[1], order[29], -1],  # ranks 1 and 28 after the seed is removed
          [order[0], order[9], order[20]],
          [-1, -1, -1],  # no ground truth: excluded from the averages
          [order[2], -1, -1],
      ],
      np.int32,
  )  # ground truth equal to a seed: masked too
  out = continuation.evaluate_continuation(score_fn, seeds, gt, n, ks=(10,), chunk_size=3)
  # Playlist 0: top10 of the ranking without order[0] holds order[1] -> recall 1/2.
  # Playlist 1: without order[5], order[6] the top10 is order[0..4, 7..11] -> hits order[0], order[9].
  recall = [1 / 2, 2 / 3]
  ndcg = [
      (1 / np.log2(2)) / (1 + 1 / np.log2(3)),
      (1 / np.log2(2) + 1 / np.log2(9)) / (1 + 1 / np.log2(3) + 1 / np.log2(4)),
  ]
  assert out['recall@10'] == pytest.approx(np.mean(recall), rel=1e-5)
  assert out['ndcg@10'] == pytest.approx(np.mean(ndcg), rel=1e-5)
  assert out['num_playlists'] == 2
  same = continuation.evaluate_continuation(score_fn, seeds, gt, n, ks=(10,), chunk_size=64)
  assert same == out


def test_bad_inputs_raise():
  def score_fn(ids, mask):
    return jnp.zeros((ids.shape[0], 5))

  seeds, gt = np.array([[0, 1]]), np.array([[2, 3]])
  with pytest.raises(ValueError, match='ground_truth_ids contains'):
    continuation.evaluate_continuation(score_fn, seeds, np.array([[9, -1]]), 5, ks=(2,))
  with pytest.raises(ValueError, match='ks'):
    continuation.evaluate_continuation(score_fn, seeds, gt, 5, ks=(10,))
  with pytest.raises(ValueError, match='score_fn must return'):
    continuation.evaluate_continuation(lambda i, m: jnp.zeros((1, 4)), seeds, gt, 5, ks=(2,))
  with pytest.raises(ValueError, match='seed_ids'):
    continuation.evaluate_continuation(score_fn, seeds.astype(np.float32), gt, 5, ks=(2,))
