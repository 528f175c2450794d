"""MOSTRA Table 1 end to end: session data -> one training run per scorer -> decoding report.

`train_and_evaluate(config, workdir)`:
  1. data: `config.data.dir`, or (if empty) the demo generator's MSSD-style CSVs written to
     `workdir/demo_raw` and built into `workdir/data` by `data_pipelines.sessions`
     (`{train,valid,test}.npz`, features [S, N, F], labels [S, N, 4] in OBJECTIVES order).
  2. every scorer in `config.scorers` (names in `SCORERS`) is trained by the generic loop in its
     own sub-workdir `workdir/models/<name>` (re-running resumes; a finished model is not
     retrained). Adam 5e-4 with decay (config.optimizer), batches of `config.batch_size`
     sessions; model selection / early stopping on validation NDCG@10 of SAT (decoded as the
     report decodes it), except MO-LTR, whose target mixes all objectives: the mean validation
     NDCG@10 over the four objectives (`config.mo_ltr_selection_metric`). The selected weights
     are `workdir/models/<name>/best`; `done.json` marks a finished run.
  3. `report(config, workdir)`: loads the best weights, scores the test split and writes the
     Table 1 report (larp_jax/jobs/mostra_report.py): `results.json`, a printed table and
     `plots/map_vs_epsilon.png`.

Scorers (App. A):
  DNN_<loss>          track-level MLP (`DNNScorer`), sorted by its logits.
  SetRank[_<loss>]    SetTRM + row-wise FF (`SetTRM`, Eq. 7), sorted; `SetRank` is AttRank.
  SetTRM2GRU_AttRank, SetTRM2TRM_AttRank   pointer decoders, teacher forced on the SAT-sorted
                      order with AttRank at every step (`stepwise_attrank_loss`), decoded greedily.
  MO-LTR_<loss>       SetTRM with the BOOST/EXPOSURE/DISCOVERY labels appended to its input
                      features, trained on s = SAT + SAT * sum_j E_j (`mo_ltr_labels`).
Losses: AttRank on logits; BCE on logits; RMSE on the sigmoid relevance (SAT targets in {0, 1})
or on the logits (MO-LTR targets up to 4).

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

import dataclasses
import functools
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from data_pipelines import sessions as sessions_lib
from data_pipelines.demo import sessions as demo_sessions
from larp_jax.evaluation import sequencing
from larp_jax.jobs import mostra_report
from larp_jax.losses import ranking
from larp_jax.models import mostra as mostra_models
from larp_jax.training import checkpoint, loop, mesh as mesh_lib, optimizers
from larp_jax.training import state as state_lib

Array = jax.Array

ARCHITECTURES = ('dnn', 'settrm', 'settrm2gru', 'settrm2trm')
LOSSES = ('attrank', 'bce', 'rmse')
SAT = sessions_lib.OBJECTIVES.index('SAT')


@dataclasses.dataclass(frozen=True)
class ScorerSpec:
  """One trained model of Table 1.

  Attributes:
    architecture: one of ARCHITECTURES.
    loss: one of LOSSES (pointer decoders: 'attrank' only).
    multi_objective: MO-LTR: objective labels as inputs, composite training target.
  """
  architecture: str
  loss: str
  multi_objective: bool = False

  @property
  def is_pointer(self) -> bool:
    return self.architecture in ('settrm2gru', 'settrm2trm')


SCORERS = {
    'DNN_AttRank': ScorerSpec('dnn', 'attrank'),
    'DNN_BCE': ScorerSpec('dnn', 'bce'),
    'DNN_RMSE': ScorerSpec('dnn', 'rmse'),
    'SetRank': ScorerSpec('settrm', 'attrank'),
    'SetRank_BCE': ScorerSpec('settrm', 'bce'),
    'SetRank_RMSE': ScorerSpec('settrm', 'rmse'),
    'SetTRM2GRU_AttRank': ScorerSpec('settrm2gru', 'attrank'),
    'SetTRM2TRM_AttRank': ScorerSpec('settrm2trm', 'attrank'),
    'MO-LTR_AttRank': ScorerSpec('settrm', 'attrank', multi_objective=True),
    'MO-LTR_RMSE': ScorerSpec('settrm', 'rmse', multi_objective=True),
}


def scorer_spec(name: str) -> ScorerSpec:
  if name not in SCORERS:
    raise ValueError(f'config.scorers: unknown scorer {name!r}; choose from {sorted(SCORERS)}')
  return SCORERS[name]


# ------------------------------------------------------------------------------------- data


def prepare_data(config: Any, workdir: str) -> str:
  """The built sessions directory: `config.data.dir`, or the demo data built into workdir/data."""
  if config.data.dir:
    if not os.path.exists(os.path.join(config.data.dir, 'metadata.json')):
      raise ValueError(f'config.data.dir={config.data.dir!r} has no metadata.json (build it '
                       'with `python -m data_pipelines.sessions --raw_dir ... --out_dir ...`)')
    return config.data.dir
  data_dir = os.path.join(workdir, 'data')
  if os.path.exists(os.path.join(data_dir, 'metadata.json')):
    return data_dir
  raw_dir = os.path.join(workdir, 'demo_raw')
  demo = demo_sessions.DemoSessionsConfig(**config.data.demo.to_dict())
  summary = demo_sessions.write_demo_sessions(raw_dir, demo)
  logging.info('demo sessions: %d sessions, %d rows in %s', summary['num_sessions'],
               summary['num_rows'], raw_dir)
  sessions_lib.build_session_arrays(
      raw_dir, data_dir, max_set_size=config.data.max_set_size,
      split_fractions=tuple(config.data.split_fractions), split_by=config.data.split_by,
      seed=config.data.split_seed)
  return data_dir


def padded_chunks(arrays: Mapping[str, np.ndarray], size: int,
                  names: tuple[str, ...] = ('features', 'mask', 'labels')
                  ) -> Iterator[tuple[dict[str, np.ndarray], int]]:
  """Fixed-size chunks of a split (the last padded with empty sessions) and their real sizes."""
  total = len(arrays['mask'])
  for start in range(0, total, size):
    chunk = {n: arrays[n][start:start + size] for n in names}
    real = len(chunk['mask'])
    if real < size:
      chunk = {n: np.concatenate([a, np.zeros((size - real,) + a.shape[1:], a.dtype)])
               for n, a in chunk.items()}
    yield chunk, real


# ----------------------------------------------------------------------------------- models


def build_model(config: Any, spec: ScorerSpec) -> nn.Module:
  """The flax module of one scorer, sized by `config.model`."""
  dtype = jnp.dtype(config.model.dtype)
  settrm = mostra_models.SetTRMConfig(**config.model.settrm.to_dict())
  if spec.architecture == 'dnn':
    return mostra_models.DNNScorer(hidden_dims=tuple(config.model.dnn_hidden_dims), dtype=dtype)
  if spec.architecture == 'settrm':
    return mostra_models.SetTRM(settrm, dtype=dtype)
  if spec.architecture == 'settrm2gru':
    return mostra_models.SetTRM2GRU(settrm, dtype=dtype, **config.model.gru.to_dict())
  if spec.architecture == 'settrm2trm':
    return mostra_models.SetTRM2TRM(settrm, dtype=dtype, **config.model.trm.to_dict())
  raise ValueError(f'unknown architecture {spec.architecture!r}; choose from {ARCHITECTURES}')


def model_inputs(spec: ScorerSpec, features: Array, mask: Array, labels: Array) -> Array:
  """Input features [B, N, F] (+ the J objective labels for MO-LTR: [B, N, F + J])."""
  if not spec.multi_objective:
    return features
  objectives = jnp.where(mask[..., None], labels[..., SAT + 1:], 0.0).astype(features.dtype)
  return jnp.concatenate([features, objectives], axis=-1)


def training_target(spec: ScorerSpec, labels: Array) -> Array:
  """float32 [B, N]: SAT, or MO-LTR's SAT + SAT * sum_j E_j."""
  sat = labels[..., SAT]
  if spec.multi_objective:
    return mostra_models.mo_ltr_labels(sat, labels[..., SAT + 1:])
  return sat.astype(jnp.float32)


