"""Paper 001's evaluations on frozen user vectors (Sec. 4.1, 5.1-5.2): tasks, baselines, clusters.

Every comparison fits ``transfer.head_seeds`` heads per user-vector kind (one jitted call per seed,
``larp_jax/evaluation/transfer_heads.py``) on training users and scores test users by their mean
probability (``ensemble_pair_probabilities`` says why):
  future_7d                 established users, pairs (user, track): positives = distinct tracks
                            played in [T, T + 7 d); negatives 1:1 from other users' plays in the
                            same window (popularity-matched; ``transfer.negatives='uniform'``:
                            uniform over tracks), never one of the user's positives.
  future_7d_new_tracks      the same heads scored on the test pairs whose track the user never
                            played before T.
  future_4h_(not_)onboarded new users at registration, positives = their first 4 hours.
  artist_follow             [user ‖ artist vector], positives = follows in [T, T + 30 d),
                            negatives = artists other users followed then.
  ranking                   a listwise (rax softmax) ranker over each user's candidate tracks.
  retrieval                 two towers, full-catalogue softmax, Recall@10/50 through faiss.
  clusters_<heuristic>      nDCG@50 of nearest test users (Table 4).
User vectors: ``user_rep`` (z) and its ablations, ``avg_embeddings`` (play-weighted mean of the
history's [audio ‖ collaborative] track vectors), ``nmf``, ``lightfm``, ``curated`` (the
standardised features x_u themselves), and for new users ``onboarding_avg`` (mean vectors of the
onboarding artists; users who skipped onboarding get zeros and are scored only in the
not-onboarded row where it is not reported) and ``popularity`` (scored directly).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from data_pipelines.user_features import DAY_SECONDS
from data_pipelines.user_protocol import HOUR_SECONDS
from larp_jax.evaluation import bootstrap
from larp_jax.evaluation import transfer_heads
from larp_jax.recommenders import user_baselines


def window_positives(listening, users: np.ndarray, start: np.ndarray, length: int):
  """CSR-like (offsets int64 [n+1], tracks int32 [K]) of distinct tracks each user played in
  ``[start_u, start_u + length)``, plus the window's plays (user, track) as the negative pool."""
  offsets, tracks, pool_u, pool_t = [0], [], [], []
  for i, u in enumerate(users):
    a, b = listening.user_offsets[u], listening.user_offsets[u + 1]
    times = listening.event_time[a:b]
    sel = (times >= start[i]) & (times < start[i] + length)
    played = listening.event_track[a:b][sel]
    distinct = np.unique(played)
    tracks.append(distinct)
    offsets.append(offsets[-1] + len(distinct))
    pool_u.append(np.full(len(played), i))
    pool_t.append(played)
  cat = lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt)
  return (
      np.asarray(offsets, np.int64),
      cat(tracks, np.int32),
      cat(pool_u, np.int64),
      cat(pool_t, np.int32),
  )


def pairs_with_negatives(
    offsets: np.ndarray,
    items: np.ndarray,
    pool: np.ndarray,
    num_items: int,
    rng: np.random.Generator,
    *,
    uniform: bool = False,
    attempts: int = 50,
):
  """Positive pairs (local user i, item) and as many negatives, each drawn from ``pool`` (a
  multiset: popularity-matched) or uniformly, rejecting the user's own positives.

  Returns ``(user int64 [P], item int32 [P], label float32 [P], dropped int)``.
  """
  counts = np.diff(offsets)
  pos_user = np.repeat(np.arange(len(counts)), counts)
  keys = set((pos_user.astype(np.int64) * num_items + items).tolist())
  neg_user = pos_user.copy()
  neg_item = np.full(len(pos_user), -1, np.int64)
  todo = np.arange(len(pos_user))
  for _ in range(attempts):
    if not len(todo):
      break
    draw = (
        rng.integers(0, num_items, len(todo))
        if uniform or not len(pool)
        else pool[rng.integers(0, len(pool), len(todo))]
    )
    ok = np.array([int(u) * num_items + int(d) not in keys for u, d in zip(neg_user[todo], draw)])
    neg_item[todo[ok]] = draw[ok]
    todo = todo[~ok]
  keep = neg_item >= 0
  user = np.concatenate([pos_user, neg_user[keep]])
  item = np.concatenate([items, neg_item[keep]]).astype(np.int32)
  label = np.concatenate([np.ones(len(pos_user)), np.zeros(int(keep.sum()))]).astype(np.float32)
  return user, item, label, int((~keep).sum())


def history_matrix(listening, users: np.ndarray, before: np.ndarray) -> sp.csr_matrix:
  """float32 [len(users), M] play counts of each user before its time."""
  rows, cols = [], []
  for i, u in enumerate(users):
    a, b = listening.user_offsets[u], listening.user_offsets[u + 1]
    sel = listening.event_time[a:b] < before[i]
    cols.append(listening.event_track[a:b][sel])
    rows.append(np.full(int(sel.sum()), i))
  rows = np.concatenate(rows) if rows else np.zeros(0, np.int64)
  cols = np.concatenate(cols) if cols else np.zeros(0, np.int64)
  return sp.csr_matrix(
      (np.ones(len(rows), np.float32), (rows, cols)), shape=(len(users), listening.num_tracks)
  )


