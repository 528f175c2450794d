"""Paper 001's job: listening logs -> track spaces -> features -> SELU autoencoders -> z -> tasks.

Steps (``train_and_evaluate``), each resumable:
  1. data: LFM-2b-format files (``config.data.manual_dir``) or the demo generated into
     ``WORKDIR/demo_listening``; the protocol (T, cohorts, splits; ``data_pipelines/user_protocol``).
  2. track spaces fitted on pre-T data, exported with batch ids (``user_rep_spaces``).
  3. every user's features at its snapshot time (``data_pipelines/user_features``), cached.
  4. one autoencoder run per ``config.runs`` entry through the job layer (``runs.train_run``:
     sharded, resumable, early-stopped on validation loss); ``ae`` is the model, the others the
     paper's ablations (``config.ablations.<run>`` = the block groups they drop).
  5. z of every user exported (.npz + manifest: batch id, upstream ids, T).
  6. transfer tasks, baselines, clusters and cost (``user_rep_tasks``), report (``user_rep_report``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from typing import Any

import grain
import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from data_pipelines import listening as listening_lib
from data_pipelines import user_features
from data_pipelines import user_protocol
from data_pipelines.demo import audio_stand_in
from data_pipelines.demo import latent_catalogue
from data_pipelines.demo import listening_logs
from larp_jax import export as export_lib
from larp_jax.evaluation import batched
from larp_jax.jobs import user_rep_intrinsic
from larp_jax.jobs import user_rep_ranking
from larp_jax.jobs import user_rep_report
from larp_jax.jobs import user_rep_spaces
from larp_jax.jobs import user_rep_tasks
from larp_jax.losses import reconstruction
from larp_jax.models import user_autoencoder
from larp_jax.training import checkpoint
from larp_jax.training import mesh as mesh_lib
from larp_jax.training import runs
from larp_jax.training import step as step_lib


@dataclasses.dataclass
class Prepared:
  """Everything the autoencoders and the tasks read (arrays over all U users).

  features: float32 [U, d_full] at ``protocol.snapshot_time`` with nothing dropped.
  """

  listening: Any
  protocol: user_protocol.Protocol
  spaces: user_features.TrackSpaces
  spec: user_features.FeatureSpec
  features: np.ndarray
  spaces_report: dict[str, Any]


def load_data(config: Any, workdir: str):
  """The ``Listening`` of ``config.data.manual_dir`` or of the generated demo, and the audio
  export path (``config.modality.audio_npz`` or the demo's stand-in)."""
  manual = config.data.manual_dir
  audio_npz = config.modality.audio_npz
  if not manual:
    manual = os.path.join(workdir, "demo_listening")
    catalogue = latent_catalogue.CatalogueConfig(**dict(config.data.get("catalogue", {})))
    if not os.path.exists(os.path.join(manual, "users.tsv")):
      overrides = dict(config.data.demo)
      listening_logs.generate(
          manual, listening_logs.DemoListeningConfig(**overrides), catalogue_config=catalogue
      )
    if not audio_npz:
      audio_npz = os.path.join(workdir, "export", "audio_stand_in.npz")
      if not os.path.exists(audio_npz):
        audio_stand_in.write_audio_stand_in(audio_npz, latent_catalogue.build_catalogue(catalogue))
  elif not audio_npz:
    raise ValueError(
        "config.modality.audio_npz is required with config.data.manual_dir (a LARP export: "
        "python -m experiments.export_embeddings ...)."
    )
  if not os.path.exists(audio_npz):
    raise FileNotFoundError(f"config.modality.audio_npz={audio_npz!r} does not exist.")
  return listening_lib.load_listening(manual), audio_npz


def feature_spec(config: Any, listening, spaces, drop=()) -> user_features.FeatureSpec:
  return user_features.spec_for(
      listening,
      audio_dim=spaces.audio.shape[1],
      collab_dim=spaces.collab.shape[1],
      horizons=tuple(int(h) for h in config.features.horizons),
      onboarding_days=int(config.features.onboarding_days),
      age_edges=tuple(int(a) for a in config.features.age_edges),
      drop=tuple(drop),
  )


def prepare(config: Any, workdir: str, data: tuple[Any, str] | None = None) -> Prepared:
  """Steps 1-3 of the module docstring (features cached in ``WORKDIR/features.npz``); ``data``:
  an already loaded ``(listening, audio_npz)`` instead of ``load_data(config, workdir)``."""
  listening, audio_npz = data if data is not None else load_data(config, workdir)
  for message in listening.messages if data is None else ():
    print(f"user_rep: {message}")
  t = user_protocol.resolve_cut_time(
      listening,
      config.split.cut_time,
      future_days=int(config.split.future_days),
      min_active_users=int(config.split.min_active_users),
  )
  protocol = user_protocol.build_protocol(
      listening,
      t,
      established_days=int(config.split.established_days),
      new_user_days=int(config.split.new_user_days),
      future_days=int(config.split.future_days),
      split_fractions=tuple(config.split.fractions),
      seed=int(config.seed),
  )
  print(f"user_rep: cut time T = {user_protocol.format_time(t)}; {user_protocol.summary(protocol)}")
  export_dir = os.path.join(workdir, "export")
  spaces, spaces_report = user_rep_spaces.build_track_spaces(
      listening, protocol, config, audio_npz, export_dir
  )
  spec = feature_spec(config, listening, spaces)
  cache = os.path.join(workdir, "features.npz")
  key = json.dumps([spaces.batch_ids, t, spec.dim, config.features.to_dict()], sort_keys=True)
  features = None
  if os.path.exists(cache):
    with np.load(cache) as data:
      if str(data["key"]) == key:
        features = data["features"]
  if features is None:
    features = user_features.features_matrix(
        listening,
        np.arange(listening.num_users),
        protocol.snapshot_time,
        spaces,
        spec,
        progress=True,
    )
    np.savez(cache + ".tmp.npz", features=features, key=np.asarray(key))
    os.replace(cache + ".tmp.npz", cache)
  return Prepared(listening, protocol, spaces, spec, features, spaces_report)


@dataclasses.dataclass(frozen=True)
class AutoencoderInputs:
  """One run's standardised inputs: columns kept, statistics and the rows it trains on."""

  columns: np.ndarray  # int64 [d] into Prepared.features
  mean: np.ndarray  # float32 [d] over training rows
  std: np.ndarray  # float32 [d]
  weights: np.ndarray  # float32 [d] reconstruction column weights
  train_rows: np.ndarray  # int64 user indices
  validation_rows: np.ndarray

  def standardise(self, features: np.ndarray) -> np.ndarray:
    return ((features[:, self.columns] - self.mean) / self.std).astype(np.float32)


def autoencoder_inputs(config: Any, prepared: Prepared, drop) -> AutoencoderInputs:
  """Training rows: training users' snapshots at T plus new training users' at registration
  (every user has one snapshot; see ``user_protocol``), so the cold-start region is seen."""
  spec = dataclasses.replace(prepared.spec, drop=tuple(drop))
  columns = spec.columns()
  train_rows = prepared.protocol.users(split=0)
  validation_rows = prepared.protocol.users(split=1)
  x = prepared.features[train_rows][:, columns].astype(np.float64)
  mean, std = x.mean(0), x.std(0)
  std = np.where(std < 1e-6, 1.0, std)
  weights = reconstruction.column_weights(
      [w for _, w in spec.blocks()], config.loss.block_weighting
  )
  return AutoencoderInputs(
      columns, mean.astype(np.float32), std.astype(np.float32), weights, train_rows, validation_rows
  )


def _model(config: Any, input_dim: int) -> user_autoencoder.UserAutoencoder:
  return user_autoencoder.UserAutoencoder(
      user_autoencoder.AutoencoderConfig(
          input_dim=input_dim,
          hidden=tuple(config.model.hidden),
          latent_dim=int(config.model.latent_dim),
          dropout_rate=float(config.model.dropout_rate),
          dropout_kind=config.model.dropout_kind,
      )
  )


def make_train_step(model, weights: np.ndarray, squared: bool):
  """Pure ``(state, {'x': [B, d]}) -> (state, metrics)``: Eq. 2 on standardised blocks."""
  weights = jnp.asarray(weights)

  def train_step(state, batch):
    rng = state.step_rng()

    def loss_fn(params):
      _, x_hat = model.apply({"params": params}, batch["x"], train=True, rngs={"dropout": rng})
      loss, metrics = reconstruction.reconstruction_loss(
          batch["x"], x_hat, weights, squared=squared
      )
      return loss, (metrics, None)

    new_state, metrics, _ = step_lib.gradient_step(state, loss_fn)
    return new_state, metrics

  return train_step


def train_data(config: Any, x_train: np.ndarray):
  def make(context: runs.RunContext):
    del context
    per_host = mesh_lib.host_batch_size(int(config.batch_size))
    if len(x_train) < per_host:
      raise ValueError(
          f"{len(x_train)} training users < config.batch_size={config.batch_size} per host."
      )
    ds = grain.MapDataset.source(x_train)[jax.process_index() :: jax.process_count()]
    ds = ds.shuffle(seed=int(config.seed)).repeat().map(lambda row: {"x": row})
    return iter(ds.batch(per_host, drop_remainder=True).to_iter_dataset())

  return make


def make_evaluate(model, config: Any, x_val: np.ndarray, weights: np.ndarray):
  """``state -> {'val_loss', 'val_mse'}``: Eq. 2 on the validation users (no dropout)."""

  @jax.jit
  def loss(params, x):
    _, x_hat = model.apply({"params": params}, x, train=False)
    return reconstruction.reconstruction_loss(
        x, x_hat, jnp.asarray(weights), squared=bool(config.loss.squared)
    )

  def evaluate(state):
    value, aux = loss(state.params, x_val)
    return {"val_loss": float(value), "val_mse": float(aux["mse"])}

  return evaluate


def train_autoencoder(config: Any, workdir: str, prepared: Prepared, name: str):
  """Trains (or resumes, or skips) run ``name``; returns (best params, its inputs, model)."""
  inputs = autoencoder_inputs(config, prepared, config.ablations[name])
  x_all = inputs.standardise(prepared.features)
  model = _model(config, len(inputs.columns))
  run_dir = os.path.join(workdir, name)
  runs.train_run(
      config,
      run_dir,
      init_fn=lambda rng: (
          model.init(rng, jnp.zeros((1, len(inputs.columns)), jnp.float32))["params"],
          {},
      ),
      make_step=lambda context: make_train_step(model, inputs.weights, bool(config.loss.squared)),
      train_data=train_data(config, x_all[inputs.train_rows]),
      evaluate=lambda context: make_evaluate(
          model, config, x_all[inputs.validation_rows], inputs.weights
      ),
      hparams={"run": name, "input_dim": len(inputs.columns), "batch_size": int(config.batch_size)},
      description=f"user_rep/{name}",
  )
  best = checkpoint.load_params(os.path.join(run_dir, "best"))
  return best["params"], inputs, model


def encoder_fn(model, params, batch_size: int = 4096):
  """``x [N, d] standardised -> z [N, k]`` float32 (padded batches: one compile per batch size)."""
  fn = jax.jit(lambda b: model.apply({"params": params}, b["x"], method=model.encode))
  return lambda x: batched.batched_apply(fn, {"x": x}, min(batch_size, max(len(x), 1)))


def export_user_vectors(
    path: str, prepared: Prepared, z: np.ndarray, params, inputs, config
) -> dict:
  """Writes z of every user (.npz + manifest: batch id, upstream ids, T, statistics digest)."""
  upstream = dict(prepared.spaces.batch_ids)
  bid = export_lib.batch_id(
      "user-rep",
      arrays={
          **{"/".join(map(str, k)): np.asarray(v) for k, v in _flat(params).items()},
          "mean": inputs.mean,
          "std": inputs.std,
      },
      upstream=upstream,
      details={"cut_time": prepared.protocol.cut_time},
  )
  return export_lib.export_embeddings(
      path,
      prepared.listening.user_ids,
      {"z": z},
      checkpoint_path=os.path.dirname(path),
      config=config,
      extra={
          "batch_id": bid,
          "upstream": upstream,
          "cut_time": prepared.protocol.cut_time,
          "cut_time_iso": user_protocol.format_time(prepared.protocol.cut_time),
          "snapshot_time": "T for users registered before T, else registration + 1 s",
          "status": "current",
      },
  )


def export_batch(config: Any, workdir: str, cut_time: int) -> str:
  """Another version of z (paper 001's batch management): every user's z at ``cut_time``.

  The data are the job's own (``load_data(config, workdir)``); the track spaces, features and the
  ``ae`` autoencoder are refitted on what happened before ``cut_time``, in
  ``WORKDIR/batches/<cut date>`` (resumable), so nothing after ``cut_time`` reaches the vectors.
  No tasks run. Returns the export's path; its manifest has ``cut_time`` and a new ``batch_id``.
  """
  iso = user_protocol.format_time(int(cut_time))
  batch_config = config.copy_and_resolve_references()
  with batch_config.unlocked():
    batch_config.split.cut_time = iso
  batch_dir = os.path.join(workdir, "batches", iso.replace(":", ""))
  os.makedirs(batch_dir, exist_ok=True)
  print(f"user_rep: z batch at {iso} in {batch_dir}", flush=True)
  prepared = prepare(batch_config, batch_dir, data=load_data(config, workdir))
  params, inputs, model = train_autoencoder(batch_config, batch_dir, prepared, "ae")
  z = encoder_fn(model, params)(inputs.standardise(prepared.features))
  path = os.path.join(batch_dir, "export", "user_rep.npz")
  export_user_vectors(path, prepared, z, params, inputs, batch_config)
  return path


def _flat(tree) -> dict:
  return {
      tuple(getattr(k, "key", k) for k in path): v
      for path, v in jax.tree_util.tree_leaves_with_path(tree)
  }


@contextlib.contextmanager
def _stage(name: str, seconds: dict[str, float]):
  """Prints which stage runs and how long it took; records the time in ``seconds``."""
  print(f"user_rep: {name} ...", flush=True)
  start = time.perf_counter()
  yield
  seconds[name] = time.perf_counter() - start
  print(f"user_rep: {name} done in {seconds[name]:.1f} s", flush=True)


def train_and_evaluate(config: Any, workdir: str) -> dict[str, Any]:
  """The whole job (module docstring); returns the flat results written to results.json."""
  os.makedirs(workdir, exist_ok=True)
  names = runs.run_names(tuple(config.runs), config.ablations.to_dict(), "runs")
  if "ae" not in names:
    raise ValueError(f"config.runs={tuple(config.runs)} must include 'ae' (the model itself).")
  seconds: dict[str, float] = {}
  with _stage("data, track spaces and features", seconds):
    prepared = prepare(config, workdir)
  vectors = {}
  manifest = None
  for name in names:
    with _stage(f"autoencoder run {name}", seconds):
      params, inputs, model = train_autoencoder(config, workdir, prepared, name)
      encode = encoder_fn(model, params)
      z = encode(inputs.standardise(prepared.features))
    vectors["user_rep" if name == "ae" else f"user_rep_without_{name[len('ae_without_'):]}"] = z
    if name == "ae":
      manifest = export_user_vectors(
          os.path.join(workdir, "export", "user_rep.npz"), prepared, z, params, inputs, config
      )
      encode_features = lambda x, e=encode, i=inputs: e(i.standardise(x))
  with _stage("future listening (Tables 1-2) with NMF and LightFM baselines", seconds):
    results, ctx, established = user_rep_tasks.future_listening(config, prepared, vectors)
  ablations = [m for m in vectors if m != "user_rep"]
  with _stage("artist follow, ranking and two-tower retrieval", seconds):
    results.update(user_rep_ranking.follow_ranking_retrieval(ctx, established, ablations))
  with _stage("clusters (Table 4) and cost", seconds):
    intrinsic, projections = user_rep_intrinsic.cluster_tasks(ctx, ablations)
    results.update(intrinsic)
    results.update(user_rep_intrinsic.cost(ctx, prepared, encode_features))
  return user_rep_report.report(config, workdir, prepared, results, manifest, projections, seconds)
