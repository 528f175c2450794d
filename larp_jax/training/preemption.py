"""Preemption that every process agrees on: all hosts stop at the same step and save together.

One process: a SIGTERM handler sets a flag; the loop finishes the step in flight, saves and stops.

Many processes (``jax.distributed``): a SIGTERM reaches one host at a time (or only one), and a
host that stopped alone would leave the others blocked in the next collective or in the
checkpoint save. JAX's preemption sync manager (started by ``jax.distributed.initialize``, the
mechanism MaxText and orbax use) catches SIGTERM on any host, and the coordination service picks
one step at which ``multihost_utils.reached_preemption_sync_point(step)`` turns true on *every*
host; the loop stops and saves there. No Python handler is installed then, since it would replace
the sync manager's.
"""

from __future__ import annotations

import signal
import threading

import jax
from absl import logging
from jax.experimental import multihost_utils


def _sync_manager_running() -> bool:
  from jax._src import distributed  # pylint: disable=g-import-not-at-top

  return getattr(distributed.global_state, "preemption_sync_manager", None) is not None


class Preemption:
  """Answers "stop at this step?" consistently across processes.

  ``restore()`` puts back the signal handlers it replaced (single process).
  """

  def __init__(self, signals: tuple[int, ...] = (signal.SIGTERM,)):
    self._event = threading.Event()
    self._previous = {}
    self._synced = jax.process_count() > 1 and _sync_manager_running()
    if jax.process_count() > 1 and not self._synced:
      logging.warning(
          "jax.distributed has no preemption sync manager: a SIGTERM is seen per "
          "process, so hosts may stop at different steps."
      )
    if not self._synced and threading.current_thread() is threading.main_thread():
      for sig in signals:
        self._previous[sig] = signal.signal(sig, self._handle)

  def _handle(self, signum, frame):  # pylint: disable=unused-argument
    logging.warning("Received signal %d: will checkpoint and stop after this step.", signum)
    self._event.set()

  def set(self) -> None:
    """Asks this process to stop (single process; many processes: use SIGTERM)."""
    self._event.set()

  def should_stop(self, step: int) -> bool:
    """True when every process is to save and stop at ``step`` (call it at each step)."""
    if self._synced:
      return bool(multihost_utils.reached_preemption_sync_point(int(step)))
    return self._event.is_set()

  def restore(self) -> None:
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous = {}
