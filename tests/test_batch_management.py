"""Batch management (paper 001, Sec. 4.4; issue 12): one test per rule, on the stand-in chain of
``experiments/retrain_chain`` (audio space -> user model -> head, the head also on audio items)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from experiments import retrain_chain
from larp_jax import batches
from larp_jax import export as export_lib


@pytest.fixture()
def chain(tmp_path):
  c = retrain_chain.StandInChain(str(tmp_path))
  c.train_all()
  return c


def ids(c):
  return {m: c.registry.current(m).batch_id for m in retrain_chain.CHAIN}


def test_every_model_writes_a_manifest(chain):
  for model, ups in retrain_chain.CHAIN.items():
    with open(os.path.join(chain.workdir, "manifests", f"{model}.manifest.json")) as f:
      manifest = json.load(f)
    (b,) = manifest["batches"]
    assert b["status"] == "current" and sorted(b["upstream"]) == sorted(ups)
    exported = export_lib.load_embeddings(b["export"])[2]
    assert exported["batch_id"] == b["batch_id"] and exported["upstream"] == b["upstream"]


def test_mixed_batch_inputs_are_refused(chain):
  old = ids(chain)
  server = retrain_chain.ChainServer(chain)
  chain.cut["audio"] = 170
  bid, path = chain.train_audio({})
  chain.registry.publish("audio", bid, {}, path)
  assert bid != old["audio"]
  with pytest.raises(batches.BatchError, match=f"{old['audio']}.*{bid}"):
    server.scores(items_batch=bid)  # the head was trained on the old audio batch
  with pytest.raises(batches.BatchError, match=f"{old['audio']}.*{bid}"):
    chain.registry.check_training_inputs("user_rep", {"audio": old["audio"]})
  a = chain.vectors("audio", old["audio"])[0]
  b = chain.vectors("audio", bid)[0]
  with pytest.raises(batches.BatchError, match="refusing to compare"):
    batches.compare(a, old["audio"], b, bid)
  np.testing.assert_allclose(batches.compare(a, bid, a, bid), a @ a.T, rtol=1e-6)


def test_user_and_item_vectors_come_from_one_audio_batch(chain):
  old = ids(chain)
  chain.cut["audio"] = 150
  new_audio, path = chain.train_audio({})
  chain.registry.publish("audio", new_audio, {}, path)
  assert (
      chain.registry.check_same_ancestor(("user_rep", old["user_rep"]), ("audio", old["audio"]))
      == old["audio"]
  )
  with pytest.raises(batches.BatchError, match=f"{old['audio']}.*{new_audio}"):
    chain.train_head({"user_rep": old["user_rep"], "audio": new_audio})


def test_retrain_marks_downstream_stale_in_topological_order(chain):
  assert chain.registry.stale_models() == []
  chain.cut["audio"] = 140
  bid, path = chain.train_audio({})
  old = chain.registry.current("audio")
  chain.registry.publish("audio", bid, {}, path)
  assert chain.registry.stale_models() == ["user_rep", "head"]
  assert export_lib.load_embeddings(old.export)[2]["status"] == "legacy"


def test_downstream_serves_legacy_during_retrain_and_switches_after(chain):
  old = ids(chain)
  server = retrain_chain.ChainServer(chain)
  before = server.scores()
  seen = []
  trainers = chain.trainers()

  def watch(name):
    def train(inputs):
      seen.append((name, server.head, server.inputs(), server.scores()))
      return trainers[name](inputs)

    return train

  chain.trainers = lambda: {m: watch(m) for m in trainers}
  done = retrain_chain.retrain(chain, server, "audio", 175, log=lambda *_: None)
  assert done == ["audio", "user_rep", "head"]
  for _, head, inputs, scores in seen:
    assert head == old["head"] and inputs == {"user_rep": old["user_rep"], "audio": old["audio"]}
    np.testing.assert_array_equal(scores, before)
  new = ids(chain)
  assert all(new[m] != old[m] for m in new)
  assert server.head == new["head"] and server.inputs() == {
      "user_rep": new["user_rep"],
      "audio": new["audio"],
  }
  assert chain.registry.stale_models() == []
  assert chain.registry.legacy("head").batch_id == old["head"]
  assert not chain.registry.users_of("audio", old["audio"])  # released after the switch


def test_rotation_keeps_two_and_refuses_to_evict_a_batch_in_use(chain):
  first = chain.registry.current("audio").batch_id
  new = []
  for cut in (130, 140):
    chain.cut["audio"] = cut
    new.append(chain.train_audio({}))
  chain.registry.publish("audio", *new[0][:1], {}, new[0][1])
  # The current user model still names the first audio batch.
  with pytest.raises(batches.BatchInUseError, match=f"{first}.*user_rep:"):
    chain.registry.publish("audio", new[1][0], {}, new[1][1])
  server = retrain_chain.ChainServer(chain)
  switch = lambda m, b, prev: m == "head" and server.switch(b.batch_id)
  batches.retrain_stale(chain.registry, chain.trainers(), lambda m, b, p: None)
  # Downstream retrained, but the server still serves the old head on the first audio batch.
  with pytest.raises(batches.BatchInUseError, match=f"{first}.*serving:head"):
    chain.registry.publish("audio", new[1][0], {}, new[1][1])
  server.switch(chain.registry.current("head").batch_id)
  chain.registry.publish("audio", new[1][0], {}, new[1][1])
  kept = chain.registry.batches("audio")
  assert [b.batch_id for b in kept] == [new[1][0], new[0][0]]
  assert [b.status for b in kept] == ["current", "legacy"]
  batches.retrain_stale(chain.registry, chain.trainers(), switch)
  assert all(len(chain.registry.batches(m)) == 2 for m in retrain_chain.CHAIN)


def test_a_retrain_mints_a_new_id_and_the_same_batch_keeps_it(chain):
  old = ids(chain)
  same, _ = chain.train_audio({})
  assert same == old["audio"]
  chain.registry.publish("audio", same, {}, chain.registry.current("audio").export)  # no-op
  assert len(chain.registry.batches("audio")) == 1
  chain.cut["audio"] = 121
  new, path = chain.train_audio({})
  assert new != old["audio"]
  chain.registry.publish("audio", new, {}, path)
  retrained, _ = chain.train_user_rep({"audio": new})
  assert retrained != old["user_rep"]


def test_adding_items_keeps_the_id_and_existing_rows(chain, tmp_path):
  audio = chain.registry.current("audio")
  ids_before, arrays, manifest = export_lib.load_embeddings(audio.export)
  weights = np.load(audio.export[:-4] + ".weights.npz")
  raw_new = np.random.default_rng(5).normal(size=(7, retrain_chain.RAW_DIM)).astype(np.float32)
  rows = batches.pca_fold_in(raw_new, weights["components"], weights["mean"])
  expected = (raw_new.astype(np.float64) - weights["mean"]) @ weights["components"].T
  np.testing.assert_allclose(rows, expected, rtol=1e-5, atol=1e-6)
  batches.add_items(audio.export, [f"new{i}" for i in range(7)], {"v": rows})
  ids_after, after, manifest_after = export_lib.load_embeddings(audio.export)
  assert manifest_after["batch_id"] == manifest["batch_id"] == audio.batch_id
  assert manifest_after["num_items"] == len(ids_before) + 7
  np.testing.assert_array_equal(after["v"][: len(ids_before)], arrays["v"])
  assert ids_after[: len(ids_before)].tolist() == ids_before.tolist()
  with pytest.raises(batches.BatchError, match="new0"):
    batches.add_items(audio.export, ["new0"], {"v": rows[:1]})
  # Collaborative fold-in with fixed factors = the ridge solution of each new item.
  rng = np.random.default_rng(6)
  factors, c = rng.normal(size=(30, 4)), (rng.random((3, 30)) < 0.3).astype(float)
  folded = batches.als_fold_in(factors, c, 0.1)
  a = np.vstack([factors, np.sqrt(0.1) * np.eye(4)])
  for i in range(3):
    ref = np.linalg.lstsq(a, np.r_[c[i], np.zeros(4)], rcond=None)[0]
    np.testing.assert_allclose(folded[i], ref, rtol=1e-4, atol=1e-5)


def test_bad_chains_and_unknown_batches_are_named(tmp_path):
  with pytest.raises(ValueError, match="cycle"):
    batches.Registry(str(tmp_path), {"a": ["b"], "b": ["a"]})
  with pytest.raises(ValueError, match="unknown upstream"):
    batches.Registry(str(tmp_path), {"a": ["zz"]})
  reg = batches.Registry(str(tmp_path), {"a": [], "b": ["a"]})
  with pytest.raises(batches.BatchError, match="a: batch nope"):
    reg.publish("b", "b-1", {"a": "nope"})
