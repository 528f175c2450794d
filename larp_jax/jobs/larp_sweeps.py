"""LARP repeated over seeds (every table cell as mean +- std) and Fig. 4 (metrics against the
number J of seed tracks the TPC fusion sees in training).

``config.seeds = (s1, s2, ...)``: the whole job runs once per seed in ``workdir/seed_<s>`` (model,
queue, data-order and framework seeds; the dataset split, ``data.build.seed``, stays fixed so every
repeat sees the same cold-start split); ``workdir/results.json`` then holds, for every numeric key
of the per-seed results, its mean under the key and its standard deviation under '<key>/std'.

``config.eval.seed_sweep = (J1, J2, ...)``: after the job's runs, one stage-3 run per J
(``stage3_J<J>``, from stage 2's best weights, ``loss.num_truncate = J``), each scored on the
test split with ItemKNN; plotted to ``plots/fig4_seed_tracks.png`` and reported as
'fig4/J=<J>/<metric>'.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import ml_collections
import numpy as np

from larp_jax.evaluation import continuation
from larp_jax.jobs import larp_report, larp_setup
from larp_jax.training import runs


def over_seeds(
    config: Any, workdir: str, run_job: Callable[[Any, str], dict[str, Any]]
) -> dict[str, Any]:
  """Runs ``run_job`` once per seed of ``config.seeds``; writes and returns the mean/std."""
  per_seed = {}
  for seed in config.seeds:
    sub = runs.run_config(config, seed=int(seed), seeds=())
    sub.recommenders.seed = int(seed)
    out = run_job(sub, os.path.join(workdir, f"seed_{int(seed)}"))
    per_seed[int(seed)] = out.get("results", {})
  keys = sorted(set.intersection(*(set(r) for r in per_seed.values())) if per_seed else set())
  summary = {}
  for key in keys:
    values = [r[key] for r in per_seed.values()]
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
      summary[key] = float(np.mean(values))
      summary[f"{key}/std"] = float(np.std(values))
  summary["seeds"] = [int(s) for s in config.seeds]
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(summary, f, indent=1, sort_keys=True)
  rows = sorted({k.rsplit("/", 1)[0] for k in keys if k.count("/") == 1 and "@" in k})
  ks = tuple(config.eval.ks)
  lines = [f"Mean +- std over seeds {summary['seeds']} (Table 3 rows, ItemKNN):"]
  for row in rows:
    cells = [
        f"{summary[f'{row}/{m}@{k}']:.4f}+-{summary[f'{row}/{m}@{k}/std']:.4f}"
        for k in ks
        for m in ("recall", "ndcg")
        if f"{row}/{m}@{k}" in summary
    ]
    lines.append(f"{row:<22}" + "  ".join(cells))
  print("\n".join(lines))
  return {"results": summary, "per_seed": per_seed}


def seed_sweep(config: Any, workdir: str, dataset_dir: str, train_stage) -> dict[str, float]:
  """Fig. 4: trains ``stage3_J<J>`` for every J of ``config.eval.seed_sweep``; returns results."""
  ks = tuple(config.eval.ks)
  playlists = larp_setup.playlists_for_eval(dataset_dir, "test")
  metrics = {}
  for j in config.eval.seed_sweep:
    name = f"stage3_J{int(j)}"
    sub = runs.run_config(config, **{"loss.num_truncate": int(j)})
    sub.stages[name] = ml_collections.ConfigDict(config.stages.stage3.to_dict())
    train_stage(sub, workdir, dataset_dir, name)
    out = larp_report.stage_embeddings(sub, workdir, dataset_dir, name, ("test",))
    audio, text = out[0]["test"]
    features = np.asarray(continuation.track_embeddings(audio, text))
    metrics[int(j)] = larp_report.knn_metrics(features, playlists, ks)
  _plot(os.path.join(workdir, "plots", "fig4_seed_tracks.png"), metrics, ks)
  return {
      f"fig4/J={j}/{key}": float(value)
      for j, row in metrics.items()
      for key, value in row.items()
      if "@" in key
  }


def _plot(path: str, metrics: dict[int, dict[str, float]], ks) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  os.makedirs(os.path.dirname(path), exist_ok=True)
  js = sorted(metrics)
  fig, axes = plt.subplots(1, 2, figsize=(7, 3))
  for ax, metric in zip(axes, ("recall", "ndcg")):
    for k in ks:
      ax.plot(js, [metrics[j][f"{metric}@{k}"] for j in js], marker="o", label=f"@{k}")
    ax.set_xlabel("seed tracks J in TPC training")
    ax.set_ylabel(metric)
    ax.legend(fontsize=7)
  fig.suptitle("Fig. 4: sensitivity to J (test split, ItemKNN)", fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
