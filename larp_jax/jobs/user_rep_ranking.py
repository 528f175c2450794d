"""Paper 001's other downstream uses (Sec. 4.1): artist preference (follow), listwise item
ranking and two-tower candidate generation, on frozen user vectors (see ``user_rep_tasks``)."""

from __future__ import annotations

import numpy as np

from data_pipelines.user_features import DAY_SECONDS
from data_pipelines.user_protocol import HOUR_SECONDS
from larp_jax.evaluation import transfer_heads
from larp_jax.evaluation import transfer_retrieval
from larp_jax.jobs import user_rep_tasks


def _follow_windows(listening, users, start, length):
  """Like ``window_positives`` for follows: distinct artists followed in the window, excluding
  artists the user already followed before it; the pool = every follow in the window."""
  offsets, artists, pool = [0], [], []
  order = np.argsort(listening.follow_user, kind="stable")
  fu = listening.follow_user[order]
  bounds = np.searchsorted(fu, np.arange(listening.num_users + 1))
  for i, u in enumerate(users):
    rows = order[bounds[u] : bounds[u + 1]]
    times, who = listening.follow_time[rows], listening.follow_artist[rows]
    sel = (times >= start[i]) & (times < start[i] + length)
    distinct = np.setdiff1d(np.unique(who[sel]), who[times < start[i]])
    artists.append(distinct)
    offsets.append(offsets[-1] + len(distinct))
    pool.append(who[sel])
  cat = lambda xs: np.concatenate(xs).astype(np.int32) if xs else np.zeros(0, np.int32)
  return np.asarray(offsets, np.int64), cat(artists), None, cat(pool)


def artist_follow(ctx, models) -> dict[str, float]:
  """Table 3's downstream model: will the user follow this artist in [T, T + 30 d)?"""
  l, p = ctx.listening, ctx.protocol
  out: dict[str, float] = {}
  if not l.has("follows"):
    print("user_rep: follows.tsv absent: artist_follow task off.")
    return out
  train, test = ctx.cohort("established", 0), ctx.cohort("established", 2)
  start = {"train": np.full(len(train), p.cut_time), "test": np.full(len(test), p.cut_time)}
  length = int(ctx.config.split.follow_days) * DAY_SECONDS
  scores, pairs = user_rep_tasks.pair_comparison(
      ctx,
      models,
      train,
      test,
      start,
      length,
      lambda u, s, n: _follow_windows(l, u, s, n),
      ctx.artist_features,
  )
  user_rep_tasks.add_pair_metrics(out, "artist_follow", scores, pairs)
  return out


