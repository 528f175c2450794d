"""The LARP and MOSTRA test-preset runs several test files use, each trained once per session
(conftest.py's ``larp_test_run`` and ``mostra_test_run`` fixtures): tests/test_larp_job.py and
tests/test_mostra_job.py assert on them, and tests/test_chain_job.py starts the chain from copies
of their finished runs (a finished run is skipped: ``runs.is_finished``), so the chain test checks
the wiring between the systems without training the same tiny runs again."""

import os
import signal
import subprocess
import sys
import time

import xla_env

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LARP_RUNS = "--config.runs=('stage1','stage2','stage3')"
# Fig. 4's sweep (one more stage-3 run, J = 3 seed tracks) inside the same 1-device process, so
# tests/test_larp_job.py checks it through the job without compiling LARP again for 8 devices.
LARP_SEED_SWEEP = "--config.eval.seed_sweep=(3,)"


def launch_larp(workdir) -> subprocess.Popen:
  """``experiments.train_larp`` on ``configs/larp.py:test`` in a fresh 1-device process."""
  env = dict(os.environ, XLA_FLAGS=xla_env.xla_flags(1))
  return subprocess.Popen(
      [
          sys.executable,
          "-m",
          "experiments.train_larp",
          "--config=configs/larp.py:test",
          f"--workdir={workdir}",
          LARP_RUNS,
          LARP_SEED_SWEEP,
      ],
      cwd=REPO,
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
  )


def larp_killed_and_resumed(workdir):
  """Trains LARP's test preset, SIGKILLs it at stage 2's step-4 checkpoint, resumes it to the end
  (stage 3, the reports, then Fig. 4's ``stage3_J3``).

  Returns ``(workdir, stdout of the resumed process, stage 1's event files before the kill)``.
  """
  proc = launch_larp(workdir)
  stage2_ckpt = workdir / "stage2" / "checkpoints" / "4"
  deadline = time.time() + 900
  while not stage2_ckpt.exists():
    assert proc.poll() is None, proc.stdout.read()[-4000:]
    assert time.time() < deadline, "stage 2 never reached its step-4 checkpoint"
    time.sleep(0.5)
  proc.send_signal(signal.SIGKILL)  # hard kill in the middle of stage 2
  proc.wait()
  stage1_events = sorted(p for p in os.listdir(workdir / "stage1") if p.startswith("events"))
  resumed = launch_larp(workdir)
  out, _ = resumed.communicate(timeout=1200)
  assert resumed.returncode == 0, out[-4000:]
  return workdir, out, stage1_events


def train_mostra(
    workdir, cache_dir, variant: str = "test", overrides=None, timeout: int = 600
) -> tuple[str, float]:
  """``experiments.train_mostra`` on ``configs/mostra.py:<variant>`` (plus ``--config.<k>=<v>``
  for each of ``overrides``) in a fresh 1-device process (the job is single-host; 8 fake devices
  would only slow orbax down), with a compilation cache shared by the runs of one test: compile
  time dominates these tiny runs. Returns (stdout, seconds)."""
  env = dict(
      os.environ,
      XLA_FLAGS=xla_env.xla_flags(1),
      JAX_COMPILATION_CACHE_DIR=str(cache_dir),
      JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
      JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
  )
  command = [
      sys.executable,
      "-m",
      "experiments.train_mostra",
      f"--config=configs/mostra.py:{variant}",
      f"--workdir={workdir}",
  ] + [f"--config.{k}={v}" for k, v in (overrides or {}).items()]
  start = time.perf_counter()
  proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
  assert proc.returncode == 0, proc.stderr[-4000:]
  return proc.stdout, time.perf_counter() - start
