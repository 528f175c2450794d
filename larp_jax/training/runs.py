"""Runs: the one way from a config to a trained, resumable, warm-started set of weights.

A *run* is one call of the generic loop in its own directory. ``train_run`` does everything
between a config and ``loop.train_loop``, the same for every system:

  mesh -> batch-size check -> axis rules -> optimizer (rules: multipliers, frozen subtrees)
  -> sharded TrainState -> ``config.init_from`` (fresh runs only) -> data -> loop

A *job* (``larp_jax/jobs/<system>_job.py``) is a list of runs chosen by config: LARP's stages,
MOSTRA's scorers, the user autoencoder and then heads on its frozen encoder. ``is_finished`` is
the one "already done" test (it reads the loop's final checkpoint record), so re-running a
finished job is a no-op and a killed job resumes inside the run it was in.

``config.init_from``: a tuple of entries ``{path, include, exclude, into}`` applied in order:
  path     ``'run:<name>'`` -- the best weights of run ``<name>`` of the same job
           (``<job dir>/<name>/best``); a key of ``init_sources`` -- an in-memory tree a job
           provides (e.g. ``'text_model'``: converted pretrained BERT weights); a run directory
           or its ``checkpoints/`` directory -- the latest checkpoint's params and model_state;
           an orbax params directory (a run's ``best``); or a ``.npz`` file of '/'-joined paths.
  include  regexes over target paths ('params/text_encoder/...', 'model_state/queues/...'); a
           leaf is loaded when one matches (default: all leaves under ``into``).
  exclude  regexes; a matching leaf keeps its fresh initialisation.
  into     path prefix in the target where the source's root goes ('' = the state's root
           ``{'params', 'model_state'}``; 'params/text_encoder' for a bare BERT tree).
Every selected target leaf must exist in the source with the same shape, else the error names
the missing keys.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import grain
import jax
import ml_collections
import numpy as np
from absl import logging
from etils import epath
from jax.sharding import Mesh, PartitionSpec as P

from larp_jax.training import checkpoint as checkpoint_lib
from larp_jax.training import loop as loop_lib
from larp_jax.training import mesh as mesh_lib
from larp_jax.training import optimizers
from larp_jax.training import state as state_lib
from larp_jax.training import step as step_lib

TrainResult = loop_lib.TrainResult
InitFn = state_lib.InitFn


@dataclasses.dataclass(frozen=True)
class RunContext:
  """What a run hands its step and evaluation factories.

  Attributes:
    mesh: the device mesh.
    rules: the logical-axis rules.
    num_train_steps: the run's length (optimizer schedule and loop).
    run_dir: the run's directory.
  """

  mesh: Mesh
  rules: tuple[tuple[str, str | None], ...]
  num_train_steps: int
  run_dir: epath.Path


def is_finished(run_dir: str | os.PathLike) -> bool:
  """True when the run in ``run_dir`` completed or stopped early (not when preempted/killed)."""
  record = checkpoint_lib.latest_loop_state(epath.Path(os.fspath(run_dir)) / "checkpoints")
  return bool(record and record.get("done"))


def finished_result(run_dir: str | os.PathLike) -> TrainResult:
  """The TrainResult of a finished run, read from disk (``state`` is None: nothing is built)."""
  run_dir = epath.Path(os.path.abspath(os.fspath(run_dir)))
  record = checkpoint_lib.latest_loop_state(run_dir / "checkpoints")
  if not record or not record.get("done"):
    raise ValueError(f"{run_dir} holds no finished run.")
  best_path = run_dir / "best"
  return TrainResult(
      state=None,
      stop_reason=record["stop_reason"],
      history=record["history"],
      best=record["best"],
      best_path=str(best_path) if best_path.exists() else None,
      train_metrics={},
      step=checkpoint_lib.latest_step(run_dir / "checkpoints") or 0,
  )


def run_config(config: ml_collections.ConfigDict, **overrides: Any) -> ml_collections.ConfigDict:
  """An unlocked copy of ``config`` with dotted ``overrides`` (``'loop.num_train_steps'``)."""
  copy = ml_collections.ConfigDict(config.to_dict())
  for dotted, value in overrides.items():
    parent = copy
    *parts, last = dotted.split(".")
    for part in parts:
      parent = parent[part]
    parent[last] = value
  return copy


# ------------------------------------------------------------------------------- init_from


def _flatten(tree: Any) -> dict[str, Any]:
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {optimizers.path_name(path): leaf for path, leaf in leaves}


def _load_source(
    path: str, run_dir: epath.Path, init_sources: Mapping[str, Callable[[], Any]]
) -> dict[str, Any]:
  """Flat '/'-path -> array dict of one ``init_from`` source."""
  if path in init_sources:
    return _flatten(init_sources[path]())
  if path.startswith("run:"):
    best = run_dir.parent / path[len("run:") :] / "best"
    if not best.exists():
      raise ValueError(
          f"init_from path {path!r}: {best} does not exist (train run "
          f"{path[4:]!r} of this job first)."
      )
    return _flatten(checkpoint_lib.load_params(best))
  source = epath.Path(os.path.abspath(os.path.expanduser(path)))
  if not source.exists():
    known = f" (or one of {sorted(init_sources)})" if init_sources else ""
    raise ValueError(f"init_from path {path!r} does not exist{known}.")
  if source.is_file() and source.suffix == ".npz":
    with np.load(os.fspath(source)) as data:
      return {key: data[key] for key in data.files}
  checkpoints = source / "checkpoints" if (source / "checkpoints").exists() else source
  steps = [int(p.name) for p in checkpoints.iterdir() if p.name.isdigit()]
  if steps:
    restored = checkpoint_lib.load_params(checkpoints / str(max(steps)) / "state")
    return _flatten({"params": restored["params"], "model_state": restored["model_state"]})
  return _flatten(checkpoint_lib.load_params(source))


def _entries(init_from: Any) -> list[Mapping[str, Any]]:
  if not init_from:
    return []
  if isinstance(init_from, Mapping) or hasattr(init_from, "keys"):
    return [init_from] if init_from.get("path") else []
  return [entry for entry in init_from if entry and entry.get("path")]


def _put(value: Any, like: jax.Array) -> jax.Array:
  value = np.asarray(value, dtype=like.dtype)
  return jax.make_array_from_callback(like.shape, like.sharding, lambda index: value[index])


def apply_init_from(
    state: state_lib.TrainState,
    init_from: Any,
    run_dir: str | os.PathLike,
    init_sources: Mapping[str, Callable[[], Any]] | None = None,
) -> state_lib.TrainState:
  """Returns ``state`` with the leaves ``init_from`` selects loaded (see the module docstring).

  Raises:
    ValueError naming the missing keys (or mismatched shapes) of an entry.
  """
  run_dir = epath.Path(os.path.abspath(os.fspath(run_dir)))
  target = _flatten({"params": state.params, "model_state": state.model_state})
  for i, entry in enumerate(_entries(init_from)):
    path = str(entry["path"])
    into = str(entry.get("into", "") or "").strip("/")
    include = [re.compile(p) for p in (entry.get("include", None) or ())]
    exclude = [re.compile(p) for p in (entry.get("exclude", None) or ())]
    source = _load_source(path, run_dir, dict(init_sources or {}))
    selected = [
        k
        for k in target
        if (not into or k == into or k.startswith(into + "/"))
        and (not include or any(p.search(k) for p in include))
        and not any(p.search(k) for p in exclude)
    ]
    if not selected:
      raise ValueError(
          f"config.init_from[{i}] ({path!r}) selects no parameter of this run "
          f"(into={into!r}, include={entry.get('include')}, "
          f"exclude={entry.get('exclude')})."
      )
    source_key = lambda k: k[len(into) + 1 :] if into else k  # noqa: E731
    missing = [k for k in selected if source_key(k) not in source]
    if missing:
      raise ValueError(
          f"config.init_from[{i}] ({path!r}) lacks {len(missing)} of the "
          f"{len(selected)} selected keys, e.g. {missing[:8]}."
      )
    wrong = [
        (k, tuple(np.shape(source[source_key(k)])), tuple(target[k].shape))
        for k in selected
        if tuple(np.shape(source[source_key(k)])) != tuple(target[k].shape)
    ]
    if wrong:
      raise ValueError(
          f"config.init_from[{i}] ({path!r}): shapes differ (key, source, target): " f"{wrong[:8]}"
      )
    for k in selected:
      target[k] = _put(source[source_key(k)], target[k])
    logging.info(
        "init_from %r: loaded %d arrays%s", path, len(selected), f" into {into}" if into else ""
    )
  tree = {"params": state.params, "model_state": state.model_state}
  paths, treedef = jax.tree_util.tree_flatten_with_path(tree)
  loaded = jax.tree_util.tree_unflatten(
      treedef, [target[optimizers.path_name(p)] for p, _ in paths]
  )
  return state.replace(params=loaded["params"], model_state=loaded["model_state"])


# ------------------------------------------------------------------------------------ runs


def create_state(
    config: ml_collections.ConfigDict,
    mesh: Mesh,
    init_fn: InitFn,
    num_train_steps: int,
    *,
    run_dir: str | os.PathLike = ".",
    init_sources: Mapping[str, Callable[[], Any]] | None = None,
    warm_start: bool = True,
) -> tuple[state_lib.TrainState, state_lib.TrainState]:
  """The sharded TrainState a run starts from (what ``train_run`` builds; tests and benchmarks
  use it to step exactly the state the loop steps).

  Args:
    config: ``seed``, ``mesh``, ``optimizer`` and optionally ``init_from``.
    mesh: the device mesh.
    init_fn: ``rng -> (params, model_state)``.
    num_train_steps: the optimizer schedule's length.
    run_dir: resolves ``'run:<name>'`` sources (siblings of this directory).
    init_sources: in-memory ``init_from`` sources.
    warm_start: apply ``config.init_from`` (False when resuming from a checkpoint).

  Returns:
    ``(state, shardings)`` as ``state.create_train_state``.
  """
  tx = optimizers.make_optimizer(config.optimizer, num_train_steps)
  state, shardings = state_lib.create_train_state(
      init_fn,
      tx,
      mesh,
      mesh_lib.logical_axis_rules(config.mesh),
      jax.random.PRNGKey(int(config.seed)),
      learning_rate_fn=optimizers.make_schedule(config.optimizer, num_train_steps),
  )
  if warm_start:
    state = apply_init_from(state, config.get("init_from", None), run_dir, init_sources)
  return state, shardings


def train_run(
    config: ml_collections.ConfigDict,
    run_dir: str | os.PathLike,
    *,
    init_fn: InitFn,
    make_step: Callable[[RunContext], step_lib.StepFn],
    train_data: Callable[[RunContext], Iterator[Mapping[str, np.ndarray]]],
    evaluate: Callable[[RunContext], loop_lib.EvalFn] | None = None,
    init_sources: Mapping[str, Callable[[], Any]] | None = None,
    input_specs: Any = None,
    extra_inputs: Callable[[RunContext], Mapping[str, Any]] | None = None,
    hparams: Mapping[str, Any] | None = None,
    description: str | None = None,
) -> TrainResult:
  """Sets up, warm-starts and trains (or resumes, or skips if finished) one run.

  Args:
    config: ``seed``, ``batch_size``, ``mesh`` (shape, logical_axis_rules), ``optimizer``
      (see ``optimizers.make_optimizer``), ``loop`` (see ``loop.train_loop``; its
      ``num_train_steps`` is the run's length) and optionally ``init_from``.
    run_dir: the run's directory (checkpoints, best weights, TensorBoard events).
    init_fn: ``rng -> (params, model_state)``, leaves boxed with logical axis names.
    make_step: ``RunContext -> pure (state, inputs) -> (state, metrics)``.
    train_data: ``RunContext -> iterator`` of this process's numpy batches (a grain
      DatasetIterator, so its position is checkpointed); built only when the run trains.
    evaluate: ``RunContext -> (state -> {name: float})`` or None.
    init_sources: in-memory ``init_from`` sources by name (pretrained weights).
    input_specs: PartitionSpec tree of the step's inputs (batch leaves and ``extra_inputs``);
      None: every leaf is a batch on ``'data'``.
    extra_inputs: ``RunContext -> {name: array}`` non-batch inputs passed to every step next to
      the batch (replicated or row-sharded by ``input_specs``; placed on the mesh once).
    hparams: written to TensorBoard once.
    description: label for logs and the progress bar (default: the directory's name).

  Returns:
    The loop's TrainResult; for a finished run, ``finished_result(run_dir)`` (state None).
  """
  run_dir = epath.Path(os.path.abspath(os.fspath(run_dir)))
  description = description or run_dir.name
  if is_finished(run_dir):
    result = finished_result(run_dir)
    logging.info("[%s] already finished (%s): skipped", description, result.stop_reason)
    return result
  num_steps = int(config.loop.num_train_steps)
  if num_steps < 1:
    raise ValueError(f"config.loop.num_train_steps={num_steps} must be >= 1.")
  mesh = mesh_lib.make_mesh(config.mesh)
  mesh_lib.check_batch_size(int(config.batch_size), mesh)
  context = RunContext(
      mesh=mesh,
      rules=mesh_lib.logical_axis_rules(config.mesh),
      num_train_steps=num_steps,
      run_dir=run_dir,
  )
  fresh = checkpoint_lib.latest_step(run_dir / "checkpoints") is None
  state, shardings = create_state(
      config, mesh, init_fn, num_steps, run_dir=run_dir, init_sources=init_sources, warm_start=fresh
  )
  logging.info(
      "[%s] %d parameters, mesh %s",
      description,
      state_lib.count_params(state.params),
      dict(mesh.shape),
  )
  step = make_step(context)
  if extra_inputs is not None:
    # Non-batch inputs are replicated unless input_specs['extra'] says otherwise.
    if input_specs is not None and not isinstance(input_specs, Mapping):
      raise ValueError("with extra_inputs, input_specs must be a dict {input key: spec}.")
    input_specs = dict(input_specs or {})
    input_specs["extra"] = input_specs.get("extra") or P()
    placed = step_lib.place_inputs(
        {"extra": dict(extra_inputs(context))}, mesh, {"extra": input_specs["extra"]}
    )
    iterator = _WithExtras(train_data(context), placed["extra"])
  else:
    iterator = train_data(context)
  return loop_lib.train_loop(
      config=config.loop,
      workdir=run_dir,
      state=state,
      state_shardings=shardings,
      mesh=mesh,
      train_step=step,
      train_iter=iterator,
      evaluate=evaluate(context) if evaluate is not None else None,
      input_specs=input_specs,
      hparams=hparams,
      description=description,
  )


class _WithExtras(grain.DatasetIterator):
  """Adds the placed non-batch inputs under ``'extra'`` to every batch; checkpoints the inner
  iterator's position (the extras are not data-iterator state)."""

  def __init__(self, inner: Iterator[Mapping[str, Any]], extras: Mapping[str, Any]):
    super().__init__(inner)
    self._inner, self._extras = inner, dict(extras)

  def __next__(self) -> dict[str, Any]:
    return {**next(self._inner), "extra": self._extras}

  def get_state(self):
    return self._inner.get_state()

  def set_state(self, state) -> None:
    self._inner.set_state(state)


def run_names(selected: Sequence[str], defined: Mapping[str, Any], key: str) -> list[str]:
  """Validates a job's run selection against its definitions; errors name ``key``."""
  unknown = [name for name in selected if name not in defined]
  if unknown:
    raise ValueError(f"config.{key} names unknown runs {unknown}; defined: {sorted(defined)}.")
  return list(selected)
