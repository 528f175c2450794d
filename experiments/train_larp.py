"""LARP training + evaluation: python -m experiments.train_larp --config=configs/larp.py:demo --workdir=DIR"""

from absl import app

from larp_jax.jobs import larp_job
from larp_jax.training import launch

launch.define_flags("configs/larp.py")

if __name__ == "__main__":
  app.run(launch.main_for(larp_job.train_and_evaluate))
