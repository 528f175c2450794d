"""LARP Table 3 on the test split (cold start, ItemKNN), plots (Fig. 3 PCA, Fig. 5 validation
Recall@10 across stages) and the embedding export of the final model.

Rows: Random; text-only BERT (the pretrained text encoder, mean-pooled, no LARP training);
audio-only HTS-AT (the audio tower at its initialisation: no pretrained HTS-AT weights ship
offline, so this row is a randomly initialised HTS-AT unless config.model.audio_checkpoint is
given); LARP-WTC / LARP-TTC / LARP-TPC w/o fusion / LARP-TPC-fusion (best weights of each stage).
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from data_pipelines import grain_pipelines
from larp_jax.evaluation import continuation
from larp_jax.jobs import larp_export, larp_setup
from larp_jax.models import bert, bert_convert, layers
from larp_jax.recommenders import itemknn
from larp_jax.evaluation import batched

STAGE_ROWS = (
    ("LARP-WTC", "stage1"),
    ("LARP-TTC", "stage2"),
    ("LARP-TPC w/o fusion", "stage3_nofusion"),
    ("LARP-TPC-fusion", "stage3"),
)


def _knn_metrics(features: np.ndarray, playlists: dict, ks: tuple[int, ...]) -> dict[str, float]:
  knn = itemknn.fit(None, None)
  features = jnp.asarray(features, jnp.float32)
  return continuation.evaluate_continuation(
      lambda ids, mask: itemknn.score(knn, ids, features, seed_mask=mask),
      playlists["seeds"],
      playlists["ground_truth"],
      playlists["num_tracks"],
      ks=ks,
  )


def _random_metrics(playlists: dict, seed: int, ks: tuple[int, ...]) -> dict[str, float]:
  n = playlists["num_tracks"]

  def score(ids, mask):
    key = jax.random.fold_in(jax.random.PRNGKey(seed), jnp.sum(ids))
    return jax.random.uniform(key, (ids.shape[0], n))

  return continuation.evaluate_continuation(
      score, playlists["seeds"], playlists["ground_truth"], n, ks=ks
  )


def _text_only(config, dataset_dir: str, split: str, batch_size: int) -> np.ndarray:
  text_cfg, params = bert_convert.load_pretrained(larp_setup.text_model_dir(config))
  encoder = bert.BertEncoder(text_cfg)

  @jax.jit
  def encode(ids, mask):
    hidden = encoder.apply({"params": params}, ids, mask)
    return layers.l2_normalize(bert.pool(hidden, mask, "mean"))

  return batched.run_batches(
      lambda b: encode(b["input_ids"], b["attention_mask"]),
      larp_setup.track_batches(dataset_dir, split, batch_size),
  )


def _audio_only(config, dataset_dir: str, split: str, batch_size: int) -> np.ndarray:
  from larp_jax.models import htsat  # pylint: disable=g-import-not-at-top

  cfg = larp_setup.model_config(config).audio
  model = htsat.HTSAT(cfg)
  variables = model.init(jax.random.PRNGKey(config.seed), jnp.zeros((1, cfg.clip_samples)))
  encode = jax.jit(lambda audio: model.apply(variables, audio)["embedding"])
  return batched.run_batches(
      lambda b: encode(b["audio"]), larp_setup.track_batches(dataset_dir, split, batch_size)
  )


def _stage_embeddings(config, workdir, dataset_dir, run: str, split: str):
  run_dir = os.path.join(workdir, run)
  if not os.path.exists(os.path.join(run_dir, "best")):
    return None
  return (
      larp_setup.encode_with_best(config, run_dir, dataset_dir, split),
      str(epath.Path(run_dir) / "best"),
  )


def _plot_pca(
    path: str, variants: dict[str, np.ndarray], playlist_tracks: np.ndarray, title: str
) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  tracks = playlist_tracks[playlist_tracks >= 0]
  cols = len(variants)
  fig, axes = plt.subplots(1, cols, figsize=(3.2 * cols, 3.2))
  for ax, (name, emb) in zip(np.atleast_1d(axes), variants.items()):
    x = emb[tracks] - emb[tracks].mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    proj = x @ vt[:2].T
    ax.scatter(proj[:, 0], proj[:, 1], s=14, label="tracks")
    ax.scatter(0.0, 0.0, marker="*", s=120, c="red", label="playlist centroid")
    spread = float(
        np.linalg.norm(
            x / np.maximum(np.linalg.norm(emb[tracks], axis=1, keepdims=True), 1e-9), axis=1
        ).mean()
    )
    ax.set_title(f"{name}\nspread {spread:.2f}", fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
  fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def _plot_validation(path: str, workdir: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, ax = plt.subplots(figsize=(6, 3.2))
  offset = 0
  for run in ("stage1", "stage2", "stage3"):
    history_path = os.path.join(workdir, run, "eval_history.json")
    if not os.path.exists(history_path):
      continue
    history = json.load(open(history_path))
    steps = [offset + h["step"] for h in history]
    ax.plot(steps, [h["recall@10"] for h in history], marker="o", label=run)
    offset = steps[-1] if steps else offset
  ax.set_xlabel("training step (stages concatenated)")
  ax.set_ylabel("validation Recall@10")
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def format_table(rows: dict[str, dict[str, float]], ks: tuple[int, ...]) -> str:
  """The printed Table 3: one row per model, Recall/NDCG at each cut-off."""
  keys = [f"{m}@{k}" for k in ks for m in ("recall", "ndcg")]
  header = f"{'model':<22}" + "".join(f"{k:>11}" for k in keys)
  lines = [header, "-" * len(header)]
  for name, metrics in rows.items():
    lines.append(f"{name:<22}" + "".join(f"{metrics[k]:>11.4f}" for k in keys))
  return "\n".join(lines)


def evaluate_and_report(config: Any, workdir: str, dataset_dir: str) -> dict[str, Any]:
  """Evaluates every Table 3 row on the test split; writes results.json, plots, export."""
  split = "test"
  ks = tuple(config.report.ks)
  playlists = larp_setup.playlists_for_eval(dataset_dir, split)
  rows: dict[str, dict[str, float]] = {}
  embeddings: dict[str, np.ndarray] = {}
  rows["Random"] = _random_metrics(playlists, config.seed, ks)
  embeddings["text-only BERT"] = _text_only(config, dataset_dir, split, config.eval_batch_size)
  rows["text-only BERT"] = _knn_metrics(embeddings["text-only BERT"], playlists, ks)
  embeddings["audio-only HTS-AT"] = _audio_only(config, dataset_dir, split, config.eval_batch_size)
  rows["audio-only HTS-AT"] = _knn_metrics(embeddings["audio-only HTS-AT"], playlists, ks)
  final = None
  for name, run in STAGE_ROWS:
    out = _stage_embeddings(config, workdir, dataset_dir, run, split)
    if out is None:
      continue
    (audio, text), path = out
    embeddings[name] = np.asarray(continuation.track_embeddings(audio, text))
    rows[name] = _knn_metrics(embeddings[name], playlists, ks)
    final = (name, audio, text, path)

  plots = os.path.join(workdir, "plots")
  os.makedirs(plots, exist_ok=True)
  lengths = (playlists["tracks"] >= 0).sum(1)
  example = int(np.argmax(lengths))
  _plot_pca(
      os.path.join(plots, "pca_test_playlist.png"),
      embeddings,
      playlists["tracks"][example],
      f"Test playlist {example}: tracks per model (PCA, Fig. 3)",
  )
  _plot_validation(os.path.join(plots, "validation_recall_stages.png"), workdir)

  results = {f"{name}/{k}": v for name, metrics in rows.items() for k, v in metrics.items()}
  if final is not None:
    name, audio, text, path = final
    manifest = larp_export.write_track_export(
        os.path.join(workdir, "export", f"{split}_embeddings.npz"),
        dataset_dir,
        split,
        audio,
        text,
        path,
        config,
        {"model": name, "split": split},
    )
    results["export/embedding_space_id"] = manifest["embedding_space_id"]
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(results, f, indent=1, sort_keys=True)
  table = format_table(rows, ks)
  print("\nCold-start playlist continuation, test split (ItemKNN):\n" + table)
  with open(os.path.join(workdir, "results_table.txt"), "w") as f:
    f.write(table + "\n")
  return {"rows": rows, "results": results}
