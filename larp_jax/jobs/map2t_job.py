"""Paper 002's job: music + podcast histories -> frozen inputs -> MAP-2T towers -> cold-start
audiobook retrieval, against Popularity, ColloPop-Artist/-Podcast and EMCDR.

Steps (``train_and_evaluate``), each resumable:
  1. data: real-format files in ``config.data.manual_dir`` or the demo generated into
     ``WORKDIR/demo_audio``; the protocol (``map2t_inputs.build_protocol``).
  2. frozen inputs from before T: artist vectors (upstream space or ALS), show and book text
     vectors (our BertEncoder, cached by content hash), top-k means, imputation centroids.
  3. one run per ``config.runs`` entry through the job layer (``runs.train_run``: sharded,
     resumable, early-stopped on validation recall@5), plus the fusion seeds.
  4. scores, metrics, baselines, report (``map2t_report``); vectors exported L2-normalised.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import grain
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from data_pipelines import audiobooks
from data_pipelines import listening as listening_lib
from data_pipelines.demo import audiobook_logs
from data_pipelines.demo import listening_logs
from larp_jax.evaluation import metrics as metrics_lib
from larp_jax.jobs import map2t_inputs as inputs_lib
from larp_jax.jobs import map2t_report
from larp_jax.losses import retrieval
from larp_jax.models import map2t
from larp_jax.training import checkpoint
from larp_jax.training import mesh as mesh_lib
from larp_jax.training import runs
from larp_jax.training import step as step_lib


@dataclasses.dataclass
class Prepared:
  """Everything the runs and the report read (U users, N books).

  user_inputs: {'music' [U, dm], 'podcast' [U, dp], 'audiobook' [U, d]} float32;
  podcast_centroid [dp]; items float32 [N, d] (x^(ab)); popularity float32 [N] (pre-T listeners);
  artist_tops / show_tops: per-user top-k entity indices (the inputs' and ColloPop's A_u).
  """

  listening: Any
  audio: audiobooks.AudioData
  protocol: inputs_lib.Protocol
  user_inputs: dict[str, np.ndarray]
  podcast_centroid: np.ndarray
  book_centroid: np.ndarray
  items: np.ndarray
  popularity: np.ndarray
  artist_tops: list
  show_tops: list
  spaces: dict[str, str]


def load_data(config: Any, workdir: str):
  """(Listening, AudioData) of ``config.data.manual_dir`` or of the generated demo."""
  directory = config.data.manual_dir
  if not directory:
    directory = os.path.join(workdir, "demo_audio")
    if not os.path.exists(os.path.join(directory, "audiobook-engagements.tsv")):
      demo = audiobook_logs.DemoAudiobookConfig(
          listening=listening_logs.DemoListeningConfig(**dict(config.data.listening)),
          **dict(config.data.demo),
      )
      audiobook_logs.generate(directory, demo)
  return listening_lib.load_listening(directory), audiobooks.load_audio_data(directory)


def auto_cut_time(config: Any, workdir: str) -> int:
  """T (unix s) under ``split.cut_time='auto'``: ``split.window_days`` before the last audiobook
  listen of the job's data (the demo generated into ``workdir`` if needed)."""
  listening, audio = load_data(config, workdir)
  auto = config.copy_and_resolve_references()
  with auto.unlocked():
    auto.split.cut_time = "auto"
  return inputs_lib.build_protocol(auto, listening, audio).cut_time


