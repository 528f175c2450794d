"""Paper 001's intrinsic evaluation (Table 4, Fig. 7) and the cost comparison (Fig. 8).

Clusters of test users (nDCG@50 of each sampled user's 50 nearest test users, faiss exact):
  favourite_artist   same top-1 artist by plays before T (established test users);
  artist_country     same country of most-listened artists (needs artist-countries.tsv);
  onboarding         same set of onboarding artists (new test users who onboarded).
For the first two, "average embeddings" is the play-weighted mean of the history's track
vectors; new users have no history, so for onboarding it is the mean of the onboarding artists'
vectors (the paper's cold-start baseline).

Cost (offline stand-in of Fig. 8): with curated features every downstream model stores and
computes its own user features; with the representation one pipeline computes x, the encoder
maps it to z once, and every model reads the same 120 floats. We measure the per-user feature
pipeline and encoder times on this machine and count the bytes.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from data_pipelines import user_features
from larp_jax.evaluation import user_clusters

DOWNSTREAM_MODELS = ("future_listening", "artist_follow", "ranking", "retrieval")


def _labels_from_keys(keys: list) -> np.ndarray:
  """int64 labels from hashable keys (None -> -1)."""
  index: dict = {}
  out = np.full(len(keys), -1, np.int64)
  for i, key in enumerate(keys):
    if key is not None:
      out[i] = index.setdefault(key, len(index))
  return out


def cluster_labels(ctx) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """{heuristic: (users int64 [n], labels int64 [n])} over test users."""
  l, p = ctx.listening, ctx.protocol
  out = {}
  est = ctx.cohort("established", 2)
  artist = np.where(l.track_artist >= 0, l.track_artist, l.num_artists)
  to_artist = sp.csr_matrix(
      (np.ones(l.num_tracks), (np.arange(l.num_tracks), artist)),
      shape=(l.num_tracks, l.num_artists + 1),
  )
  by_artist = (ctx.history[est] @ to_artist).toarray()[:, : l.num_artists]
  has = by_artist.sum(1) > 0
  out["favourite_artist"] = (est, np.where(has, by_artist.argmax(1), -1))
  if l.artist_country is not None:
    country = np.where(l.artist_country >= 0, l.artist_country, len(l.countries))
    to_country = sp.csr_matrix(
        (np.ones(l.num_artists), (np.arange(l.num_artists), country)),
        shape=(l.num_artists, len(l.countries) + 1),
    )
    by_country = (sp.csr_matrix(by_artist) @ to_country).toarray()[:, : len(l.countries)]
    known = by_country.sum(1) > 0
    out["artist_country"] = (est, np.where(known, by_country.argmax(1), -1))
  else:
    print("user_rep: artist-countries.tsv absent: clusters_artist_country skipped.")
  if l.onboarding_time is not None:
    new = np.intersect1d(ctx.cohort("new", 2), np.flatnonzero(p.onboarded))
    keys = []
    for u in new:
      a, b = l.onboarding_artist_offsets[u], l.onboarding_artist_offsets[u + 1]
      keys.append(tuple(sorted(l.onboarding_artists[a:b].tolist())) or None)
    out["onboarding"] = (new, _labels_from_keys(keys))
  return out


def cluster_tasks(ctx, ablations) -> tuple[dict[str, float], dict[str, np.ndarray]]:
  """nDCG@k per heuristic for z, the average-embedding baseline and the ablations; and the 2-D
  projection of z of established test users (Fig. 7) with their favourite-artist labels."""
  c = ctx.config.clusters
  out: dict[str, float] = {}
  projections: dict[str, np.ndarray] = {}
  for heuristic, (users, labels) in cluster_labels(ctx).items():
    baseline = "onboarding_avg" if heuristic == "onboarding" else "avg_embeddings"
    sizes = np.bincount(labels[labels >= 0]) if (labels >= 0).any() else np.zeros(0)
    if baseline not in ctx.vectors or len(users) < 3 or not (sizes >= 2).any():
      print(f"user_rep: clusters_{heuristic} skipped: no cluster of >= 2 test users.")
      continue
    for model in ("user_rep", baseline, *ablations):
      result = user_clusters.cluster_ndcg(
          ctx.vectors[model][users],
          labels,
          k=min(int(c.k), len(users) - 1),
          num_queries=int(c.num_queries),
          seed=int(ctx.config.seed),
      )
      if result.num_queries:
        out[f"clusters_{heuristic}/{model}/ndcg@{int(c.k)}"] = float(result.ndcg)
        out[f"clusters_{heuristic}/{model}/queries"] = float(result.num_queries)
    if heuristic == "favourite_artist":
      projections["z"] = user_clusters.projection_2d(
          ctx.vectors["user_rep"][users],
          method=ctx.config.report.projection,
          seed=int(ctx.config.seed),
      )
      projections["labels"] = labels
  return out, projections


def cost(ctx, prepared, encode_fn: Callable[[np.ndarray], np.ndarray], sample: int = 200):
  """Bytes per user and per-user pipeline time, curated features vs one shared z (Fig. 8)."""
  users = ctx.protocol.users(split=2)[:sample]
  start = time.perf_counter()
  x = user_features.features_matrix(
      ctx.listening, users, ctx.protocol.snapshot_time[users], prepared.spaces, prepared.spec
  )
  feature_s = (time.perf_counter() - start) / max(len(users), 1)
  encode_fn(x)  # compile
  start = time.perf_counter()
  z = encode_fn(x)
  encode_s = (time.perf_counter() - start) / max(len(users), 1)
  n = len(DOWNSTREAM_MODELS)
  d, k = x.shape[1], z.shape[1]
  return {
      "cost/curated/bytes_per_user": float(n * d * 4),
      "cost/user_rep/bytes_per_user": float(k * 4),
      "cost/curated/pipeline_us_per_user": float(n * feature_s * 1e6),
      "cost/user_rep/pipeline_us_per_user": float((feature_s + encode_s) * 1e6),
      "cost/downstream_models": float(n),
  }
