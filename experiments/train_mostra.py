"""MOSTRA Table 1: python -m experiments.train_mostra --config=configs/mostra.py:demo --workdir=DIR

Builds the (demo) session data if needed, trains every Table 1 scorer (resuming in DIR), then
writes DIR/results.json, the printed table and DIR/plots/map_vs_epsilon.png.
"""

from absl import app

from larp_jax.jobs import mostra_job
from larp_jax.training import launch

launch.define_flags("configs/mostra.py")

if __name__ == "__main__":
  app.run(launch.main_for(mostra_job.train_and_evaluate))
