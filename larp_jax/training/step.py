"""The one jit policy for train steps, and the gradient update every step is built on.

``jit_train_step`` is what the loop, the tests and every benchmark compile, so a benchmark times
exactly the step the loop runs: state sharded by its logical annotations and donated, each input
leaf placed by its own ``PartitionSpec`` (batches on ``'data'``; a non-batch input such as a
popularity prior or a track->playlist table replicated or row-sharded, never a constant baked
into the compiled step), metrics replicated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from larp_jax.training import state as state_lib

StepFn = Callable[
    [state_lib.TrainState, Mapping[str, Any]], tuple[state_lib.TrainState, Mapping[str, jax.Array]]
]
LossFn = Callable[[Any], tuple[jax.Array, tuple[dict[str, jax.Array], Any]]]

BATCH_SPEC = P("data")


def input_shardings(mesh: Mesh, input_specs: Any, example: Mapping[str, Any]) -> dict[str, Any]:
  """NamedShardings for a step's inputs, one per leaf of ``example``.

  Args:
    mesh: the device mesh.
    input_specs: None (every leaf is a batch: leading axis on ``'data'``), one ``PartitionSpec``
      for all leaves, or ``{input key: PartitionSpec | tree of them}``; keys it does not name are
      batches on ``'data'``.
    example: the input dict (arrays or ShapeDtypeStructs).

  Returns:
    A tree like ``example`` of ``NamedSharding``.
  """
  is_spec = lambda x: isinstance(x, P)  # noqa: E731
  if input_specs is None or is_spec(input_specs):
    specs = {key: input_specs or BATCH_SPEC for key in example}
  else:
    unknown = sorted(set(input_specs) - set(example))
    if unknown:
      raise ValueError(
          f"input_specs name inputs the step does not get: {unknown}; inputs: "
          f"{sorted(example)}."
      )
    specs = {key: input_specs.get(key, BATCH_SPEC) for key in example}
  return {
      key: jax.tree.map(lambda _, s=spec: NamedSharding(mesh, s), value)
      if is_spec(spec)
      else jax.tree.map(lambda s, _: NamedSharding(mesh, s), spec, value, is_leaf=is_spec)
      for key, (spec, value) in ((k, (specs[k], example[k])) for k in example)
  }


class ShardedStep:
  """A train step jitted with the house policy; one compilation per input structure.

  Call it like the step, or ``lower(state, inputs)`` for ahead-of-time compilation.
  """

  def __init__(self, step: StepFn, state_shardings: Any, mesh: Mesh, input_specs: Any):
    self._step, self._state_shardings = step, state_shardings
    self._mesh, self._input_specs = mesh, input_specs
    self._jitted: dict[Any, Callable] = {}

  def jitted_for(self, inputs: Mapping[str, Any]) -> Callable:
    """The ``jax.jit`` for inputs of this tree structure."""
    key = jax.tree.structure(dict(inputs))
    if key not in self._jitted:
      shardings = input_shardings(self._mesh, self._input_specs, dict(inputs))
      self._jitted[key] = jax.jit(
          self._step,
          in_shardings=(self._state_shardings, shardings),
          out_shardings=(self._state_shardings, NamedSharding(self._mesh, P())),
          donate_argnums=(0,),
      )
    return self._jitted[key]

  def __call__(self, state: state_lib.TrainState, inputs: Mapping[str, Any]):
    return self.jitted_for(inputs)(state, dict(inputs))

  def lower(self, state: state_lib.TrainState, inputs: Mapping[str, Any]):
    return self.jitted_for(inputs).lower(state, dict(inputs))


def jit_train_step(
    step: StepFn, state_shardings: state_lib.TrainState, mesh: Mesh, input_specs: Any = None
) -> ShardedStep:
  """The house jit of a pure ``(state, inputs) -> (state, metrics)`` step.

  Args:
    step: the pure train step.
    state_shardings: the TrainState-shaped tree of NamedShardings from ``create_train_state``.
    mesh: the device mesh.
    input_specs: see ``input_shardings`` (None: every input leaf is a batch on ``'data'``).

  Returns:
    A ``ShardedStep``: state sharded by its logical annotations and donated, inputs placed by
    their specs, metrics replicated.
  """
  return ShardedStep(step, state_shardings, mesh, input_specs)


def place_inputs(host_inputs: Mapping[str, Any], mesh: Mesh, input_specs: Any = None) -> Any:
  """Global ``jax.Array``s from this process's part of the inputs.

  Leaves on a ``'data'`` spec are this process's slice of the global batch
  (``jax.make_array_from_process_local_data``); other leaves (replicated or row-sharded tables)
  are the full array, the same on every process. Leaves already placed are kept as they are.
  """
  shardings = input_shardings(mesh, input_specs, dict(host_inputs))

  def put(sharding, x):
    if isinstance(x, jax.Array) and x.sharding == sharding:
      return x
    spec = sharding.spec
    if len(spec) and spec[0] == "data":
      return jax.make_array_from_process_local_data(sharding, np.asarray(x))
    value = np.asarray(x)
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])

  return jax.tree.map(put, shardings, dict(host_inputs))


def gradient_step(
    state: state_lib.TrainState, loss_fn: LossFn
) -> tuple[state_lib.TrainState, dict[str, jax.Array], Any]:
  """One optimizer update from ``loss_fn(params) -> (loss, (metrics, aux))``.

  Args:
    state: the TrainState.
    loss_fn: ``params -> (scalar loss, (metrics dict, aux))``; ``aux`` is anything the step
      needs afterwards (updated batch statistics, features to enqueue); ``None`` if unused.

  Returns:
    ``(new_state, metrics, aux)``. ``metrics`` always holds ``loss``, ``grad_norm``,
    ``param_norm`` (before the update) and ``learning_rate`` (at this step, from the
    optimizer's schedule when it exposes one via ``state.learning_rate_fn``).
  """
  (loss, (metrics, aux)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  metrics = dict(metrics)
  metrics.setdefault("loss", loss)
  metrics["grad_norm"] = optax.tree.norm(grads)
  metrics["param_norm"] = optax.tree.norm(state.params)
  if state.learning_rate_fn is not None:
    metrics["learning_rate"] = jnp.asarray(state.learning_rate_fn(state.step), jnp.float32)
  return state.apply_gradients(grads), metrics, aux


def compile_step(jitted: Callable, *args: Any, name: str = "train step") -> Callable:
  """Compiles ``jitted`` for ``args`` ahead of time and logs its memory once, before step 1.

  Returns the compiled executable (call it like ``jitted``; it accepts only inputs of the same
  shapes, dtypes and shardings, which every step of a run has).
  """
  compiled = jitted.lower(*args).compile()
  try:
    stats = compiled.memory_analysis()
  except Exception as e:  # pylint: disable=broad-except  # informative only
    stats = None
    logging.info("%s: memory analysis unavailable (%s)", name, e)
  if stats is not None:
    mib = lambda b: f"{b / 2**20:.1f} MiB"  # noqa: E731
    logging.info(
        "%s memory per device: arguments %s, outputs %s, temporaries %s, code %s, " "aliased %s",
        name,
        mib(stats.argument_size_in_bytes),
        mib(stats.output_size_in_bytes),
        mib(stats.temp_size_in_bytes),
        mib(stats.generated_code_size_in_bytes),
        mib(stats.alias_size_in_bytes),
    )
  return compiled
