"""LARP Tables 3 and 2 on the test split (cold start), plots (Fig. 3 PCA, Fig. 5 validation
Recall@10 across stages) and the embedding export of the final model.

Table 3 scores every encoder with ItemKNN; Table 2 (``larp_table2``) trains every framework of
``config.recommenders.frameworks`` on every encoder's train-track embeddings.

Rows: Random; text-only BERT (the pretrained text encoder, mean-pooled, no LARP training);
audio-only HTS-AT (``config.model.audio_checkpoint`` when given, else the audio tower at its
random initialisation: no pretrained HTS-AT weights ship offline); CO-Playlist (Table 2's
baseline [1]: the best weights of the ``coplaylist`` run, its 256-d audio embeddings alone;
present when that run is in ``config.runs``); LARP-WTC / LARP-TTC / LARP-TPC w/o fusion /
LARP-TPC-fusion (best weights of each stage; a track is the mean of its audio and text
embeddings, Eq. 11).

results.json keys (every K of ``config.eval.ks``):
  '<row>/recall@K', '<row>/ndcg@K', '<row>/num_playlists'   Table 3 (ItemKNN) for every row above
  '<framework>/<row>/<metric>'    Table 2 (``larp_table2.flat_results``; also 'fit_seconds',
                                  'valid_recall@10')
  'report/encode_and_itemknn_s', 'report/table2_s'   seconds of the two report parts
  'report/encode_s/<row>'         seconds to embed a row's splits (text-only, audio-only,
                                  CO-Playlist)
  'train/<run>/seconds'           wall seconds of each run of ``config.runs`` (training_summary)
  'export/embedding_space_id'     the final model's export
e.g. 'CO-Playlist/recall@10' and 'dropoutnet/CO-Playlist/ndcg@10'.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from data_pipelines import grain_pipelines
from larp_jax.evaluation import continuation
from larp_jax.evaluation import batched
from larp_jax.jobs import larp_export, larp_setup, larp_table2
from larp_jax.models import bert, bert_convert, htsat, larp_encoder, layers
from larp_jax.recommenders import itemknn
from larp_jax.training import checkpoint

# Table 2's CO-Playlist baseline (row, run): its track embedding is the audio embedding alone (the
# run trains no text tower), where a LARP stage's is the mean of audio and text (Eq. 11).
COPLAYLIST_ROW = ("CO-Playlist", "coplaylist")
STAGE_ROWS = (
    ("LARP-WTC", "stage1"),
    ("LARP-TTC", "stage2"),
    ("LARP-TPC w/o fusion", "stage3_nofusion"),
    ("LARP-TPC-fusion", "stage3"),
)


def knn_metrics(features: np.ndarray, playlists: dict, ks: tuple[int, ...]) -> dict[str, float]:
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


def _text_only(config, dataset_dir: str, splits, batch_size: int) -> dict[str, np.ndarray]:
  text_cfg, params = bert_convert.load_pretrained(larp_setup.text_model_dir(config))
  encoder = bert.BertEncoder(text_cfg)

  @jax.jit
  def encode(ids, mask):
    hidden = encoder.apply({"params": params}, ids, mask)
    return layers.l2_normalize(bert.pool(hidden, mask, "mean"))

  return {
      split: batched.run_batches(
          lambda b: encode(b["input_ids"], b["attention_mask"]),
          larp_setup.track_batches(dataset_dir, split, batch_size),
      )
      for split in splits
  }


def _audio_only(config, dataset_dir: str, splits, batch_size: int) -> dict[str, np.ndarray]:
  cfg = larp_setup.model_config(config).audio
  model = htsat.HTSAT(cfg)
  variables = larp_setup.audio_only_variables(config)
  encode = jax.jit(lambda audio: model.apply(variables, audio)["embedding"])
  return {
      split: batched.run_batches(
          lambda b: encode(b["audio"]), larp_setup.track_batches(dataset_dir, split, batch_size)
      )
      for split in splits
  }


def stage_embeddings(config, workdir, dataset_dir, run: str, splits):
  """({split: (audio, text) float32 [N, 256]}, best path) of a run's best weights, or None."""
  run_dir = os.path.join(workdir, run)
  if not os.path.exists(os.path.join(run_dir, "best")):
    return None
  best = checkpoint.load_params(os.path.join(run_dir, "best"))
  encode = larp_setup.make_encoder(larp_encoder.LARP(larp_setup.model_config(config)))
  out = {
      split: larp_setup.encode_split(
          encode,
          best["params"],
          best["model_state"]["batch_stats"],
          dataset_dir,
          split,
          config.eval.batch_size,
      )
      for split in splits
  }
  return out, str(epath.Path(run_dir) / "best")


