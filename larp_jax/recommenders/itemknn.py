"""ItemKNN (LARP App. B.1): playlist vector = sum of its seed-track embeddings, score = inner product.

    e_p = sum_{s in seeds} e_s          (official `NearestNeighbour`: multi-hot seeds @ features)
    y_p = e_p . E_S^T                   over all candidate tracks

The paper's Eq. 12 uses the mean of the seeds; the sum only rescales each row's scores by a positive
constant, so rankings (and every metric) are identical; `ItemKNNConfig.pooling` picks either.
Nothing is trained: `fit` only records the config. For catalogues too large for dense [B, N] scores,
`faiss_top_k` runs the same inner-product search through a faiss `IndexFlatIP` (exact).

Shared recommender contract (also DropoutNet, CLCRec, popularity):
  fit(train_interactions int [E, 2] (playlist, track) rows over the TRAINING tracks,
      content_features float [N_train, D], config, seed) -> model
  score(model, seeds int [B, S] (-1 = padding) into the TEST tracks, content_features float [N_test, D],
        seed_mask=None) -> float32 [B, N_test]
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class ItemKNNConfig:
  """ItemKNN settings.

  Attributes:
    pooling: 'sum' (official) or 'mean' (Eq. 12) of the seed embeddings; same ranking.
  """

  pooling: str = 'sum'

  def __post_init__(self):
    if self.pooling not in ('sum', 'mean'):
      raise ValueError(f"ItemKNNConfig.pooling must be 'sum' or 'mean', got {self.pooling!r}.")


@dataclasses.dataclass(frozen=True)
class ItemKNNModel:
  config: ItemKNNConfig


def fit(
    train_interactions, content_features, config: ItemKNNConfig | None = None, seed: int = 0
) -> ItemKNNModel:
  """Parameter-free: returns the model holding `config` (inputs are accepted for the shared contract)."""
  del train_interactions, content_features, seed
  return ItemKNNModel(config or ItemKNNConfig())


def seed_mask_from(seeds: Array, seed_mask: Array | None) -> Array:
  """bool [B, S]: explicit mask, or seeds >= 0."""
  seeds = jnp.asarray(seeds)
  if seeds.ndim != 2 or not jnp.issubdtype(seeds.dtype, jnp.integer):
    raise ValueError(
        f'seeds must be an int array [B, S] (-1 = padding), got {seeds.dtype} {seeds.shape}.'
    )
  if seed_mask is None:
    return seeds >= 0
  seed_mask = jnp.asarray(seed_mask, bool)
  if seed_mask.shape != seeds.shape:
    raise ValueError(
        f'seed_mask must have the shape of seeds {seeds.shape}, got {seed_mask.shape}.'
    )
  return seed_mask & (seeds >= 0)


def pool_seeds(features: Array, seeds: Array, seed_mask: Array, pooling: str = 'sum') -> Array:
  """float32 [B, D]: sum (or mean) of features[seeds] over the masked-in seeds (zero if none)."""
  gathered = jnp.take(
      jnp.asarray(features, jnp.float32), jnp.clip(seeds, 0, features.shape[0] - 1), axis=0
  )
  total = jnp.sum(jnp.where(seed_mask[..., None], gathered, 0.0), axis=1)
  if pooling == 'mean':
    total = total / jnp.maximum(jnp.sum(seed_mask, axis=1, keepdims=True), 1).astype(jnp.float32)
  return total


@jax.jit
def _scores(features: Array, seeds: Array, seed_mask: Array, mean: Array) -> Array:
  features = jnp.asarray(features, jnp.float32)
  playlist = pool_seeds(features, seeds, seed_mask, 'sum')
  playlist = jnp.where(
      mean, playlist / jnp.maximum(jnp.sum(seed_mask, axis=1, keepdims=True), 1), playlist
  )
  return jnp.matmul(playlist, features.T, precision=jax.lax.Precision.HIGHEST)


def score(model: ItemKNNModel, seeds, content_features, seed_mask=None) -> Array:
  """Scores every test track for each playlist.

  Args:
    model: from `fit`.
    seeds: int [B, S] indices into `content_features` (-1 = padding).
    content_features: float [N, D] test-track embeddings (for LARP: `track_embeddings(audio, text)`).
    seed_mask: optional bool [B, S].

  Returns:
    float32 [B, N] inner products (seeds are not masked here; the protocol does that).
  """
  mask = seed_mask_from(seeds, seed_mask)
  if jnp.ndim(content_features) != 2:
    raise ValueError(f'content_features must be [N, D], got {jnp.shape(content_features)}.')
  return _scores(
      jnp.asarray(content_features),
      jnp.asarray(seeds, jnp.int32),
      mask,
      jnp.asarray(model.config.pooling == 'mean'),
  )


def faiss_top_k(
    model: ItemKNNModel, seeds, content_features, k: int, seed_mask=None
) -> tuple[np.ndarray, np.ndarray]:
  """Exact top-k inner-product search with faiss, excluding each playlist's own seeds.

  Args:
    model, seeds, content_features, seed_mask: as in `score`.
    k: list length.

  Returns:
    (ids int64 numpy [B, k], scores float32 numpy [B, k]), best first; -1 / -inf if fewer than k
    non-seed tracks exist.
  """
  import faiss  # pylint: disable=g-import-not-at-top  (optional dependency, only needed here)

  features = np.ascontiguousarray(np.asarray(content_features, np.float32))
  mask = np.asarray(seed_mask_from(seeds, seed_mask))
  seeds = np.asarray(seeds)
  queries = np.ascontiguousarray(
      np.asarray(pool_seeds(features, seeds, mask, model.config.pooling))
  )
  index = faiss.IndexFlatIP(features.shape[1])
  index.add(features)
  depth = min(k + seeds.shape[1], features.shape[0])
  found_scores, found_ids = index.search(queries, depth)
  ids = np.full((seeds.shape[0], k), -1, np.int64)
  out_scores = np.full((seeds.shape[0], k), -np.inf, np.float32)
  for b in range(seeds.shape[0]):
    own = set(seeds[b][mask[b]].tolist())
    keep = [(i, s) for i, s in zip(found_ids[b], found_scores[b]) if i >= 0 and i not in own][:k]
    for j, (i, s) in enumerate(keep):
      ids[b, j], out_scores[b, j] = i, s
  return ids, out_scores
