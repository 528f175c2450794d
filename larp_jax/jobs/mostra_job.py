"""MOSTRA Table 1 end to end: session data -> one training run per scorer -> decoding report.

`train_and_evaluate(config, workdir)`:
  1. data: `config.data.dir`, or (if empty) the demo generator's MSSD-style CSVs written to
     `workdir/demo_raw` and built into `workdir/data` by `data_pipelines.sessions`
     (`{train,valid,test}.npz`, features [S, N, F], labels [S, N, 4] in OBJECTIVES order).
  2. every scorer in `config.scorers` (names in `larp_jax.models.mostra_scorers.SCORERS`, objective
     `larp_jax.losses.mostra_objectives.scorer_loss`) is trained by the generic loop in its
     own sub-workdir `workdir/models/<name>` (re-running resumes; a finished model is not
     retrained). Adam 5e-4 with decay (config.optimizer), batches of `config.batch_size`
     sessions; model selection / early stopping on validation NDCG@10 of SAT (decoded as the
     report decodes it), except MO-LTR, whose target mixes all objectives: the mean validation
     NDCG@10 over the four objectives (`config.mo_ltr_selection_metric`). The selected weights
     are `workdir/models/<name>/best`; each scorer is one `runs.train_run`, so a finished one
     (`runs.is_finished`) is skipped and an interrupted one resumes.
  3. `report(config, workdir)`: loads the best weights, scores the test split and writes the
     Table 1 report (larp_jax/jobs/mostra_report.py): `results.json`, a printed table and
     `plots/map_vs_epsilon.png`.

The scorers (App. A) are defined with `SCORERS` in larp_jax/models/mostra_scorers.py, their training
objectives in larp_jax/losses/mostra_objectives.py; this module only orchestrates.

MOSTRA and MOSTRA-WtSUM decode the relevance r = sigmoid(logits) of one trained scorer,
`config.report.relevance_model`, by default SetRank_RMSE. The paper needs r in [0, 1] with 0.5 a
meaningful cut (WtSUM's 1{r > 0.5}; Eq. 8's relative gap): AttRank logits are only defined up to
a shift, so their sigmoid is not a probability, while RMSE (and BCE) fit probabilities. Table 1
points at RMSE: MOSTRA (eps = 0.01) and WtSUM (alpha = 0.01), both almost a plain sort of r, have
SAT NDCG@5 69.56 / 69.49, next to SetRank_RMSE's 70.11 and far from SetRank_BCE's 65.47.

Evaluation runs in one process on the default device (parameters are replicated in every
config here); training uses the ('data', 'model') mesh of `config.mesh`.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from data_pipelines import session_batches as session_batches_lib
from data_pipelines import dataset_builds, mssd_sessions
from data_pipelines import sessions as sessions_lib
from data_pipelines.demo import sessions as demo_sessions
from larp_jax.evaluation import batched, sequencing
from larp_jax.jobs import mostra_report
from larp_jax.losses import mostra_objectives
from larp_jax.models import mostra_scorers
from larp_jax.training import checkpoint, mesh as mesh_lib, runs
from larp_jax.training import state as state_lib
from larp_jax.training import step as step_lib

Array = jax.Array

# ------------------------------------------------------------------------------------- data


def _is_mssd_build(data_dir: str) -> bool:
  with open(os.path.join(data_dir, 'metadata.json')) as f:
    return json.load(f).get('format') == mssd_sessions.FORMAT


def load_data(data_dir: str) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]]]:
  """(metadata, {split: arrays}) of a built directory: the demo/sessions.py npz build or an
  MSSD array_record build (`data_pipelines.mssd_sessions`); the same arrays either way."""
  if _is_mssd_build(data_dir):
    metadata, arrays = mssd_sessions.load_metadata(data_dir), mssd_sessions.load_sessions(data_dir)
  else:
    metadata, arrays = sessions_lib.load_metadata(data_dir), sessions_lib.load_sessions(data_dir)
  empty = [split for split, a in arrays.items() if not len(a['mask'])]
  if empty:
    raise ValueError(
        f'{data_dir}: splits {empty} have no sessions; use more data or change '
        'config.data.split_fractions'
    )
  return metadata, arrays


def prepare_data(config: Any, workdir: str) -> str:
  """The built sessions directory: `config.data.dir`; or MSSD as shipped in
  `config.data.manual_dir` streamed into workdir/data (`data_pipelines.mssd_sessions`); or the
  demo data built into workdir/data."""
  manual_dir = config.data.get('manual_dir', '')
  if config.data.get('source', 'auto') == 'mssd' and not manual_dir:
    raise ValueError(
        "config.data.source='mssd' needs config.data.manual_dir: the directory holding MSSD's "
        'training_set/log_*.csv and track_features/tf_*.csv'
    )
  if manual_dir and not config.data.dir:
    data_dir = os.path.join(workdir, 'data')
    # The launcher's route (config.data.builder: in-process or Beam on DirectRunner; other Beam
    # runners: experiments/build_dataset.py --beam_runner first), built once across processes.
    metadata = dataset_builds.build_mssd(
        manual_dir,
        data_dir,
        dataset_builds.mssd_settings(config.data),
        builder=config.data.get('builder', 'inprocess'),
        process_index=jax.process_index(),
    )
    logging.info('MSSD build %s: %s', data_dir, metadata['counts'])
    return data_dir
  if config.data.dir:
    if not os.path.exists(os.path.join(config.data.dir, 'metadata.json')):
      raise ValueError(
          f'config.data.dir={config.data.dir!r} has no metadata.json (build it '
          'with `python -m data_pipelines.sessions --raw_dir ... --out_dir ...`)'
      )
    return config.data.dir
  data_dir = os.path.join(workdir, 'data')
  if os.path.exists(os.path.join(data_dir, 'metadata.json')):
    return data_dir
  raw_dir = os.path.join(workdir, 'demo_raw')
  demo = demo_sessions.DemoSessionsConfig(**config.data.demo.to_dict())
  summary = demo_sessions.write_demo_sessions(raw_dir, demo)
  logging.info(
      'demo sessions: %d sessions, %d rows in %s',
      summary['num_sessions'],
      summary['num_rows'],
      raw_dir,
  )
  sessions_lib.build_session_arrays(
      raw_dir,
      data_dir,
      max_set_size=config.data.max_set_size,
      split_fractions=tuple(config.data.split_fractions),
      split_by=config.data.split_by,
      seed=config.data.split_seed,
  )
  return data_dir


def _dummy_batch(config: Any, num_features: int, num_objectives: int):
  n = config.data.max_set_size
  return (
      jnp.zeros((1, n, num_features), jnp.float32),
      jnp.ones((1, n), bool),
      jnp.zeros((1, n, num_objectives), jnp.float32),
  )


# --------------------------------------------------------------------------------- training


def make_train_step(model: nn.Module, spec: mostra_scorers.ScorerSpec, pointer_length: int):
  """Pure `(state, batch) -> (state, metrics)`."""

  def train_step(state: state_lib.TrainState, batch):
    def loss_fn(params):
      loss = mostra_objectives.scorer_loss(
          model, spec, params, batch['features'], batch['mask'], batch['labels'], pointer_length
      )
      return loss, ({'loss': loss}, None)

    new_state, metrics, _ = step_lib.gradient_step(state, loss_fn)
    return new_state, metrics

  return train_step


PredictFn = Callable[[Any, np.ndarray, np.ndarray, np.ndarray], dict[str, Array]]


def make_predict_fn(config: Any, name: str) -> PredictFn:
  """Jitted `(params, features, mask, labels) -> predict(...)` of one scorer.

  Evaluation during training and the report share one such function per scorer, so each
  compiles once per chunk shape.
  """
  spec = mostra_scorers.scorer_spec(name)
  model = mostra_scorers.build_model(config.model, spec)
  length = max(config.report.ndcg_ks)
  return jax.jit(functools.partial(mostra_scorers.predict, model, spec, length=length))


def _predict_split(
    predict_fn: PredictFn, params: Any, arrays: Mapping[str, np.ndarray], batch_size: int
) -> dict[str, np.ndarray]:
  """Outputs on a whole split (`batched.batched_apply`, fixed-size padded batches).

  Returns:
    {'logits', 'relevance'} float32 [S, N], or {'sequences'} int32 [S, L] for pointer models.
  """
  return batched.batched_apply(
      lambda batch: predict_fn(params, batch['features'], batch['mask'], batch['labels']),
      {name: arrays[name] for name in ('features', 'mask', 'labels')},
      batch_size,
  )


def validation_metrics(
    outputs: Mapping[str, np.ndarray],
    arrays: Mapping[str, np.ndarray],
    ks: tuple[int, ...],
    objective_names: tuple[str, ...] = sessions_lib.OBJECTIVES,
) -> dict[str, float]:
  """{'ndcg@K/<OBJ>', 'ndcg@K/mean'} of the decoded outputs (as the report decodes them)."""
  length = max(ks)
  sequences = mostra_report.decode_predictions(outputs, arrays['mask'], length)
  per_session = sequencing.per_session_metrics(
      sequences,
      arrays['labels'],
      arrays['mask'],
      ndcg_ks=ks,
      map_ks=(),
      objective_names=objective_names,
  )
  means = sequencing.mean_metrics(per_session)
  out = {}
  for k in ks:
    values = [means[f'ndcg@{k}/{o}'] for o in objective_names]
    out.update(
        {f'ndcg@{k}/{o}': v if np.isfinite(v) else 0.0 for o, v in zip(objective_names, values)}
    )
    out[f'ndcg@{k}/mean'] = float(np.mean([out[f'ndcg@{k}/{o}'] for o in objective_names]))
  return out


def make_evaluate(
    predict_fn: PredictFn,
    arrays: Mapping[str, np.ndarray],
    config: Any,
    objective_names: tuple[str, ...] = sessions_lib.OBJECTIVES,
):
  """`state -> validation_metrics` on a held-out split (evaluated in one process)."""
  ks = tuple(config.report.ndcg_ks)

  def evaluate(state: state_lib.TrainState) -> dict[str, float]:
    params = jax.device_put(state.params, jax.devices()[0])
    outputs = _predict_split(predict_fn, params, arrays, int(config.eval_batch_size))
    return validation_metrics(outputs, arrays, ks, objective_names)

  return evaluate


def _selection_metric(config: Any, spec: mostra_scorers.ScorerSpec) -> str:
  metric = (
      config.mo_ltr_selection_metric if spec.multi_objective else config.loop.early_stopping_metric
  )
  if not metric:
    raise ValueError(
        'config.loop.early_stopping_metric (and config.mo_ltr_selection_metric) '
        "must name a validation metric for model selection, e.g. 'ndcg@10/SAT'."
    )
  return metric


def train_scorer(
    config: Any,
    name: str,
    arrays: Mapping[str, Mapping[str, np.ndarray]],
    num_features: int,
    run_dir: str,
    predict_fn: PredictFn | None = None,
    objective_names: tuple[str, ...] | None = None,
) -> dict[str, Any]:
  """Trains (or resumes, or skips if finished) one scorer's run in `run_dir`; returns a summary.

  A finished run (``runs.is_finished``) is not touched again: its summary comes back with
  `steps_trained_now = 0`. An interrupted run resumes from its last checkpoint.
  """
  spec = mostra_scorers.scorer_spec(name)
  model = mostra_scorers.build_model(config.model, spec)
  selection = _selection_metric(config, spec)
  pointer_length = int(config.model.pointer_train_length)
  objective_names = objective_names or sessions_lib.OBJECTIVES
  dummy = _dummy_batch(config, num_features, len(objective_names))

  def init_fn(rng):
    return mostra_scorers.init_params(model, spec, rng, *dummy, pointer_length), {}

  def train_data(context):
    del context
    batches = session_batches_lib.session_batches(
        arrays['train'],
        batch_size=mesh_lib.host_batch_size(config.batch_size),
        seed=config.seed,
        num_epochs=None,
        shard_index=jax.process_index(),
        shard_count=jax.process_count(),
    )
    batches = batches.map(lambda b: {k: b[k] for k in ('features', 'mask', 'labels')})
    return iter(batches.to_iter_dataset())

  steps_before = checkpoint.latest_step(os.path.join(run_dir, 'checkpoints')) or 0
  start = time.perf_counter()
  result = runs.train_run(
      runs.run_config(config, **{'loop.early_stopping_metric': selection}),
      run_dir,
      init_fn=init_fn,
      make_step=lambda context: make_train_step(model, spec, pointer_length),
      train_data=train_data,
      evaluate=lambda context: make_evaluate(
          predict_fn or make_predict_fn(config, name), arrays['valid'], config, objective_names
      ),
      hparams={
          'scorer': name,
          'batch_size': config.batch_size,
          'learning_rate': config.optimizer.learning_rate,
      },
      description=name,
  )
  num_params = state_lib.count_params(
      nn.meta.unbox(jax.eval_shape(init_fn, jax.random.PRNGKey(0))[0])
  )
  summary = {
      'stop_reason': result.stop_reason,
      'step': result.step,
      'selection_metric': selection,
      'best': result.best,
      'num_params': num_params,
      'steps_trained_now': result.step - steps_before if result.state is not None else 0,
      'seconds': round(time.perf_counter() - start, 2),
  }
  logging.info('[%s] %s', name, summary)
  return summary


# ----------------------------------------------------------------------------------- report


def load_best_params(
    config: Any, name: str, run_dir: str, num_features: int, num_objectives: int = 4
) -> Any:
  """The model-selected parameters of one scorer (on the default device)."""
  spec = mostra_scorers.scorer_spec(name)
  path = os.path.join(run_dir, 'best')
  if not os.path.exists(path):
    raise ValueError(
        f'{path} does not exist: train {name!r} first (experiments/train_mostra.py '
        'with the same --workdir and config)'
    )
  model = mostra_scorers.build_model(config.model, spec)
  dummy = _dummy_batch(config, num_features, num_objectives)
  pointer_length = int(config.model.pointer_train_length)
  boxed = jax.eval_shape(
      lambda rng: mostra_scorers.init_params(model, spec, rng, *dummy, pointer_length),
      jax.random.PRNGKey(0),
  )
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  abstract = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), nn.meta.unbox(boxed)
  )
  restored = checkpoint.load_params(path, {'params': abstract, 'model_state': {}})
  return restored['params']


def report(
    config: Any, workdir: str, predict_fns: Mapping[str, PredictFn] | None = None
) -> dict[str, Any]:
  """Loads every trained scorer from `workdir/models`, decodes the report split and writes the
  Table 1 report (results.json, printed table, plots/map_vs_epsilon.png) into `workdir`."""
  data_dir = config.data.dir or os.path.join(workdir, 'data')
  split = config.report.split
  if split not in sessions_lib.SPLITS:
    raise ValueError(f'config.report.split={split!r}: choose from {sessions_lib.SPLITS}')
  metadata, arrays = load_data(data_dir)
  arrays = arrays[split]
  objective_names = tuple(metadata['objectives'])
  predict_fns = dict(predict_fns or {})
  predictions = {}
  for name in config.scorers:
    params = load_best_params(
        config,
        name,
        os.path.join(workdir, 'models', name),
        metadata['num_features'],
        len(objective_names),
    )
    predict_fn = predict_fns.get(name) or make_predict_fn(config, name)
    predictions[name] = _predict_split(predict_fn, params, arrays, int(config.eval_batch_size))
  return mostra_report.write_report(
      config.report,
      workdir,
      arrays,
      predictions,
      objective_names=objective_names,
      unavailable=metadata.get('unavailable_objectives', {}),
  )


def train_and_evaluate(config: Any, workdir: str) -> dict[str, Any]:
  """Builds the data if needed, trains (or resumes) every scorer, then writes the report."""
  start = time.perf_counter()
  for name in config.scorers:
    mostra_scorers.scorer_spec(name)
  os.makedirs(workdir, exist_ok=True)
  data_dir = prepare_data(config, workdir)
  metadata, arrays = load_data(data_dir)
  predict_fns = {name: make_predict_fn(config, name) for name in config.scorers}
  training = {}
  for name in config.scorers:
    training[name] = train_scorer(
        config,
        name,
        arrays,
        metadata['num_features'],
        os.path.join(workdir, 'models', name),
        predict_fns[name],
        tuple(metadata['objectives']),
    )
  train_seconds = time.perf_counter() - start
  results = report(config, workdir, predict_fns)
  summary = {
      'data_dir': data_dir,
      'training': training,
      'train_seconds': round(train_seconds, 2),
      'total_seconds': round(time.perf_counter() - start, 2),
  }
  if jax.process_index() == 0:
    with open(os.path.join(workdir, 'training_summary.json'), 'w') as f:
      json.dump(summary, f, indent=1, default=float)
  print(
      f"mostra: trained {len(training)} scorers in {summary['train_seconds']:.1f} s "
      f"({sum(t['steps_trained_now'] for t in training.values())} steps this run); "
      f"total {summary['total_seconds']:.1f} s"
  )
  return {**summary, 'results': results}
