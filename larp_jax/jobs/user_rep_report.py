"""Paper 001's report: Tables 1-4 as printed (relative % over each baseline) next to the absolute
values, ablation deltas, ranking / retrieval rows, the cost comparison, Fig. 7 and results.json.

``results.json`` keys are flat: ``<task>/<model>/<metric>`` (tasks ``future_7d``,
``future_7d_new_tracks``, ``future_4h_onboarded``, ``future_4h_not_onboarded``,
``artist_follow``, ``ranking``, ``retrieval``, ``clusters_<heuristic>``; models ``user_rep``,
``avg_embeddings``, ``nmf``, ``lightfm``, ``curated``, ``popularity``, ``onboarding_avg``,
``user_rep_without_<block>``), plus ``cost/...`` and ``meta/...``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from data_pipelines import user_protocol


def relative(results: dict[str, float], task: str, metric: str, baseline: str) -> float | None:
  """(z − baseline) / baseline in % for one task and metric; None when either is missing."""
  ours = results.get(f"{task}/user_rep/{metric}")
  base = results.get(f"{task}/{baseline}/{metric}")
  if ours is None or base is None or base == 0:
    return None
  return 100.0 * (ours - base) / base


def _fmt(value: float | None, pct: bool = False) -> str:
  if value is None:
    return "n/a"
  return f"{value:+.1f}%" if pct else f"{value:.4f}"


def _row(results, task, baseline, metrics, label) -> str:
  cells = []
  for m in metrics:
    rel = relative(results, task, m, baseline)
    ours, base = results.get(f"{task}/user_rep/{m}"), results.get(f"{task}/{baseline}/{m}")
    cells.append(f"{_fmt(rel, True):>8} ({_fmt(ours)} vs {_fmt(base)})")
  low = results.get(f"{task}/user_rep_vs_{baseline}/auc_diff_low")
  high = results.get(f"{task}/user_rep_vs_{baseline}/auc_diff_high")
  if low is not None:
    cells.append(f"ΔAUC 95% [{low:+.4f}, {high:+.4f}]")
  return f"  {label:<44}" + "  ".join(cells)


# The demo claims: (task, baseline) pairs where z should have the higher AUC.
CLAIMS = (
    ("future_7d", "avg_embeddings"),
    ("future_7d", "nmf"),
    ("future_7d", "lightfm"),
    ("future_7d", "curated"),
    ("artist_follow", "curated"),
    ("future_4h_onboarded", "popularity"),
    ("future_4h_not_onboarded", "popularity"),
    ("future_4h_onboarded", "onboarding_avg"),
)


def claims(results: dict[str, float]) -> dict[str, str]:
  """Each claim's status: 'holds' (the interval of the AUC gain is above 0), 'within noise'
  (positive gain, interval includes 0), 'fails' (no gain), 'n/a' (not computed)."""
  out = {}
  for task, base in CLAIMS:
    diff = results.get(f"{task}/user_rep_vs_{base}/auc_diff")
    low = results.get(f"{task}/user_rep_vs_{base}/auc_diff_low")
    if diff is None:
      status = "n/a"
    elif low is not None and low > 0:
      status = "holds"
    else:
      status = "within noise" if diff > 0 else "fails"
    out[f"{task}/user_rep>{base}/auc"] = status
  return out


def tables(results: dict[str, float], k: int) -> str:
  """The human tables (strings), in the paper's layout."""
  lines = ["Table 1: listening in the next 7 days, established users (accuracy, AUC)"]
  for base in ("nmf", "lightfm", "avg_embeddings", "curated"):
    lines.append(_row(results, "future_7d", base, ("accuracy", "auc"), f"vs {base}"))
  for base in ("avg_embeddings", "curated"):
    lines.append(
        _row(results, "future_7d_new_tracks", base, ("accuracy", "auc"), f"vs {base} (new tracks)")
    )
  lines.append("Table 2: listening in the 4 hours after registration (accuracy, AUC)")
  for task, status in (
      ("future_4h_onboarded", "completed"),
      ("future_4h_not_onboarded", "not completed"),
  ):
    lines.append(_row(results, task, "popularity", ("accuracy", "auc"), f"vs popularity, {status}"))
  lines.append(
      _row(
          results,
          "future_4h_onboarded",
          "onboarding_avg",
          ("accuracy", "auc"),
          "vs onboarding avg, completed",
      )
  )
  lines.append("Table 3: downstream artist-preference (follow) model (accuracy, AUC)")
  lines.append(
      _row(
          results,
          "artist_follow",
          "curated",
          ("accuracy", "auc"),
          "transfer with z vs curated features",
      )
  )
  lines.append(f"Table 4: finding similar users (nDCG@{k}) vs average embeddings")
  for h in ("favourite_artist", "artist_country", "onboarding"):
    base = "onboarding_avg" if h == "onboarding" else "avg_embeddings"
    lines.append(
        _row(results, f"clusters_{h}", base, (f"ndcg@{k}",), f"same {h.replace('_', ' ')}")
    )
  lines.append("Other downstream uses: listwise ranking (NDCG@10), two-tower retrieval (Recall@K)")
  for base in ("avg_embeddings", "nmf", "lightfm", "curated"):
    lines.append(_row(results, "ranking", base, ("ndcg@10",), f"ranking vs {base}"))
  for cohort in ("established", "new"):
    for base in ("avg_embeddings", "curated"):
      metrics = (f"{cohort}_recall@10", f"{cohort}_recall@50")
      lines.append(_row(results, "retrieval", base, metrics, f"retrieval ({cohort}) vs {base}"))
  lines.append("Ablations (change of z's metric when a feature group is removed)")
  for block in ("onboarding", "modality", "static"):
    model = f"user_rep_without_{block}"
    for task, metric in (
        ("future_7d", "auc"),
        ("future_4h_onboarded", "auc"),
        ("clusters_favourite_artist", f"ndcg@{k}"),
        ("clusters_artist_country", f"ndcg@{k}"),
        ("clusters_onboarding", f"ndcg@{k}"),
    ):
      full, ablated = results.get(f"{task}/user_rep/{metric}"), results.get(
          f"{task}/{model}/{metric}"
      )
      if full is None or ablated is None or full == 0:
        continue
      lines.append(
          f"  without {block:<11} {task:<28} {metric:<8} {100 * (ablated - full) / full:+.1f}%"
      )
  if "cost/curated/bytes_per_user" in results:
    lines.append(
        "Cost per user (Fig. 8 stand-in, %d downstream models)" % results["cost/downstream_models"]
    )
    for name in ("bytes_per_user", "pipeline_us_per_user"):
      c, z = results[f"cost/curated/{name}"], results[f"cost/user_rep/{name}"]
      lines.append(
          f"  {name:<22} curated {c:10.1f}   shared z {z:10.1f}   ({c / max(z, 1e-9):.1f}x)"
      )
  return "\n".join(lines)


