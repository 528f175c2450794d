"""LARP end to end: data -> the runs of ``config.runs`` -> Tables 3 and 2 -> export.

The runs are defined in ``config.stages`` (configs/larp.py): stage 1 (WTC), stage 2 (TTC),
stage 3 (TPC, with and without fusion), each with its length in epochs and where it starts from
(``init_from``: stage 1 from the pretrained text model and, with ``config.model.audio_checkpoint``,
the pretrained audio tower; later stages from the previous stage's best weights, queues and
tables). Stage ``'coplaylist'`` is Table 2's CO-Playlist baseline (ref. [1]): the same model and
state, the stage-2 co-occurring pairs, only the audio tower and its projection trained
(``larp_steps.make_coplaylist_step``), started from the audio-only row's HTS-AT and validated on
its audio embeddings alone. Each run goes through ``runs.train_run`` in its own directory
(``workdir/<run>``), so a killed job resumes inside the run it was in and a finished run is not
re-run. Each run stops early on validation Recall@10 and keeps its best weights; its wall seconds
go to ``training_summary.json`` (and results.json, 'train/<run>/seconds').

Right after the dataset is built, ``config.eval.ks`` is checked against the evaluation splits
(before any training step). The report (``larp_report``) gives Table 3 (ItemKNN) and Table 2
(``config.recommenders.frameworks`` trained on each encoder's embeddings); ``config.eval.seed_sweep``
adds Fig. 4 and ``config.seeds`` repeats the job per seed with mean +- std (``larp_sweeps``);
``experiments/evaluate_continuation.py`` gives Table 4 (``larp_cross``).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from data_pipelines import grain_pipelines, playlist_audio
from larp_jax.evaluation import continuation
from larp_jax.jobs import larp_report, larp_setup, larp_steps, larp_sweeps
from larp_jax.losses import coplaylist as coplaylist_losses
from larp_jax.models import larp_encoder
from larp_jax.recommenders import itemknn
from larp_jax.training import mesh as mesh_lib
from larp_jax.training import runs

COPLAYLIST = "coplaylist"  # the stage of the CO-Playlist baseline run
STAGE_DATASETS = {
    1: grain_pipelines.wtc_dataset,
    2: grain_pipelines.ttc_dataset,
    3: grain_pipelines.tpc_dataset,
    COPLAYLIST: grain_pipelines.ttc_dataset,  # co-occurring training pairs, as TTC
}


def _dummy_inputs(cfg: larp_encoder.LARPConfig, max_text_length: int):
  return (
      jnp.zeros((2, cfg.audio.clip_samples), jnp.float32),
      jnp.zeros((2, max_text_length), jnp.int32),
      jnp.ones((2, max_text_length), jnp.int32),
      jnp.zeros((2, 3, cfg.embed_dim), jnp.float32),
      jnp.ones((2, 3), bool),
  )


def make_init_fn(
    config: Any,
    model: larp_encoder.LARP,
    num_train_tracks: int,
    max_text_length: int,
    group_width: int | None = None,
):
  """``rng -> (params, model_state)``: fresh towers, queues and lookup tables (boxed).

  ``group_width``: playlists per track in the relation tables (default config.loss.group_width,
  which must then be > 0; the job passes ``relation_width``).
  """
  cfg = model.config

  def init_fn(rng):
    init_rng, queue_rng = jax.random.split(rng)
    variables = model.init(init_rng, *_dummy_inputs(cfg, max_text_length))
    params = variables["params"]
    model_state = larp_steps.init_model_state(
        queue_rng,
        params,
        variables["batch_stats"],
        queue_size=config.loss.queue_size,
        embed_dim=cfg.embed_dim,
        group_width=int(group_width or config.loss.group_width),
        num_train_tracks=num_train_tracks,
    )
    return params, model_state

  return init_fn


def make_validation(
    model: larp_encoder.LARP,
    dataset_dir: str,
    eval_batch_size: int,
    ks: tuple[int, ...],
    audio_only: bool = False,
):
  """``state -> {'recall@K', 'ndcg@K'}`` on the validation playlists (ItemKNN) with the tracks'
  mean audio-text embeddings (Eq. 11), or their audio embeddings when ``audio_only``."""
  encode = larp_setup.make_encoder(model)
  playlists = larp_setup.playlists_for_eval(dataset_dir, "valid")

  def evaluate(state):
    audio, text = larp_setup.encode_split(
        encode,
        state.params,
        state.model_state["batch_stats"],
        dataset_dir,
        "valid",
        eval_batch_size,
    )
    features = audio if audio_only else continuation.track_embeddings(audio, text)
    knn = itemknn.fit(None, None)
    return continuation.evaluate_continuation(
        lambda ids, mask: itemknn.score(knn, ids, features, seed_mask=mask),
        playlists["seeds"],
        playlists["ground_truth"],
        playlists["num_tracks"],
        ks=ks,
    )

  return evaluate


def stage_dataset(config: Any, dataset_dir: str, stage: int):
  """The grain dataset of a stage (tracks for 1, track pairs for 2, pairs + playlists for 3)."""
  kwargs = dict(
      global_batch_size=mesh_lib.host_batch_size(config.batch_size) * jax.process_count(),
      seed=config.seed,
  )
  if stage == 3:
    kwargs["num_truncate"] = config.loss.num_truncate
  return STAGE_DATASETS[stage](dataset_dir, **kwargs)


def stage_steps(config: Any, dataset_dir: str, stage: int, epochs: float) -> tuple[int, int]:
  """(steps per epoch, run length) of a stage on this dataset."""
  per_epoch = grain_pipelines.steps_per_epoch(
      STAGE_DATASETS[stage], dataset_dir, global_batch_size=config.batch_size
  )
  return max(1, per_epoch), max(1, int(round(epochs * per_epoch)))


def relation_width(config: Any, dataset_dir: str) -> tuple[int, int, int]:
  """(G, memberships dropped by the cap, all memberships) of the co-occurrence/incidence tables:
  G = ``config.loss.group_width``, or with 0 the most training playlists any track is in (the
  paper's O and R exactly)."""
  num_train = int(playlist_audio.load_metadata(dataset_dir)["pad_id"]["train"])
  playlists = grain_pipelines.load_train_playlists(dataset_dir)
  valid = playlists["tracks"] < num_train
  counts = np.bincount(playlists["tracks"][valid], minlength=num_train)
  cap = int(config.loss.group_width)
  width = cap if cap > 0 else max(1, int(counts.max(initial=1)))
  dropped = int(np.maximum(counts - width, 0).sum())
  return width, dropped, int(counts.sum())


def track_groups(config: Any, dataset_dir: str, width: int | None = None) -> dict[str, Any]:
  """The step's extra input: ``{'track_groups': int32 [N_train, G]}`` training-playlist ids."""
  num_train = int(playlist_audio.load_metadata(dataset_dir)["pad_id"]["train"])
  playlists = grain_pipelines.load_train_playlists(dataset_dir)
  width = width or relation_width(config, dataset_dir)[0]
  return {
      "track_groups": larp_steps.track_playlist_groups(
          playlists["tracks"], playlists["length"], num_train, width
      )
  }


def stage_loss_config(config: Any, steps_per_epoch: int) -> Any:
  """``config.loss`` with ``alpha_ramp_epochs`` turned into ``alpha_ramp_steps`` for a run."""
  loss = ml_collections.ConfigDict(config.loss.to_dict())
  if float(loss.get("alpha_ramp_epochs", 0.0) or 0.0) > 0:
    loss.alpha_ramp_steps = max(1, int(round(loss.alpha_ramp_epochs * steps_per_epoch)))
  return loss


def make_state(config: Any, mesh, dataset_dir: str, num_train_steps: int, fusion: bool = True):
  """``(model, state, shardings)`` of a fresh stage-1 run (pretrained text tower loaded), built
  exactly as ``train_stage`` builds it; for tests and benchmarks."""
  meta = playlist_audio.load_metadata(dataset_dir)
  model = larp_encoder.LARP(larp_setup.model_config(config, fusion=fusion))
  run_config = runs.run_config(config, init_from=larp_setup.run_init_from(config, "stage1"))
  # A set cap needs no data (benchmarks pass a metadata-only directory); 0 reads the playlists.
  width = int(config.loss.group_width) or relation_width(config, dataset_dir)[0]
  state, shardings = runs.create_state(
      run_config,
      mesh,
      make_init_fn(
          config,
          model,
          int(meta["pad_id"]["train"]),
          int(meta["config"]["max_text_length"]),
          width,
      ),
      num_train_steps,
      init_sources=larp_setup.init_sources(config),
  )
  return model, state, shardings


def stage_step(model: larp_encoder.LARP, stage: int | str, loss_config: Any):
  """The pure train step of a stage: LARP's (1-3) or the CO-Playlist baseline's."""
  if stage == COPLAYLIST:
    return larp_steps.make_coplaylist_step(model, loss_config)
  return larp_steps.make_train_step(model, stage, loss_config)


def train_stage(config: Any, workdir: str, dataset_dir: str, name: str) -> runs.TrainResult:
  """Trains (or resumes, or skips if finished) the run ``name`` in ``workdir/name``."""
  spec = config.stages[name]
  meta = playlist_audio.load_metadata(dataset_dir)
  num_train = int(meta["pad_id"]["train"])
  steps_per_epoch, total_steps = stage_steps(config, dataset_dir, spec.stage, spec.epochs)
  overrides = {
      "loop.num_train_steps": total_steps,
      "loop.eval_every_steps": max(1, int(steps_per_epoch * config.eval.every_epochs)),
      "init_from": larp_setup.run_init_from(config, name),
  }
  if spec.stage == COPLAYLIST:  # the audio tower and its projection alone
    rules = tuple(config.optimizer.get("rules", None) or ())
    overrides["optimizer.rules"] = (larp_steps.COPLAYLIST_FROZEN_RULE,) + rules
  run_config = runs.run_config(config, **overrides)
  model = larp_encoder.LARP(larp_setup.model_config(config, fusion=spec.fusion))
  width = relation_width(config, dataset_dir)[0]
  loss_config = stage_loss_config(config, steps_per_epoch)

  return runs.train_run(
      run_config,
      os.path.join(workdir, name),
      init_fn=make_init_fn(config, model, num_train, int(meta["config"]["max_text_length"]), width),
      make_step=lambda context: stage_step(model, spec.stage, loss_config),
      train_data=lambda context: grain_pipelines.make_iterator(
          stage_dataset(config, dataset_dir, spec.stage)
      ),
      evaluate=lambda context: make_validation(
          model,
          dataset_dir,
          config.eval.batch_size,
          tuple(config.eval.ks),
          audio_only=spec.stage == COPLAYLIST,
      ),
      init_sources=larp_setup.init_sources(config),
      input_specs=larp_steps.INPUT_SPECS,
      extra_inputs=lambda context: track_groups(config, dataset_dir, width),
      hparams={"stage": spec.stage, "fusion": spec.fusion, "lr": config.optimizer.learning_rate},
      description=name,
  )


def check_config(config: Any) -> None:
  """Fails before any work on settings that cannot fit the mesh or each other."""
  larp_setup.text_model_dir(config)  # a preset without a text model fails here, naming the key
  mesh = mesh_lib.make_mesh(config.mesh)
  mesh_lib.check_batch_size(config.batch_size, mesh)
  data_parallel = mesh_lib.data_parallel_size(mesh)
  if config.loss.queue_size % data_parallel:
    raise ValueError(
        f"config.loss.queue_size={config.loss.queue_size} is not divisible by the "
        f"data-parallel size {data_parallel}."
    )
  if config.loss.queue_size < 2 * config.batch_size:
    raise ValueError(
        f"config.loss.queue_size={config.loss.queue_size} must hold one ego batch "
        f"(2 x config.batch_size = {2 * config.batch_size})."
    )
  runs.run_names(config.runs, config.stages, "runs")
  for name in config.runs:
    if config.stages[name].stage not in STAGE_DATASETS:
      raise ValueError(
          f"config.stages.{name}.stage={config.stages[name].stage!r}: expected 1-3 or "
          f"{COPLAYLIST!r}."
      )
    if config.stages[name].stage == COPLAYLIST:
      positives = config.loss.coplaylist_positives
      if positives not in coplaylist_losses.COPLAYLIST_POSITIVES:
        raise ValueError(
            f"config.loss.coplaylist_positives={positives!r}: expected one of "
            f"{coplaylist_losses.COPLAYLIST_POSITIVES}."
        )
      if not config.loss.coplaylist_temperature > 0:
        raise ValueError(
            f"config.loss.coplaylist_temperature={config.loss.coplaylist_temperature}: must be > 0."
        )
  if config.loss.group_width < 0:
    raise ValueError(f"config.loss.group_width={config.loss.group_width}: expected >= 0.")
  ks = tuple(config.eval.ks)
  if not ks or min(ks) < 1:
    raise ValueError(f"config.eval.ks={ks}: give positive cut-offs, e.g. (10, 20, 40).")
  if config.model.audio_checkpoint and not os.path.exists(config.model.audio_checkpoint):
    raise ValueError(
        f"config.model.audio_checkpoint={config.model.audio_checkpoint!r} does not exist."
    )


def train_and_evaluate(config: Any, workdir: str) -> dict[str, Any]:
  """The whole LARP job: data, the configured runs, Tables 3 and 2, Fig. 4 sweep, export (once
  per seed of ``config.seeds`` when given, then mean +- std). Returns results."""
  check_config(config)
  if config.get("seeds", ()):
    return larp_sweeps.over_seeds(config, workdir, train_and_evaluate)
  os.makedirs(workdir, exist_ok=True)
  with larp_setup.compilation_cache(config, workdir):
    return _train_and_evaluate(config, workdir)


def _train_and_evaluate(config: Any, workdir: str) -> dict[str, Any]:
  """``train_and_evaluate`` for one seed, inside the job's compilation cache."""
  dataset_dir = larp_setup.prepare_dataset(config, workdir)
  logging.info("LARP dataset: %s", dataset_dir)
  sizes = larp_setup.check_eval_ks(config, dataset_dir)  # before any training step
  width, dropped, total = relation_width(config, dataset_dir)
  print(
      f"LARP dataset {dataset_dir}: evaluation splits {sizes}; relation tables keep {width} "
      f"training playlists per track ({dropped} of {total} memberships dropped by "
      "config.loss.group_width)."
  )
  summary_path = os.path.join(workdir, "training_summary.json")
  previous = {}
  if os.path.exists(summary_path):
    with open(summary_path) as f:
      previous = json.load(f)
  results = {}
  for name in config.runs:
    start = time.perf_counter()
    result = train_stage(config, workdir, dataset_dir, name)
    results[name] = {"stop_reason": result.stop_reason, "best": result.best}
    # Wall seconds of the run; a run finished before (state None: skipped) keeps its old figure.
    trained = result.state is not None
    seconds = time.perf_counter() - start if trained else previous.get(name, {}).get("seconds")
    if seconds is not None:
      results[name]["seconds"] = float(seconds)
    if result.stop_reason == "preempted":
      print(f"{name}: preempted; re-run with the same --workdir to resume.")
      return results
  if jax.process_index() == 0:
    with open(summary_path, "w") as f:
      json.dump(results, f, indent=1)
  report = larp_report.evaluate_and_report(config, workdir, dataset_dir)
  if config.eval.get("seed_sweep", ()):
    report["results"].update(larp_sweeps.seed_sweep(config, workdir, dataset_dir, train_stage))
    with open(os.path.join(workdir, "results.json"), "w") as f:
      json.dump(report["results"], f, indent=1, sort_keys=True)
  return report
