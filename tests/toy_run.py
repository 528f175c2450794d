"""Runs the toy job in-process with optional interruption; used by the resume tests.

Usage: python tests/toy_run.py WORKDIR [--sigterm_at N | --sigkill_at N] [--steps N]
Prints FINAL_PARAMS_SHA=<hash of the final params> on completion.
"""

import argparse
import hashlib
import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import grain  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402

from configs import toy as toy_config  # noqa: E402
from larp_jax.jobs import toy  # noqa: E402
from larp_jax.training import loop  # noqa: E402


class Interrupting(grain.DatasetIterator):
  """Wraps an iterator and signals this process when batch ``at`` is requested."""

  def __init__(self, it, at, sig):
    super().__init__(it)
    self._it, self._at, self._sig, self._n = it, at, sig, 0

  def __next__(self):
    self._n += 1
    if self._n == self._at:
      os.kill(os.getpid(), self._sig)
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
  parser.add_argument("--sigkill_at", type=int, default=0)
  parser.add_argument("--steps", type=int, default=14)
  args = parser.parse_args()
  config = toy_config.get_config("test")
  config.loop.num_train_steps = args.steps
  config.loop.checkpoint_every_steps = 4
  mesh, model, state, shardings, it = toy.setup(config)
  if args.sigterm_at:
    it = Interrupting(it, args.sigterm_at, signal.SIGTERM)
  elif args.sigkill_at:
    it = Interrupting(it, args.sigkill_at, signal.SIGKILL)
  result = loop.train_loop(config=config.loop, workdir=args.workdir, state=state,
                           state_shardings=shardings, mesh=mesh,
                           train_step=toy.make_train_step(model), train_iter=it,
                           evaluate=toy.make_evaluate(model, config, mesh))
  print(f"STOP_REASON={result.stop_reason} STEP={int(result.state.step)}")
  print(f"FINAL_PARAMS_SHA={params_sha(result.state.params)}")


if __name__ == "__main__":
  main()
