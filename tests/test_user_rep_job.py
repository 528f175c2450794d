"""Paper 001's job end to end on tiny data: the report's keys, the export's manifest, resuming a
finished job, and LFM-2b-format bz2 files with and without the optional platform tables."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from configs import common
from data_pipelines.demo import audio_stand_in
from data_pipelines.demo import latent_catalogue
from data_pipelines.demo import listening_logs
from larp_jax import export as export_lib
from larp_jax.jobs import user_rep_job

OPTIONAL = ("onboarding", "devices", "follows", "artist-countries")


def _config(**overrides):
  return common.load_config("configs/user_rep.py:test", **overrides)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("user_rep"))
  results = user_rep_job.train_and_evaluate(_config(), workdir)
  return workdir, results


def test_results_have_every_table_key(demo_run):
  workdir, results = demo_run
  with open(os.path.join(workdir, "results.json")) as f:
    written = json.load(f)
  assert written == results
  for key in (
      "future_7d/user_rep/auc",
      "future_7d/nmf/auc",
      "future_7d/lightfm/auc",
      "future_7d/avg_embeddings/auc",
      "future_7d/curated/auc",
      "future_7d_new_tracks/user_rep/auc",
      "future_4h_onboarded/popularity/auc",
      "future_4h_onboarded/onboarding_avg/auc",
      "future_4h_not_onboarded/user_rep/accuracy",
      "artist_follow/curated/auc",
      "ranking/user_rep/ndcg@10",
      "retrieval/user_rep/established_recall@10",
      "retrieval/user_rep/new_recall@50",
      "clusters_favourite_artist/avg_embeddings/ndcg@10",
      "future_7d/user_rep_without_modality/auc",
      "cost/user_rep/bytes_per_user",
  ):
    assert key in results, key
    assert np.isfinite(results[key]) if isinstance(results[key], float) else True
  assert results["meta/cut_time_iso"].endswith("T00:00:00Z")
  assert os.path.exists(os.path.join(workdir, "plots", "z_projection.png"))


def test_export_carries_batch_and_upstream_ids(demo_run):
  workdir, results = demo_run
  ids, arrays, manifest = export_lib.load_embeddings(
      os.path.join(workdir, "export", "user_rep.npz")
  )
  assert arrays["z"].shape == (len(ids), 24) and np.isfinite(arrays["z"]).all()
  assert manifest["batch_id"] == results["meta/batch_id"]
  assert manifest["cut_time"] == results["meta/cut_time"]
  spaces = {
      name: export_lib.load_embeddings(os.path.join(workdir, "export", f"track_{name}.npz"))[2]
      for name in ("audio", "collaborative")
  }
  assert manifest["upstream"] == {
      "audio": spaces["audio"]["batch_id"],
      "collaborative": spaces["collaborative"]["batch_id"],
  }
  # The audio space names the LARP (here: stand-in) export it was reduced from.
  stand_in = export_lib.load_embeddings(os.path.join(workdir, "export", "audio_stand_in.npz"))[2]
  assert spaces["audio"]["upstream"] == {"larp_audio": stand_in["batch_id"]}


def test_rerun_of_finished_job_reproduces_results(demo_run):
  workdir, results = demo_run
  again = user_rep_job.train_and_evaluate(_config(), workdir)
  timed = lambda r: {
      k: v
      for k, v in r.items()
      if not (k.endswith("_us_per_user") or k.startswith("meta/seconds/"))
  }
  assert timed(again) == timed(results)  # measured timings aside, the same numbers


@pytest.mark.parametrize("with_optional", [True, False])
def test_lfm2b_bz2_files_run_through_the_same_job(tmp_path, with_optional):
  raw = tmp_path / "lfm2b"
  config = listening_logs.DemoListeningConfig(
      num_established=160, num_new=60, mean_plays=80.0, new_user_days=7.0, seed=5
  )
  listening_logs.generate(str(raw), config, compress="bz2")
  assert (raw / "listening-events.tsv.bz2").exists() and not (raw / "listening-events.tsv").exists()
  if not with_optional:
    for name in OPTIONAL:
      os.remove(raw / f"{name}.tsv.bz2")
  audio = tmp_path / "audio.npz"
  audio_stand_in.write_audio_stand_in(
      str(audio), latent_catalogue.build_catalogue(latent_catalogue.CatalogueConfig())
  )
  results = user_rep_job.train_and_evaluate(
      _config(
          **{
              "data.manual_dir": str(raw),
              "modality.audio_npz": str(audio),
              "runs": ("ae",),
              "split.min_active_users": 5,
          }
      ),
      str(tmp_path / "work"),
  )
  assert np.isfinite(results["future_7d/user_rep/auc"])
  has_follow = any(k.startswith("artist_follow/") for k in results)
  has_country = any(k.startswith("clusters_artist_country/") for k in results)
  assert has_follow == with_optional and has_country == with_optional
  if not with_optional:
    # Onboarding absent: nobody is "onboarded"; the not-onboarded row is still reported.
    assert results["meta/users/new/onboarded"] == 0
    assert "future_4h_onboarded/user_rep/auc" not in results


def test_manual_dir_without_audio_export_is_an_error(tmp_path):
  with pytest.raises(ValueError, match="config.modality.audio_npz"):
    user_rep_job.train_and_evaluate(
        _config(**{"data.manual_dir": str(tmp_path)}), str(tmp_path / "w")
    )
