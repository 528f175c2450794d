"""Test setup: 8 fake CPU devices and fast XLA compiles (set before JAX is imported), parsed absl
flags for grain, and the session's shared test-preset runs (tests/job_runs.py).

The shared runs train in subprocesses started by a background thread when the session begins, one
after the other, while the rest of the suite runs (most test time is single-threaded XLA
compilation, so a second core is mostly free); the test files that read them run last
(``pytest_collection_modifyitems``), whole files, so their module fixtures are set up once.
A run is started only when a selected test asks for it.
"""

import concurrent.futures
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


BACKGROUND_RUNS = ("larp_test_run", "mostra_test_run")  # fixtures trained in the background


def _reads_background_runs(item) -> bool:
  return any(name in BACKGROUND_RUNS for name in getattr(item, "fixturenames", ()))


def pytest_collection_modifyitems(session, config, items):
  """Whole test files that read a background run go last (their order kept), so the runs have the
  rest of the suite's time to finish."""
  del session, config
  late = {item.path for item in items if _reads_background_runs(item)}
  items[:] = [i for i in items if i.path not in late] + [i for i in items if i.path in late]


def _mostra_test_run(workdir, cache):
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


@pytest.fixture(scope="session", autouse=True)
def background_runs(request, tmp_path_factory):
  """{fixture name: Future} of the shared runs the selected tests need, started now in one
  background thread (each run is a subprocess; the thread only waits on it)."""
  needed = {n for item in request.session.items for n in getattr(item, "fixturenames", ())}
  pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-runs")
  futures = {}
  if "larp_test_run" in needed:
    futures["larp_test_run"] = pool.submit(
        job_runs.larp_killed_and_resumed, tmp_path_factory.mktemp("larp")
    )
  if "mostra_test_run" in needed:
    futures["mostra_test_run"] = pool.submit(
        _mostra_test_run,
        tmp_path_factory.mktemp("mostra_run"),
        tmp_path_factory.mktemp("jax_cache"),
    )
  yield futures
  pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="session")
def larp_test_run(background_runs):
  """``(workdir, stdout, stage-1 event files)`` of LARP's test preset, killed in stage 2 and
  resumed (``job_runs.larp_killed_and_resumed``)."""
  return background_runs["larp_test_run"].result()


@pytest.fixture(scope="session")
def mostra_test_run(background_runs):
  """MOSTRA's test preset trained by its launcher: workdir, cache, stdout, seconds (trained beside
  other tests, so an upper bound for an idle machine), results."""
  return background_runs["mostra_test_run"].result()
