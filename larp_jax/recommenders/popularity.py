"""Content-free reference recommenders: popularity and random.

Popularity scores a track by how many interactions it has in the playlist-track pairs given to
`fit`. In the strict cold-start protocol no test track occurs in the training interactions, so a
training-set popularity is all zeros there; fit it instead on interactions that are observable at
test time, i.e. the test playlists' seed halves (`seeds_to_interactions`), which is what the
"popularity" baseline means in a cold-start setting. Ties are broken by track index.

Random scores every track with i.i.d. uniforms, keyed by the fit seed and by the playlist's seed
list, so the same playlist always gets the same ranking regardless of chunking.

Same contract as `itemknn` (`fit(train_interactions, content_features, config, seed)`,
`score(model, seeds, content_features, seed_mask=None) -> [B, N]`); the content is only used for N.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from larp_jax.recommenders import itemknn

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class PopularityModel:
  counts: np.ndarray  # float32 [N] interaction counts per track


@dataclasses.dataclass(frozen=True)
class RandomModel:
  seed: int


def check_interactions(train_interactions, num_tracks: int) -> np.ndarray:
  """Validates and returns `train_interactions` as int64 numpy [E, 2] of (playlist, track)."""
  pairs = np.asarray(train_interactions)
  if pairs.ndim != 2 or pairs.shape[1] != 2 or not np.issubdtype(pairs.dtype, np.integer):
    raise ValueError(
        f'train_interactions must be an int array [E, 2] of (playlist, track), got '
        f'{pairs.dtype} {pairs.shape}.'
    )
  if pairs.size and (pairs.min() < 0 or pairs[:, 1].max() >= num_tracks):
    raise ValueError(
        f'train_interactions has negative ids or track ids >= num_tracks = {num_tracks}.'
    )
  return pairs.astype(np.int64)


def seeds_to_interactions(seeds, seed_mask=None) -> np.ndarray:
  """int64 [E, 2] (playlist row, track) pairs from padded seed lists (for a test-time popularity)."""
  seeds = np.asarray(seeds)
  mask = seeds >= 0 if seed_mask is None else (np.asarray(seed_mask, bool) & (seeds >= 0))
  rows, cols = np.nonzero(mask)
  return np.stack([rows, seeds[rows, cols]], axis=1).astype(np.int64)


def fit(train_interactions, content_features, config=None, seed: int = 0) -> PopularityModel:
  """Counts interactions per track.

  Args:
    train_interactions: int [E, 2] (playlist, track) pairs over the tracks of `content_features`.
    content_features: [N, D] (only N is used).
    config: unused (kept for the shared contract).
    seed: unused.

  Returns:
    PopularityModel with float32 counts [N].
  """
  del config, seed
  num_tracks = int(np.shape(content_features)[0])
  pairs = check_interactions(train_interactions, num_tracks)
  counts = np.bincount(pairs[:, 1], minlength=num_tracks).astype(np.float32)
  return PopularityModel(counts=counts)


def score(model: PopularityModel, seeds, content_features, seed_mask=None) -> Array:
  """float32 [B, N]: the same popularity row for every playlist."""
  del seed_mask
  seeds = jnp.asarray(seeds)
  n = int(np.shape(content_features)[0])
  if model.counts.shape[0] != n:
    raise ValueError(
        f'model was fit on {model.counts.shape[0]} tracks but content_features has {n}.'
    )
  return jnp.broadcast_to(jnp.asarray(model.counts)[None, :], (seeds.shape[0], n))


def fit_random(train_interactions, content_features, config=None, seed: int = 0) -> RandomModel:
  """Random baseline: only stores the seed."""
  del train_interactions, content_features, config
  return RandomModel(seed=int(seed))


@jax.jit
def _random_scores(key: Array, seeds: Array, mask: Array, num_tracks_like: Array) -> Array:
  # A per-playlist key from its (order-independent) seed set, so chunking never changes a row.
  weights = jnp.where(mask, (seeds.astype(jnp.uint32) + 1) * jnp.uint32(2654435761), jnp.uint32(0))
  row_hash = jnp.sum(weights, axis=1, dtype=jnp.uint32)
  keys = jax.vmap(lambda h: jax.random.fold_in(key, h))(row_hash)
  return jax.vmap(lambda k: jax.random.uniform(k, num_tracks_like.shape, jnp.float32))(keys)


def score_random(model: RandomModel, seeds, content_features, seed_mask=None) -> Array:
  """float32 [B, N] uniform scores, deterministic per (fit seed, playlist seed set)."""
  mask = itemknn.seed_mask_from(seeds, seed_mask)
  n = int(np.shape(content_features)[0])
  return _random_scores(
      jax.random.PRNGKey(model.seed),
      jnp.asarray(seeds, jnp.int32),
      mask,
      jnp.zeros((n,), jnp.float32),
  )
