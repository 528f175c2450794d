"""Cold-start continuation evaluation of a LARP workdir: Tables 3 and 2, plots, export; or, with
``--config.eval.target.kind``, Table 4 (the workdir's models on another dataset's test split).

python -m experiments.evaluate_continuation --config=configs/larp.py:demo --workdir=DIR
python -m experiments.evaluate_continuation --config=configs/larp.py:mpd --workdir=MPD_RUN \
    --config.model.text_model_dir=BERT --config.eval.target.kind=lfm \
    --config.eval.target.manual_dir=LFM_RAW

Uses the dataset and the stage checkpoints already in DIR (run experiments.train_larp first).
"""

from absl import app

from larp_jax.jobs import larp_cross, larp_report, larp_setup
from larp_jax.training import launch

launch.define_flags("configs/larp.py")


def evaluate(config, workdir):
  if config.eval.target.kind:
    return larp_cross.evaluate_cross(config, workdir)
  return larp_report.evaluate_and_report(
      config, workdir, larp_setup.prepare_dataset(config, workdir)
  )


if __name__ == "__main__":
  app.run(launch.main_for(evaluate))
