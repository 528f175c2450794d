"""The MAP-2T job end to end on real-format files (one module-scoped run of the tiny config).

The fixture writes the demo's real formats (gz Goodreads JSON, per-episode metadata.tsv, plays,
engagements, LFM-2b music files), appends bad rows, and runs the job on them through
``config.data.manual_dir`` -- the same path real data takes.
"""

import json
import os

import numpy as np
import pytest

from configs import common
from data_pipelines.demo import audiobook_logs
from data_pipelines.demo import listening_logs
from larp_jax.jobs import map2t_job
from larp_jax.jobs import map2t_report
from larp_jax.training import runs


@pytest.fixture(scope="module")
def job(tmp_path_factory):
  root = tmp_path_factory.mktemp("map2t")
  config = common.load_config("map2t:test")
  data_dir = root / "files"
  audiobook_logs.generate(
      data_dir,
      audiobook_logs.DemoAudiobookConfig(
          listening=listening_logs.DemoListeningConfig(**dict(config.data.listening)),
          **dict(config.data.demo),
      ),
  )
  with open(data_dir / "audiobook-engagements.tsv", "a") as f:
    f.write("1\tno-such-book\t2024-08-01 00:00:00\t900000\n")
    f.write("broken row\n")
  config.data.manual_dir = str(data_dir)
  workdir = str(root / "work")
  results = map2t_job.train_and_evaluate(config, workdir)
  prepared = map2t_job.prepare(config, workdir)
  return config, workdir, results, prepared


def test_results_have_the_flat_keys(job):
  _, workdir, results, prepared = job
  with open(os.path.join(workdir, "results.json")) as f:
    on_disk = json.load(f)
  assert on_disk.keys() == results.keys()
  for cohort in ("all", "music_podcast", "music_only"):
    for model in (
        "popularity",
        "collopop_artist",
        "collopop_podcast",
        "emcdr",
        "map2t_full",
        "map2t_imputed_p",
        "map2t_podcast_ab_music",
    ):
      for metric in ("precision", "recall", "f1", "hit_rate", "first_hit_rate", "coverage"):
        for k in (3, 5):
          assert np.isfinite(results[f"{cohort}/{model}/{metric}@{k}"]), (cohort, model, metric)
  assert "warm/map2t_podcast_ab_music/precision@3" in results
  assert results["counts/all"] == results["counts/music_podcast"] + results["counts/music_only"]
  report = prepared.audio.report.counts()
  assert report["audiobook-engagements.tsv/unknown_item"] == 1
  assert sum(v for k, v in report.items() if k.startswith("audiobook-engagements")) == 2


def test_protocol_cold_start_and_no_future(job):
  _, _, _, prepared = job
  pr = prepared.protocol
  test = pr.test_users
  assert len(test) and not np.intersect1d(test, pr.train_users).size
  assert np.all(np.diff(pr.history.indptr)[test] == 0)  # no listen before T
  assert np.all(np.diff(pr.relevant.indptr)[test] > 0)
  # Popularity counts only pre-T listeners of each book.
  before = pr.listen_time < pr.cut_time
  expected = np.zeros(pr.history.shape[1])
  for b in range(len(expected)):
    expected[b] = len(np.unique(pr.listen_user[before & (pr.listen_book == b)]))
  np.testing.assert_array_equal(prepared.popularity, expected)


def test_full_and_imputed_p_identical_without_podcasts(job):
  config, workdir, results, prepared = job
  params_model = map2t_job.train_variant(config, workdir, prepared, "map2t_full")  # finished: loads
  pr = prepared.protocol
  users = pr.test_users[~pr.has_podcasts[pr.test_users]]
  full = map2t_report._model_scores(params_model, prepared, users)[0]
  imputed = map2t_report._model_scores(params_model, prepared, users, imputed_p=True)[0]
  np.testing.assert_array_equal(full, imputed)
  for key in ("precision@3", "recall@3", "hit_rate@5"):
    assert results[f"music_only/map2t_full/{key}"] == results[f"music_only/map2t_imputed_p/{key}"]
  with_p = pr.test_users[pr.has_podcasts[pr.test_users]]
  assert not np.array_equal(
      map2t_report._model_scores(params_model, prepared, with_p)[0],
      map2t_report._model_scores(params_model, prepared, with_p, imputed_p=True)[0],
  )
  assert runs.is_finished(os.path.join(workdir, "runs", "map2t_full"))


def test_exports_are_unit_vectors_and_retrieval_excludes_history(job):
  _, workdir, _, prepared = job
  from larp_jax import export as export_lib  # pylint: disable=g-import-not-at-top

  _, users, manifest = export_lib.load_embeddings(
      os.path.join(workdir, "export", "map2t_users.npz")
  )
  _, items, _ = export_lib.load_embeddings(os.path.join(workdir, "export", "map2t_items.npz"))
  np.testing.assert_allclose(np.linalg.norm(users["user"], axis=1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(np.linalg.norm(items["item"], axis=1), 1.0, rtol=1e-5)
  assert manifest["cut_time"] == prepared.protocol.cut_time
  u, v = users["user"][prepared.protocol.warm_users], items["item"]
  h = prepared.protocol.history
  history = [h.indices[h.indptr[r] : h.indptr[r + 1]] for r in prepared.protocol.warm_users]
  top = map2t_report.retrieve_excluding(u, v, history, 5)
  for r, hist in enumerate(history):
    assert not np.isin(top[r], hist).any()
    s = u[r] @ v.T
    s[hist] = -np.inf
    np.testing.assert_array_equal(np.sort(top[r]), np.sort(np.argsort(-s, kind="stable")[:5]))


def test_collopop_matches_a_direct_count():
  from larp_jax.recommenders import collopop  # pylint: disable=g-import-not-at-top
  import scipy.sparse as sp  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(0)
  tops = [rng.choice(6, 2, replace=False) for _ in range(20)]
  books = sp.csr_matrix((rng.random((20, 7)) < 0.3).astype(np.float32))
  coocc = collopop.cooccurrence(tops, books, 6).toarray()
  dense = books.toarray() > 0
  for i in range(6):
    for a in range(7):
      assert coocc[i, a] == sum(1 for r in range(20) if i in tops[r] and dense[r, a])
  pop = dense.sum(0).astype(np.float64)
  query = [np.asarray([0, 3]), np.asarray([], np.int64)]
  s = collopop.collopop_scores(query, sp.csr_matrix(coocc), pop, 0.5)
  raw = (coocc[0] + coocc[3]) * pop**0.5
  order = sorted(range(7), key=lambda a: (-raw[a], -pop[a], a))
  assert list(np.argsort(-s[0], kind="stable")) == order
  assert list(np.argsort(-s[1], kind="stable")) == sorted(range(7), key=lambda a: (-pop[a], a))