def prepare(config: Any, workdir: str) -> Prepared:
  """Steps 1-2 of the module docstring."""
  listening, audio = load_data(config, workdir)
  protocol = inputs_lib.build_protocol(config, listening, audio)
  t = protocol.cut_time
  num_users = len(listening.user_ids)
  # Music: top-k artists by pre-T plays.
  before = listening.event_time < t
  artist = listening.track_artist[listening.event_track[before]]
  music_counts = inputs_lib.user_entity_counts(
      listening.event_user[before],
      artist,
      np.ones(len(artist)),
      (num_users, len(listening.artist_ids)),
  )
  artist_vectors, music_space = inputs_lib.artist_vectors(config, listening, t, music_counts)
  artist_tops = inputs_lib.top_k_rows(music_counts, int(config.inputs.top_artists))
  if config.inputs.music == "user_rep":
    music = inputs_lib.user_rep_vectors(config, listening, t)
    music_space = "user_rep"
  else:
    music, _ = inputs_lib.mean_of_top(
        music_counts, artist_vectors, int(config.inputs.top_artists), artist_vectors.mean(0)
    )
  # Podcasts: top-k shows by pre-T plays; missing -> centroid of the most-streamed shows.
  users = inputs_lib.lfm_tables.IdIndex(np.asarray(listening.user_ids))
  shows = inputs_lib.lfm_tables.IdIndex(audio.shows.show_uri)
  p = audio.plays
  pb = p.timestamp < t
  show_counts = inputs_lib.user_entity_counts(
      users.lookup(p.user_id[pb]),
      shows.lookup(p.item_id[pb]),
      np.ones(pb.sum()),
      (num_users, len(audio.shows)),
  )
  cache = os.path.join(workdir, "text_cache")
  spaces = {"music": music_space}
  if config.inputs.podcast == "als":
    show_vectors = inputs_lib.als_factors(
        show_counts,
        int(config.inputs.als_factors),
        int(config.inputs.als_iterations),
        int(config.seed),
    )
    spaces["podcast"] = "als_show"
  else:
    show_vectors, spaces["podcast"] = inputs_lib.encode_cached(
        config, inputs_lib.show_texts(audio.shows), cache
    )
  centroid = inputs_lib.popular_centroid(
      show_counts, show_vectors, int(config.model.impute_top_shows)
  )
  podcast, _ = inputs_lib.mean_of_top(
      show_counts, show_vectors, int(config.inputs.top_shows), centroid
  )
  # Audiobooks: text of title + author (+ description); the users' pre-T top books.
  items, spaces["audiobook"] = inputs_lib.encode_cached(
      config, inputs_lib.book_texts(audio.books, bool(config.inputs.book_description)), cache
  )
  train_rows = np.zeros(num_users, bool)
  train_rows[protocol.train_users] = True
  history_train = protocol.history.multiply(train_rows[:, None]).tocsr()
  book_centroid = inputs_lib.popular_centroid(
      history_train, items, int(config.model.impute_top_books)
  )
  ab_hist, _ = inputs_lib.mean_of_top(
      protocol.history, items, int(config.inputs.top_books), book_centroid
  )
  popularity = np.asarray((protocol.history > 0).sum(0), np.float32).ravel()
  return Prepared(
      listening=listening,
      audio=audio,
      protocol=protocol,
      user_inputs={"music": music, "podcast": podcast, "audiobook": ab_hist},
      podcast_centroid=centroid,
      book_centroid=book_centroid,
      items=items.astype(np.float32),
      popularity=popularity,
      artist_tops=artist_tops,
      show_tops=inputs_lib.top_k_rows(show_counts, int(config.inputs.top_shows)),
      spaces=spaces,
  )


# ------------------------------------------------------------------------------------ runs


def make_model(config: Any, name: str, prepared: Prepared) -> map2t.MAP2T:
  spec = config.run_specs[name]
  return map2t.MAP2T(
      map2t.MAP2TConfig(
          dim=prepared.items.shape[1],
          hidden=int(config.model.hidden),
          modalities=tuple(spec.modalities),
          fusion=spec.fusion,
          deep_layers=int(config.model.deep_layers),
      )
  )


