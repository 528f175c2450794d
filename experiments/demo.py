"""The main job on embedded demo data: python -m experiments.demo --workdir=DIR

Runs the smoke training job (tiny transformer on generated sequences) with the
`default` toy config. Re-running with the same workdir resumes.
"""

from absl import app, flags

from configs import toy as toy_config
from larp_jax.jobs import toy
from larp_jax.training import launch

flags.DEFINE_string("workdir", "workdirs/demo", "Output directory; re-running resumes.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  launch.quiet_library_logs()
  toy.train_and_evaluate(toy_config.get_config("default"), FLAGS.workdir)


if __name__ == "__main__":
  app.run(main)
