"""Preemption agreed across hosts: a SIGTERM on one of two processes stops both at the same
step, both save that step, and the resumed run ends bitwise-identical to an uninterrupted one."""

import os
import re
import socket
import subprocess
import sys

import pytest
import xla_env  # tests/xla_env.py

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "toy_run.py")
STEPS = 60


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _run_pair(workdir, *extra) -> list[str]:
  port = _free_port()
  env = dict(os.environ, XLA_FLAGS=xla_env.xla_flags(1))
  procs = [
      subprocess.Popen(
          [
              sys.executable,
              SCRIPT,
              str(workdir),
              "--steps",
              str(STEPS),
              "--mesh_shape=-1,1",
              "--step_sleep=0.05",
              f"--coordinator_address=127.0.0.1:{port}",
              "--num_processes=2",
              f"--process_id={pid}",
              *extra,
          ],
          env=env,
          stdout=subprocess.PIPE,
          stderr=subprocess.STDOUT,
          text=True,
      )
      for pid in range(2)
  ]
  outputs = []
  try:
    for p in procs:
      outputs.append(p.communicate(timeout=400)[0])
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  for pid, (p, out) in enumerate(zip(procs, outputs)):
    assert p.returncode == 0, f"process {pid} failed:\n{out[-4000:]}"
  return outputs


def _field(out: str, name: str) -> str:
  match = re.search(rf"{name}=(\w+)", out)
  assert match, out[-3000:]
  return match.group(1)


@pytest.mark.slow
def test_sigterm_on_one_process_stops_both_at_the_same_step(tmp_path):
  straight = _run_pair(tmp_path / "straight")
  reference = {_field(out, "FINAL_PARAMS_SHA") for out in straight}
  assert len(reference) == 1 and _field(straight[0], "STOP_REASON") == "completed"

  interrupted = _run_pair(tmp_path / "run", "--sigterm_at=5", "--sigterm_process=1")
  reasons = [_field(out, "STOP_REASON") for out in interrupted]
  steps = [int(_field(out, "STEP")) for out in interrupted]
  assert reasons == ["preempted", "preempted"], interrupted[1][-3000:]
  assert steps[0] == steps[1] and 5 <= steps[0] < STEPS, steps
  saved = sorted(int(s) for s in os.listdir(tmp_path / "run" / "checkpoints") if s.isdigit())
  assert saved[-1] == steps[0]  # both processes wrote the preemption checkpoint together

  resumed = _run_pair(tmp_path / "run")
  assert [_field(out, "STOP_REASON") for out in resumed] == ["completed", "completed"]
  assert {_field(out, "FINAL_PARAMS_SHA") for out in resumed} == reference