class Context:
  """Arrays shared by the tasks: item features, user vectors of every kind, cohorts."""

  def __init__(self, config, prepared, vectors):
    self.config, self.prepared = config, prepared
    listening, protocol, spaces = prepared.listening, prepared.protocol, prepared.spaces
    self.listening, self.protocol = listening, protocol
    self.rng = np.random.default_rng(int(config.seed) + 101)
    items = np.concatenate([spaces.audio, spaces.collab], 1).astype(np.float64)
    mean, std = items.mean(0), items.std(0) + 1e-6
    self.track_features = ((items - mean) / std).astype(np.float32)
    artists = np.concatenate([spaces.artist_audio, spaces.artist_collab], 1)
    self.artist_features = ((artists - mean) / std).astype(np.float32)
    train = protocol.users(split=0)
    x = prepared.features.astype(np.float64)
    curated = (x - x[train].mean(0)) / np.where(x[train].std(0) < 1e-6, 1.0, x[train].std(0))
    self.vectors: dict[str, np.ndarray] = dict(vectors)
    self.vectors["curated"] = curated.astype(np.float32)
    self.history = history_matrix(listening, np.arange(listening.num_users), protocol.snapshot_time)
    self.vectors["avg_embeddings"] = self._average(self.history)

  def _average(self, history: sp.csr_matrix) -> np.ndarray:
    out, _ = user_baselines.average_vectors(
        history.indptr, history.indices, history.data, self.track_features
    )
    return np.nan_to_num(out)

  def cohort(self, name: str, split: int) -> np.ndarray:
    return self.protocol.users(cohort=name, split=split)


def pair_comparison(ctx, models, train_users, test_users, windows, length, items_of, feats):
  """Fits ``models`` on train users' pairs and scores test users' pairs.

  Returns (scores {model: [P]}, test pairs (global user, item, label)).
  """
  uniform = ctx.config.transfer.negatives == "uniform"
  num_items = len(feats)
  sets = {}
  for key, users in (("train", train_users), ("test", test_users)):
    offsets, items, _, pool_t = items_of(users, windows[key], length)
    user, item, label, _ = pairs_with_negatives(
        offsets, items, pool_t, num_items, ctx.rng, uniform=uniform
    )
    sets[key] = (users[user], item, label)
  train = transfer_heads.PairSet(*[np.asarray(a) for a in sets["train"]])
  test = transfer_heads.PairSet(*[np.asarray(a) for a in sets["test"]])
  user_vectors = {m: ctx.vectors[m] for m in models}
  t = ctx.config.transfer
  scores = transfer_heads.ensemble_pair_probabilities(
      user_vectors,
      feats,
      train,
      test,
      seeds=[int(ctx.config.seed) + k for k in range(int(t.head_seeds))],
      hidden=int(t.hidden),
      steps=int(t.steps),
      learning_rate=float(t.learning_rate),
      batch_size=int(t.batch_size),
  )
  return scores, test


def add_pair_metrics(out, task, scores, pairs, mask=None, reps: int = 300):
  """Accuracy and AUC of every model, and for ``user_rep`` the paired-bootstrap interval (over
  test users) of its AUC gain over each other model: ``<task>/user_rep_vs_<model>/auc_diff``,
  ``..._low``, ``..._high``."""
  keep = np.ones(len(pairs.label), bool) if mask is None else np.asarray(mask)
  labels, users = pairs.label[keep], pairs.user[keep]
  if len(np.unique(labels)) < 2:
    return
  for model, s in scores.items():
    m = transfer_heads.pair_metrics(s[keep], labels)
    out[f"{task}/{model}/accuracy"] = float(m["accuracy"])
    out[f"{task}/{model}/auc"] = float(m["auc"])
  if "user_rep" not in scores:
    return
  for model, s in scores.items():
    if model == "user_rep" or model.startswith("user_rep_without_"):
      continue
    ci = bootstrap.paired_bootstrap_auc(users, labels, scores["user_rep"][keep], s[keep], reps=reps)
    for name in ("diff", "low", "high"):
      suffix = "" if name == "diff" else f"_{name}"
      out[f"{task}/user_rep_vs_{model}/auc_diff{suffix}"] = ci[name]


