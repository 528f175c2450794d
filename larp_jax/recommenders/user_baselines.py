"""The user-vector baselines of the generalized-user-representation paper (issue 11, Tables 1-4).

Every function is pure and array-level; the caller selects the events (only those before the cut
time T, only training users where the protocol says so).

  * `nmf_user_vectors`: scikit-learn NMF on log(1 + plays) [U, M] -> W [U, n_components].
  * `fit_lightfm` / `lightfm_user_vectors` / `lightfm_scores`: LightFM (lightfm-next 1.19.0) with
    user and item features, one thread so runs are deterministic.
  * `demographic_popularity`: a track's share of plays per demographic group (the cold-start
    popularity heuristic, scored directly).
  * `average_vectors`: (play-)weighted mean of item vectors per user (average embeddings of the
    history, or of the onboarding artists).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp


def _check_counts(name: str, matrix) -> sp.csr_matrix:
  if not sp.issparse(matrix):
    raise ValueError(f'{name} must be a scipy.sparse matrix [U, M], got {type(matrix).__name__}.')
  csr = sp.csr_matrix(matrix, dtype=np.float64)
  if csr.shape[0] == 0 or csr.shape[1] == 0:
    raise ValueError(f'{name} is empty: shape {csr.shape}.')
  if not np.isfinite(csr.data).all():
    raise ValueError(f'{name} contains NaN or inf.')
  if (csr.data < 0).any():
    raise ValueError(f'{name} must be non-negative (play counts).')
  return csr


def nmf_user_vectors(
    play_counts,
    *,
    n_components: int = 120,
    seed: int = 0,
    max_iter: int = 200,
    return_model: bool = False,
):
  """NMF user factors of log(1 + plays).

  Args:
    play_counts: scipy.sparse [U, M] non-negative play counts (events before T).
    n_components: factors; must be <= min(U, M) (sklearn's 'nndsvda' init needs it).
    seed: ``random_state``; max_iter: NMF iterations.
    return_model: also return the fitted ``sklearn.decomposition.NMF`` (its ``components_`` [k, M]
      are the track factors).

  Returns:
    float32 [U, n_components] (W), or (W, model).
  """
  from sklearn.decomposition import NMF  # pylint: disable=g-import-not-at-top

  counts = _check_counts('play_counts', play_counts)
  if not 1 <= n_components <= min(counts.shape):
    raise ValueError(
        f'n_components={n_components} must be in [1, min(U, M) = {min(counts.shape)}] for'
        f" init='nndsvda' (play_counts is {counts.shape})."
    )
  x = counts.copy()
  x.data = np.log1p(x.data)
  model = NMF(n_components=n_components, init='nndsvda', random_state=seed, max_iter=max_iter)
  w = model.fit_transform(x).astype(np.float32)
  return (w, model) if return_model else w


def with_identity(features=None, num_rows: int | None = None) -> sp.csr_matrix:
  """``[I_n | features]`` as float32 CSR: LightFM's identity (per-row id) block plus side features.

  Args:
    features: optional scipy.sparse or dense [n, F] side features; num_rows: n (needed when
      features is None).
  """
  if features is None:
    if num_rows is None:
      raise ValueError('with_identity needs features or num_rows.')
    return sp.identity(num_rows, np.float32, format='csr')
  features = sp.csr_matrix(features, dtype=np.float32)
  if num_rows is not None and features.shape[0] != num_rows:
    raise ValueError(f'features has {features.shape[0]} rows, expected {num_rows}.')
  eye = sp.identity(features.shape[0], np.float32, format='csr')
  return sp.hstack([eye, features], format='csr', dtype=np.float32)


def _check_features(name: str, features, rows: int) -> sp.csr_matrix:
  if features is None:
    raise ValueError(f'{name} is required (pass with_identity(...) for an identity block).')
  if not sp.issparse(features):
    raise ValueError(f'{name} must be a scipy.sparse matrix, got {type(features).__name__}.')
  csr = sp.csr_matrix(features, dtype=np.float32)
  if csr.shape[0] != rows:
    raise ValueError(f'{name} has {csr.shape[0]} rows, expected {rows}.')
  if not np.isfinite(csr.data).all():
    raise ValueError(f'{name} contains NaN or inf.')
  return csr


def fit_lightfm(
    interactions,
    user_features,
    item_features,
    *,
    no_components: int = 120,
    loss: str = 'warp',
    epochs: int = 20,
    seed: int = 0,
    learning_rate: float = 0.05,
    binarize: bool = True,
) -> Any:
  """A fitted ``lightfm.LightFM`` with user and item features, trained on one thread.

  LightFM represents a user as the sum of the embeddings of its feature columns. Without an
  identity block a user is only its side features, so the caller should pass
  ``with_identity(side_features)`` (``hstack([identity, country, age, gender, devices])``) for
  users and likewise ``with_identity(artist_one_hot)`` for items; a user in the test set then has
  a trained identity row only if it has training interactions (cold users rely on their features).

  Args:
    interactions: scipy.sparse [U, M] (plays before T); positives are the non-zero entries
      (set to 1 when ``binarize``).
    user_features: CSR [U, Fu]; item_features: CSR [M, Fi].
    no_components, loss ('warp' | 'bpr' | 'logistic' | 'warp-kos'), epochs, learning_rate: as in
      ``lightfm.LightFM``.
    seed: ``random_state``.
  """
  from lightfm import LightFM  # pylint: disable=g-import-not-at-top

  counts = _check_counts('interactions', interactions)
  user_features = _check_features('user_features', user_features, counts.shape[0])
  item_features = _check_features('item_features', item_features, counts.shape[1])
  if counts.nnz == 0:
    raise ValueError('interactions has no non-zero entry.')
  counts.eliminate_zeros()
  if binarize:
    counts.data[:] = 1.0
  model = LightFM(
      no_components=no_components,
      loss=loss,
      learning_rate=learning_rate,
      random_state=np.random.RandomState(seed),
  )
  model.fit(
      counts.astype(np.float32).tocoo(),
      user_features=user_features,
      item_features=item_features,
      epochs=epochs,
      num_threads=1,
  )
  return model


def lightfm_user_vectors(
    interactions,
    user_features,
    item_features,
    *,
    no_components: int = 120,
    loss: str = 'warp',
    epochs: int = 20,
    seed: int = 0,
    learning_rate: float = 0.05,
    return_model: bool = False,
):
  """LightFM user embeddings (biases dropped): ``get_user_representations(user_features)[1]``.

  Args: as in `fit_lightfm` (see there for the identity block).

  Returns:
    float32 [U, no_components], or (embeddings, model) when ``return_model``.
  """
  model = fit_lightfm(
      interactions,
      user_features,
      item_features,
      no_components=no_components,
      loss=loss,
      epochs=epochs,
      seed=seed,
      learning_rate=learning_rate,
  )
  user_features = sp.csr_matrix(user_features, dtype=np.float32)
  emb = np.asarray(model.get_user_representations(user_features)[1], np.float32)
  return (emb, model) if return_model else emb


def lightfm_scores(model, users, items, user_features, item_features) -> np.ndarray:
  """LightFM's own pair scores (with biases) for (users[p], items[p]): float32 [P].

  Args:
    model: from `fit_lightfm`; users, items: int [P]; user_features, item_features: the CSR
      matrices used at fit time.
  """
  users = np.asarray(users, np.int32).reshape(-1)
  items = np.asarray(items, np.int32).reshape(-1)
  if users.shape != items.shape or users.size == 0:
    raise ValueError(
        f'users and items must be equal-length non-empty [P], got {users.shape}, {items.shape}.'
    )
  scores = model.predict(
      users,
      items,
      item_features=sp.csr_matrix(item_features, dtype=np.float32),
      user_features=sp.csr_matrix(user_features, dtype=np.float32),
      num_threads=1,
  )
  return np.asarray(scores, np.float32)


def demographic_popularity(
    group_of_user,
    play_user,
    play_track,
    *,
    num_groups: int,
    num_tracks: int,
) -> np.ndarray:
  """Each track's share of plays among the training users of each group.

  Args:
    group_of_user: int [U] group id in [0, num_groups) (e.g. country x age bucket), -1 = not a
      training user (its plays are ignored).
    play_user: int [E] user of each play; play_track: int [E] track of each play (the caller picks
      the window, e.g. recent plays before T).
    num_groups: G; num_tracks: M.

  Returns:
    float32 [G, M], every row sums to 1: share[g, m] = plays of m by group g / plays by group g; a
    group without plays falls back to the global share over all training users. The caller scores
    (user, track) by ``share[group(user), track]``.
  """
  groups = np.asarray(group_of_user)
  if groups.ndim != 1 or (groups.size and not np.issubdtype(groups.dtype, np.integer)):
    raise ValueError(f'group_of_user must be int [U], got {groups.dtype} {groups.shape}.')
  if groups.size and (groups.min() < -1 or groups.max() >= num_groups):
    raise ValueError(f'group_of_user must lie in [-1, {num_groups}).')
  users = np.asarray(play_user).reshape(-1)
  tracks = np.asarray(play_track).reshape(-1)
  if users.shape != tracks.shape:
    raise ValueError(f'play_user {users.shape} and play_track {tracks.shape} must match.')
  if users.size and (users.min() < 0 or users.max() >= groups.size):
    raise ValueError(f'play_user must lie in [0, {groups.size}).')
  if tracks.size and (tracks.min() < 0 or tracks.max() >= num_tracks):
    raise ValueError(f'play_track must lie in [0, {num_tracks}).')
  g = groups[users] if users.size else users
  keep = g >= 0
  if not keep.any():
    raise ValueError('no play by a training user (group_of_user >= 0): no popularity to compute.')
  counts = (
      np.bincount(
          g[keep].astype(np.int64) * num_tracks + tracks[keep], minlength=num_groups * num_tracks
      )
      .reshape(num_groups, num_tracks)
      .astype(np.float64)
  )
  total = counts.sum(axis=0)
  global_share = total / total.sum()
  rows = counts.sum(axis=1, keepdims=True)
  share = np.where(rows > 0, counts / np.maximum(rows, 1.0), global_share[None, :])
  return share.astype(np.float32)


def average_vectors(rows_offsets, items, weights, item_vectors) -> tuple[np.ndarray, np.ndarray]:
  """(Weighted) mean of item vectors per user, from a CSR-style layout.

  Args:
    rows_offsets: int64 [U + 1], non-decreasing, rows_offsets[0] = 0, rows_offsets[-1] = K: user u's
      entries are ``items[rows_offsets[u]:rows_offsets[u + 1]]``.
    items: int [K] item rows into ``item_vectors``.
    weights: float [K] non-negative (e.g. play counts) or None (uniform).
    item_vectors: float [M, D].

  Returns:
    (float32 [U, D] means, bool [U] ``has``): users without entries (or with total weight 0) get a
    zero vector and ``has = False``.
  """
  offsets = np.asarray(rows_offsets, np.int64).reshape(-1)
  items = np.asarray(items).reshape(-1)
  vectors = np.asarray(item_vectors, np.float64)
  if vectors.ndim != 2:
    raise ValueError(f'item_vectors must be [M, D], got {vectors.shape}.')
  if (
      offsets.size < 1
      or offsets[0] != 0
      or (np.diff(offsets) < 0).any()
      or offsets[-1] != items.size
  ):
    raise ValueError(
        f'rows_offsets must start at 0, be non-decreasing and end at len(items) = {items.size}.'
    )
  if items.size and (not np.issubdtype(items.dtype, np.integer) or items.min() < 0
                     or items.max() >= vectors.shape[0]):  # fmt: skip
    raise ValueError(f'items must be integer rows in [0, {vectors.shape[0]}).')
  w = np.ones(items.size) if weights is None else np.asarray(weights, np.float64).reshape(-1)
  if w.shape != items.shape:
    raise ValueError(f'weights must be [K={items.size}], got {w.shape}.')
  if not np.isfinite(w).all() or (w < 0).any():
    raise ValueError('weights must be finite and non-negative.')
  if items.size and not np.isfinite(vectors[np.unique(items)]).all():
    raise ValueError('item_vectors has NaN or inf in rows referenced by items.')
  num_users = offsets.size - 1
  mat = sp.csr_matrix((w, items.astype(np.int64), offsets), shape=(num_users, vectors.shape[0]))
  sums = np.asarray(mat @ vectors)
  total = np.asarray(mat.sum(axis=1)).reshape(-1)
  has = total > 0
  means = np.where(has[:, None], sums / np.where(has, total, 1.0)[:, None], 0.0)
  return means.astype(np.float32), has
