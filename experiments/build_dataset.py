"""Builds a dataset only (the same data the training job would use) and prints its report.

python -m experiments.build_dataset --config=configs/larp.py:mpd --workdir=DIR \
    --config.data.manual_dir=RAW [--config.model.text_model_dir=BERT]
python -m experiments.build_dataset --config=configs/mostra.py:mssd --workdir=DIR \
    --config.data.manual_dir=MSSD

LARP (configs/larp.py): writes the array_record dataset (DIR/data unless --config.data.data_dir),
prints the counts and the skip report (every missing, corrupt, short or truncated audio file by
name; unknown tracks; malformed, empty and too-short playlists) and writes it to
DIR/skip_report.json. Exit status 1 when config.eval.ks does not fit the splits.
MSSD (configs/mostra.py): writes DIR/data (unless --config.data.dir) as the MOSTRA job reads it,
prints the counts of every skipped, imputed, merged and split item and writes them to
DIR/skip_report.json.

--config.data.builder=beam builds under Apache Beam (`data_pipelines/dataset_builds.py`):
--beam_runner (DirectRunner by default; e.g. DataflowRunner, FlinkRunner, PortableRunner) and
--beam_options (pipeline options, shell-quoted: "--direct_num_workers=2 --project=..."). Both
routes write the same data. Re-running with the same settings reuses the build; on many hosts
process 0 builds and the others wait (--build_timeout_s) for its completion marker.
"""

import os
import shlex
import sys

import jax
from absl import app, flags

from data_pipelines import dataset_builds
from larp_jax.jobs import larp_setup
from larp_jax.training import launch

launch.define_flags("configs/larp.py")
flags.DEFINE_string("beam_runner", "DirectRunner", "Beam runner of config.data.builder=beam.")
flags.DEFINE_string("beam_options", "", "Beam pipeline options, shell-quoted.")
flags.DEFINE_float("build_timeout_s", 86_400.0, "How long other hosts wait for process 0's build.")
FLAGS = flags.FLAGS


def _route() -> dict:
  return dict(
      beam_runner=FLAGS.beam_runner,
      beam_options=shlex.split(FLAGS.beam_options),
      process_index=jax.process_index(),
      timeout_s=FLAGS.build_timeout_s,
  )


def build_larp(config, workdir):
  data = config.data
  if data.builder != "inprocess":  # in-process: the job's own path, inside build_and_report
    if not data.manual_dir:
      raise ValueError("config.data.builder='beam' needs config.data.manual_dir (no demo data)")
    build = dict(data.build)
    build.setdefault("tokenizer_dir", larp_setup.text_model_dir(config))
    data_dir = data.data_dir or os.path.join(workdir, "data")
    dataset_builds.build_larp(
        data.kind, data.manual_dir, data_dir, build, builder=data.builder, **_route()
    )
  report = larp_setup.build_and_report(config, workdir)  # reuses a finished build
  if "eval_ks_error" in report:
    sys.exit(1)


def build_mssd(config, workdir):
  data = config.data
  if not data.manual_dir:
    raise ValueError("configs/mostra.py: set config.data.manual_dir to MSSD's directory")
  out_dir = data.dir or os.path.join(workdir, "data")
  settings = dataset_builds.mssd_settings(data)
  route = _route()
  metadata = dataset_builds.build_mssd(
      data.manual_dir, out_dir, settings, builder=data.builder, **route
  )
  dataset_builds.report_mssd(metadata, out_dir, workdir, route["process_index"])


def build(config, workdir):
  """LARP configs have `data.kind`; MOSTRA's have `data.source`."""
  (build_larp if "kind" in config.data else build_mssd)(config, workdir)


if __name__ == "__main__":
  app.run(launch.main_for(build))
