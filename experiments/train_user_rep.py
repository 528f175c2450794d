"""Generalized user representations (paper 001): features, autoencoder, transfer tasks, report.

python -m experiments.train_user_rep --config=configs/user_rep.py:demo --workdir=DIR
  [--config.data.manual_dir=LFM2B_DIR --config.modality.audio_npz=LARP_EXPORT.npz]
"""

from absl import app

from larp_jax.jobs import user_rep_job
from larp_jax.training import launch

launch.define_flags("configs/user_rep.py")

if __name__ == "__main__":
  app.run(launch.main_for(user_rep_job.train_and_evaluate))
