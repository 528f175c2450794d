"""The main job on embedded demo data: python -m experiments.demo --workdir=DIR

The four systems as one chain (``larp_jax/jobs/chain_job.py``, ``configs/chain.py``): LARP (demo
catalogue, stages 1-3, Tables 3 and 2, catalogue export) -> the user representation over LARP's
track space (z, transfer tasks) -> MAP-2T on z; MOSTRA beside them on its own session logs. Each
system's table is printed and its results.json written under DIR/<system>; the chain's summary
(seconds per system, every demo claim) in DIR/results.json. Re-running with the same workdir
resumes. ``--config.systems="('larp',)"`` runs a subset (the rest must have run before).
"""

import time

from absl import app, flags
from ml_collections import config_flags

from configs import larp, map2t, mostra, user_rep
from larp_jax.jobs import chain_job
from larp_jax.training import launch

flags.DEFINE_string("workdir", "workdirs/demo", "Output directory; re-running resumes.")
config_flags.DEFINE_config_file("config", "configs/chain.py:demo", "The chain's config.")
FLAGS = flags.FLAGS
MODULES = {"larp": larp, "user_rep": user_rep, "map2t": map2t, "mostra": mostra}


def main(argv):
  del argv
  launch.quiet_library_logs()
  start = time.time()
  chain = FLAGS.config
  configs = {name: module.get_config(chain.variant) for name, module in MODULES.items()}
  chain_job.run_chain(chain, configs, FLAGS.workdir)
  print(f"\nDemo finished in {time.time() - start:.0f} s; outputs in {FLAGS.workdir}.")


if __name__ == "__main__":
  app.run(main)
