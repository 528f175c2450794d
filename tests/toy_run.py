"""Runs the toy job in-process with optional interruption; used by the resume tests.

Usage: python tests/toy_run.py WORKDIR [--sigterm_at N [--sigterm_process P] | --sigkill_at N]
       [--steps N] [--coordinator_address HOST:PORT --num_processes N --process_id I]
Prints FINAL_PARAMS_SHA=<hash of the final params> on completion.
"""

import argparse
import hashlib
import os
import signal
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import grain  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402

from configs import toy as toy_config  # noqa: E402
from larp_jax.jobs import toy_job  # noqa: E402
from larp_jax.training import checkpoint, mesh as mesh_lib  # noqa: E402


class Interrupting(grain.DatasetIterator):
  """Wraps an iterator; signals this process when batch ``at`` is requested (0: never) and
  sleeps ``sleep`` seconds per batch (slow steps, so a preemption lands mid-run)."""

  def __init__(self, it, at, sig, sleep=0.0):
    super().__init__(it)
    self._it, self._at, self._sig, self._n, self._sleep = it, at, sig, 0, sleep

  def __next__(self):
    self._n += 1
    if self._n == self._at:
      os.kill(os.getpid(), self._sig)
    if self._sleep:
      time.sleep(self._sleep)
    return next(self._it)

  def get_state(self):
    return self._it.get_state()

  def set_state(self, state):
    self._it.set_state(state)


def params_sha(params) -> str:
  h = hashlib.sha256()
  for leaf in jax.tree.leaves(params):
    h.update(np.asarray(leaf).tobytes())
  return h.hexdigest()


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("workdir")
  parser.add_argument("--sigterm_at", type=int, default=0)
  parser.add_argument("--sigterm_process", type=int, default=0)
  parser.add_argument("--sigkill_at", type=int, default=0)
  parser.add_argument("--steps", type=int, default=14)
  parser.add_argument("--mesh_shape", default="")
  parser.add_argument("--step_sleep", type=float, default=0.0)
  parser.add_argument("--coordinator_address", default=None)
  parser.add_argument("--num_processes", type=int, default=None)
  parser.add_argument("--process_id", type=int, default=None)
  args = parser.parse_args()
  mesh_lib.initialize_distributed(args.coordinator_address, args.num_processes, args.process_id)
  config = toy_config.get_config("test")
  config.loop.num_train_steps = args.steps
  config.loop.checkpoint_every_steps = 4
  if args.mesh_shape:
    config.mesh.shape = tuple(int(s) for s in args.mesh_shape.split(","))
  make_data = toy_job.train_data(config)

  def data(context):
    it = make_data(context)
    if args.sigterm_at and jax.process_index() == args.sigterm_process:
      it = Interrupting(it, args.sigterm_at, signal.SIGTERM, args.step_sleep)
    elif args.sigkill_at:
      it = Interrupting(it, args.sigkill_at, signal.SIGKILL)
    elif args.step_sleep:
      it = Interrupting(it, 0, None, args.step_sleep)
    return it

  result = toy_job.train_and_evaluate(config, args.workdir, data=data)
  if result.state is None:  # finished before: read the final checkpoint's params
    ckpt_dir = os.path.join(os.path.abspath(args.workdir), "checkpoints")
    last = max(int(s) for s in os.listdir(ckpt_dir) if s.isdigit())
    params = checkpoint.load_params(os.path.join(ckpt_dir, str(last), "state"))["params"]
    step = last
  else:
    params, step = result.state.params, int(result.state.step)
  print(f"STOP_REASON={result.stop_reason} STEP={step}", flush=True)
  print(f"FINAL_PARAMS_SHA={params_sha(params)}", flush=True)


if __name__ == "__main__":
  main()