def scorer_loss(model: nn.Module, spec: ScorerSpec, params: Any, features: Array, mask: Array,
                labels: Array, pointer_length: int) -> Array:
  """float32 scalar training loss of one batch (features [B,N,F], mask [B,N], labels [B,N,4])."""
  mask = mask.astype(bool)
  inputs = model_inputs(spec, features, mask, labels)
  target = training_target(spec, labels)
  if spec.is_pointer:
    targets = mostra_models.teacher_forcing_targets(target, mask, pointer_length)
    step_logits = model.apply({'params': params}, inputs, mask, targets)
    return ranking.stepwise_attrank_loss(step_logits, targets, target, mask)
  out = model.apply({'params': params}, inputs, mask)
  if spec.loss == 'attrank':
    return ranking.attrank_loss(out['logits'], target, mask)
  if spec.loss == 'bce':
    return ranking.bce_loss(out['logits'], target, mask)
  if spec.loss == 'rmse':
    prediction = out['logits'] if spec.multi_objective else out['relevance']
    return ranking.rmse_loss(prediction, target, mask)
  raise ValueError(f'unknown loss {spec.loss!r}; choose from {LOSSES}')


def predict(model: nn.Module, spec: ScorerSpec, params: Any, features: Array, mask: Array,
            labels: Array, length: int) -> dict[str, Array]:
  """Scorers: {'logits', 'relevance'} float32 [B, N]; pointer models: {'sequences'} int32 [B, L]."""
  mask = mask.astype(bool)
  inputs = model_inputs(spec, features, mask, labels)
  if spec.is_pointer:
    return {'sequences': model.apply({'params': params}, inputs, mask, length=length,
                                     method='decode')}
  out = model.apply({'params': params}, inputs, mask)
  return {'logits': out['logits'], 'relevance': out['relevance']}


