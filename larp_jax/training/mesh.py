"""Device meshes, logical-axis shardings and multi-host start-up.

Modules annotate parameters with *logical* axis names (``'embed'``, ``'mlp'``,
``'table_rows'`` ...); a config maps those names onto the physical mesh axes
``('data', 'model')`` (the rules live once, in ``configs/common.py``). This file is the only
place where the two meet.

Typical use::

  mesh = make_mesh(config.mesh)
  rules = logical_axis_rules(config.mesh)
  shardings = logical_to_shardings(abstract_boxed_tree, mesh, rules)
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from absl import logging
from jax.sharding import AxisType, Mesh

MESH_AXES = ("data", "model")


def resolve_mesh_shape(shape: Sequence[int], num_devices: int) -> tuple[int, ...]:
  """Replaces a single -1 in ``shape`` so the product equals ``num_devices``.

  Raises:
    ValueError naming ``config.mesh.shape`` when the mesh does not fit the devices.
  """
  shape = tuple(int(s) for s in shape)
  if shape.count(-1) > 1:
    raise ValueError(f"config.mesh.shape={shape}: at most one axis may be -1.")
  if any(s == 0 or s < -1 for s in shape):
    raise ValueError(f"config.mesh.shape={shape}: sizes must be positive or -1.")
  known = int(np.prod([s for s in shape if s != -1]))
  if -1 in shape:
    if num_devices % known:
      raise ValueError(
          f"config.mesh.shape={shape} does not fit {num_devices} devices: "
          f"{num_devices} is not divisible by {known}."
      )
    shape = tuple(num_devices // known if s == -1 else s for s in shape)
  if int(np.prod(shape)) != num_devices:
    raise ValueError(
        f"config.mesh.shape={shape} needs {int(np.prod(shape))} devices, but "
        f"{num_devices} are available (jax.devices()). Use -1 for one axis to "
        "take the remaining devices."
    )
  return shape


def make_mesh(
    mesh_config: Mapping[str, Any] | Any, devices: Sequence[jax.Device] | None = None
) -> Mesh:
  """Builds a ``('data', 'model')`` mesh with ``AxisType.Auto`` axes.

  Args:
    mesh_config: has ``shape`` (e.g. ``(-1, 1)``: all devices on ``data``).
    devices: defaults to ``jax.devices()`` (all processes' devices).
  """
  devices = list(jax.devices() if devices is None else devices)
  shape = resolve_mesh_shape(mesh_config["shape"], len(devices))
  # Auto axes keep classic GSPMD propagation; jax 0.10's default is Explicit.
  return jax.make_mesh(shape, MESH_AXES, axis_types=(AxisType.Auto,) * len(shape), devices=devices)


def logical_axis_rules(mesh_config: Mapping[str, Any] | Any) -> tuple[tuple[str, str | None], ...]:
  """The (logical name, mesh axis) rules from ``mesh_config.logical_axis_rules``."""
  rules = mesh_config.get("logical_axis_rules", None) if hasattr(mesh_config, "get") else None
  if rules is None:
    raise ValueError(
        "config.mesh.logical_axis_rules is missing: build the mesh section with "
        "configs.common.mesh(), which holds the project's one copy of the rules."
    )
  out = []
  for rule in rules:
    if len(rule) != 2 or (rule[1] is not None and rule[1] not in MESH_AXES):
      raise ValueError(
          f"config.mesh.logical_axis_rules has a bad rule {rule!r}: expected "
          f"(logical_name, one of {MESH_AXES} or None)."
      )
    out.append((rule[0], rule[1]))
  return tuple(out)


def logical_to_shardings(
    boxed_tree: Any, mesh: Mesh, rules: Sequence[tuple[str, str | None]]
) -> Any:
  """NamedShardings for a (possibly abstract) tree of ``nn.Partitioned`` boxes.

  Leaves without logical annotations are replicated. The result is unboxed, so
  it has the same structure as ``nn.meta.unbox(boxed_tree)``.
  """
  specs = nn.get_partition_spec(boxed_tree)
  shardings = nn.logical_to_mesh_sharding(specs, mesh, rules)
  return nn.meta.unbox(shardings)


def data_parallel_size(mesh: Mesh) -> int:
  return mesh.shape["data"]


def check_batch_size(batch_size: int, mesh: Mesh, key: str = "config.batch_size") -> None:
  """Raises ValueError naming ``key`` unless the batch splits evenly over ``data``."""
  dp = data_parallel_size(mesh)
  if batch_size <= 0 or batch_size % dp:
    raise ValueError(
        f"{key}={batch_size} is not divisible by the data-parallel size {dp} "
        f"(mesh {dict(mesh.shape)})."
    )
  if batch_size % jax.process_count():
    raise ValueError(
        f"{key}={batch_size} is not divisible by the number of processes " f"{jax.process_count()}."
    )


def host_batch_size(global_batch_size: int) -> int:
  """Examples each process loads per step."""
  return global_batch_size // jax.process_count()


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    initialization_timeout: int = 300,
) -> bool:
  """Starts ``jax.distributed`` for multi-host runs; a no-op on one host.

  Values come from the arguments, else from ``JAX_COORDINATOR_ADDRESS``,
  ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``; on TPU pods / Slurm, pass
  ``coordinator_address='auto'`` to let JAX detect the cluster.

  Returns:
    True if ``jax.distributed.initialize`` was called.
  """
  coordinator_address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
  if num_processes is None and os.environ.get("JAX_NUM_PROCESSES"):
    num_processes = int(os.environ["JAX_NUM_PROCESSES"])
  if process_id is None and os.environ.get("JAX_PROCESS_ID"):
    process_id = int(os.environ["JAX_PROCESS_ID"])
  if not coordinator_address:
    return False
  if coordinator_address == "auto":
    jax.distributed.initialize(initialization_timeout=initialization_timeout)
  else:
    if num_processes is None or process_id is None:
      raise ValueError(
          "--coordinator_address needs --num_processes and --process_id "
          "(or JAX_NUM_PROCESSES / JAX_PROCESS_ID)."
      )
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        initialization_timeout=initialization_timeout,
    )
  logging.info(
      "jax.distributed: process %d of %d, %d local / %d global devices",
      jax.process_index(),
      jax.process_count(),
      jax.local_device_count(),
      jax.device_count(),
  )
  return True
