"""MAP-2T's non-parametric baselines (paper 002, Sec. 5) and the public cross-domain anchor EMCDR.

  Popularity          s(u, a) = pop(a) (pre-T listeners of a)
  ColloPop-<entity>   s(u, a) = sum_{i in A_u} coocc(i, a) · pop(a)^α, coocc(i, a) = number of
                      distinct training users who played entity i (artist or show) and listened to
                      book a before T (sparse); A_u = the user's top-k entities (MAP-2T's input)
  EMCDR (Man et al., IJCAI'17)  MF factors of training users' listens (ALS), an MLP regressing
                      them from x^(m) by MSE, scored against the MF item factors
Every ranking breaks ties by popularity, then by book index (``tie_broken``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp


def tie_broken(scores: np.ndarray, popularity: np.ndarray) -> np.ndarray:
  """float32 [R, N] scores whose descending order is (score desc, popularity desc, index asc),
  with no ties (N - position), so any top-k over them ranks as the baselines define."""
  scores = np.atleast_2d(np.asarray(scores, np.float64))
  n = scores.shape[1]
  out = np.empty(scores.shape, np.float32)
  idx = np.arange(n)
  for r in range(scores.shape[0]):
    order = np.lexsort((idx, -popularity, -scores[r]))
    out[r, order] = n - np.arange(n)
  return out


def popularity_scores(popularity: np.ndarray, num_users: int) -> np.ndarray:
  """[R, N] ranking scores of the Popularity baseline (the same list for every user)."""
  pop = np.asarray(popularity, np.float64)
  return np.repeat(tie_broken(pop[None], pop), num_users, 0)


def cooccurrence(
    user_entities: Sequence[np.ndarray], user_books: sp.csr_matrix, num_entities: int
) -> sp.csr_matrix:
  """coocc [E, N] float32: distinct training users with entity i among their top entities and a
  pre-T listen of book a. ``user_entities[r]`` and row r of ``user_books`` are one user."""
  rows = np.concatenate([np.full(len(e), r) for r, e in enumerate(user_entities)] or [[]])
  cols = np.concatenate(list(user_entities) or [[]]).astype(np.int64)
  ue = sp.csr_matrix(
      (np.ones(len(rows), np.float32), (rows.astype(np.int64), cols)),
      shape=(len(user_entities), num_entities),
  )
  ue.data[:] = 1.0
  ub = sp.csr_matrix(user_books, dtype=np.float32, copy=True)
  ub.data[:] = 1.0
  return (ue.T @ ub).tocsr()


def collopop_scores(
    user_entities: Sequence[np.ndarray],
    coocc: sp.csr_matrix,
    popularity: np.ndarray,
    alpha: float,
) -> np.ndarray:
  """[R, N] tie-broken ColloPop scores; users without entities fall back to popularity."""
  num_entities = coocc.shape[0]
  rows = np.concatenate([np.full(len(e), r) for r, e in enumerate(user_entities)] or [[]])
  cols = np.concatenate(list(user_entities) or [[]]).astype(np.int64)
  ue = sp.csr_matrix(
      (np.ones(len(rows), np.float32), (rows.astype(np.int64), cols)),
      shape=(len(user_entities), num_entities),
  )
  pop = np.asarray(popularity, np.float64)
  raw = np.asarray((ue @ coocc).todense(), np.float64) * np.power(np.maximum(pop, 0), alpha)[None]
  return tie_broken(raw, pop)


def emcdr_scores(
    train_music: np.ndarray,
    train_books: sp.csr_matrix,
    query_music: np.ndarray,
    *,
    factors: int = 32,
    hidden: int = 64,
    seed: int = 0,
) -> np.ndarray:
  """EMCDR: ALS factors of training users x books, an MLP x^(m) -> user factor (MSE), scores
  ``mapped · item factors`` [R, N] (float32; ties are not broken)."""
  import implicit.cpu.als  # pylint: disable=g-import-not-at-top
  import threadpoolctl  # pylint: disable=g-import-not-at-top
  from sklearn.neural_network import MLPRegressor  # pylint: disable=g-import-not-at-top

  with threadpoolctl.threadpool_limits(1, "blas"):
    model = implicit.cpu.als.AlternatingLeastSquares(
        factors=factors, regularization=0.05, iterations=15, num_threads=1, random_state=seed
    )
    model.fit(sp.csr_matrix(train_books, dtype=np.float32), show_progress=False)
  user_f = np.asarray(model.user_factors, np.float64)
  item_f = np.asarray(model.item_factors, np.float64)
  mlp = MLPRegressor(
      hidden_layer_sizes=(hidden,), max_iter=300, random_state=seed, early_stopping=False
  )
  mlp.fit(np.asarray(train_music, np.float64), user_f)
  mapped = mlp.predict(np.asarray(query_music, np.float64)).reshape(len(query_music), -1)
  return (mapped @ item_f.T).astype(np.float32)
