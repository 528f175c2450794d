"""The generic sharded training loop shared by every job.

A job supplies a pure step ``(state, inputs) -> (state, metrics)``, an iterator of
host-local numpy inputs (a grain ``DatasetIterator``, so its position can be
checkpointed) and optionally an ``evaluate(state) -> {name: float}`` callback.
The loop compiles the step with the one jit policy (``step.jit_train_step``: state
donated, each input leaf on its own PartitionSpec) and logs its memory before step 1,
merges metrics as clu collections, writes TensorBoard + logs from process 0, shows
progress with rate and ETA, evaluates periodically, stops early on a validation
metric, guards against NaN/inf, and checkpoints every K steps and on a SIGTERM that
every process agrees on (``preemption.Preemption``). Re-running in the same workdir
resumes from the latest checkpoint, iterator position included; a finished run's
final checkpoint records ``done`` (read by ``runs.is_finished``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import numpy as np
import tqdm
from absl import logging
from clu import metric_writers, metrics as clu_metrics, periodic_actions
from etils import epath
from jax.sharding import Mesh

from larp_jax.training import checkpoint as checkpoint_lib
from larp_jax.training import preemption as preemption_lib
from larp_jax.training import state as state_lib
from larp_jax.training import step as step_lib

StepFn = step_lib.StepFn
EvalFn = Callable[[state_lib.TrainState], Mapping[str, float]]


class NonFiniteMetricError(FloatingPointError):
  """A logged metric became NaN or inf; the offending state was saved for debugging."""

  def __init__(self, metric: str, step: int, value: float, saved_to: str):
    super().__init__(
        f"Metric {metric!r} is {value} at step {step}. Training stopped; the state at "
        f"that step was saved to {saved_to} for inspection (regular checkpoints are "
        "untouched, so re-running resumes from the last finite one)."
    )
    self.metric, self.step, self.value = metric, step, value


@dataclasses.dataclass
class TrainResult:
  """What ``train_loop`` hands back.

  Attributes:
    state: the final TrainState (on the mesh).
    stop_reason: 'completed', 'early_stopped' or 'preempted'.
    history: evaluation records ``{'step': int, <metric>: float, ...}``.
    best: the best evaluation record by the early-stopping metric ({} if none).
    best_path: orbax path of ``{'params', 'model_state'}`` at the best evaluation,
      or None when no early-stopping metric is configured.
    train_metrics: the last computed training metrics.
    step: the step the run stopped at.
  """

  state: state_lib.TrainState
  stop_reason: str
  history: list[dict[str, float]]
  best: dict[str, float]
  best_path: str | None
  train_metrics: dict[str, float]
  step: int = 0


def _field_name(metric: str) -> str:
  """clu collections are dataclasses: 'loss/wtc' -> 'loss__wtc'."""
  return re.sub(r"\W", "__", metric)


def _collection_for(names: list[str]) -> type[clu_metrics.Collection]:
  return clu_metrics.Collection.create(
      **{_field_name(name): clu_metrics.Average.from_output(_field_name(name)) for name in names}
  )


def _is_better(value: float, best: float | None, mode: str) -> bool:
  if best is None:
    return True
  return value > best if mode == "max" else value < best


def _first_non_finite(values: Mapping[str, float]) -> tuple[str, float] | None:
  for name, value in values.items():
    if not math.isfinite(float(value)):
      return name, float(value)
  return None


def train_loop(
    *,
    config: Any,
    workdir: str | epath.Path,
    state: state_lib.TrainState,
    state_shardings: state_lib.TrainState,
    mesh: Mesh,
    train_step: StepFn,
    train_iter: Iterator[Mapping[str, np.ndarray]],
    evaluate: EvalFn | None = None,
    input_specs: Any = None,
    preemption: preemption_lib.Preemption | None = None,
    hparams: Mapping[str, Any] | None = None,
    description: str = "train",
) -> TrainResult:
  """Runs (or resumes) training until ``num_train_steps``, early stop or SIGTERM.

  Args:
    config: loop settings: ``num_train_steps``, ``log_every_steps``,
      ``eval_every_steps`` (0: only at the end), ``checkpoint_every_steps``,
      ``keep_checkpoints``, ``early_stopping_metric`` ('' for none),
      ``early_stopping_mode`` ('max'|'min'), ``early_stopping_patience``
      (evaluations without improvement before stopping), ``progress`` (bool).
    workdir: checkpoints go to ``workdir/checkpoints``, best weights to
      ``workdir/best``, TensorBoard events and ``eval_history.json`` to ``workdir``.
    state, state_shardings: from ``state.create_train_state``.
    mesh: the device mesh.
    train_step: pure ``(state, batch) -> (state, {name: scalar})``.
    train_iter: yields this process's slice of each batch (numpy dict); must
      support ``get_state``/``set_state`` (grain DatasetIterator) for resume.
    evaluate: optional ``state -> {name: float}`` on held-out data.
    input_specs: PartitionSpec tree for the inputs (``step.jit_train_step``); None: all
      leaves are batches on 'data'.
    preemption: a shared ``Preemption``; one is installed if None.
    hparams: written to TensorBoard once.
    description: label for the progress bar and logs.
  """
  workdir = epath.Path(os.path.abspath(workdir))  # orbax needs absolute paths
  workdir.mkdir(parents=True, exist_ok=True)
  is_chief = jax.process_index() == 0
  num_steps = int(config.num_train_steps)
  log_every = max(1, int(config.log_every_steps))
  eval_every = int(config.get("eval_every_steps", 0) or 0)
  es_metric = config.get("early_stopping_metric", "") or ""
  es_mode = config.get("early_stopping_mode", "max")
  es_patience = int(config.get("early_stopping_patience", 0) or 0)
  if es_mode not in ("max", "min"):
    raise ValueError(f"config.early_stopping_mode={es_mode!r}: expected 'max' or 'min'.")
  if es_metric and evaluate is None:
    raise ValueError(f"config.early_stopping_metric={es_metric!r} needs an evaluate function.")

  ckpt = checkpoint_lib.Checkpointer(
      workdir / "checkpoints",
      max_to_keep=int(config.get("keep_checkpoints", 3)),
      save_every_steps=int(config.checkpoint_every_steps),
  )
  best_path = workdir / "best" if es_metric else None
  own_flag = preemption is None
  preemption = preemption or preemption_lib.Preemption()

  loop_state: dict[str, Any] = {
      "history": [],
      "best": {},
      "evals_since_best": 0,
      "done": False,
      "stop_reason": "",
  }
  restored = ckpt.restore(state_lib.abstract_like(state, state_shardings), train_iter)
  if restored is not None:
    state, loop_state = restored
    logging.info("[%s] resuming at step %d", description, int(state.step))
  if loop_state.get("done"):
    ckpt.close()
    if own_flag:
      preemption.restore()
    return TrainResult(
        state,
        loop_state["stop_reason"],
        loop_state["history"],
        loop_state["best"],
        str(best_path) if best_path else None,
        {},
        int(state.step),
    )

  writer = metric_writers.create_default_writer(
      workdir, just_logging=not is_chief, asynchronous=False
  )
  if hparams and int(state.step) == 0:
    writer.write_hparams(dict(hparams))
  report = periodic_actions.ReportProgress(
      num_train_steps=num_steps, writer=writer, every_steps=log_every, every_secs=None
  )
  jitted = step_lib.jit_train_step(train_step, state_shardings, mesh, input_specs)
  step_fn = None

  def save(step, force=False):
    ckpt.save(step, state, train_iter, loop_state, force=force)

  def run_eval(step: int) -> bool:
    """Evaluates; returns True when early stopping triggers."""
    nonlocal loop_state
    values = {k: float(v) for k, v in evaluate(state).items()}
    bad = _first_non_finite(values)
    if bad is not None:
      raise NonFiniteMetricError(f"eval/{bad[0]}", step, bad[1], "(not saved: eval only)")
    writer.write_scalars(step, {f"eval/{k}": v for k, v in values.items()})
    record = {"step": step, **values}
    loop_state["history"].append(record)
    logging.info(
        "[%s] eval at step %d: %s",
        description,
        step,
        ", ".join(f"{k}={v:.4f}" for k, v in values.items()),
    )
    if not es_metric:
      return False
    if es_metric not in values:
      raise ValueError(
          f"config.early_stopping_metric={es_metric!r} is not among the "
          f"evaluation metrics {sorted(values)}."
      )
    best_value = loop_state["best"].get(es_metric)
    if _is_better(values[es_metric], best_value, es_mode):
      loop_state["best"] = record
      loop_state["evals_since_best"] = 0
      checkpoint_lib.save_params(
          best_path, {"params": state.params, "model_state": state.model_state}
      )
    else:
      loop_state["evals_since_best"] += 1
    return es_patience > 0 and loop_state["evals_since_best"] >= es_patience

  collection_cls = None
  accumulated = None
  train_metrics: dict[str, float] = {}
  stop_reason = "completed"
  step = int(state.step)
  progress = tqdm.tqdm(
      total=num_steps,
      initial=step,
      desc=description,
      unit="step",
      disable=not (is_chief and config.get("progress", True)),
      mininterval=2.0,
      dynamic_ncols=True,
  )
  try:
    while step < num_steps:
      if preemption.should_stop(step):
        stop_reason = "preempted"
        break
      host_batch = next(train_iter)
      batch = step_lib.place_inputs(host_batch, mesh, input_specs)
      if step_fn is None:
        step_fn = step_lib.compile_step(jitted, state, batch, name=f"[{description}] step")
      state, step_metrics = step_fn(state, batch)
      step += 1
      if collection_cls is None:
        collection_cls = _collection_for(sorted(step_metrics))
        metric_names = {_field_name(k): k for k in step_metrics}
      update = collection_cls.single_from_model_output(
          **{_field_name(k): v for k, v in step_metrics.items()}
      )
      accumulated = update if accumulated is None else accumulated.merge(update)
      report(step)
      progress.update(1)

      if step % log_every == 0 or step == num_steps:
        train_metrics = {metric_names[k]: float(v) for k, v in accumulated.compute().items()}
        accumulated = None
        bad = _first_non_finite(train_metrics)
        if bad is not None:
          nan_dir = workdir / f"non_finite_step_{step}"
          checkpoint_lib.save_params(nan_dir, state)
          raise NonFiniteMetricError(f"train/{bad[0]}", step, bad[1], str(nan_dir))
        writer.write_scalars(step, {f"train/{k}": v for k, v in train_metrics.items()})
        progress.set_postfix({k: f"{v:.4g}" for k, v in list(train_metrics.items())[:4]})

      stop_early = False
      if evaluate is not None and eval_every and step % eval_every == 0 and step < num_steps:
        stop_early = run_eval(step)
      if stop_early:
        stop_reason = "early_stopped"
        break
      if ckpt.should_save(step) and step < num_steps:  # the final save comes below
        save(step)

    if stop_reason != "preempted":
      if evaluate is not None and (
          not loop_state["history"] or loop_state["history"][-1]["step"] != step
      ):
        if run_eval(step) and stop_reason == "completed":
          stop_reason = "early_stopped"
      loop_state["done"] = True
      loop_state["stop_reason"] = stop_reason
    save(step, force=True)
  finally:
    progress.close()
    ckpt.close()
    writer.flush()
    if own_flag:
      preemption.restore()

  if is_chief:
    (workdir / "eval_history.json").write_text(json.dumps(loop_state["history"], indent=1))
  logging.info("[%s] stopped at step %d: %s", description, step, stop_reason)
  return TrainResult(
      state,
      stop_reason,
      loop_state["history"],
      loop_state["best"],
      str(best_path) if best_path else None,
      train_metrics,
      step,
  )
