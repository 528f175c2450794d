"""MOSTRA report only: python -m experiments.sequence_sessions --config=configs/mostra.py:demo
--workdir=DIR [--config.report.beam_size=10 --config.report.threshold=absolute ...]

Loads the scorers trained by experiments/train_mostra.py in DIR/models, decodes the report split
with every Table 1 method and writes DIR/results.json, the table and DIR/plots/map_vs_epsilon.png.
Decoder settings (config.report.*) can change without retraining.
"""

from absl import app

from larp_jax.jobs import mostra_job
from larp_jax.training import launch

launch.define_flags("configs/mostra.py")

if __name__ == "__main__":
  app.run(launch.main_for(mostra_job.report))