def _lists(ctx, users, start, length, num_candidates):
  """Each user's candidate list: up to half positives (future plays), the rest negatives drawn
  like the pair tasks'. Returns a ListSet over global user indices (users without positives
  dropped)."""
  offsets, items, _, pool = user_rep_tasks.window_positives(ctx.listening, users, start, length)
  m = ctx.listening.num_tracks
  cand = np.zeros((len(users), num_candidates), np.int32)
  labels = np.zeros((len(users), num_candidates), np.float32)
  mask = np.zeros((len(users), num_candidates), bool)
  keep = np.zeros(len(users), bool)
  for i in range(len(users)):
    pos = items[offsets[i] : offsets[i + 1]]
    if not len(pos):
      continue
    pos = ctx.rng.permutation(pos)[: num_candidates // 2]
    negatives = []
    for _ in range(20 * num_candidates):
      if len(negatives) == num_candidates - len(pos):
        break
      d = int(pool[ctx.rng.integers(len(pool))]) if len(pool) else int(ctx.rng.integers(m))
      if d not in pos and d not in negatives:
        negatives.append(d)
    row = np.concatenate([pos, np.asarray(negatives, np.int64)])
    order = ctx.rng.permutation(len(row))
    cand[i, : len(row)] = row[order]
    labels[i, : len(row)] = np.r_[np.ones(len(pos)), np.zeros(len(negatives))][order]
    mask[i, : len(row)] = True
    keep[i] = True
  return transfer_heads.ListSet(users[keep].astype(np.int32), cand[keep], labels[keep], mask[keep])


def ranking(ctx, models) -> dict[str, float]:
  """Listwise ranking of each established test user's candidates (NDCG@10, MRR)."""
  t = ctx.config.transfer
  p = ctx.protocol
  week = int(ctx.config.split.future_days) * DAY_SECONDS
  c = int(t.ranking_candidates)
  sets = {}
  for key, split in (("train", 0), ("test", 2)):
    users = ctx.cohort("established", split)
    sets[key] = _lists(ctx, users, np.full(len(users), p.cut_time), week, c)
  if not len(sets["train"].user) or not len(sets["test"].user):
    return {}
  vectors = {m: ctx.vectors[m] for m in models}
  rankers = transfer_heads.fit_listwise_rankers(
      vectors,
      ctx.track_features,
      sets["train"],
      hidden=int(t.hidden),
      steps=int(t.steps),
      learning_rate=float(t.learning_rate),
      batch_size=64,
      seed=int(ctx.config.seed),
  )
  scores = transfer_heads.score_lists(rankers, vectors, ctx.track_features, sets["test"])
  out = {}
  for model, s in scores.items():
    metrics = transfer_heads.list_metrics(s, sets["test"].labels, sets["test"].mask, ks=(10,))
    for name, value in metrics.items():
      if name.startswith(("ndcg", "mrr")):
        out[f"ranking/{model}/{name}"] = float(value)
  return out


def retrieval(ctx, models_established, models_new) -> dict[str, float]:
  """Two-tower candidate generation; Recall@K over the whole catalogue, established and new
  users separately (``retrieval/<model>/<cohort>_recall@K``)."""
  t = ctx.config.transfer
  p = ctx.protocol
  out: dict[str, float] = {}
  cohorts = (
      ("established", models_established, int(ctx.config.split.future_days) * DAY_SECONDS),
      ("new", models_new, int(ctx.config.split.new_user_hours) * HOUR_SECONDS),
  )
  for cohort, models, length in cohorts:
    train, test = ctx.cohort(cohort, 0), ctx.cohort(cohort, 2)
    if not len(train) or not len(test):
      continue
    offsets, items, _, _ = user_rep_tasks.window_positives(
        ctx.listening, train, p.snapshot_time[train], length
    )
    if not len(items):
      continue
    user = train[np.repeat(np.arange(len(train)), np.diff(offsets))]
    pairs = transfer_heads.PairSet(user.astype(np.int32), items, np.ones(len(items), np.float32))
    vectors = {m: ctx.vectors[m] for m in models}
    towers = transfer_retrieval.fit_two_towers(
        vectors,
        ctx.track_features,
        pairs,
        embed_dim=int(t.retrieval_dim),
        steps=int(t.steps),
        learning_rate=float(t.learning_rate),
        batch_size=int(t.batch_size),
        softmax=t.retrieval_softmax,
        seed=int(ctx.config.seed),
    )
    offsets, items, _, _ = user_rep_tasks.window_positives(
        ctx.listening, test, p.snapshot_time[test], length
    )
    relevant = [items[offsets[i] : offsets[i + 1]] for i in range(len(test))]
    recalls = transfer_retrieval.retrieval_recall(
        towers, vectors, ctx.track_features, test, relevant, ks=tuple(t.retrieval_ks)
    )
    for model, metrics in recalls.items():
      for name, value in metrics.items():
        if name.startswith("recall"):
          out[f"retrieval/{model}/{cohort}_{name}"] = float(value)
  return out


def follow_ranking_retrieval(ctx, established_models, ablations) -> dict[str, float]:
  out = artist_follow(ctx, established_models)
  out.update(ranking(ctx, established_models))
  out.update(retrieval(ctx, established_models, ["user_rep", "curated", *ablations]))
  return out
