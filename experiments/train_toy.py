"""Smoke training job: python -m experiments.train_toy --config=configs/toy.py --workdir=DIR"""

from absl import app

from larp_jax.jobs import toy_job
from larp_jax.training import launch

launch.define_flags("configs/toy.py")

if __name__ == "__main__":
  app.run(launch.main_for(toy_job.train_and_evaluate))
