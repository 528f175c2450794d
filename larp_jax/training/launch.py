"""Shared absl flags and ``main`` for the thin launchers in ``experiments/``.

Every launcher is::

  launch.define_flags("configs/<job>.py")
  if __name__ == "__main__":
    app.run(launch.main_for(<job module>.train_and_evaluate))

and runs as ``python -m experiments.<job> --config=configs/<job>.py:<variant>
--workdir=DIR [--config.key=value ...]``. Multi-host: add
``--coordinator_address=HOST:PORT --num_processes=N --process_id=I`` (or set
``JAX_COORDINATOR_ADDRESS``/``JAX_NUM_PROCESSES``/``JAX_PROCESS_ID``; ``auto`` on TPU pods).
"""

from __future__ import annotations

import logging as logging_std
from collections.abc import Callable
from typing import Any

import jax
from absl import flags, logging
from ml_collections import config_flags

from larp_jax.training import mesh as mesh_lib

FLAGS = flags.FLAGS


def define_flags(default_config: str) -> None:
  config_flags.DEFINE_config_file(
      "config",
      default_config,
      "Config file and variant, e.g. configs/larp.py:demo.",
      lock_config=True,
  )
  flags.DEFINE_string("workdir", None, "Output directory; re-running with it resumes.")
  flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-host).")
  flags.DEFINE_integer("num_processes", None, "Number of processes (multi-host).")
  flags.DEFINE_integer("process_id", None, "This process's index (multi-host).")
  flags.mark_flags_as_required(["workdir"])


class _QuietLibraries(logging_std.Filter):
  """Drops INFO/DEBUG records from orbax/grain internals (they log every save step)."""

  def filter(self, record: logging_std.LogRecord) -> bool:
    noisy = any(part in record.pathname for part in ("/orbax/", "/grain/", "/tensorflow/"))
    return record.levelno >= logging_std.WARNING or not noisy


def quiet_library_logs() -> None:
  logging.get_absl_handler().addFilter(_QuietLibraries())


def main_for(train_and_evaluate: Callable[[Any, str], Any]) -> Callable[[list[str]], None]:
  """An absl ``main`` that starts jax.distributed if asked and runs the job."""

  def main(argv):
    quiet_library_logs()
    if len(argv) > 1:
      raise ValueError(f"Unexpected positional arguments: {argv[1:]}")
    mesh_lib.initialize_distributed(
        FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id
    )
    logging.info(
        "JAX: %d processes, %d devices (%s)",
        jax.process_count(),
        jax.device_count(),
        jax.devices()[0].platform,
    )
    train_and_evaluate(FLAGS.config, FLAGS.workdir)

  return main