def _dummy_batch(config: Any, num_features: int):
  n = config.data.max_set_size
  return (jnp.zeros((1, n, num_features), jnp.float32), jnp.ones((1, n), bool),
          jnp.zeros((1, n, len(sessions_lib.OBJECTIVES)), jnp.float32))


def init_params(model: nn.Module, spec: ScorerSpec, rng: Array, features: Array, mask: Array,
                labels: Array, pointer_length: int) -> Any:
  """Boxed parameters (nn.Partitioned leaves) of a fresh model."""
  inputs = model_inputs(spec, features, mask, labels)
  if spec.is_pointer:
    targets = jnp.zeros((features.shape[0], pointer_length), jnp.int32)
    return model.init(rng, inputs, mask, targets)['params']
  return model.init(rng, inputs, mask)['params']


# --------------------------------------------------------------------------------- training


def make_train_step(model: nn.Module, spec: ScorerSpec, pointer_length: int):
  """Pure `(state, batch) -> (state, metrics)`."""

  def train_step(state: state_lib.TrainState, batch):
    def loss_fn(params):
      return scorer_loss(model, spec, params, batch['features'], batch['mask'], batch['labels'],
                         pointer_length)

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    metrics = {'loss': loss, 'grad_norm': optax.tree.norm(grads),
               'param_norm': optax.tree.norm(state.params)}
    return state.apply_gradients(grads), metrics

  return train_step


PredictFn = Callable[[Any, np.ndarray, np.ndarray, np.ndarray], dict[str, Array]]


def make_predict_fn(config: Any, name: str) -> PredictFn:
  """Jitted `(params, features, mask, labels) -> predict(...)` of one scorer.

  Evaluation during training and the report share one such function per scorer, so each
  compiles once per chunk shape.
  """
  spec = scorer_spec(name)
  model = build_model(config, spec)
  length = max(config.report.ndcg_ks)
  return jax.jit(functools.partial(predict, model, spec, length=length))


def predict_split(predict_fn: PredictFn, params: Any, arrays: Mapping[str, np.ndarray],
                  chunk_size: int) -> dict[str, np.ndarray]:
  """Outputs on a whole split: logits/relevance float32 [S, N] or sequences int32 [S, L]."""
  outputs: dict[str, list[np.ndarray]] = {}
  for chunk, real in padded_chunks(arrays, chunk_size):
    for key, value in predict_fn(params, chunk['features'], chunk['mask'],
                                 chunk['labels']).items():
      outputs.setdefault(key, []).append(np.asarray(value)[:real])
  return {key: np.concatenate(values) for key, values in outputs.items()}


