"""The main job's chain on the test configs: LARP's catalogue export is the user representation's
audio space, z is MAP-2T's music input at the same cut time, MOSTRA runs beside in a second
process; the summary's claims are computed from the systems' own results files."""

import calendar
import csv
import json
import os
import shutil
import time

import numpy as np

from configs import chain, larp, map2t, mostra, user_rep
from larp_jax import export as export_lib
from larp_jax.jobs import chain_job


def _configs():
  modules = {"larp": larp, "user_rep": user_rep, "map2t": map2t, "mostra": mostra}
  return {name: module.get_config("test") for name, module in modules.items()}


_REUSED = (os.path.join("larp", "stage1"), os.path.join("mostra", "models"))


def _reused_mtimes(workdir):
  """{path: mtime} of every file under the chain's copies of the finished runs."""
  out = {}
  for sub in _REUSED:
    for root, _, files in os.walk(os.path.join(workdir, sub)):
      for name in files:
        out[os.path.join(root, name)] = os.path.getmtime(os.path.join(root, name))
  return out


def _start_from_finished_runs(workdir, larp_test_run, mostra_test_run):
  """Copies the session's finished LARP stage 1 and MOSTRA scorers (tests/job_runs.py, trained
  on the same test presets) where the chain's jobs look for them: the chain skips finished runs,
  so this test checks the wiring, and test_larp_job / test_mostra_job check the training."""
  larp_dir, _, _ = larp_test_run
  shutil.copytree(larp_dir / "stage1", os.path.join(workdir, _REUSED[0]))
  shutil.copytree(mostra_test_run["workdir"] / "models", os.path.join(workdir, _REUSED[1]))
  return _reused_mtimes(workdir)


def test_chain_wires_each_system_into_the_next(tmp_path, larp_test_run, mostra_test_run):
  workdir = str(tmp_path)
  copied = _start_from_finished_runs(workdir, larp_test_run, mostra_test_run)
  out = chain_job.run_chain(chain.get_config("test"), _configs(), workdir)
  # The finished runs were reused as they were: no file of them was rewritten, added or removed.
  assert _reused_mtimes(workdir) == copied
  assert set(out["seconds"]) == set(chain_job.SYSTEMS)
  assert out["beside"] == ["mostra"]
  assert os.path.getsize(os.path.join(workdir, "mostra", "log.txt")) > 0
  # MOSTRA's seconds are its own process's (its runs were finished: it only re-evaluates), not
  # the time until the chain joined it after training the user representation and MAP-2T.
  assert out["seconds"]["mostra"] == chain_job.beside_seconds(os.path.join(workdir, "mostra"))
  assert 0 < out["seconds"]["mostra"] < out["total_seconds"]

  # LARP's export holds every split's tracks; the user representation read its fused vectors.
  ids, arrays, manifest = export_lib.load_embeddings(chain_job.larp_catalogue_export(workdir))
  assert manifest["split"] == "train+valid+test"
  assert set(arrays) == {"audio", "text", "fused"}
  assert len(set(ids.tolist())) == len(ids)
  audio_manifest = json.load(
      open(os.path.join(workdir, "user_rep", "export", "track_audio.npz.manifest.json"))
  )
  assert audio_manifest["upstream"]["larp_audio"] == manifest["embedding_space_id"]

  # MAP-2T keeps its own T (30 days before its last audiobook listen); its music input is a
  # second z batch the user representation exported at that T, earlier than z's own T.
  z_ids, z, z_manifest = export_lib.load_embeddings(
      os.path.join(workdir, "user_rep", "export", "user_rep.npz")
  )
  map2t_manifest = json.load(
      open(os.path.join(workdir, "map2t", "export", "map2t_users.npz.manifest.json"))
  )
  assert map2t_manifest["upstream"]["music"] == "user_rep"
  (batch,) = os.listdir(os.path.join(workdir, "user_rep", "batches"))
  batch_ids, batch_z, batch_manifest = export_lib.load_embeddings(
      os.path.join(workdir, "user_rep", "batches", batch, "export", "user_rep.npz")
  )
  assert int(map2t_manifest["cut_time"]) == int(batch_manifest["cut_time"])
  assert int(batch_manifest["cut_time"]) < int(z_manifest["cut_time"])
  assert batch_manifest["batch_id"] != z_manifest["batch_id"]
  assert batch_ids.tolist() == z_ids.tolist() and np.isfinite(batch_z["z"]).all()
  # That T, recomputed from the audiobook file: the day boundary window_days before the last listen.
  cfg = map2t.get_config("test")
  with open(os.path.join(workdir, "map2t", "demo_audio", "audiobook-engagements.tsv")) as f:
    rows = list(csv.DictReader(f, delimiter="\t"))
  last = max(
      calendar.timegm(time.strptime(r["timestamp"], "%Y-%m-%d %H:%M:%S"))
      for r in rows
      if int(r["ms_played"]) >= cfg.data.listen_ms
  )
  day = 86400
  assert int(map2t_manifest["cut_time"]) == (last - int(cfg.split.window_days * day)) // day * day

  # The summary's claims are recomputed here from the results files.
  summary = json.load(open(os.path.join(workdir, "results.json")))
  larp_results = json.load(open(os.path.join(workdir, "larp", "results.json")))
  key = "larp/LARP-WTC>Random/recall@10"
  assert summary["claims"][key] == (
      larp_results["LARP-WTC/recall@10"] > larp_results["Random/recall@10"]
  )
  for key, holds in summary["claims"].items():  # Table 2 cells: '<framework>/<row>/<metric>'
    parts = key.split("/")
    if parts[0] == "larp" and len(parts) == 4:
      ours, base = parts[2].split(">")
      fw, metric = parts[1], parts[3]
      assert holds == (
          larp_results[f"{fw}/{ours}/{metric}"] > larp_results[f"{fw}/{base}/{metric}"]
      )
  mostra_results = json.load(open(os.path.join(workdir, "mostra", "results.json")))
  assert summary["claims"]["mostra/claim_over_one_scorer"] == mostra_results["claim/holds"]
  assert np.isfinite(z["z"]).all() and len(z_ids) == z["z"].shape[0]
