"""LARP Table 4: models trained on one dataset scored on another dataset's test split (MPD -> LFM).

``config.eval.target`` names the target (``kind``, ``manual_dir``, ``data_dir``); its dataset is
built with the split settings of ``config.eval.target.build`` (by default the paper's LFM rules:
evaluation playlists of more than 30 and fewer than 100 tracks) and the model's own audio and text
settings (sample rate, clip length, caption template, token length and tokenizer from
``config.data.build`` / the text model), so the trained towers see inputs as in training. Every
stage run of the job with best weights is encoded on the target's test tracks and scored with
ItemKNN (Eq. 11-12, 26); the table is printed in the paper's layout and written to
``workdir/results_cross_<kind>.json``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from data_pipelines import playlist_datasets
from larp_jax.evaluation import continuation
from larp_jax.jobs import larp_report, larp_setup

# Settings that must be the model's own (the towers were trained on them).
MODEL_INPUT_FIELDS = ("sample_rate", "clip_seconds", "caption_template", "max_text_length")


def target_dataset(config: Any, workdir: str) -> str:
  """Builds (or reuses) the target dataset of ``config.eval.target``; returns its directory."""
  target = config.eval.target
  if not target.kind:
    raise ValueError("config.eval.target.kind is empty: name the dataset to evaluate on.")
  if not target.manual_dir or not os.path.isdir(target.manual_dir):
    raise ValueError(f"config.eval.target.manual_dir={target.manual_dir!r} does not exist.")
  build = dict(target.build)
  for field in MODEL_INPUT_FIELDS:
    build[field] = config.data.build[field]
  build["tokenizer_dir"] = larp_setup.text_model_dir(config)
  data_dir = target.data_dir or os.path.join(workdir, f"data_{target.kind}")
  return playlist_datasets.build_dataset(target.kind, target.manual_dir, data_dir, build)


def evaluate_cross(config: Any, workdir: str) -> dict[str, Any]:
  """Table 4 rows: {model: metrics} of every finished stage of ``workdir`` on the target."""
  dataset_dir = target_dataset(config, workdir)
  sizes = larp_setup.check_eval_ks(config, dataset_dir, ("test",))  # only its test split is used
  ks = tuple(config.eval.ks)
  playlists = larp_setup.playlists_for_eval(dataset_dir, "test")
  rows = {}
  for name, run in larp_report.STAGE_ROWS:
    out = larp_report.stage_embeddings(config, workdir, dataset_dir, run, ("test",))
    if out is None:
      continue
    audio, text = out[0]["test"]
    features = np.asarray(continuation.track_embeddings(audio, text))
    rows[name] = larp_report.knn_metrics(features, playlists, ks)
  if not rows:
    raise ValueError(f"{workdir} holds no trained stage (run experiments.train_larp first).")
  source = config.data.kind.upper()
  target = config.eval.target.kind.upper()
  keys = [f"{m}@{k}" for k in ks for m in ("recall", "ndcg")]
  labels = [f"{'R' if k.startswith('recall') else 'N'}@{k.split('@')[1]}" for k in keys]
  header = f"{'Encoder':<22}{'Training Dataset':<18}" + "".join(f"{x:>9}" for x in labels)
  lines = [f"Table 4: trained on {source}, tested on {target} ({sizes['test']})", header]
  lines.append("-" * len(header))
  for name, metrics in rows.items():
    lines.append(f"{name:<22}{source:<18}" + "".join(f"{metrics[k]:>9.4f}" for k in keys))
  lines.append(
      "MULE and CLAP-FT (trained on the target) need weights that cannot be had offline; "
      "train this job on the target dataset for its in-domain rows."
  )
  text = "\n".join(lines)
  print(text)
  results = {f"{name}/{k}": float(v) for name, metrics in rows.items() for k, v in metrics.items()}
  with open(os.path.join(workdir, f"results_cross_{config.eval.target.kind}.json"), "w") as f:
    json.dump(results, f, indent=1, sort_keys=True)
  return {"rows": rows, "results": results, "dataset_dir": dataset_dir}
