"""Paper 001's collaborative modality encoder: 80-d track vectors from listening-session
co-occurrence (Sec. 3.2.1: "two tracks are likely to be near each other ... if they co-occur").

A *session* is one user's run of consecutive plays with gaps under ``gap_seconds`` (30 min). The
session x track matrix (1 where a track occurs in a session) is factorised by implicit's ALS
(Hu, Koren & Volinsky 2008) with 80 factors; a track's vector is its item factor. We use ALS
rather than SGNS because it is a well-kept library implementation, deterministic with one
thread and a seed, and its item factors are exactly "tracks near each other iff they co-occur"
on this matrix; SGNS would need our own sampler for the same result.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import threadpoolctl


def session_matrix(
    event_user: np.ndarray,
    event_track: np.ndarray,
    event_time: np.ndarray,
    num_tracks: int,
    *,
    gap_seconds: int = 1800,
    min_tracks: int = 2,
) -> sp.csr_matrix:
  """float32 [S, num_tracks] 0/1 matrix of sessions with >= ``min_tracks`` distinct tracks.

  Args:
    event_user / event_track / event_time: [E] events sorted by (user, time) (int32, int32,
      int64 unix seconds); pass only the events the encoder may see (before the cut time).
    num_tracks: M.
    gap_seconds: a gap of at least this long starts a new session.
    min_tracks: sessions with fewer distinct tracks carry no co-occurrence and are dropped.
  """
  event_user = np.asarray(event_user)
  if not len(event_user):
    return sp.csr_matrix((0, num_tracks), dtype=np.float32)
  event_time = np.asarray(event_time, np.int64)
  new = np.r_[True, (event_user[1:] != event_user[:-1]) | (np.diff(event_time) >= gap_seconds)]
  session = np.cumsum(new) - 1
  matrix = sp.csr_matrix(
      (np.ones(len(session), np.float32), (session, np.asarray(event_track))),
      shape=(int(session[-1]) + 1, num_tracks),
  )
  matrix.data[:] = 1.0  # duplicates were summed: presence only
  keep = np.diff(matrix.indptr) >= min_tracks
  return matrix[keep]


def als_track_vectors(
    sessions: sp.csr_matrix,
    *,
    factors: int = 80,
    regularization: float = 0.05,
    alpha: float = 10.0,
    iterations: int = 15,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
  """ALS item factors of a session x track matrix.

  Returns:
    ``(vectors float32 [M, factors], seen bool [M])``; unseen tracks (in no session) have
    undefined factors and ``seen`` False -- the caller imputes them.
  """
  import implicit.cpu.als  # pylint: disable=g-import-not-at-top

  if sessions.shape[0] == 0:
    raise ValueError("no sessions with co-occurring tracks before the cut time: cannot fit ALS.")
  # implicit asks for a single-threaded BLAS (its own loop is the parallel one).
  with threadpoolctl.threadpool_limits(1, "blas"):
    model = implicit.cpu.als.AlternatingLeastSquares(
        factors=factors,
        regularization=regularization,
        alpha=alpha,
        iterations=iterations,
        num_threads=1,
        random_state=seed,
    )
    model.fit(sp.csr_matrix(sessions), show_progress=False)
  vectors = np.asarray(model.item_factors, np.float32)
  seen = np.asarray(sessions.sum(0)).ravel() > 0
  return vectors, seen
