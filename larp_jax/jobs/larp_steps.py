"""LARP's pure train step for stages 1-3 (Eq. 7-9), the CO-Playlist baseline's step, and the
model-state layout they update.

model_state (non-trainable, part of the TrainState, sharded by the logical names shown):
  batch_stats   HTS-AT bn0 running statistics (updated by the online audio tower)
  momentum      EMA copy of all online params (momentum encoders + projections; 0.995)
  queues        {'audio','text' f32 [Q, 256], 'ids' int32 [Q], 'groups' int32 [Q, G]}  rows on 'data'
  queue_ptr     int32 scalar
  audio_table, text_table   f32 [N_train, 256] latest online features per track   rows on 'data'

Batches: stage 1 = WTC tracks {'audio','input_ids','attention_mask','track_index'} [B, ...];
stages 2-3 = pairs {'a': tracks, 'b': tracks, 'playlist_index'} (+ 'playlist' for stage 3), laid
out as the official "ego" batch [A_1..A_B, B_1..B_B] with partner rows i <-> B + i.

The CO-Playlist run (Table 2's baseline [1]) is one more run of the same job on the same model and
state: stage-2 pair batches, the audio tower and its projection only (the job freezes everything
else by ``COPLAYLIST_FROZEN_RULE``), NT-Xent over the 2B clips (``coplaylist.coplaylist_loss``). It
updates ``batch_stats`` and leaves the rest of model_state as initialised.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from larp_jax.losses import coplaylist
from larp_jax.losses import larp
from larp_jax.models import larp_encoder
from larp_jax.training import memory
from larp_jax.training import state as state_lib
from larp_jax.training import step as step_lib


def init_model_state(
    rng: jax.Array,
    params: Any,
    batch_stats: Any,
    *,
    queue_size: int,
    embed_dim: int,
    group_width: int,
    num_train_tracks: int,
) -> dict[str, Any]:
  """Initial model_state (boxed with logical names so queues/tables shard rows on `data`)."""
  queues, ptr = memory.init_queues(rng, queue_size, embed_dim, group_width=group_width)
  rows = lambda x: nn.Partitioned(x, names=("table_rows",) + (None,) * (x.ndim - 1))  # noqa: E731
  table = jnp.zeros((num_train_tracks, embed_dim), jnp.float32)
  return {
      "batch_stats": batch_stats,
      "momentum": jax.tree.map(jnp.array, params),  # keeps the logical boxes
      "queues": {k: rows(v) for k, v in queues.items()},
      "queue_ptr": ptr,
      "audio_table": rows(table),
      "text_table": rows(table),
  }


def track_playlist_groups(
    playlist_tracks: np.ndarray, lengths: np.ndarray, num_tracks: int, width: int
) -> np.ndarray:
  """The co-occurrence/incidence relation as ids: int32 [N_train, width] training-playlist
  indices each track belongs to (first ``width``), padded with -1."""
  groups = np.full((num_tracks, width), -1, np.int32)
  fill = np.zeros((num_tracks,), np.int32)
  for p, (row, n) in enumerate(zip(playlist_tracks, lengths)):
    for t in row[:n]:
      if 0 <= t < num_tracks and fill[t] < width:
        groups[t, fill[t]] = p
        fill[t] += 1
  return groups


def _tracks(batch: dict, stage: int) -> dict:
  if stage == 1:
    return batch
  return jax.tree.map(lambda a, b: jnp.concatenate([a, b], axis=0), batch["a"], batch["b"])


# The step's non-batch input: the track -> training-playlist table, replicated on every device
# (``runs.train_run(extra_inputs=...)``), so it is an argument of the compiled step, not a
# constant baked into it.
INPUT_SPECS = {"extra": {"track_groups": P()}}


def make_train_step(model: larp_encoder.LARP, stage: int, loss_config: Any):
  """Pure ``(state, inputs) -> (state, metrics)`` for one LARP stage.

  ``inputs`` is the stage's batch plus ``inputs['extra']['track_groups']`` (int32 [N_train, G]
  from ``track_playlist_groups``; placed by ``INPUT_SPECS``).

  Args:
    model: the LARP module.
    stage: 1 (WTC), 2 (WTC + TTC) or 3 (WTC + TTC + TPC).
    loss_config: ``momentum``, ``alpha``, ``alpha_ramp_steps``, ``wtc_id_positives``,
      ``ttc_positives`` ('cooccurrence'|'pair'), ``tpc_positives`` ('incidence'|'pair'),
      ``tpc_directions`` ('both'|'track_to_playlist'), ``tpc_queue_negatives`` (queued momentum
      tracks as extra keys of the playlist->track terms, Eq. 22), ``normalize_playlists``.
  """
  momentum = float(loss_config.momentum)
  use_tpc_queue = bool(loss_config.get("tpc_queue_negatives", False))

  def alpha_at(step):
    alpha = jnp.float32(loss_config.alpha)
    ramp = int(loss_config.get("alpha_ramp_steps", 0) or 0)
    return alpha * jnp.minimum(1.0, step / ramp) if ramp else alpha

  def train_step(state: state_lib.TrainState, inputs):
    ms = state.model_state
    groups_table = inputs["extra"]["track_groups"]
    batch = {k: v for k, v in inputs.items() if k != "extra"}
    tracks = _tracks(batch, stage)
    ids = tracks["track_index"]
    groups = jnp.take(groups_table, jnp.clip(ids, 0, groups_table.shape[0] - 1), axis=0)
    rng_audio, rng_text = jax.random.split(state.step_rng())
    queues = ms["queues"]
    alpha = alpha_at(state.step)

    # Momentum features (keys): EMA params, deterministic towers, no gradient.
    momentum_vars = {"params": ms["momentum"], "batch_stats": ms["batch_stats"]}
    audio_m = model.apply(momentum_vars, tracks["audio"], False, method=model.encode_audio)
    text_m = model.apply(
        momentum_vars,
        tracks["input_ids"],
        tracks["attention_mask"],
        False,
        method=model.encode_text,
    )
    audio_m, text_m = jax.lax.stop_gradient(audio_m), jax.lax.stop_gradient(text_m)

    def loss_fn(params):
      variables = {"params": params, "batch_stats": ms["batch_stats"]}
      audio, updates = model.apply(
          variables,
          tracks["audio"],
          True,
          method=model.encode_audio,
          rngs={"dropout": rng_audio},
          mutable=["batch_stats"],
      )
      text = model.apply(
          variables,
          tracks["input_ids"],
          tracks["attention_mask"],
          True,
          method=model.encode_text,
          rngs={"dropout": rng_text},
      )
      temp = model.apply(variables, method=model.temperature)
      losses = {}
      losses["wtc"], _ = larp.wtc_loss(
          audio,
          text,
          audio_m,
          text_m,
          queues["audio"],
          queues["text"],
          temp,
          ids=ids if loss_config.wtc_id_positives else None,
          queue_ids=queues["ids"] if loss_config.wtc_id_positives else None,
          alpha=alpha,
      )
      if stage >= 2:
        b = batch["playlist_index"].shape[0]
        partner = jnp.concatenate([jnp.arange(b) + b, jnp.arange(b)]).astype(jnp.int32)
        losses["ttc"], _ = larp.ttc_loss(
            audio,
            text,
            audio_m,
            text_m,
            queues["audio"],
            queues["text"],
            temp,
            partner=partner,
            groups=groups,
            queue_groups=queues["groups"],
            positives=loss_config.ttc_positives,
            alpha=alpha,
        )
      if stage == 3:
        b = batch["playlist_index"].shape[0]
        # Eq. 22: the playlist->track directions also contrast the queued momentum tracks.
        tpc_queue = (
            dict(
                queue_audio=queues["audio"],
                queue_text=queues["text"],
                queue_groups=queues["groups"],
            )
            if use_tpc_queue
            else {}
        )
        seeds, mask = batch["playlist"]["track_indices"], batch["playlist"]["mask"]
        seed_audio = memory.gather_lookup(ms["audio_table"], seeds, mask)
        seed_text = memory.gather_lookup(ms["text_table"], seeds, mask)
        playlist_audio = model.apply(variables, seed_audio, mask, method=model.fuse)
        playlist_text = model.apply(variables, seed_text, mask, method=model.fuse)
        losses["tpc"], _ = larp.tpc_loss(
            audio[:b],
            text[:b],
            playlist_audio,
            playlist_text,
            temp,
            parent=jnp.arange(b, dtype=jnp.int32),
            track_groups=groups[:b],
            playlist_ids=batch["playlist_index"],
            **tpc_queue,
            positives=loss_config.tpc_positives,
            directions=loss_config.tpc_directions,
            normalize_playlists=loss_config.normalize_playlists,
        )
      total, metrics = larp.stage_loss(stage, losses)
      metrics["temperature"] = temp
      return total, (metrics, (updates["batch_stats"], audio, text))

    new_state, metrics, (batch_stats, audio, text) = step_lib.gradient_step(state, loss_fn)
    new_queues, ptr = memory.enqueue(
        queues,
        ms["queue_ptr"],
        {
            "audio": audio_m,
            "text": text_m,
            "ids": ids.astype(jnp.int32),
            "groups": groups.astype(jnp.int32),
        },
    )
    model_state = {
        "batch_stats": batch_stats,
        "momentum": memory.ema_update(ms["momentum"], new_state.params, momentum),
        "queues": new_queues,
        "queue_ptr": ptr,
        "audio_table": memory.update_lookup_table(ms["audio_table"], ids, audio),
        "text_table": memory.update_lookup_table(ms["text_table"], ids, text),
    }
    metrics["alpha"] = alpha
    return new_state.replace(model_state=model_state), metrics

  return train_step


# The CO-Playlist run trains the audio tower and its 256-d projection only: this optimizer rule
# (``training/optimizers.py``) freezes every other parameter (text tower, fusion, temperature).
COPLAYLIST_FROZEN_RULE = ("^(?!audio_encoder/|audio_proj/)", "frozen")


def make_coplaylist_step(model: larp_encoder.LARP, loss_config: Any):
  """Pure ``(state, inputs) -> (state, metrics)`` of the CO-Playlist baseline run.

  ``inputs`` is a stage-2 batch of co-occurring training pairs ({'a', 'b', 'playlist_index'}) plus
  ``inputs['extra']['track_groups']`` (int32 [N_train, G], as ``make_train_step``). The clips of
  the ego batch [A; B] go through the online audio tower (``model.encode_audio``, train mode) and
  ``coplaylist.coplaylist_loss`` contrasts them (partner rows i <-> B + i).

  Args:
    model: the LARP module (only ``encode_audio`` is applied).
    loss_config: ``coplaylist_temperature`` (NT-Xent temperature, fixed) and
      ``coplaylist_positives`` ('pair' | 'cooccurrence', see ``coplaylist.coplaylist_positives``).
  """
  temperature = float(loss_config.coplaylist_temperature)
  positives = str(loss_config.coplaylist_positives)

  def train_step(state: state_lib.TrainState, inputs):
    ms = state.model_state
    groups_table = inputs["extra"]["track_groups"]
    batch = {k: v for k, v in inputs.items() if k != "extra"}
    tracks = _tracks(batch, 2)
    ids = tracks["track_index"]
    b = batch["playlist_index"].shape[0]
    partner = jnp.concatenate([jnp.arange(b) + b, jnp.arange(b)]).astype(jnp.int32)
    groups = None
    if positives == "cooccurrence":
      groups = jnp.take(groups_table, jnp.clip(ids, 0, groups_table.shape[0] - 1), axis=0)
    rng = state.step_rng()

    def loss_fn(params):
      audio, updates = model.apply(
          {"params": params, "batch_stats": ms["batch_stats"]},
          tracks["audio"],
          True,
          method=model.encode_audio,
          rngs={"dropout": rng},
          mutable=["batch_stats"],
      )
      loss, aux = coplaylist.coplaylist_loss(
          audio, temperature, partner=partner, ids=ids, groups=groups, positives=positives
      )
      metrics = {
          "loss/coplaylist": loss,
          "loss/total": loss,
          "top1_is_positive": aux["top1_is_positive"],
      }
      return loss, (metrics, updates["batch_stats"])

    new_state, metrics, batch_stats = step_lib.gradient_step(state, loss_fn)
    return new_state.replace(model_state={**ms, "batch_stats": batch_stats}), metrics

  return train_step
