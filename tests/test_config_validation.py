"""Bad configs fail fast with a message naming the key."""

import subprocess
import sys

import jax
import pytest

from configs import toy as toy_config
from larp_jax.training import config_checks, mesh as mesh_lib
import xla_env  # tests/xla_env.py


def test_unknown_variant_names_file_and_choices():
  with pytest.raises(ValueError, match=r"Unknown variant 'nope' for configs/toy.py.*sharded"):
    toy_config.get_config("nope")


def test_batch_not_divisible_by_data_parallel_size():
  config = toy_config.get_config("sharded")  # (4, 2) mesh
  mesh = mesh_lib.make_mesh(config.mesh)
  with pytest.raises(
      ValueError, match=r"config.batch_size=6 is not divisible by the " r"data-parallel size 4"
  ):
    mesh_lib.check_batch_size(6, mesh)


def test_mesh_that_does_not_fit_the_devices():
  with pytest.raises(ValueError, match=r"config.mesh.shape=\(3, 2\) needs 6 devices, but 8"):
    mesh_lib.make_mesh({"shape": (3, 2)})
  with pytest.raises(ValueError, match=r"config.mesh.shape=\(-1, 3\) does not fit 8 devices"):
    mesh_lib.make_mesh({"shape": (-1, 3)})


def test_bad_logical_axis_rule():
  with pytest.raises(ValueError, match="config.mesh.logical_axis_rules"):
    mesh_lib.logical_axis_rules({"logical_axis_rules": (("mlp", "tensor"),)})


def test_missing_input_path(tmp_path):
  config = toy_config.get_config("test")
  config.data.manual_dir = str(tmp_path / "absent")
  with pytest.raises(ValueError, match=r"config.data.manual_dir=.*absent.* does not exist"):
    config_checks.check_paths_exist(config, ["data.manual_dir"])
  config.data.manual_dir = ""
  with pytest.raises(ValueError, match=r"config.data.manual_dir is empty"):
    config_checks.check_paths_exist(config, ["data.manual_dir"])


def test_launcher_rejects_unknown_override_and_bad_batch(tmp_path):
  cmd = [
      sys.executable,
      "-m",
      "experiments.train_toy",
      "--config=configs/toy.py:test",
      f"--workdir={tmp_path}",
  ]
  proc = subprocess.run(
      cmd + ["--config.no_such_key=1"], capture_output=True, text=True, timeout=120
  )
  assert proc.returncode != 0 and "no_such_key" in proc.stderr
  proc = subprocess.run(
      cmd + ["--config.batch_size=6", "--config.mesh.shape=(4,2)"],
      capture_output=True,
      text=True,
      timeout=120,
      env={**__import__("os").environ, "XLA_FLAGS": xla_env.xla_flags(8)},
  )
  assert proc.returncode != 0
  assert "config.batch_size=6 is not divisible by the data-parallel size 4" in proc.stderr
  assert not (tmp_path / "checkpoints").exists()  # failed before touching the workdir


def test_larp_presets_without_a_text_model_name_the_key():
  from configs import larp as larp_config
  from larp_jax.jobs import larp_job

  for variant in ("mpd", "lfm", "mpd_official"):
    with pytest.raises(ValueError, match=r"config.model.text_model_dir is empty.*" + variant):
      larp_job.check_config(larp_config.get_config(variant))


_PARSE = """
import sys
from absl import flags
from ml_collections import config_flags
config_flags.DEFINE_config_file("config", "configs/larp.py:mpd")
flags.FLAGS(sys.argv)
build = flags.FLAGS.config.data.build
print(repr(build.train_tracks), repr(build.train_fraction), repr(build.valid_tracks))
"""


def test_larp_split_sizes_survive_the_command_line():
  """Counts and fractions are separate keys, so a count given as a flag stays a count."""
  import os

  from data_pipelines import playlist_datasets

  def parse(*args):
    out = subprocess.run(
        [sys.executable, "-c", _PARSE, "--config=configs/larp.py:mpd", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    train, fraction, valid = (eval(v) for v in out.stdout.split())  # noqa: S307 (repr of numbers)
    return dict(name="x", train_tracks=train, train_fraction=fraction, valid_tracks=valid)

  build = parse("--config.data.build.train_tracks=250000", "--config.data.build.valid_tracks=9")
  assert build["train_tracks"] == 250_000 and isinstance(build["train_tracks"], int)
  split = playlist_datasets._as_config("mpd", build).split_config()
  assert (split.train_tracks, split.valid_tracks) == (250_000, 9)
  build = parse("--config.data.build.train_tracks=0", "--config.data.build.train_fraction=0.5")
  assert playlist_datasets._as_config("mpd", build).split_config().train_tracks == 0.5
  build = parse("--config.data.build.train_fraction=0.5")  # both set: an error naming both keys
  with pytest.raises(ValueError, match="train_tracks=100000 and train_fraction=0.5"):
    playlist_datasets._as_config("mpd", build)
