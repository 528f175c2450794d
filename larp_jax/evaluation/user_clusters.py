"""Intrinsic evaluation of a user-vector space (issue 11, paper Sec. 5.1.1 / Table 4, Fig. 7).

`cluster_ndcg`: sample users, find their k nearest neighbours among all users with exact faiss
search (self excluded), and score the neighbour list against a known clustering (same favourite
artist, same country of most-listened artists, same onboarding choices):

  rel_r  = 1 if the neighbour at rank r (1-based) has the query's label, else 0
  DCG@k  = sum_{r<=k} rel_r / log2(r + 1)
  IDCG@k = sum_{r<=min(k, n_c - 1)} 1 / log2(r + 1)       (n_c = size of the query's cluster)
  nDCG@k = DCG@k / IDCG@k, averaged over the sampled queries.

Label -1 means "no label": such users are never queries and never relevant, but they stay in the
search space (they are still neighbours). A labelled user whose cluster has a single member cannot
be a query (IDCG = 0); those users are counted in ``skipped``. Ties in the similarity are broken by
faiss (an exact search; order among exactly equal scores is faiss's).

`projection_2d`: PCA or t-SNE of the vectors for the Fig. 7 plot.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

METRICS = ('cosine', 'l2')


class ClusterResult(NamedTuple):
  """nDCG@k averaged over ``num_queries`` queries; ``skipped`` = labelled users in singletons."""

  ndcg: float
  num_queries: int
  skipped: int


def _check_vectors(vectors) -> np.ndarray:
  vectors = np.asarray(vectors, np.float32)
  if vectors.ndim != 2 or vectors.shape[0] == 0 or vectors.shape[1] == 0:
    raise ValueError(f'vectors must be a non-empty [U, D] array, got {vectors.shape}.')
  if not np.isfinite(vectors).all():
    raise ValueError('vectors contains NaN or inf.')
  return vectors


def neighbours(vectors, queries, k: int, *, metric: str = 'cosine') -> np.ndarray:
  """Exact k nearest neighbours of ``vectors[queries]`` among all rows, the query itself excluded.

  Args:
    vectors: float32 [U, D]; queries: int [Q] row ids; k: neighbours per query (<= U - 1);
    metric: 'cosine' (faiss IndexFlatIP on L2-normalised rows; a zero row stays zero) or 'l2'
      (IndexFlatL2).

  Returns:
    int64 [Q, k] neighbour row ids, nearest first.
  """
  import faiss  # pylint: disable=g-import-not-at-top  (optional dependency, only needed here)

  if metric not in METRICS:
    raise ValueError(f'metric must be one of {METRICS}, got {metric!r}.')
  vectors = _check_vectors(vectors)
  num = vectors.shape[0]
  if not 1 <= k <= num - 1:
    raise ValueError(f'k must be in [1, U - 1 = {num - 1}] (self is excluded), got {k}.')
  queries = np.asarray(queries, np.int64).reshape(-1)
  if metric == 'cosine':
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = vectors / np.maximum(norms, 1e-12)
    index = faiss.IndexFlatIP(vectors.shape[1])
  else:
    index = faiss.IndexFlatL2(vectors.shape[1])
  vectors = np.ascontiguousarray(vectors, np.float32)
  index.add(vectors)
  _, found = index.search(np.ascontiguousarray(vectors[queries]), k + 1)
  out = np.empty((queries.size, k), np.int64)
  for q, row in enumerate(found):
    row = row[(row != queries[q]) & (row >= 0)]
    out[q] = row[:k]
  return out


def ndcg_from_neighbours(
    neighbour_ids: np.ndarray,
    query_labels: np.ndarray,
    labels: np.ndarray,
    cluster_sizes: np.ndarray,
) -> np.ndarray:
  """Per-query nDCG@k (binary gains; IDCG over min(k, n_c - 1) ones): float64 [Q].

  Args:
    neighbour_ids: int [Q, k]; query_labels: int [Q] (>= 0); labels: int [U] (-1 = none);
    cluster_sizes: int [Q] size of each query's cluster (>= 2).
  """
  k = neighbour_ids.shape[1]
  rel = (labels[neighbour_ids] == query_labels[:, None]).astype(np.float64)
  discounts = 1.0 / np.log2(np.arange(2, k + 2))
  dcg = rel @ discounts
  ideal = np.cumsum(discounts)[np.minimum(k, cluster_sizes - 1) - 1]
  return dcg / ideal


def cluster_ndcg(
    vectors,
    labels,
    *,
    k: int = 50,
    num_queries: int = 500,
    seed: int = 0,
    metric: str = 'cosine',
) -> ClusterResult:
  """nDCG@k of nearest-neighbour lists against a clustering (see the module docstring).

  Args:
    vectors: float32 [U, D] user vectors (the search space: all U users).
    labels: int [U] cluster id per user, -1 = no label.
    k: neighbours per query (<= U - 1).
    num_queries: queries sampled (seeded, without replacement) among labelled users whose cluster
      has >= 2 members; all of them if fewer.
    seed: sampling seed; metric: 'cosine' or 'l2'.

  Returns:
    `ClusterResult(ndcg, num_queries, skipped)`.
  """
  vectors = _check_vectors(vectors)
  labels = np.asarray(labels)
  if labels.shape != (vectors.shape[0],):
    raise ValueError(f'labels must be [U={vectors.shape[0]}], got {labels.shape}.')
  if labels.size and not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f'labels must be integers (-1 = no label), got dtype {labels.dtype}.')
  labels = labels.astype(np.int64)
  if (labels < -1).any():
    raise ValueError('labels must be >= -1 (-1 = no label).')
  if num_queries < 1:
    raise ValueError(f'num_queries must be >= 1, got {num_queries}.')
  labelled = labels >= 0
  _, inverse, counts = np.unique(labels[labelled], return_inverse=True, return_counts=True)
  sizes = np.zeros(labels.size, np.int64)
  sizes[labelled] = counts[inverse]
  eligible = np.flatnonzero(sizes >= 2)
  skipped = int((labelled & (sizes < 2)).sum())
  if eligible.size == 0:
    raise ValueError('labels has no cluster with at least 2 members: no query possible.')
  rng = np.random.default_rng(seed)
  queries = np.sort(rng.choice(eligible, size=min(num_queries, eligible.size), replace=False))
  found = neighbours(vectors, queries, k, metric=metric)
  per_query = ndcg_from_neighbours(found, labels[queries], labels, sizes[queries])
  return ClusterResult(float(per_query.mean()), int(queries.size), skipped)


def projection_2d(
    vectors,
    *,
    method: str = 'pca',
    seed: int = 0,
    perplexity: float = 30.0,
    max_iter: int = 1000,
    num_threads: int | None = 1,
):
  """2-D projection for plotting: float32 [U, 2].

  Args:
    vectors: float [U, D]; method: 'pca' (sklearn PCA) or 'tsne' (sklearn TSNE, PCA init,
      perplexity clipped to (U - 1) / 3, ``max_iter`` iterations); seed: random_state;
    num_threads: OpenMP / BLAS threads (threadpoolctl; None = the library default). One thread by
      default: t-SNE's OpenMP threads slow down ~10x on a loaded machine.
  """
  from sklearn.decomposition import PCA  # pylint: disable=g-import-not-at-top
  from sklearn.manifold import TSNE  # pylint: disable=g-import-not-at-top
  import threadpoolctl  # pylint: disable=g-import-not-at-top  (a scikit-learn dependency)

  vectors = _check_vectors(vectors)
  if vectors.shape[0] < 3:
    raise ValueError(f'vectors needs at least 3 rows for a projection, got {vectors.shape[0]}.')
  if method == 'pca':
    if vectors.shape[1] < 2:
      return np.concatenate([vectors - vectors.mean(0), np.zeros_like(vectors)], 1).astype(
          np.float32
      )
    return PCA(n_components=2, random_state=seed).fit_transform(vectors).astype(np.float32)
  if method == 'tsne':
    perplexity = min(perplexity, (vectors.shape[0] - 1) / 3.0)
    tsne = TSNE(
        n_components=2, init='pca', random_state=seed, perplexity=perplexity, max_iter=max_iter
    )
    with threadpoolctl.threadpool_limits(limits=num_threads):
      return tsne.fit_transform(vectors).astype(np.float32)
  raise ValueError(f"method must be 'pca' or 'tsne', got {method!r}.")