def plot_projection(path: str, projections: dict[str, np.ndarray]) -> None:
  """Fig. 7: 2-D projection of z, coloured by favourite artist (the 10 commonest; rest grey)."""
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  xy, labels = projections["z"], projections["labels"]
  top = [
      v
      for v, _ in sorted(
          zip(*np.unique(labels[labels >= 0], return_counts=True)), key=lambda p: -p[1]
      )
  ][:10]
  fig, ax = plt.subplots(figsize=(6, 5))
  other = ~np.isin(labels, top)
  ax.scatter(xy[other, 0], xy[other, 1], s=6, c="lightgrey", label="other")
  for i, value in enumerate(top):
    sel = labels == value
    ax.scatter(xy[sel, 0], xy[sel, 1], s=8, color=plt.cm.tab10(i), label=f"artist {value}")
  ax.set_title("User representations z of test users, coloured by favourite artist")
  ax.legend(fontsize=6, markerscale=2, loc="best")
  fig.tight_layout()
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fig.savefig(path, dpi=120)
  plt.close(fig)


def report(
    config: Any, workdir: str, prepared, results, manifest, projections, seconds=None
) -> dict[str, Any]:
  """Prints the tables, writes results.json and plots; returns the flat results."""
  protocol = prepared.protocol
  flat = {k: float(v) for k, v in sorted(results.items())}
  flat["meta/cut_time"] = float(protocol.cut_time)
  for key, count in user_protocol.summary(protocol).items():
    flat[f"meta/users/{key}"] = float(count)
  flat["meta/feature_dim"] = float(prepared.spec.dim)
  for stage, value in (seconds or {}).items():
    flat[f"meta/seconds/{stage}"] = float(value)
  out = {
      **flat,
      **{f"meta/claims/{k}": v for k, v in claims(results).items()},
      "meta/cut_time_iso": user_protocol.format_time(protocol.cut_time),
      "meta/batch_id": (manifest or {}).get("batch_id", ""),
      "meta/upstream": dict(prepared.spaces.batch_ids),
  }
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(out, f, indent=1, sort_keys=True)
  if "z" in projections:
    plot_projection(os.path.join(workdir, "plots", "z_projection.png"), projections)
  print(
      f"\nuser representations (paper 001), T = {out['meta/cut_time_iso']}, batch {out['meta/batch_id']}"
  )
  print(tables(results, int(config.clusters.k)))
  print("Demo claims (z's AUC gain, paired bootstrap over test users)")
  for name, status in claims(results).items():
    print(f"  {name:<50} {status}")
  return out
