"""LARP Table 2: every encoder under every cold-start framework (ItemKNN, DropoutNet, CLCRec).

For each encoder (random vectors, text-only BERT, audio-only HTS-AT, CO-Playlist, the LARP stages)
the job hands this module its track embeddings of the three splits. Each framework of
``config.recommenders.frameworks`` is fitted on the training-track embeddings and the training
playlists (as (playlist, track) pairs), validated on the validation split (Recall@10 after every
epoch; the best epoch is kept) and scored on the test split, with the protocol of
``larp_jax.evaluation.continuation`` (seeds masked, K = ``config.eval.ks``).

Encoders the paper also lists but whose weights cannot be had offline (Jukebox, MULE, CLAP-PT) are
named in the printed note; so is CO-Playlist (the job's ``coplaylist`` run) when it is not in the
table.

Results: ``{framework: {encoder: {'recall@K', 'ndcg@K', ...}}}``; in results.json as
``'<framework>/<encoder>/<metric>@<K>'``, with '<framework>/<encoder>/fit_seconds' (training and
validation epochs), '.../cell_seconds' (the whole cell: fit and test scoring) and
'.../valid_recall@10'. The printed layout is the paper's (one block per framework, one row per
encoder, R@K and N@K for each K).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

from larp_jax.evaluation import continuation
from larp_jax.recommenders import clcrec, dropoutnet, itemknn

FRAMEWORK_NAMES = {"itemknn": "ItemKNN", "dropoutnet": "DropoutNet", "clcrec": "CLCRec"}
UNAVAILABLE = (
    "Jukebox, MULE and CLAP-PT need pretrained weights that cannot be had offline (none ships in "
    "a registry; see ../shared/reference/offline-weights-and-data.md)."
)
COPLAYLIST_MISSING = (
    "CO-Playlist (the audio tower trained on playlist co-occurrence pairs) is the job's "
    "'coplaylist' run: add it to config.runs (and config.recommenders.encoders when that is set)."
)


def train_pairs(playlists: Mapping[str, Any]) -> np.ndarray:
  """int64 [E, 2] (playlist row, train track) pairs of ``grain_pipelines.load_train_playlists``."""
  tracks, lengths = np.asarray(playlists["tracks"]), np.asarray(playlists["length"])
  valid = np.arange(tracks.shape[1])[None, :] < lengths[:, None]
  rows = np.broadcast_to(np.arange(tracks.shape[0])[:, None], tracks.shape)
  return np.stack([rows[valid], tracks[valid]], axis=1).astype(np.int64)


def random_embeddings(num_tracks: int, dim: int, seed: int) -> np.ndarray:
  """The random encoder: float32 [N, dim] unit vectors, one per track."""
  x = np.random.default_rng(seed).standard_normal((num_tracks, dim)).astype(np.float32)
  return x / np.linalg.norm(x, axis=1, keepdims=True)


def _evaluate(score_fn, playlists: Mapping[str, np.ndarray], ks) -> dict[str, float]:
  return continuation.evaluate_continuation(
      score_fn, playlists["seeds"], playlists["ground_truth"], playlists["num_tracks"], ks=ks
  )


def _framework_config(name: str, section: Any):
  fields = dict(section) if section is not None else {}
  if name == "dropoutnet":
    fields["hidden_dims"] = tuple(fields.get("hidden_dims", (512, 256, 256)))
    return dropoutnet.DropoutNetConfig(**fields)
  return clcrec.CLCRecConfig(**fields)


def fit_and_score(
    framework: str,
    features: Mapping[str, np.ndarray],
    pairs: np.ndarray,
    playlists: Mapping[str, Mapping[str, np.ndarray]],
    config: Any,
) -> dict[str, float]:
  """Fits one framework on one encoder's training embeddings; test metrics of its best epoch.

  Args:
    framework: 'itemknn' | 'dropoutnet' | 'clcrec'.
    features: {'train', 'valid', 'test'} float32 [N_split, D] track embeddings.
    pairs: int [E, 2] (training playlist, training track) pairs.
    playlists: {'valid', 'test'} from ``larp_setup.playlists_for_eval``.
    config: the job config (``recommenders``, ``eval.ks``).

  Returns:
    {'recall@K', 'ndcg@K', 'num_playlists', 'valid_recall@10', 'fit_seconds', 'cell_seconds'}.
  """
  ks = tuple(config.eval.ks)
  module = {"itemknn": itemknn, "dropoutnet": dropoutnet, "clcrec": clcrec}[framework]
  test = jnp.asarray(features["test"], jnp.float32)
  valid = jnp.asarray(features["valid"], jnp.float32)
  start = time.perf_counter()
  if framework == "itemknn":
    model = itemknn.fit(None, None)
  else:
    k10 = (min(10, max(ks)),)

    def validate(candidate):
      return _evaluate(
          lambda ids, mask: module.score(candidate, ids, valid, mask), playlists["valid"], k10
      )[f"recall@{k10[0]}"]

    model = module.fit(
        pairs,
        features["train"],
        _framework_config(framework, config.recommenders.get(framework)),
        seed=int(config.recommenders.seed),
        validate=validate,
    )
  seconds = time.perf_counter() - start
  metrics = _evaluate(lambda ids, mask: module.score(model, ids, test, mask), playlists["test"], ks)
  valid_metrics = _evaluate(
      lambda ids, mask: module.score(model, ids, valid, mask), playlists["valid"], (10,)
  )
  metrics["valid_recall@10"] = valid_metrics["recall@10"]
  metrics["fit_seconds"] = seconds
  metrics["cell_seconds"] = time.perf_counter() - start
  return metrics


def table2(
    encoders: Mapping[str, Mapping[str, np.ndarray]],
    pairs: np.ndarray,
    playlists: Mapping[str, Mapping[str, np.ndarray]],
    config: Any,
) -> dict[str, dict[str, dict[str, float]]]:
  """``{framework: {encoder: metrics}}`` for every framework of config.recommenders.frameworks."""
  out: dict[str, dict[str, dict[str, float]]] = {}
  for framework in config.recommenders.frameworks:
    if framework not in FRAMEWORK_NAMES:
      raise ValueError(
          f"config.recommenders.frameworks names {framework!r}; known: {sorted(FRAMEWORK_NAMES)}."
      )
    out[framework] = {
        name: fit_and_score(framework, features, pairs, playlists, config)
        for name, features in encoders.items()
    }
  return out


def format_table2(results: Mapping[str, Mapping[str, Mapping[str, float]]], ks) -> str:
  """The paper's Table 2 layout: a block per framework, a row per encoder, R@K / N@K per K."""
  keys = [
      (f"{m}@{k}", f"{'R' if m == 'recall' else 'N'}@{k}") for k in ks for m in ("recall", "ndcg")
  ]
  header = f"{'Rec. Model':<12}{'Encoder':<22}" + "".join(f"{label:>9}" for _, label in keys)
  lines = [header, "-" * len(header)]
  for framework, rows in results.items():
    best = {key: max(r[key] for r in rows.values()) for key, _ in keys}
    for i, (encoder, metrics) in enumerate(rows.items()):
      name = FRAMEWORK_NAMES[framework] if i == 0 else ""
      cells = "".join(
          f"{metrics[key]:>8.4f}{'*' if metrics[key] == best[key] else ' '}" for key, _ in keys
      )
      lines.append(f"{name:<12}{encoder:<22}" + cells)
    lines.append("")
  note = UNAVAILABLE
  if not any("CO-Playlist" in rows for rows in results.values()):
    note += " " + COPLAYLIST_MISSING
  lines.append("* best in its framework block.  " + note)
  return "\n".join(lines)


def flat_results(results: Mapping[str, Mapping[str, Mapping[str, float]]]) -> dict[str, float]:
  """results.json keys '<framework>/<encoder>/<metric>'."""
  return {
      f"{framework}/{encoder}/{key}": float(value)
      for framework, rows in results.items()
      for encoder, metrics in rows.items()
      for key, value in metrics.items()
  }
