"""Test setup: 8 fake CPU devices and fast XLA compiles (set before JAX is imported), parsed absl
flags for grain, and the session's shared test-preset runs (tests/job_runs.py)."""

import json
import os

import xla_env  # tests/xla_env.py

os.environ.setdefault("XLA_FLAGS", xla_env.xla_flags(8))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402
from absl import flags  # noqa: E402

import job_runs  # noqa: E402  (tests/job_runs.py)

# grain 0.2.18 reads absl flags in its multiprocess paths; pytest never parses them.
if not flags.FLAGS.is_parsed():
  flags.FLAGS.mark_as_parsed()


@pytest.fixture(scope="session")
def larp_test_run(tmp_path_factory):
  """``(workdir, stdout, stage-1 event files)`` of LARP's test preset, killed in stage 2 and
  resumed (``job_runs.larp_killed_and_resumed``)."""
  return job_runs.larp_killed_and_resumed(tmp_path_factory.mktemp("larp"))


@pytest.fixture(scope="session")
def mostra_test_run(tmp_path_factory):
  """MOSTRA's test preset trained by its launcher: workdir, cache, stdout, seconds, results."""
  workdir = tmp_path_factory.mktemp("mostra_run")
  cache = tmp_path_factory.mktemp("jax_cache")
  stdout, seconds = job_runs.train_mostra(workdir, cache)
  with open(workdir / "results.json") as f:
    results = json.load(f)
  return {
      "workdir": workdir,
      "cache": cache,
      "stdout": stdout,
      "seconds": seconds,
      "results": results,
  }
