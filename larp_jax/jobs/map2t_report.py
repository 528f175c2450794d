"""MAP-2T evaluation and report: metrics per cohort, baselines, Table 1, ablations, fusion seeds.

results.json keys are flat ``<cohort>/<model>/<metric>@<k>``: cohorts ``all``, ``music_podcast``
(U_m∩p test users), ``music_only`` (U_m\\p), ``warm``; metrics ``precision``, ``recall``, ``f1``,
``hit_rate``, ``first_hit_rate`` (relevant = the user's earliest listen in the window), ``coverage``
and ``gini`` (of the top-k lists over the cohort). Plus ``counts/<cohort>``, ``alpha/<baseline>``,
and ``<cohort>/gated_vs_concat/{diff,diff_lo,diff_hi,relative_pct}@3`` (paired bootstrap over test
users of per-user P@3 averaged over the fusion seeds).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from larp_jax import export as export_lib
from larp_jax.evaluation import metrics as metrics_lib
from larp_jax.models import map2t
from larp_jax.recommenders import collopop

NAMES = ("precision", "recall", "f1", "hit_rate")
COHORTS = ("all", "music_podcast", "music_only", "warm")


def retrieve_excluding(
    user: np.ndarray, items: np.ndarray, history: list[np.ndarray], k: int
) -> np.ndarray:
  """int64 [R, k] top-k items by inner product of (unit) vectors, books already engaged with
  removed: search K + |history| (as a faiss index would), then filter."""
  scores = user @ items.T
  out = np.zeros((len(user), k), np.int64)
  for r, h in enumerate(history):
    depth = min(k + len(h), items.shape[0])
    cand = np.argpartition(-scores[r], depth - 1)[:depth]
    cand = cand[np.lexsort((cand, -scores[r, cand]))]
    out[r] = cand[~np.isin(cand, h)][:k]
  return out


def score_fn(model: map2t.MAP2T):
  """jitted ``(params, user_inputs, items) -> (cosine scores [R, N], u [R, d] unit, v [N, d] unit)``."""

  @jax.jit
  def score(params, users, items):
    u, v, _ = model.apply({"params": params}, users, items)
    un = u * jax.lax.rsqrt(jnp.maximum(jnp.sum(u * u, -1, keepdims=True), 1e-12))
    vn = v * jax.lax.rsqrt(jnp.maximum(jnp.sum(v * v, -1, keepdims=True), 1e-12))
    return un @ vn.T, un, vn

  return score


def evaluate_scores(
    scores: np.ndarray, relevant: np.ndarray, exclude: np.ndarray, first: np.ndarray, ks
) -> dict[str, np.ndarray]:
  """Per-user metrics {'<metric>@k': float32 [R]} and the top-k lists ('top@k': [R, k])."""
  candidates = ~exclude
  out = {
      k: np.asarray(v)
      for k, v in metrics_lib.ranking_metrics(scores, relevant, ks, NAMES, candidates).items()
  }
  first_rel = np.zeros_like(relevant)
  first_rel[np.arange(len(first)), np.maximum(first, 0)] = first >= 0
  for k, v in metrics_lib.ranking_metrics(scores, first_rel, ks, ("hit_rate",), candidates).items():
    out[f"first_{k}"] = np.asarray(v)
  masked = np.where(candidates, scores, -np.inf)
  for k in ks:
    out[f"top@{k}"] = np.argsort(-masked, axis=1, kind="stable")[:, :k]
  return out


def gini(counts: np.ndarray) -> float:
  """Gini coefficient of non-negative counts (0 = even exposure)."""
  x = np.sort(np.asarray(counts, np.float64))
  n = len(x)
  if n == 0 or x.sum() == 0:
    return 0.0
  return float((2 * np.arange(1, n + 1) - n - 1).dot(x) / (n * x.sum()))


def summarise(per_user: dict[str, np.ndarray], num_items: int, ks) -> dict[str, float]:
  out = {}
  for key, v in per_user.items():
    if not key.startswith("top@"):
      out[key] = float(np.nanmean(v)) if len(v) else float("nan")
  for k in ks:
    top = per_user[f"top@{k}"]
    counts = np.bincount(top.ravel(), minlength=num_items)
    out[f"coverage@{k}"] = float((counts > 0).mean())
    out[f"gini@{k}"] = gini(counts)
  return out


def cohorts(prepared) -> dict[str, np.ndarray]:
  pr = prepared.protocol
  test = pr.test_users
  return {
      "all": test,
      "music_podcast": test[pr.has_podcasts[test]],
      "music_only": test[~pr.has_podcasts[test]],
      "warm": pr.warm_users,
  }


def _targets(prepared, users):
  pr = prepared.protocol
  relevant = np.asarray(pr.relevant[users].todense() > 0)
  exclude = np.asarray(pr.history[users].todense() > 0)
  return relevant, exclude, pr.first_listen[users]


def _model_scores(trained, prepared, users, imputed_p=False):
  params, model = trained
  feats = {m: prepared.user_inputs[m][users] for m in model.config.modalities}
  if imputed_p and "podcast" in feats:
    feats["podcast"] = np.tile(prepared.podcast_centroid, (len(users), 1))
  scores, u, v = score_fn(model)(params, feats, prepared.items)
  return np.asarray(scores), np.asarray(u), np.asarray(v)


def choose_alpha(config, prepared, tops, coocc) -> float:
  """ColloPop's α by validation recall@5 (validation users' pre-T books; ties: smaller α)."""
  users = prepared.protocol.validation_users
  relevant = np.asarray(prepared.protocol.history[users].todense() > 0)
  best, best_alpha = -1.0, float(config.baselines.alphas[0])
  for alpha in config.baselines.alphas:
    s = collopop.collopop_scores([tops[u] for u in users], coocc, prepared.popularity, float(alpha))
    value = (
        float(metrics_lib.mean_over_valid(metrics_lib.recall_at_k(s, relevant, 5)))
        if len(users)
        else 0.0
    )
    if value > best + 1e-12:
      best, best_alpha = value, float(alpha)
  return best_alpha


def baseline_scorers(config, prepared, results):
  pr = prepared.protocol
  train = pr.train_users
  history_train = pr.history[train]
  scorers = {
      "popularity": lambda users: collopop.popularity_scores(prepared.popularity, len(users))
  }
  for name, tops, count in (
      ("collopop_artist", prepared.artist_tops, len(prepared.listening.artist_ids)),
      ("collopop_podcast", prepared.show_tops, len(prepared.audio.shows)),
  ):
    coocc = collopop.cooccurrence([tops[u] for u in train], history_train, count)
    alpha = choose_alpha(config, prepared, tops, coocc)
    results[f"alpha/{name}"] = alpha
    scorers[name] = lambda users, t=tops, c=coocc, a=alpha: collopop.collopop_scores(
        [t[u] for u in users], c, prepared.popularity, a
    )
  if config.baselines.emcdr:
    music = prepared.user_inputs["music"]
    cache = {}

    def emcdr(users):  # fitted once, on training users; scores for every user
      if "all" not in cache:
        cache["all"] = collopop.emcdr_scores(
            music[train], history_train, music, seed=int(config.seed)
        )
      return cache["all"][users]

    scorers["emcdr"] = emcdr
  return scorers


def paired_bootstrap(a: np.ndarray, b: np.ndarray, num: int, seed: int) -> dict[str, float]:
  """Mean difference a - b over users with a 95% paired-bootstrap interval, and a/b - 1 in %."""
  rng = np.random.default_rng(seed)
  n = len(a)
  if n == 0:
    return {
        "diff": float("nan"),
        "diff_lo": float("nan"),
        "diff_hi": float("nan"),
        "relative_pct": float("nan"),
    }
  idx = rng.integers(0, n, (num, n))
  diffs = (a[idx] - b[idx]).mean(1)
  return {
      "diff": float((a - b).mean()),
      "diff_lo": float(np.percentile(diffs, 2.5)),
      "diff_hi": float(np.percentile(diffs, 97.5)),
      "relative_pct": float(100 * (a.mean() / max(b.mean(), 1e-12) - 1)),
  }


def print_table(results: dict[str, float], cohort: str, models, ks, title: str) -> None:
  print(
      f"\n{title} (cohort {cohort}, n={int(results.get(f'counts/{cohort}', 0))}): absolute "
      "[relative % over Popularity]"
  )
  header = f"{'model':24s} {'K':>2s} " + " ".join(f"{n:>17s}" for n in (*NAMES, "first_hit"))
  print(header)
  for model in models:
    for k in ks:
      cells = []
      for n in (*NAMES, "first_hit_rate"):
        v = results.get(f"{cohort}/{model}/{n}@{k}")
        base = results.get(f"{cohort}/popularity/{n}@{k}")
        if v is None:
          cells.append(f"{'-':>17s}")
          continue
        rel = f"{100 * (v / base - 1):+6.1f}%" if base else "   n/a"
        cells.append(f"{v:.4f} [{rel:>7s}]")
      print(f"{model:24s} {k:2d} " + " ".join(cells))


def report(config, workdir: str, prepared, trained: dict, seeds: dict) -> dict[str, Any]:
  """Scores every model on every cohort, prints the tables, writes results.json and exports."""
  started = time.time()
  ks = tuple(int(k) for k in config.eval.ks)
  results: dict[str, Any] = {}
  groups = cohorts(prepared)
  for name, users in groups.items():
    results[f"counts/{name}"] = len(users)
  for key, value in prepared.protocol.counts().items():
    results[f"counts/protocol/{key}"] = value
  scorers = baseline_scorers(config, prepared, results)
  per_user: dict[tuple[str, str], dict[str, np.ndarray]] = {}
  num_items = len(prepared.items)
  ab_models = {"map2t_music_ab", "map2t_podcast_ab", "map2t_podcast_ab_music"}
  for cohort, users in groups.items():
    if not len(users):
      continue
    relevant, exclude, first = _targets(prepared, users)
    models = {n: (lambda u, f=f: f(u)) for n, f in scorers.items()}
    for name, t in trained.items():
      if cohort == "warm" and name not in ab_models | {"map2t_full"}:
        continue
      models[name] = lambda u, t=t: _model_scores(t, prepared, u)[0]
      if name == "map2t_full":
        models["map2t_imputed_p"] = lambda u, t=t: _model_scores(t, prepared, u, imputed_p=True)[0]
    for model, fn in models.items():
      per = evaluate_scores(fn(users), relevant, exclude, first, ks)
      per_user[(cohort, model)] = per
      for key, value in summarise(per, num_items, ks).items():
        results[f"{cohort}/{model}/{key}"] = value
  # Gated vs concat over the fusion seeds: per-user P@3 averaged over seeds, paired bootstrap.
  if "map2t_full" in seeds and "map2t_concat" in seeds:
    for cohort in ("all", "music_podcast"):
      users = groups[cohort]
      if not len(users):
        continue
      relevant, exclude, first = _targets(prepared, users)
      mean_p = {}
      for name in ("map2t_full", "map2t_concat"):
        runs_p = [
            evaluate_scores(_model_scores(t, prepared, users)[0], relevant, exclude, first, ks)[
                "precision@3"
            ]
            for t in seeds[name]
        ]
        mean_p[name] = np.mean(runs_p, 0)
        results[f"{cohort}/{name}/precision@3_seed_mean"] = float(mean_p[name].mean())
      for key, value in paired_bootstrap(
          mean_p["map2t_full"], mean_p["map2t_concat"], int(config.eval.bootstrap), int(config.seed)
      ).items():
        results[f"{cohort}/gated_vs_concat/{key}@3"] = value
      results[f"{cohort}/gated_vs_concat/num_seeds"] = len(seeds["map2t_full"])
  _export(config, workdir, prepared, trained["map2t_full"])
  results["time/report_s"] = time.time() - started
  main = ["popularity", "collopop_artist", "map2t_imputed_p", "map2t_full"]
  print_table(results, "all", main + ["collopop_podcast", "emcdr"], ks, "Table 1")
  print_table(
      results,
      "music_podcast",
      ["popularity", "collopop_artist", "collopop_podcast", "map2t_full", "map2t_music_podcast"],
      (3,),
      "Figs 3-4",
  )
  ablation = [
      "map2t_music",
      "map2t_music_ab",
      "map2t_podcast",
      "map2t_podcast_ab",
      "map2t_podcast_ab_music",
      "map2t_full",
      "map2t_concat",
  ]
  for cohort in ("music_podcast", "all", "warm"):
    print_table(results, cohort, ["popularity"] + ablation, (3,), "Sec. 5.2 ablations")
  for cohort in ("all", "music_podcast"):
    if f"{cohort}/gated_vs_concat/diff@3" in results:
      r = {
          k.split("/")[-1]: v
          for k, v in results.items()
          if k.startswith(f"{cohort}/gated_vs_concat/")
      }
      print(
          f"gated vs concat P@3 on {cohort} over {r['num_seeds']} seeds: diff {r['diff@3']:+.4f} "
          f"[95% CI {r['diff_lo@3']:+.4f}, {r['diff_hi@3']:+.4f}], relative {r['relative_pct@3']:+.1f}%"
      )
  print("counts:", {k: v for k, v in results.items() if k.startswith("counts/")})
  print("alphas:", {k: v for k, v in results.items() if k.startswith("alpha/")})
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(results, f, indent=1, sort_keys=True)
  return results


def _export(config, workdir, prepared, trained) -> None:
  """User and item vectors of MAP-2T(full), L2-normalised, with batch ids and T."""
  users = np.arange(len(prepared.listening.user_ids))
  _, u, v = _model_scores(trained, prepared, users)
  t = prepared.protocol.cut_time
  bid = export_lib.batch_id(
      "map2t", arrays={"users": u, "items": v}, upstream=prepared.spaces, details={"cut_time": t}
  )
  extra = {"batch_id": bid, "upstream": prepared.spaces, "cut_time": t, "normalised": "l2"}
  export_dir = os.path.join(workdir, "export")
  export_lib.export_embeddings(
      os.path.join(export_dir, "map2t_users.npz"),
      prepared.listening.user_ids,
      {"user": u},
      checkpoint_path=workdir,
      config=config,
      extra=extra,
  )
  export_lib.export_embeddings(
      os.path.join(export_dir, "map2t_items.npz"),
      prepared.audio.books.book_id,
      {"item": v},
      checkpoint_path=workdir,
      config=config,
      extra=extra,
  )
