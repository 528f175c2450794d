"""Cold-start continuation evaluation of a LARP workdir (Table 3 rows, plots, export).

python -m experiments.evaluate_continuation --config=configs/larp.py:demo --workdir=DIR

Uses the dataset and the stage checkpoints already in DIR (run experiments.train_larp first).
"""

from absl import app

from larp_jax.jobs import larp_report, larp_setup
from larp_jax.training import launch

launch.define_flags("configs/larp.py")


def evaluate(config, workdir):
  return larp_report.evaluate_and_report(
      config, workdir, larp_setup.prepare_dataset(config, workdir)
  )


if __name__ == "__main__":
  app.run(launch.main_for(evaluate))