def validation_metrics(outputs: Mapping[str, np.ndarray], arrays: Mapping[str, np.ndarray],
                       ks: tuple[int, ...]) -> dict[str, float]:
  """{'ndcg@K/<OBJ>', 'ndcg@K/mean'} of the decoded outputs (as the report decodes them)."""
  length = max(ks)
  sequences = mostra_report.decode_predictions(outputs, arrays['mask'], length)
  per_session = sequencing.per_session_metrics(sequences, arrays['labels'], arrays['mask'],
                                               ndcg_ks=ks, map_ks=(),
                                               objective_names=sessions_lib.OBJECTIVES)
  means = sequencing.mean_metrics(per_session)
  out = {}
  for k in ks:
    values = [means[f'ndcg@{k}/{o}'] for o in sessions_lib.OBJECTIVES]
    out.update({f'ndcg@{k}/{o}': v if np.isfinite(v) else 0.0
                for o, v in zip(sessions_lib.OBJECTIVES, values)})
    out[f'ndcg@{k}/mean'] = float(np.mean([out[f'ndcg@{k}/{o}']
                                           for o in sessions_lib.OBJECTIVES]))
  return out


def make_evaluate(predict_fn: PredictFn, arrays: Mapping[str, np.ndarray], config: Any):
  """`state -> validation_metrics` on a held-out split (evaluated in one process)."""
  ks = tuple(config.report.ndcg_ks)

  def evaluate(state: state_lib.TrainState) -> dict[str, float]:
    params = jax.device_put(state.params, jax.devices()[0])
    outputs = predict_split(predict_fn, params, arrays, int(config.eval_batch_size))
    return validation_metrics(outputs, arrays, ks)

  return evaluate


def _loop_config(config: Any, spec: ScorerSpec) -> ml_collections.ConfigDict:
  loop_config = ml_collections.ConfigDict(config.loop.to_dict())
  if spec.multi_objective:
    loop_config.early_stopping_metric = config.mo_ltr_selection_metric
  if not loop_config.early_stopping_metric:
    raise ValueError('config.loop.early_stopping_metric (and config.mo_ltr_selection_metric) '
                     "must name a validation metric for model selection, e.g. 'ndcg@10/SAT'.")
  return loop_config


def _checkpoint_steps(run_dir: str) -> list[int]:
  path = os.path.join(run_dir, 'checkpoints')
  if not os.path.isdir(path):
    return []
  return sorted(int(d) for d in os.listdir(path) if d.isdigit())


def train_scorer(config: Any, name: str, arrays: Mapping[str, Mapping[str, np.ndarray]],
                 num_features: int, run_dir: str,
                 predict_fn: PredictFn | None = None) -> dict[str, Any]:
  """Trains (or resumes) one scorer in `run_dir`; returns a summary (also `run_dir/done.json`).

  A run whose `done.json` exists (finished or early-stopped) is not touched again: its summary
  comes back with `steps_trained_now = 0`. An interrupted run resumes from its last checkpoint.
  """
  spec = scorer_spec(name)
  done_path = os.path.join(run_dir, 'done.json')
  if os.path.exists(done_path):
    with open(done_path) as f:
      summary = json.load(f)
    logging.info('[%s] already trained (%s at step %d): skipped', name, summary['stop_reason'],
                 summary['step'])
    return {**summary, 'steps_trained_now': 0, 'seconds': 0.0}
  mesh = mesh_lib.make_mesh(config.mesh)
  mesh_lib.check_batch_size(config.batch_size, mesh)
  rules = mesh_lib.logical_axis_rules(config.mesh)
  model = build_model(config, spec)
  loop_config = _loop_config(config, spec)
  tx = optimizers.make_optimizer(config.optimizer, loop_config.num_train_steps)
  pointer_length = int(config.model.pointer_train_length)
  dummy = _dummy_batch(config, num_features)

  def init_fn(rng):
    return init_params(model, spec, rng, *dummy, pointer_length), {}

  state, shardings = state_lib.create_train_state(init_fn, tx, mesh, rules,
                                                  jax.random.PRNGKey(config.seed))
  batches = sessions_lib.session_batches(
      arrays['train'], batch_size=mesh_lib.host_batch_size(config.batch_size), seed=config.seed,
      num_epochs=None, shard_index=jax.process_index(), shard_count=jax.process_count())
  batches = batches.map(lambda b: {k: b[k] for k in ('features', 'mask', 'labels')})
  steps_before = _checkpoint_steps(run_dir)
  start = time.perf_counter()
  result = loop.train_loop(
      config=loop_config, workdir=run_dir, state=state, state_shardings=shardings, mesh=mesh,
      train_step=make_train_step(model, spec, pointer_length),
      train_iter=iter(batches.to_iter_dataset()),
      evaluate=make_evaluate(predict_fn or make_predict_fn(config, name), arrays['valid'],
                             config),
      hparams={'scorer': name, 'batch_size': config.batch_size,
               'learning_rate': config.optimizer.learning_rate},
      description=name)
  step = int(result.state.step)
  summary = {'stop_reason': result.stop_reason, 'step': step,
             'selection_metric': loop_config.early_stopping_metric, 'best': result.best,
             'num_params': state_lib.count_params(result.state.params)}
  if result.stop_reason != 'preempted' and jax.process_index() == 0:
    with open(done_path, 'w') as f:
      json.dump(summary, f, indent=1, default=float)
  summary.update(steps_trained_now=step - (steps_before[-1] if steps_before else 0),
                 seconds=round(time.perf_counter() - start, 2))
  logging.info('[%s] %s', name, summary)
  return summary


