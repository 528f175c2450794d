"""Cold-start playlist-continuation protocol (LARP Sec. 3.3 / 4, official `continuation_full.py`).

For every test playlist the seeds (a random half of its tracks, chosen by the data pipeline) go to a
recommender, which scores all N test tracks. Seed tracks are masked (never recommended, never
counted), the rest are ranked, and Recall@K / NDCG@K (K in {10, 20, 40}) are averaged over playlists
that have ground truth. Track embeddings for LARP are the mean of the audio and text features
(Eq. 11, `track_embeddings`), not re-normalised.

Playlists are given as padded index arrays into the test-track table: `seed_ids [P, S]` and
`ground_truth_ids [P, G]` (int, -1 = padding, or explicit boolean masks). Scoring runs in chunks of
`chunk_size` playlists (the last chunk is padded to the same size, so the metric step compiles
once), which bounds memory at chunk_size x N scores.

A scoring function has the signature `score_fn(seed_ids int32 [b, S], seed_mask bool [b, S]) ->
float [b, N]`. For the recommenders in `larp_jax.recommenders`:
`score_fn = lambda ids, mask: itemknn.score(model, ids, test_features, seed_mask=mask)`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
import functools

import jax
import jax.numpy as jnp
import numpy as np

from larp_jax.evaluation import metrics as metrics_lib

Array = jax.Array
ScoreFn = Callable[[Array, Array], Array]


def track_embeddings(audio: Array, text: Array) -> Array:
  """Eq. 11: e_s = mean(a_s, t_s) = (audio + text) / 2, float32 [N, D] (not re-normalised)."""
  audio = jnp.asarray(audio, jnp.float32)
  text = jnp.asarray(text, jnp.float32)
  if audio.shape != text.shape or audio.ndim != 2:
    raise ValueError(f'audio and text must both be [N, D]; got {audio.shape}, {text.shape}.')
  return 0.5 * (audio + text)


def _ids_and_mask(ids, mask, name: str) -> tuple[np.ndarray, np.ndarray]:
  ids = np.asarray(ids)
  if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
    raise ValueError(
        f'{name} must be an int array [P, L] (-1 = padding), got {ids.dtype} {ids.shape}.'
    )
  if mask is None:
    mask = ids >= 0
  mask = np.asarray(mask, bool)
  if mask.shape != ids.shape:
    raise ValueError(f'{name} mask must have shape {ids.shape}, got {mask.shape}.')
  return np.where(mask, ids, -1).astype(np.int32), mask


def _multi_hot(ids: Array, mask: Array, num_tracks: int) -> Array:
  """bool [b, N] with True at the masked-in ids of each row."""
  rows = jnp.broadcast_to(jnp.arange(ids.shape[0])[:, None], ids.shape)
  cols = jnp.where(mask, ids, num_tracks)  # out of range -> dropped
  out = jnp.zeros((ids.shape[0], num_tracks), bool)
  return out.at[rows, cols].set(True, mode='drop')


@functools.partial(jax.jit, static_argnames=('num_tracks', 'ks', 'names'))
def _chunk_sums(scores, seed_ids, seed_mask, gt_ids, gt_mask, *, num_tracks, ks, names):
  seeds = _multi_hot(seed_ids, seed_mask, num_tracks)
  relevant = _multi_hot(gt_ids, gt_mask, num_tracks)
  per_row = metrics_lib.ranking_metrics(scores, relevant, ks, names, candidate_mask=~seeds)
  return {key: metrics_lib.sum_and_count(value) for key, value in per_row.items()}


def _validate(num_tracks: int, seed_ids: np.ndarray, gt_ids: np.ndarray, ks: Sequence[int]) -> None:
  if seed_ids.shape[0] != gt_ids.shape[0]:
    raise ValueError(
        f'seed_ids and ground_truth_ids need the same number of playlists, got '
        f'{seed_ids.shape[0]} and {gt_ids.shape[0]}.'
    )
  for name, ids in (('seed_ids', seed_ids), ('ground_truth_ids', gt_ids)):
    if ids.size and ids.max() >= num_tracks:
      raise ValueError(f'{name} contains id {ids.max()} >= num_tracks = {num_tracks}.')
  if not ks or min(ks) < 1 or max(ks) > num_tracks:
    raise ValueError(f'ks must be in [1, num_tracks = {num_tracks}], got {ks}.')


def _chunks(num_playlists: int, chunk_size: int):
  for start in range(0, num_playlists, chunk_size):
    yield start, min(start + chunk_size, num_playlists)


def _pad_rows(x: np.ndarray, rows: int, value) -> np.ndarray:
  if x.shape[0] == rows:
    return x
  pad = np.full((rows - x.shape[0],) + x.shape[1:], value, dtype=x.dtype)
  return np.concatenate([x, pad], axis=0)


def _scores_for_chunk(
    score_fn: ScoreFn, seed_ids: np.ndarray, seed_mask: np.ndarray, num_tracks: int
) -> Array:
  scores = score_fn(jnp.asarray(seed_ids), jnp.asarray(seed_mask))
  if tuple(scores.shape) != (seed_ids.shape[0], num_tracks):
    raise ValueError(
        f'score_fn must return [b, num_tracks] = {(seed_ids.shape[0], num_tracks)}, got '
        f'{tuple(scores.shape)}.'
    )
  return scores


def evaluate_continuation(
    score_fn: ScoreFn,
    seed_ids,
    ground_truth_ids,
    num_tracks: int,
    *,
    seed_mask=None,
    ground_truth_mask=None,
    ks: Sequence[int] = (10, 20, 40),
    names: Sequence[str] = ('recall', 'ndcg'),
    chunk_size: int = 256,
) -> dict[str, float]:
  """Runs the cold-start continuation protocol and averages the metrics over playlists.

  Args:
    score_fn: (seed_ids int32 [b, S], seed_mask bool [b, S]) -> float [b, num_tracks] scores over
      all test tracks (higher = better). Called once per chunk with b = chunk_size; padded rows of
      the last chunk have no seeds.
    seed_ids: int [P, S] indices into the test-track table; -1 (or `seed_mask` False) = padding.
    ground_truth_ids: int [P, G] held-out tracks; -1 (or `ground_truth_mask` False) = padding.
    num_tracks: N, the number of test tracks (candidates).
    seed_mask, ground_truth_mask: optional bool masks of the same shapes.
    ks: cut-offs.
    names: metrics from `metrics.METRIC_NAMES` (default Recall and NDCG as in the paper).
    chunk_size: playlists scored at once.

  Returns:
    Flat dict: f'{name}@{k}' -> float mean over playlists with ground truth (seed tracks removed
    from the ground truth), plus 'num_playlists' (how many were averaged).
  """
  seed_ids, seed_mask = _ids_and_mask(seed_ids, seed_mask, 'seed_ids')
  gt_ids, gt_mask = _ids_and_mask(ground_truth_ids, ground_truth_mask, 'ground_truth_ids')
  ks = tuple(int(k) for k in ks)
  names = tuple(names)
  _validate(num_tracks, seed_ids, gt_ids, ks)
  if seed_ids.shape[0] == 0:
    raise ValueError('seed_ids has no playlists.')
  if chunk_size < 1:
    raise ValueError(f'chunk_size must be >= 1, got {chunk_size}.')
  chunk_size = min(chunk_size, max(seed_ids.shape[0], 1))

  totals: dict[str, list[float]] = {}
  for start, stop in _chunks(seed_ids.shape[0], chunk_size):
    s_ids = _pad_rows(seed_ids[start:stop], chunk_size, -1)
    s_mask = _pad_rows(seed_mask[start:stop], chunk_size, False)
    g_ids = _pad_rows(gt_ids[start:stop], chunk_size, -1)
    g_mask = _pad_rows(gt_mask[start:stop], chunk_size, False)
    scores = _scores_for_chunk(score_fn, s_ids, s_mask, num_tracks)
    sums = _chunk_sums(
        scores, s_ids, s_mask, g_ids, g_mask, num_tracks=num_tracks, ks=ks, names=names
    )
    for key, (total, count) in jax.device_get(sums).items():
      acc = totals.setdefault(key, [0.0, 0.0])
      acc[0] += float(total)
      acc[1] += float(count)

  results = {
      key: (total / count if count > 0 else float('nan')) for key, (total, count) in totals.items()
  }
  any_key = next(iter(totals))
  results['num_playlists'] = totals[any_key][1]
  return results


def recommend_top_k(
    score_fn: ScoreFn, seed_ids, num_tracks: int, k: int, *, seed_mask=None, chunk_size: int = 256
) -> np.ndarray:
  """Top-k recommendations per playlist with seeds masked out.

  Args:
    score_fn, seed_ids, num_tracks, seed_mask, chunk_size: as in `evaluate_continuation`.
    k: list length (<= num_tracks minus the number of seeds for a full list of real tracks).

  Returns:
    int32 numpy [P, k] track indices, best first; never a seed.
  """
  seed_ids, seed_mask = _ids_and_mask(seed_ids, seed_mask, 'seed_ids')
  if not 1 <= k <= num_tracks:
    raise ValueError(f'k must be in [1, num_tracks = {num_tracks}], got {k}.')
  chunk_size = min(chunk_size, max(seed_ids.shape[0], 1))

  @jax.jit
  def top(scores, s_ids, s_mask):
    seeds = _multi_hot(s_ids, s_mask, num_tracks)
    return jax.lax.top_k(jnp.where(seeds, -jnp.inf, jnp.asarray(scores, jnp.float32)), k)[1]

  out = []
  for start, stop in _chunks(seed_ids.shape[0], chunk_size):
    s_ids = _pad_rows(seed_ids[start:stop], chunk_size, -1)
    s_mask = _pad_rows(seed_mask[start:stop], chunk_size, False)
    scores = _scores_for_chunk(score_fn, s_ids, s_mask, num_tracks)
    out.append(np.asarray(top(scores, s_ids, s_mask))[: stop - start])
  return np.concatenate(out, axis=0).astype(np.int32)
