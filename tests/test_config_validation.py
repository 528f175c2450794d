"""Bad configs fail fast with a message naming the key."""

import subprocess
import sys

import jax
import pytest

from configs import toy as toy_config
from larp_jax.training import config_checks, mesh as mesh_lib


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
      env={**__import__("os").environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"},
  )
  assert proc.returncode != 0
  assert "config.batch_size=6 is not divisible by the data-parallel size 4" in proc.stderr
  assert not (tmp_path / "checkpoints").exists()  # failed before touching the workdir
