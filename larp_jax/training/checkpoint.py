"""Checkpoints: orbax CheckpointManager holding the train state, the data iterator's
state and the loop's bookkeeping together, so a resumed run sees the same batches.

Layout under ``directory``::

  <step>/state/      TrainState (sharded arrays, restored onto the requested shardings)
  <step>/data_iter/  grain iterator state, one JSON file per process
  <step>/loop/       JSON: best validation metric, patience counter, eval history
"""

from __future__ import annotations

import os
from typing import Any

import grain
import orbax.checkpoint as ocp
from absl import logging
from etils import epath


class Checkpointer:
  """Keep-N, save-every-K checkpoints of (state, data iterator, loop bookkeeping)."""

  def __init__(
      self,
      directory: str | epath.Path,
      *,
      max_to_keep: int = 3,
      save_every_steps: int = 1000,
      async_save: bool = True,
  ):
    self.directory = epath.Path(os.path.abspath(directory))  # orbax needs absolute paths
    self.save_every_steps = int(save_every_steps)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep,
        save_interval_steps=1,
        create=True,
        enable_async_checkpointing=async_save,
    )
    self._manager = ocp.CheckpointManager(
        self.directory, item_names=("state", "data_iter", "loop"), options=options
    )

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def should_save(self, step: int) -> bool:
    return self.save_every_steps > 0 and step % self.save_every_steps == 0

  def save(
      self, step: int, state: Any, data_iter: Any | None, loop_state: dict, *, force: bool = False
  ) -> bool:
    """Saves unless a checkpoint for ``step`` exists already. Returns True if saved."""
    if step in self._manager.all_steps():
      return False
    items = {"state": ocp.args.StandardSave(state), "loop": ocp.args.JsonSave(loop_state)}
    if data_iter is not None:
      items["data_iter"] = grain.checkpoint.CheckpointSave(data_iter)
    saved = self._manager.save(step, args=ocp.args.Composite(**items), force=force)
    if saved:
      logging.info("Saved checkpoint for step %d in %s", step, self.directory)
    return saved

  def restore(
      self, abstract_state: Any, data_iter: Any | None, step: int | None = None
  ) -> tuple[Any, dict] | None:
    """Restores onto ``abstract_state``'s shardings; sets ``data_iter``'s position.

    Returns:
      ``(state, loop_state)`` or None when there is no checkpoint.
    """
    step = self._manager.latest_step() if step is None else step
    if step is None:
      return None
    items = {"state": ocp.args.StandardRestore(abstract_state), "loop": ocp.args.JsonRestore()}
    if data_iter is not None:
      items["data_iter"] = grain.checkpoint.CheckpointRestore(data_iter)
    restored = self._manager.restore(step, args=ocp.args.Composite(**items))
    logging.info("Restored checkpoint for step %d from %s", step, self.directory)
    return restored["state"], dict(restored["loop"])

  def restore_loop_state(self, step: int | None = None) -> dict | None:
    """The loop's bookkeeping JSON of ``step`` (default: latest) without reading any array."""
    step = self._manager.latest_step() if step is None else step
    if step is None:
      return None
    restored = self._manager.restore(step, args=ocp.args.Composite(loop=ocp.args.JsonRestore()))
    return dict(restored["loop"])

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


def latest_step(directory: str | epath.Path) -> int | None:
  """The newest finished checkpoint step under ``directory`` (None when there is none)."""
  directory = epath.Path(os.path.abspath(directory))
  if not directory.exists():
    return None
  steps = [int(p.name) for p in directory.iterdir() if p.name.isdigit()]
  return max(steps) if steps else None


def latest_loop_state(directory: str | epath.Path) -> dict | None:
  """The loop bookkeeping of the newest checkpoint under ``directory``; None when there is none."""
  directory = epath.Path(os.path.abspath(directory))
  if latest_step(directory) is None:
    return None
  ckpt = Checkpointer(directory, async_save=False)
  try:
    return ckpt.restore_loop_state()
  finally:
    ckpt.close()


def save_params(path: str | epath.Path, tree: Any) -> None:
  """Writes one pytree (e.g. best params) to ``path`` with orbax, replacing it."""
  path = epath.Path(os.path.abspath(path))
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(path, tree, force=True)
  checkpointer.wait_until_finished()
  checkpointer.close()


def load_params(path: str | epath.Path, abstract_tree: Any | None = None) -> Any:
  """Reads a pytree written by ``save_params`` (onto ``abstract_tree``'s shardings if given)."""
  path = epath.Path(os.path.abspath(path))
  if not path.exists():
    raise FileNotFoundError(f"No checkpoint at {path}")
  checkpointer = ocp.StandardCheckpointer()
  try:
    return (
        checkpointer.restore(path, abstract_tree)
        if abstract_tree is not None
        else checkpointer.restore(path)
    )
  finally:
    checkpointer.close()
