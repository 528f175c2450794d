"""The main job on embedded demo data: python -m experiments.demo --workdir=DIR

Generates the demo catalogue (MPD-format playlists + synthesised WAV clips) if absent, builds the
array_record dataset, trains LARP stages 1-3 (with and without fusion), evaluates cold-start
continuation (Table 3 rows), writes plots and exports embeddings; prints the table. Same as
`python -m experiments.train_larp --config=configs/larp.py:demo --workdir=DIR`. Re-running with
the same workdir resumes (a finished run only re-evaluates).
"""

import time

from absl import app, flags

from configs import larp
from larp_jax.jobs import larp_job
from larp_jax.training import launch

flags.DEFINE_string("workdir", "workdirs/demo", "Output directory; re-running resumes.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  launch.quiet_library_logs()
  start = time.time()
  larp_job.train_and_evaluate(larp.get_config("demo"), FLAGS.workdir)
  print(
      f"\nDemo finished in {time.time() - start:.0f} s; outputs in {FLAGS.workdir} "
      "(results.json, plots/, export/, TensorBoard events per stage)."
  )


if __name__ == "__main__":
  app.run(main)
