"""Weighted matrix factorisation (Hu, Koren, Volinsky, ICDM'08) solved exactly by ALS, in float64.

    min_{U,V} sum_{p,s} c_ps (r_ps - U_p . V_s)^2 + l2 (||U||^2 + ||V||^2),  c = 1 + alpha r

over the full playlist x track matrix (r = 1 on the observed pairs): DropoutNet's preference model
(`dropoutnet.py`, variant 'paper'). Written here rather than with `implicit` (which the
collaborative vectors use, in float32 with conjugate-gradient steps by default): each half-sweep
here is the exact float64 minimiser of the formula above (`als_side`), which the tests check
against the objective's gradient; the DropoutNet demo matrices are small enough for that.
"""

from __future__ import annotations

import numpy as np


def wmf_objective(
    pairs: np.ndarray, u: np.ndarray, v: np.ndarray, alpha: float, l2: float
) -> float:
  """WMF loss sum_{p,s} c_ps (r_ps - U_p . V_s)^2 + l2 (||U||^2 + ||V||^2), c = 1 + alpha r,
  over the full [M, N] matrix (r = 1 on the observed pairs). float64 scalar."""
  scores = u.astype(np.float64) @ v.astype(np.float64).T
  r = np.zeros_like(scores)
  r[pairs[:, 0], pairs[:, 1]] = 1.0
  fit_term = np.sum((1.0 + alpha * r) * (r - scores) ** 2)
  return float(
      fit_term + l2 * (np.sum(u.astype(np.float64) ** 2) + np.sum(v.astype(np.float64) ** 2))
  )


def als_side(
    rows: np.ndarray,
    cols: np.ndarray,
    other: np.ndarray,
    num_rows: int,
    alpha: float,
    l2: float,
    block_pairs: int = 65536,
) -> np.ndarray:
  """Exact WMF update of one side: x_r = (V^T V + alpha V_r^T V_r + l2 I)^-1 (1 + alpha) V_r^T 1,
  V_r the rows of `other` observed with r. Rows are visited in order of their pair count, in
  blocks of about `block_pairs` pairs, each padded to its longest row (so the memory is
  O(block_pairs k) and V_r^T V_r is one batched matmul). float64 [num_rows, k]; rows without
  pairs get 0."""
  k = other.shape[1]
  other = other.astype(np.float64)
  order = np.argsort(rows, kind='stable')
  rows, cols = rows[order], cols[order]
  counts = np.bincount(rows, minlength=num_rows)
  starts = np.concatenate([[0], np.cumsum(counts)])
  gram = other.T @ other + l2 * np.eye(k)
  out = np.zeros((num_rows, k))
  by_count = np.argsort(counts, kind='stable')
  by_count = by_count[counts[by_count] > 0]
  i = 0
  while i < by_count.size:
    # Rows sorted by count: a block of j rows holds at most j * counts[last] padded pairs.
    j = max(1, min(by_count.size - i, block_pairs // max(int(counts[by_count[i]]), 1)))
    while j > 1 and j * int(counts[by_count[i + j - 1]]) > 2 * block_pairs:
      j //= 2
    block = by_count[i : i + j]
    width = int(counts[block].max())
    offsets = np.arange(width)[None, :]
    valid = offsets < counts[block][:, None]
    y = other[cols[np.where(valid, starts[block][:, None] + offsets, 0)]] * valid[..., None]
    a = gram + alpha * np.matmul(y.transpose(0, 2, 1), y)
    out[block] = np.linalg.solve(a, (1.0 + alpha) * y.sum(1)[..., None])[..., 0]
    i += j
  return out


def train_wmf(
    pairs: np.ndarray,
    num_playlists: int,
    num_tracks: int,
    *,
    factors: int,
    alpha: float,
    l2: float,
    iterations: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
  """WMF by `iterations` sweeps of alternating least squares from V ~ N(0, 0.01^2), U = 0:
  (U float32 [M, factors], V float32 [N, factors])."""
  rng = np.random.default_rng(seed)
  v = 0.01 * rng.standard_normal((num_tracks, factors))
  u = np.zeros((num_playlists, factors))
  for _ in range(max(1, iterations)):
    u = als_side(pairs[:, 0], pairs[:, 1], v, num_playlists, alpha, l2)
    v = als_side(pairs[:, 1], pairs[:, 0], u, num_tracks, alpha, l2)
  return u.astype(np.float32), v.astype(np.float32)
