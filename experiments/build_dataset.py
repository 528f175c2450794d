"""Builds the LARP dataset only (the same data the training job would use) and prints its report.

python -m experiments.build_dataset --config=configs/larp.py:mpd --workdir=DIR \
    --config.data.manual_dir=RAW [--config.model.text_model_dir=BERT]

Writes the array_record dataset (DIR/data unless --config.data.data_dir), prints the counts and
the skip report (every missing, corrupt, short or truncated audio file by name; unknown tracks;
malformed, empty and too-short playlists) and writes it to DIR/skip_report.json. Re-running with
the same settings reuses the build. Exit status 1 when config.eval.ks does not fit the splits.
"""

import sys

from absl import app

from larp_jax.jobs import larp_setup
from larp_jax.training import launch

launch.define_flags("configs/larp.py")


def build(config, workdir):
  report = larp_setup.build_and_report(config, workdir)
  if "eval_ks_error" in report:
    sys.exit(1)


if __name__ == "__main__":
  app.run(launch.main_for(build))
