"""LARP end to end on the demo generator: train -> hard kill -> resume -> evaluate, and the
sharded stage step on 8 fake devices equal to 1 device."""

import json
import os

import jax
import numpy as np
import pytest

from configs import larp
from larp_jax.jobs import larp_job, larp_setup, larp_steps
from larp_jax.training import mesh as mesh_lib
from larp_jax.training import runs
from larp_jax.training import step as step_lib


@pytest.fixture(scope="module")
def finished_run(larp_test_run):
  """The session's LARP test run (conftest.py): killed in stage 2, resumed to the end."""
  return larp_test_run


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


def test_eval_ks_beyond_the_splits_fail_before_training(finished_run, tmp_path):
  workdir, _, _ = finished_run
  config = larp.get_config("test")
  config.data.manual_dir = str(workdir / "demo_raw")
  config.data.data_dir = str(workdir / "data")  # the build of the finished run
  config.eval.ks = (10, 10_000)
  with pytest.raises(ValueError, match=r"config.eval.ks=\(10, 10000\).*valid: \d+ tracks"):
    larp_job.train_and_evaluate(config, str(tmp_path))
  assert not (tmp_path / "stage1").exists()  # no run was started


def test_table2_has_every_framework_and_encoder(finished_run):
  workdir, out, _ = finished_run
  results = json.loads((workdir / "results.json").read_text())
  for framework in ("itemknn", "dropoutnet", "clcrec"):
    for encoder in ("Random", "text-only BERT", "audio-only HTS-AT", "LARP-TPC-fusion"):
      for metric in ("recall@10", "ndcg@10", "recall@40"):
        assert 0.0 <= results[f"{framework}/{encoder}/{metric}"] <= 1.0
  assert "Table 2" in out and "DropoutNet" in out and "CLCRec" in out


def test_table4_scores_the_models_on_another_datasets_test_split(finished_run, tmp_path):
  """MPD-trained stages on an LFM-2b copy of the demo catalogue (bz2 TSVs)."""
  import larp_lfm_files
  from larp_jax.jobs import larp_cross

  workdir, _, _ = finished_run
  lfm_raw = tmp_path / "lfm"
  lfm_raw.mkdir()
  larp_lfm_files.lfm_from_mpd(workdir / "demo_raw", lfm_raw)
  config = larp.get_config("test")
  config.eval.target.update(kind="lfm", manual_dir=str(lfm_raw), data_dir=str(tmp_path / "d"))
  config.eval.target.build.update(
      min_playlist_length=6,
      max_playlist_length=101,
      train_tracks=0,
      train_fraction=0.4,
      valid_fraction=0.3,
  )
  config.eval.target.build.update(num_valid_playlists=6, num_test_playlists=10)
  out = larp_cross.evaluate_cross(config, str(workdir))
  assert set(out["rows"]) >= {"LARP-WTC", "LARP-TPC-fusion"}
  saved = json.loads((workdir / "results_cross_lfm.json").read_text())
  assert 0.0 <= saved["LARP-TPC-fusion/recall@10"] <= 1.0


def test_seeds_repeat_the_job_and_report_mean_and_std(tmp_path):
  from larp_jax.jobs import larp_sweeps

  config = larp.get_config("test")
  config.seeds = (3, 5)
  seen = []

  def fake_job(sub, workdir):
    seen.append((sub.seed, sub.recommenders.seed, sub.seeds, os.path.basename(workdir)))
    return {"results": {"LARP-TPC-fusion/recall@10": 0.1 * sub.seed, "note/text": "x"}}

  out = larp_sweeps.over_seeds(config, str(tmp_path), fake_job)
  assert seen == [(3, 3, (), "seed_3"), (5, 5, (), "seed_5")]
  saved = json.loads((tmp_path / "results.json").read_text())
  np.testing.assert_allclose(saved["LARP-TPC-fusion/recall@10"], np.mean([0.3, 0.5]))
  np.testing.assert_allclose(saved["LARP-TPC-fusion/recall@10/std"], np.std([0.3, 0.5]))
  assert "note/text" not in saved and out["results"]["seeds"] == [3, 5]


def test_fig4_sweep_trains_one_stage3_run_per_seed_count(finished_run):
  """``config.eval.seed_sweep=(3,)`` in the session run (tests/job_runs.py): after the job's runs,
  ``stage3_J3`` is trained from stage 2, scored on the test split, plotted and reported."""
  workdir, _, _ = finished_run
  results = json.loads((workdir / "results.json").read_text())
  for k in (10, 20, 40):
    for metric in ("recall", "ndcg"):
      assert 0.0 <= results[f"fig4/J=3/{metric}@{k}"] <= 1.0
  assert (workdir / "stage3_J3" / "best").exists()
  assert runs.is_finished(str(workdir / "stage3_J3"))
  assert (workdir / "plots" / "fig4_seed_tracks.png").stat().st_size > 1000