# ----------------------------------------------------------------------------------- report


def load_best_params(config: Any, name: str, run_dir: str, num_features: int) -> Any:
  """The model-selected parameters of one scorer (on the default device)."""
  spec = scorer_spec(name)
  path = os.path.join(run_dir, 'best')
  if not os.path.exists(path):
    raise ValueError(f'{path} does not exist: train {name!r} first (experiments/train_mostra.py '
                     'with the same --workdir and config)')
  model = build_model(config, spec)
  dummy = _dummy_batch(config, num_features)
  boxed = jax.eval_shape(
      lambda rng: init_params(model, spec, rng, *dummy, int(config.model.pointer_train_length)),
      jax.random.PRNGKey(0))
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
                          nn.meta.unbox(boxed))
  restored = checkpoint.load_params(path, {'params': abstract, 'model_state': {}})
  return restored['params']


def report(config: Any, workdir: str,
           predict_fns: Mapping[str, PredictFn] | None = None) -> dict[str, Any]:
  """Loads every trained scorer from `workdir/models`, decodes the report split and writes the
  Table 1 report (results.json, printed table, plots/map_vs_epsilon.png) into `workdir`."""
  data_dir = config.data.dir or os.path.join(workdir, 'data')
  metadata = sessions_lib.load_metadata(data_dir)
  split = config.report.split
  if split not in sessions_lib.SPLITS:
    raise ValueError(f'config.report.split={split!r}: choose from {sessions_lib.SPLITS}')
  arrays = sessions_lib.load_sessions(data_dir)[split]
  predict_fns = dict(predict_fns or {})
  predictions = {}
  for name in config.scorers:
    params = load_best_params(config, name, os.path.join(workdir, 'models', name),
                              metadata['num_features'])
    predict_fn = predict_fns.get(name) or make_predict_fn(config, name)
    predictions[name] = predict_split(predict_fn, params, arrays, int(config.eval_batch_size))
  return mostra_report.write_report(config.report, workdir, arrays, predictions,
                                    objective_names=tuple(metadata['objectives']))


def train_and_evaluate(config: Any, workdir: str) -> dict[str, Any]:
  """Builds the data if needed, trains (or resumes) every scorer, then writes the report."""
  start = time.perf_counter()
  for name in config.scorers:
    scorer_spec(name)
  os.makedirs(workdir, exist_ok=True)
  data_dir = prepare_data(config, workdir)
  metadata = sessions_lib.load_metadata(data_dir)
  arrays = sessions_lib.load_sessions(data_dir)
  predict_fns = {name: make_predict_fn(config, name) for name in config.scorers}
  training = {}
  for name in config.scorers:
    training[name] = train_scorer(config, name, arrays, metadata['num_features'],
                                  os.path.join(workdir, 'models', name), predict_fns[name])
  train_seconds = time.perf_counter() - start
  results = report(config, workdir, predict_fns)
  summary = {'data_dir': data_dir, 'training': training,
             'train_seconds': round(train_seconds, 2),
             'total_seconds': round(time.perf_counter() - start, 2)}
  if jax.process_index() == 0:
    with open(os.path.join(workdir, 'training_summary.json'), 'w') as f:
      json.dump(summary, f, indent=1, default=float)
  print(f"mostra: trained {len(training)} scorers in {summary['train_seconds']:.1f} s "
        f"({sum(t['steps_trained_now'] for t in training.values())} steps this run); "
        f"total {summary['total_seconds']:.1f} s")
  return {**summary, 'results': results}
