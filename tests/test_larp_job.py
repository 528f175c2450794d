"""LARP end to end on the demo generator: train -> hard kill -> resume -> evaluate, and the
sharded stage step on 8 fake devices equal to 1 device."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from configs import larp
from larp_jax.jobs import larp_job, larp_setup, larp_steps
from larp_jax.training import mesh as mesh_lib
from larp_jax.training import step as step_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNS = "--config.runs=('stage1','stage2','stage3')"


def _launch(workdir):
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
  return subprocess.Popen(
      [
          sys.executable,
          "-m",
          "experiments.train_larp",
          "--config=configs/larp.py:test",
          f"--workdir={workdir}",
          RUNS,
      ],
      cwd=ROOT,
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
  )


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("larp")
  proc = _launch(workdir)
  stage2_ckpt = workdir / "stage2" / "checkpoints" / "4"
  deadline = time.time() + 900
  while not stage2_ckpt.exists():
    assert proc.poll() is None, proc.stdout.read()[-4000:]
    assert time.time() < deadline, "stage 2 never reached its step-4 checkpoint"
    time.sleep(0.5)
  proc.send_signal(signal.SIGKILL)  # hard kill in the middle of stage 2
  proc.wait()
  stage1_events = sorted(p for p in os.listdir(workdir / "stage1") if p.startswith("events"))
  resumed = _launch(workdir)
  out, _ = resumed.communicate(timeout=1200)
  assert resumed.returncode == 0, out[-4000:]
  return workdir, out, stage1_events


def test_resumed_run_reports_every_table3_row(finished_run):
  workdir, out, stage1_events = finished_run
  assert "resuming at step 4" in out or "resuming at step" in out
  # Stage 1 had finished before the kill: it is not trained again (no new event file).
  assert (
      sorted(p for p in os.listdir(workdir / "stage1") if p.startswith("events")) == stage1_events
  )
  results = json.loads((workdir / "results.json").read_text())
  for row in (
      "Random",
      "text-only BERT",
      "audio-only HTS-AT",
      "LARP-WTC",
      "LARP-TTC",
      "LARP-TPC-fusion",
  ):
    for k in (10, 20, 40):
      for metric in ("recall", "ndcg"):
        value = results[f"{row}/{metric}@{k}"]
        assert 0.0 <= value <= 1.0, (row, metric, k, value)
  assert "LARP-TPC-fusion" in out  # the printed table
  assert (workdir / "plots" / "pca_test_playlist.png").stat().st_size > 1000
  assert (workdir / "plots" / "validation_recall_stages.png").stat().st_size > 1000
  data = np.load(workdir / "export" / "test_embeddings.npz")
  manifest = json.loads((workdir / "export" / "test_embeddings.npz.manifest.json").read_text())
  assert data["fused"].shape == (manifest["num_items"], 256) and np.isfinite(data["fused"]).all()
  np.testing.assert_allclose(data["fused"], 0.5 * (data["audio"] + data["text"]), atol=1e-6)
  assert manifest["embedding_space_id"] == results["export/embedding_space_id"]


def _stage2_losses(config, dataset_dir, mesh, steps=2):
  model, state, shardings = larp_job.make_state(config, mesh, dataset_dir, 10)
  step = step_lib.jit_train_step(
      larp_steps.make_train_step(model, 3, config.loss), shardings, mesh, larp_steps.INPUT_SPECS
  )
  groups = larp_job.track_groups(config, dataset_dir)
  data = iter(larp_job.stage_dataset(config, dataset_dir, 3))
  losses = []
  for _ in range(steps):
    inputs = step_lib.place_inputs({**next(data), "extra": groups}, mesh, larp_steps.INPUT_SPECS)
    state, metrics = step(state, inputs)
    losses.append(float(metrics["loss/total"]))
  return np.array(losses), state


def test_sharded_stage3_step_equals_single_device(finished_run):
  workdir, _, _ = finished_run
  config = larp.get_config("test")
  config.optimizer.update(name="sgd", learning_rate=0.05, warmup_steps=0)
  dataset_dir = larp_setup.prepare_dataset(config, str(workdir))
  single, s1 = _stage2_losses(
      config, dataset_dir, mesh_lib.make_mesh({"shape": (1, 1)}, devices=jax.devices()[:1])
  )
  # All 8 devices on `data` (the small HTS-AT's first stage has 1 head, which cannot split on a
  # model axis of 2; tensor parallelism is covered by tests/test_training_sharding.py).
  sharded, s8 = _stage2_losses(config, dataset_dir, mesh_lib.make_mesh({"shape": (8, 1)}))
  np.testing.assert_allclose(sharded, single, atol=1e-4, rtol=0)
  # Queues and lookup tables live row-sharded on `data`.
  assert s8.model_state["audio_table"].sharding.spec[0] == "data"
  assert s8.model_state["queues"]["audio"].sharding.spec[0] == "data"
  np.testing.assert_allclose(
      np.asarray(s8.model_state["audio_table"]),
      np.asarray(s1.model_state["audio_table"]),
      atol=1e-4,
  )