def coplaylist_embeddings(config, workdir, dataset_dir, splits) -> dict[str, np.ndarray] | None:
  """{split: float32 [N, 256]} audio embeddings of the CO-Playlist run's best weights (None when
  the run has not been trained)."""
  out = stage_embeddings(config, workdir, dataset_dir, COPLAYLIST_ROW[1], splits)
  if out is None:
    return None
  return {part: np.asarray(audio) for part, (audio, _) in out[0].items()}


def _plot_pca(
    path: str, variants: dict[str, np.ndarray], playlist_tracks: np.ndarray, title: str
) -> None:
  """Fig. 3 as the paper draws it: per model, a 2-D PCA of ALL test-track embeddings (the grey
  cloud) with one test playlist's tracks highlighted, and the playlist's mean (Eq. 12) starred."""
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  tracks = playlist_tracks[playlist_tracks >= 0]
  cols = len(variants)
  fig, axes = plt.subplots(1, cols, figsize=(3.2 * cols, 3.2))
  for ax, (name, emb) in zip(np.atleast_1d(axes), variants.items()):
    x = emb - emb.mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    proj = x @ vt[:2].T
    ax.scatter(proj[:, 0], proj[:, 1], s=4, c="lightgrey", label="all test tracks")
    ax.scatter(proj[tracks, 0], proj[tracks, 1], s=14, c="tab:blue", label="playlist tracks")
    centre = proj[tracks].mean(0)
    ax.scatter(centre[0], centre[1], marker="*", s=120, c="red", label="playlist (mean)")
    # Spread of the playlist relative to the cloud: mean distance to its centre / the cloud's.
    spread = float(
        np.linalg.norm(proj[tracks] - centre, axis=1).mean()
        / max(np.linalg.norm(proj - proj.mean(0), axis=1).mean(), 1e-9)
    )
    ax.set_title(f"{name}\nrelative spread {spread:.2f}", fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
  np.atleast_1d(axes)[0].legend(fontsize=6, loc="lower left")
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
  if ax.lines:  # a job without LARP stages (e.g. the CO-Playlist run alone) has no curve
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
  """Table 3 (ItemKNN) and Table 2 (every framework) on the test split; results.json, plots,
  export."""
  split = "test"
  ks = tuple(config.eval.ks)
  frameworks = tuple(config.recommenders.frameworks)
  selected = tuple(config.recommenders.get("encoders", ()))

  def splits_of(name):  # Table 2 encoders need train and valid embeddings too
    in_table2 = frameworks and (not selected or name in selected)
    return ("train", "valid", "test") if in_table2 else ("test",)

  timings: dict[str, float] = {}
  start = time.perf_counter()
  playlists = larp_setup.playlists_for_eval(dataset_dir, split)
  rows: dict[str, dict[str, float]] = {}
  encoders: dict[str, dict[str, np.ndarray]] = {}
  rows["Random"] = _random_metrics(playlists, config.seed, ks)
  dim = int(config.model.embed_dim)
  meta_pad = larp_setup.split_sizes(dataset_dir)
  encoders["Random"] = {
      part: larp_table2.random_embeddings(meta_pad[part], dim, config.seed + i)
      for i, part in enumerate(splits_of("Random"))
  }
  batch = config.eval.batch_size

  def timed(name, encode):  # one row's embeddings, with its encoding seconds
    begin = time.perf_counter()
    features = encode()
    if features is not None:
      encoders[name] = features
      timings[f"report/encode_s/{name}"] = time.perf_counter() - begin
    return features

  name = "text-only BERT"
  timed(name, lambda: _text_only(config, dataset_dir, splits_of(name), batch))
  name = "audio-only HTS-AT"
  timed(name, lambda: _audio_only(config, dataset_dir, splits_of(name), batch))
  name = COPLAYLIST_ROW[0]
  timed(name, lambda: coplaylist_embeddings(config, workdir, dataset_dir, splits_of(name)))
  final = None
  for name, run in STAGE_ROWS:
    out = stage_embeddings(config, workdir, dataset_dir, run, splits_of(name))
    if out is None:
      continue
    per_split, path = out
    encoders[name] = {
        part: np.asarray(continuation.track_embeddings(a, t)) for part, (a, t) in per_split.items()
    }
    final = (name, *per_split[split], path, per_split)
  for name, features in encoders.items():
    if name != "Random":
      rows[name] = knn_metrics(features[split], playlists, ks)
  timings["report/encode_and_itemknn_s"] = time.perf_counter() - start

  plots = os.path.join(workdir, "plots")
  os.makedirs(plots, exist_ok=True)
  # Fig. 3: a random test playlist (seeded), as the paper picks it.
  example = int(np.random.default_rng(config.seed).integers(len(playlists["tracks"])))
  _plot_pca(
      os.path.join(plots, "pca_test_playlist.png"),
      {name: features[split] for name, features in encoders.items() if name != "Random"},
      playlists["tracks"][example],
      f"Test playlist {example}: tracks per model (PCA, Fig. 3)",
  )
  _plot_validation(os.path.join(plots, "validation_recall_stages.png"), workdir)

  results = {f"{name}/{k}": v for name, metrics in rows.items() for k, v in metrics.items()}
  table2 = {}
  if frameworks:
    start = time.perf_counter()
    pairs = larp_table2.train_pairs(grain_pipelines.load_train_playlists(dataset_dir))
    eval_playlists = {
        "valid": larp_setup.playlists_for_eval(dataset_dir, "valid"),
        "test": playlists,
    }
    chosen = {name: f for name, f in encoders.items() if "train" in f}  # the Table 2 encoders
    table2 = larp_table2.table2(chosen, pairs, eval_playlists, config)
    results.update(larp_table2.flat_results(table2))
    timings["report/table2_s"] = time.perf_counter() - start
  results.update(timings)
  summary_path = os.path.join(workdir, "training_summary.json")
  if os.path.exists(summary_path):
    with open(summary_path) as f:
      for run, record in json.load(f).items():
        if "seconds" in record:
          results[f"train/{run}/seconds"] = float(record["seconds"])
  if final is not None:
    name, audio, text, path, final_splits = final
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
    if set(final_splits) == {"train", "valid", "test"}:  # the whole catalogue (downstream systems)
      parts = ("train", "valid", "test")
      larp_export.write_track_export(
          os.path.join(workdir, "export", "catalogue_embeddings.npz"),
          dataset_dir,
          parts,
          np.concatenate([final_splits[p][0] for p in parts]),
          np.concatenate([final_splits[p][1] for p in parts]),
          path,
          config,
          {"model": name, "split": "+".join(parts)},
      )
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(results, f, indent=1, sort_keys=True)
  table = format_table(rows, ks)
  text = "\nCold-start playlist continuation, test split (Table 3, ItemKNN):\n" + table
  if table2:
    text += (
        "\n\nTable 2 (each framework trained on each encoder's train-track embeddings, best "
        "validation epoch, test split):\n" + larp_table2.format_table2(table2, ks)
    )
  text += "\n" + "  ".join(f"{k} {v:.1f}" for k, v in timings.items())
  print(text)
  with open(os.path.join(workdir, "results_table.txt"), "w") as f:
    f.write(text + "\n")
  return {"rows": rows, "table2": table2, "results": results}