def future_listening(config: Any, prepared, vectors: dict[str, np.ndarray]):
  """Tables 1-2: ``(results {<task>/<model>/<metric>: value}, Context, established models)``."""
  ctx = Context(config, prepared, vectors)
  listening, protocol = ctx.listening, ctx.protocol
  t = protocol.cut_time
  out: dict[str, float] = {}
  ablations = [m for m in vectors if m.startswith("user_rep_without_")]
  established = ["user_rep", "avg_embeddings", "curated", *ablations]
  est_train, est_test = ctx.cohort("established", 0), ctx.cohort("established", 2)
  if len(est_train) and len(est_test):
    ctx.vectors.update(_factor_baselines(ctx))
    established += ["nmf", "lightfm"]

    def tracks_of(users, start, length):
      return window_positives(listening, users, start, length)

    start = {"train": np.full(len(est_train), t), "test": np.full(len(est_test), t)}
    week = int(config.split.future_days) * DAY_SECONDS
    scores, test = pair_comparison(
        ctx, established, est_train, est_test, start, week, tracks_of, ctx.track_features
    )
    add_pair_metrics(out, "future_7d", scores, test)
    seen = np.asarray(ctx.history[test.user, test.item]).ravel() > 0
    add_pair_metrics(out, "future_7d_new_tracks", scores, test, ~seen)
  new_train, new_test = ctx.cohort("new", 0), ctx.cohort("new", 2)
  if len(new_train) and len(new_test):
    out.update(_new_user_tasks(ctx, new_train, new_test, ablations))
  return out, ctx, established


def _factor_baselines(ctx) -> dict[str, np.ndarray]:
  """NMF and LightFM user vectors from pre-T plays (users without history get zero rows)."""
  b = ctx.config.baselines
  seed = int(ctx.config.seed)
  nmf = user_baselines.nmf_user_vectors(
      ctx.history, n_components=int(b.nmf_components), seed=seed, max_iter=int(b.nmf_max_iter)
  )
  spec = ctx.prepared.spec
  static_cols = _block_columns(spec, "static")
  static = sp.csr_matrix(ctx.prepared.features[:, static_cols] > 0, dtype=np.float32)
  users = sp.hstack([sp.identity(ctx.listening.num_users, format="csr"), static]).tocsr()
  artist = ctx.listening.track_artist
  artist_onehot = sp.csr_matrix(
      (
          np.ones(int((artist >= 0).sum()), np.float32),
          (np.flatnonzero(artist >= 0), artist[artist >= 0]),
      ),
      shape=(ctx.listening.num_tracks, ctx.listening.num_artists),
  )
  items = sp.hstack([sp.identity(ctx.listening.num_tracks, format="csr"), artist_onehot]).tocsr()
  lightfm = user_baselines.lightfm_user_vectors(
      (ctx.history > 0).astype(np.float32),
      users,
      items,
      no_components=int(b.lightfm_components),
      loss=b.lightfm_loss,
      epochs=int(b.lightfm_epochs),
      seed=seed,
  )
  return {"nmf": nmf, "lightfm": lightfm}


def _block_columns(spec, name: str) -> np.ndarray:
  start = 0
  for block, width in spec.blocks():
    if block == name:
      return np.arange(start, start + width)
    start += width
  raise KeyError(name)


def _new_user_tasks(ctx, new_train, new_test, ablations) -> dict[str, float]:
  listening, protocol = ctx.listening, ctx.protocol
  out: dict[str, float] = {}
  l = listening
  onboarding = np.zeros((l.num_users, ctx.artist_features.shape[1]), np.float32)
  if l.onboarding_time is not None:
    avg, has = user_baselines.average_vectors(
        l.onboarding_artist_offsets, l.onboarding_artists, None, ctx.artist_features
    )
    onboarding[has] = avg[has]
  ctx.vectors["onboarding_avg"] = onboarding
  models = ["user_rep", "curated", "onboarding_avg", *ablations]
  hours = int(ctx.config.split.new_user_hours) * HOUR_SECONDS
  start = {"train": protocol.snapshot_time[new_train], "test": protocol.snapshot_time[new_test]}
  scores, test = pair_comparison(
      ctx,
      models,
      new_train,
      new_test,
      start,
      hours,
      lambda users, s, n: window_positives(l, users, s, n),
      ctx.track_features,
  )
  # Popularity heuristic: a track's share of the last week's pre-T plays among training users
  # of the same country and age bucket, scored directly.
  group = _demographic_group(ctx)
  train_mask = np.zeros(l.num_users, bool)
  train_mask[protocol.users(split=0)] = True
  recent = (
      (l.event_time < protocol.cut_time)
      & (l.event_time >= protocol.cut_time - 7 * DAY_SECONDS)
      & train_mask[l.event_user]
  )
  share = user_baselines.demographic_popularity(
      np.where(train_mask, group, -1),
      l.event_user[recent],
      l.event_track[recent],
      num_groups=int(group.max()) + 1,
      num_tracks=l.num_tracks,
  )
  scores["popularity"] = share[group[test.user], test.item]
  onboarded = protocol.onboarded[test.user]
  for flag, task in ((True, "future_4h_onboarded"), (False, "future_4h_not_onboarded")):
    chosen = {m: s for m, s in scores.items() if flag or m != "onboarding_avg"}
    add_pair_metrics(out, task, chosen, test, onboarded == flag)
  return out


def _demographic_group(ctx) -> np.ndarray:
  l = ctx.listening
  edges = np.asarray(ctx.config.features.age_edges)
  bucket = np.where(
      l.user_age >= 0, np.searchsorted(edges, l.user_age, side="right"), len(edges) + 1
  )
  return (l.user_country + 1) * (len(edges) + 2) + bucket
