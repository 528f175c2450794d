"""The user representation's two upstream track spaces (paper 001, Sec. 3.2.1), each exported
with its batch id:

* audio: a LARP export's audio vectors (``config.modality.audio_npz``, array
  ``config.modality.audio_array``; the demo's stand-in export when empty) reduced to
  ``config.modality.audio_dim`` (80) by a PCA fitted on the training tracks (tracks training
  users played before T). Tracks without a vector are imputed by their artist's mean (counted).
* collaborative: 80-d ALS item factors of the pre-T session x track matrix
  (``larp_jax/recommenders/collaborative.py``); tracks in no session get their artist's mean.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from sklearn import decomposition

from data_pipelines import user_features
from larp_jax import export as export_lib
from larp_jax.recommenders import collaborative


def _impute_by_artist(vectors, has, track_artist, num_artists):
  """Fills rows without ``has`` by their artist's mean over rows with it, else the global mean.
  Returns (filled float32 [M, D], artist means float32 [A, D], counts dict)."""
  vectors = np.asarray(vectors, np.float64).copy()
  global_mean = vectors[has].mean(0)
  artist = np.where(track_artist >= 0, track_artist, num_artists)
  sums = np.zeros((num_artists + 1, vectors.shape[1]))
  np.add.at(sums, artist[has], vectors[has])
  counts = np.bincount(artist[has], minlength=num_artists + 1).astype(np.float64)
  means = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], global_mean)
  by_artist = ~has & (counts[artist] > 0) & (track_artist >= 0)
  vectors[by_artist] = means[artist[by_artist]]
  by_global = ~has & ~by_artist
  vectors[by_global] = global_mean
  # Artist vectors (onboarding) use every track after imputation.
  all_sums = np.zeros((num_artists + 1, vectors.shape[1]))
  np.add.at(all_sums, artist, vectors)
  all_counts = np.bincount(artist, minlength=num_artists + 1)[:, None]
  artist_means = np.where(all_counts > 0, all_sums / np.maximum(all_counts, 1), global_mean)
  return (
      vectors.astype(np.float32),
      artist_means[:num_artists].astype(np.float32),
      {"imputed_by_artist": int(by_artist.sum()), "imputed_by_global_mean": int(by_global.sum())},
  )


def _audio_vectors(listening, config: Any, audio_npz: str):
  ids, arrays, manifest = export_lib.load_embeddings(audio_npz)
  name = config.modality.audio_array
  if name not in arrays:
    raise ValueError(
        f"config.modality.audio_array={name!r} is not in {audio_npz} (arrays: {sorted(arrays)})."
    )
  table = arrays[name]
  keys = np.where(listening.track_uri != "", listening.track_uri, listening.track_ids)
  row = {str(k): i for i, k in enumerate(ids.tolist())}
  index = np.array([row.get(str(k), -1) for k in keys.tolist()], np.int64)
  has = index >= 0
  if not has.any():
    raise ValueError(
        f"no track of the listening data has a vector in {audio_npz} (ids look like "
        f"{ids[:2].tolist()}, tracks like {keys[:2].tolist()}); check spotify-uris.tsv."
    )
  vectors = np.zeros((listening.num_tracks, table.shape[1]), np.float32)
  vectors[has] = table[index[has]]
  upstream = manifest.get("batch_id") or manifest.get("embedding_space_id", "unknown")
  return vectors, has, upstream


def _played_by(listening, users: np.ndarray, before: int) -> np.ndarray:
  mask = np.isin(listening.event_user, users) & (listening.event_time < before)
  return np.bincount(listening.event_track[mask], minlength=listening.num_tracks)


def build_track_spaces(
    listening, protocol, config: Any, audio_npz: str, export_dir: str
) -> tuple[user_features.TrackSpaces, dict[str, Any]]:
  """Fits both spaces on pre-T data, writes their exports, returns them and a report dict."""
  t = protocol.cut_time
  train_users = protocol.users(split=0)
  train_plays = _played_by(listening, train_users, t)
  report: dict[str, Any] = {}

  raw, has_audio, audio_upstream = _audio_vectors(listening, config, audio_npz)
  fit_rows = has_audio & (train_plays > 0)
  if fit_rows.sum() < 2:
    fit_rows = has_audio
  dim = int(min(config.modality.audio_dim, raw.shape[1], fit_rows.sum()))
  pca = decomposition.PCA(n_components=dim, svd_solver="full", random_state=int(config.seed))
  pca.fit(raw[fit_rows])
  audio = np.zeros((listening.num_tracks, dim), np.float32)
  audio[has_audio] = pca.transform(raw[has_audio])
  audio, artist_audio, counts = _impute_by_artist(
      audio, has_audio, listening.track_artist, listening.num_artists
  )
  report["audio"] = {"missing": int((~has_audio).sum()), **counts, "dim": dim}

  pre = listening.event_time < t
  sessions = collaborative.session_matrix(
      listening.event_user[pre],
      listening.event_track[pre],
      listening.event_time[pre],
      listening.num_tracks,
      gap_seconds=int(config.modality.session_gap_seconds),
  )
  collab, seen = collaborative.als_track_vectors(
      sessions,
      factors=int(config.modality.collab_dim),
      regularization=float(config.modality.als_regularization),
      iterations=int(config.modality.als_iterations),
      seed=int(config.seed),
  )
  collab, artist_collab, counts = _impute_by_artist(
      collab, seen, listening.track_artist, listening.num_artists
  )
  report["collaborative"] = {
      "sessions": int(sessions.shape[0]),
      "unseen": int((~seen).sum()),
      **counts,
  }

  weights = train_plays.astype(np.float64)
  if weights.sum() == 0:
    weights = np.ones_like(weights)
  fill_audio = (weights[:, None] * audio).sum(0) / weights.sum()
  fill_collab = (weights[:, None] * collab).sum(0) / weights.sum()

  audio_id = export_lib.batch_id(
      "audio-pca",
      arrays={"components": pca.components_, "mean": pca.mean_},
      upstream={"larp_audio": audio_upstream},
  )
  collab_id = export_lib.batch_id(
      "collaborative-als", arrays={"vectors": collab}, details={"cut_time": t}
  )
  spaces = user_features.TrackSpaces(
      audio=audio,
      collab=collab,
      artist_audio=artist_audio,
      artist_collab=artist_collab,
      fill_audio=fill_audio,
      fill_collab=fill_collab,
      batch_ids={"audio": audio_id, "collaborative": collab_id},
  )
  keys = np.where(listening.track_uri != "", listening.track_uri, listening.track_ids)
  for name, vectors, bid, upstream in (
      ("audio", audio, audio_id, {"larp_audio": audio_upstream}),
      ("collaborative", collab, collab_id, {}),
  ):
    export_lib.export_embeddings(
        os.path.join(export_dir, f"track_{name}.npz"),
        keys,
        {name: vectors},
        checkpoint_path=audio_npz if name == "audio" else export_dir,
        config=config.modality,
        extra={"batch_id": bid, "upstream": upstream, "cut_time": t, "status": "current"},
    )
  report["batch_ids"] = dict(spaces.batch_ids)
  return spaces, report
