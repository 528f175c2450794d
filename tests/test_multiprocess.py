"""Two processes x 2 fake CPU devices on localhost (jax.distributed) run sharded toy steps."""

import os
import socket
import subprocess
import sys

import pytest
import xla_env  # tests/xla_env.py

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_complete_sharded_steps(tmp_path):
  port = _free_port()
  env = dict(os.environ, XLA_FLAGS=xla_env.xla_flags(2))
  procs = []
  for pid in range(2):
    cmd = [
        sys.executable,
        "-m",
        "experiments.train_toy",
        "--config=configs/toy.py:test",
        f"--workdir={tmp_path / 'run'}",
        "--config.mesh.shape=(2,2)",
        "--config.loop.num_train_steps=4",
        "--config.loop.eval_every_steps=0",
        "--config.loop.checkpoint_every_steps=2",
        f"--coordinator_address=127.0.0.1:{port}",
        "--num_processes=2",
        f"--process_id={pid}",
    ]
    procs.append(
        subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
    )
  outputs = []
  try:
    for p in procs:
      out, _ = p.communicate(timeout=240)
      outputs.append(out)
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  for pid, (p, out) in enumerate(zip(procs, outputs)):
    assert p.returncode == 0, f"process {pid} failed:\n{out[-4000:]}"
    assert "toy: stopped (completed) at step 4" in out, out[-2000:]
  assert "2 processes, 4 devices" in outputs[0]
  assert sorted(os.listdir(tmp_path / "run" / "checkpoints"))[-1] == "4"