def padded_catalogue(
    items: np.ndarray, popularity: np.ndarray, multiple: int
) -> dict[str, np.ndarray]:
  """{'items' [Np, d], 'popularity' [Np], 'item_mask' [Np]}: padded to a multiple of the device
  count with zero rows and ``item_mask = False``."""
  n = len(items)
  n_pad = -(-n // multiple) * multiple
  pad = n_pad - n
  return {
      "items": np.concatenate([items, np.zeros((pad, items.shape[1]), items.dtype)]),
      "popularity": np.concatenate([popularity, np.zeros(pad, popularity.dtype)]).astype(
          np.float32
      ),
      "item_mask": np.arange(n_pad) < n,
  }


def make_train_step(model: map2t.MAP2T, config: Any):
  """Pure ``(state, {modality: [B, F], 'positive': int32 [B], 'extra': catalogue}) ->
  (state, metrics)``: the towers under ``map2t_loss`` (full catalogue or in-batch + logQ)."""
  kwargs = retrieval.loss_kwargs(config.loss)
  modalities = model.config.modalities
  in_batch = config.loss.candidates == "in_batch"

  def train_step(state, batch):
    extra = batch["extra"]

    def loss_fn(params):
      users = {m: batch[m] for m in modalities}
      u, v, _ = model.apply({"params": params}, users, extra["items"])
      pos, pop, mask, logq = batch["positive"], extra["popularity"], extra["item_mask"], None
      if in_batch:
        ids, mask, pos, logq = retrieval.in_batch_candidates(pos, pop, mask)
        v, pop = v[ids], pop[ids]
      loss, terms = retrieval.map2t_loss(u, v, pos, pop, mask, logq=logq, **kwargs)
      return loss, ({**terms, "loss": loss}, None)

    new_state, metrics, _ = step_lib.gradient_step(state, loss_fn)
    return new_state, metrics

  return train_step


def input_specs(config: Any) -> dict[str, Any]:
  row = P("data") if config.model.shard_catalogue else P()
  return {"extra": {"items": row, "popularity": row, "item_mask": row}}


def training_pairs(prepared: Prepared, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(user int64 [n], book int32 [n]): distinct (user, book) listens before T of ``users``."""
  h = prepared.protocol.history
  us, bs = [], []
  for u in users:
    cols = h.indices[h.indptr[u] : h.indptr[u + 1]]
    us.append(np.full(len(cols), u))
    bs.append(cols)
  return np.concatenate(us).astype(np.int64), np.concatenate(bs).astype(np.int32)


def leave_one_out_history(
    prepared: Prepared, pair_user: np.ndarray, pair_book: np.ndarray, k: int
) -> np.ndarray:
  """x_u^(ab-hist) [n, d] per training pair WITHOUT the pair's positive: the mean of the user's
  other top-k books' x^(ab), or the centroid when none is left. (With the positive inside, the
  input would contain the target and the "+ audiobook" towers learn to copy it.)"""
  tops = map2t_inputs_top(prepared, k)
  out = np.tile(prepared.book_centroid, (len(pair_user), 1))
  for i, (u, b) in enumerate(zip(pair_user, pair_book)):
    rest = tops[u][tops[u] != b]
    if len(rest):
      out[i] = prepared.items[rest].mean(0)
  return out.astype(np.float32)


def map2t_inputs_top(prepared: Prepared, k: int) -> list:
  return inputs_lib.top_k_rows(prepared.protocol.history, k)


def train_data(config: Any, prepared: Prepared, modalities, users: np.ndarray):
  pair_user, pair_book = training_pairs(prepared, users)
  feats = {m: prepared.user_inputs[m][pair_user] for m in modalities}
  if "audiobook" in modalities:
    feats["audiobook"] = leave_one_out_history(
        prepared, pair_user, pair_book, int(config.inputs.top_books)
    )

  def make(context: runs.RunContext):
    del context
    per_host = mesh_lib.host_batch_size(int(config.batch_size))
    if len(pair_user) < per_host:
      raise ValueError(f"{len(pair_user)} training pairs < config.batch_size={config.batch_size}.")
    ds = grain.MapDataset.range(len(pair_user))[jax.process_index() :: jax.process_count()]
    ds = ds.shuffle(seed=int(config.seed)).repeat()
    ds = ds.map(lambda i: {**{m: f[i] for m, f in feats.items()}, "positive": pair_book[i]})
    return iter(ds.batch(per_host, drop_remainder=True).to_iter_dataset())

  return make


def make_evaluate(model, prepared: Prepared, users: np.ndarray):
  """``state -> {'val_recall_at_5', 'val_precision_at_3'}`` on validation users' pre-T books
  (their audiobook-history input imputed, as for cold users: it holds the targets)."""
  score = map2t_report.score_fn(model)
  feats = {m: prepared.user_inputs[m][users] for m in model.config.modalities}
  if "audiobook" in feats:
    feats["audiobook"] = np.tile(prepared.book_centroid, (len(users), 1))
  relevant = np.asarray(prepared.protocol.history[users].todense() > 0)

  def evaluate(state):
    s, _, _ = score(state.params, feats, prepared.items)
    out = metrics_lib.ranking_metrics(s, relevant, (3, 5), ("recall", "precision"))
    return {
        "val_recall_at_5": float(metrics_lib.mean_over_valid(out["recall@5"])),
        "val_precision_at_3": float(metrics_lib.mean_over_valid(out["precision@3"])),
    }

  return evaluate


def train_users_for(config: Any, prepared: Prepared, name: str) -> tuple[np.ndarray, np.ndarray]:
  pr = prepared.protocol
  if config.run_specs[name].cohort == "music_podcast":
    return (
        pr.train_users[pr.has_podcasts[pr.train_users]],
        pr.validation_users[pr.has_podcasts[pr.validation_users]],
    )
  return pr.train_users, pr.validation_users


def train_variant(config: Any, workdir: str, prepared: Prepared, name: str, seed: int = 0):
  """Trains (or resumes, or skips) run ``name`` with ``seed``; returns (best params, model)."""
  model = make_model(config, name, prepared)
  run_config = runs.run_config(config, seed=int(config.seed) + seed)
  run_dir = os.path.join(workdir, "runs", name if not seed else f"{name}_seed{seed}")
  train_users, val_users = train_users_for(config, prepared, name)
  modalities = model.config.modalities
  dummy = {m: jnp.zeros((1, prepared.user_inputs[m].shape[1]), jnp.float32) for m in modalities}
  items0 = jnp.zeros((1, prepared.items.shape[1]), jnp.float32)
  runs.train_run(
      run_config,
      run_dir,
      init_fn=lambda rng: (model.init(rng, dummy, items0)["params"], {}),
      make_step=lambda context: make_train_step(model, config),
      train_data=train_data(run_config, prepared, modalities, train_users),
      evaluate=lambda context: make_evaluate(model, prepared, val_users),
      input_specs=input_specs(config),
      extra_inputs=lambda context: padded_catalogue(
          prepared.items, prepared.popularity, context.mesh.devices.size
      ),
      hparams={"run": name, "seed": seed, "batch_size": int(config.batch_size)},
      description=f"map2t/{name}" + (f"/seed{seed}" if seed else ""),
  )
  best = checkpoint.load_params(os.path.join(run_dir, "best"))
  return best["params"], model


def train_and_evaluate(config: Any, workdir: str) -> dict[str, Any]:
  """The whole job (module docstring); returns the flat results written to results.json."""
  os.makedirs(workdir, exist_ok=True)
  prepared = prepare(config, workdir)
  names = runs.run_names(tuple(config.runs), config.run_specs.to_dict(), "runs")
  if "map2t_full" not in names:
    raise ValueError(f"config.runs={tuple(config.runs)} must include 'map2t_full'.")
  trained = {name: train_variant(config, workdir, prepared, name) for name in names}
  seeds = {}
  for name in ("map2t_full", "map2t_concat"):
    if name in names:
      seeds[name] = [trained[name]] + [
          train_variant(config, workdir, prepared, name, int(s)) for s in config.fusion_seeds
      ]
  return map2t_report.report(config, workdir, prepared, trained, seeds)
