"""MAP-2T (paper 002): cold-start audiobook recommendation from frozen music and podcast signals.

python -m experiments.train_map2t --config=configs/map2t.py:demo --workdir=DIR
  [--config.data.manual_dir=DIR] [--config.inputs.music_npz=USER_REP_WORKDIR/export/track_collaborative.npz]
"""

from absl import app

from larp_jax.jobs import map2t_job
from larp_jax.training import launch

launch.define_flags("configs/map2t.py")

if __name__ == "__main__":
  app.run(launch.main_for(map2t_job.train_and_evaluate))
