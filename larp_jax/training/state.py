"""Train state and its sharded creation (shapes first, then shardings, then jit(init))."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct
from jax.sharding import Mesh

from larp_jax.training import mesh as mesh_lib


@struct.dataclass
class TrainState:
  """Everything a train step reads and writes.

  Attributes:
    step: int32 scalar, number of optimizer updates applied.
    params: trainable parameters (a pytree of arrays).
    opt_state: optax state for ``params``.
    model_state: non-trainable variables a step updates: BatchNorm statistics,
      momentum (EMA) copies, feature queues, lookup tables. ``{}`` if none.
    rng: a PRNG key (uint32 key data); steps use ``fold_in(rng, step)``.
    tx: the optax transformation (static).
    learning_rate_fn: ``step -> learning rate`` of ``tx``'s schedule (static; None if unknown),
      reported by ``step.gradient_step``.
  """

  step: jax.Array
  params: Any
  opt_state: Any
  model_state: Any
  rng: jax.Array
  tx: optax.GradientTransformation = struct.field(pytree_node=False)
  learning_rate_fn: Callable[[jax.Array], jax.Array] | None = struct.field(
      pytree_node=False, default=None
  )

  def apply_gradients(self, grads: Any, **changes: Any) -> "TrainState":
    """One optimizer update; ``changes`` replace other fields (e.g. model_state)."""
    updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
    params = optax.apply_updates(self.params, updates)
    return self.replace(step=self.step + 1, params=params, opt_state=opt_state, **changes)

  def step_rng(self) -> jax.Array:
    """The PRNG key for the current step (the step is folded into ``rng``)."""
    return jax.random.fold_in(self.rng, self.step)


InitFn = Callable[[jax.Array], tuple[Any, Any]]


def create_train_state(
    init_fn: InitFn,
    tx: optax.GradientTransformation,
    mesh: Mesh,
    rules: Sequence[tuple[str, str | None]],
    rng: jax.Array,
    *,
    learning_rate_fn: Callable[[jax.Array], jax.Array] | None = None,
) -> tuple[TrainState, TrainState]:
  """Initialises a TrainState directly in its sharded layout.

  ``jax.eval_shape`` gives the (boxed) shapes, the logical annotations give
  NamedShardings, and ``jax.jit(init, out_shardings=...)`` materialises each
  shard on its device — no full copy ever lives on one device.

  Args:
    init_fn: ``rng -> (params, model_state)``; leaves may be ``nn.Partitioned``
      boxes carrying logical axis names (from ``nn.with_logical_partitioning``).
    tx: optimizer.
    mesh: device mesh.
    rules: logical-axis rules (see ``mesh.logical_axis_rules``).
    rng: PRNG key; split into init and train keys.
    learning_rate_fn: the optimizer's schedule, kept on the state for logging.

  Returns:
    ``(state, shardings)``: the unboxed state and a TrainState-shaped tree of
    ``NamedSharding``s for it (use as ``in_shardings``/``out_shardings``).
  """
  init_rng, train_rng = jax.random.split(rng)

  def boxed_init(key):
    params, model_state = init_fn(key)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=tx.init(params),
        model_state=model_state,
        rng=train_rng,
        tx=tx,
        learning_rate_fn=learning_rate_fn,
    )

  abstract = jax.eval_shape(boxed_init, init_rng)
  shardings = mesh_lib.logical_to_shardings(abstract, mesh, rules)
  # Frozen subtrees hold optax.MaskedNode (no moments): an empty node in the state, so its
  # sharding must be one too, or the state and its shardings differ in structure.
  is_masked = lambda x: isinstance(x, optax.MaskedNode)  # noqa: E731
  shardings = jax.tree.map(
      lambda a, s: a if is_masked(a) else s, nn.meta.unbox(abstract), shardings, is_leaf=is_masked
  )

  def unboxed_init(key):
    return nn.meta.unbox(boxed_init(key))

  state = jax.jit(unboxed_init, out_shardings=shardings)(init_rng)
  return state, shardings


def abstract_like(state: TrainState, shardings: TrainState) -> TrainState:
  """ShapeDtypeStructs (with shardings) for restoring a checkpoint of ``state``."""
  return jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings
  )


def count_params(params: Any) -> int:
  return int(sum(x.size for x in jax.tree.leaves(params)))
