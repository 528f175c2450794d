"""Retrains the stale models of a chain in topological order while serving stays on legacy.

python -m experiments.retrain_chain --workdir=DIR [--retrain=audio] [--cut=160]

The chain here is the stand-in of Fig. 6 (the issue allows small stand-ins; the LARP / user-rep
manifests are not wired in yet): ``audio`` (a PCA of fixed raw track features fitted on the
first ``cut`` tracks: the modality encoder), ``user_rep`` (users' mean audio vector through a
fitted linear map) and ``head`` (a bilinear user x item scorer fitted on plays; it takes the
user vectors and the audio item vectors, which must share one audio batch). ``--retrain`` refits
that model on a new cut; ``batches.retrain_stale`` then retrains everything downstream, and the
``ChainServer`` keeps answering with the batches the served head's manifest names until the new
head is published.
"""

from __future__ import annotations

import json
import os

import numpy as np
from absl import app
from absl import flags

from larp_jax import batches
from larp_jax import export as export_lib

CHAIN = {"audio": [], "user_rep": ["audio"], "head": ["user_rep", "audio"]}
NUM_TRACKS, NUM_USERS, RAW_DIM, DIM = 200, 60, 12, 4


class StandInChain:
  """Small stand-in models of the chain; each ``train_*`` exports its batch and returns its id.

  Data (fixed by ``seed``): raw track features float32 [200, 12], users' plays int [60, 10].
  """

  def __init__(self, workdir: str, seed: int = 0):
    self.workdir = workdir
    rng = np.random.default_rng(seed)
    self.raw = rng.normal(size=(NUM_TRACKS, RAW_DIM)).astype(np.float32)
    self.plays = rng.integers(0, NUM_TRACKS, size=(NUM_USERS, 10))
    self.registry = batches.Registry(os.path.join(workdir, "manifests"), CHAIN)
    self.cut = {"audio": 120, "user_rep": NUM_USERS, "head": NUM_USERS}

  def _export(self, model, bid, ids, vectors, upstream, arrays=None) -> str:
    path = os.path.join(self.workdir, "export", f"{model}-{bid}.npz")
    export_lib.export_embeddings(
        path,
        ids,
        {"v": vectors},
        checkpoint_path=self.workdir,
        config={"model": model},
        extra={"batch_id": bid, "upstream": upstream, "status": "current"},
    )
    if arrays:
      np.savez(path[:-4] + ".weights.npz", **arrays)
    return path

  def vectors(self, model: str, batch_id: str) -> tuple[np.ndarray, str]:
    """(float32 [N, D], batch id) of a kept batch's export."""
    b = self.registry.batch(model, batch_id)
    _, arrays, manifest = export_lib.load_embeddings(b.export)
    return arrays["v"], manifest["batch_id"]

  def train_audio(self, inputs) -> tuple[str, str]:
    del inputs
    fit = self.raw[: self.cut["audio"]].astype(np.float64)
    mean = fit.mean(0)
    components = np.linalg.svd(fit - mean, full_matrices=False)[2][:DIM]
    bid = export_lib.batch_id(
        "audio",
        arrays={"components": components, "mean": mean},
        details={"cut": self.cut["audio"]},
    )
    vectors = batches.pca_fold_in(self.raw, components, mean)
    ids = [f"t{i}" for i in range(NUM_TRACKS)]
    path = self._export("audio", bid, ids, vectors, {}, {"components": components, "mean": mean})
    return bid, path

  def train_user_rep(self, inputs) -> tuple[str, str]:
    audio, got = self.vectors("audio", inputs["audio"])
    if got != inputs["audio"]:
      raise batches.BatchError(f"audio export is of batch {got}, asked {inputs['audio']}.")
    pooled = audio[self.plays].mean(1)  # [U, DIM]
    w = np.linalg.qr(pooled.T @ pooled + np.eye(DIM))[0].astype(np.float32)  # "fitted" weights
    bid = export_lib.batch_id("user_rep", arrays={"w": w}, upstream=dict(inputs))
    z = np.tanh(pooled @ w).astype(np.float32)
    return bid, self._export("user_rep", bid, [f"u{i}" for i in range(NUM_USERS)], z, dict(inputs))

  def train_head(self, inputs) -> tuple[str, str]:
    self.registry.check_same_ancestor(("user_rep", inputs["user_rep"]), ("audio", inputs["audio"]))
    users, _ = self.vectors("user_rep", inputs["user_rep"])
    items, _ = self.vectors("audio", inputs["audio"])
    labels = np.zeros((NUM_USERS, NUM_TRACKS))
    np.put_along_axis(labels, self.plays, 1.0, axis=1)
    # Least squares of labels ~ users @ H @ items.T.
    h = np.linalg.pinv(users) @ labels @ np.linalg.pinv(items.T)
    h = h.astype(np.float32)
    bid = export_lib.batch_id("head", arrays={"h": h}, upstream=dict(inputs))
    return bid, self._export("head", bid, ["H"] * 1, h.reshape(1, -1), dict(inputs))

  def trainers(self):
    return {"audio": self.train_audio, "user_rep": self.train_user_rep, "head": self.train_head}

  def train_all(self) -> None:
    for model in self.registry.order:
      inputs = {u: self.registry.current(u).batch_id for u in CHAIN[model]}
      bid, path = self.trainers()[model](inputs)
      self.registry.publish(model, bid, inputs, path)


class ChainServer:
  """Serves the head's scores with exactly the batches its manifest names (legacy during a
  retrain), holding them in the registry as ``serving:head``; ``switch`` moves to a new head."""

  USER = "serving:head"

  def __init__(self, chain: StandInChain):
    self.chain = chain
    self.head: str | None = None
    self.switch(chain.registry.current("head").batch_id)

  def _hold(self, head_id: str, acquire: bool) -> None:
    reg = self.chain.registry
    b = reg.batch("head", head_id)
    for model, bid in [("head", head_id), *b.upstream.items()]:
      (reg.acquire if acquire else reg.release)(model, bid, self.USER)

  def switch(self, head_id: str) -> None:
    self._hold(head_id, True)
    if self.head is not None and self.head != head_id:
      self._hold(self.head, False)
    self.head = head_id

  def inputs(self) -> dict[str, str]:
    return dict(self.chain.registry.batch("head", self.head).upstream)

  def scores(self, users_batch: str | None = None, items_batch: str | None = None) -> np.ndarray:
    """float32 [U, M] scores of the served head; the vectors are those of ``users_batch`` /
    ``items_batch`` (default: the ones the head names; others are refused)."""
    ups = self.inputs()
    users_batch, items_batch = users_batch or ups["user_rep"], items_batch or ups["audio"]
    reg = self.chain.registry
    reg.check_inputs("head", self.head, {"user_rep": users_batch, "audio": items_batch})
    users, _ = self.chain.vectors("user_rep", users_batch)
    items, _ = self.chain.vectors("audio", items_batch)
    h, _ = self.chain.vectors("head", self.head)
    projected = users @ h.reshape(DIM, DIM)
    return batches.compare(projected, items_batch, items, items_batch)


def retrain(chain: StandInChain, server: ChainServer, model: str, cut: int, log=print):
  """Refits ``model`` on a new cut, then the stale downstream models; the server switches to
  the new head when it is published. Returns the models retrained (``model`` first)."""
  chain.cut[model] = cut
  inputs = {u: chain.registry.current(u).batch_id for u in CHAIN[model]}
  bid, path = chain.trainers()[model](inputs)
  chain.registry.publish(model, bid, inputs, path)
  log(f"retrained {model} -> {bid}; stale: {chain.registry.stale_models()}")

  def on_switch(name, new, previous):
    log(
        f"  {name}: {previous.batch_id if previous else None} -> {new.batch_id} (current); "
        f"serving head {server.head} on {server.inputs()}"
    )
    if name == "head":
      server.switch(new.batch_id)

  return [model] + batches.retrain_stale(chain.registry, chain.trainers(), on_switch)


_WORKDIR = flags.DEFINE_string("workdir", None, "directory of the chain's manifests and exports")
_RETRAIN = flags.DEFINE_enum("retrain", "audio", list(CHAIN), "model to retrain first")
_CUT = flags.DEFINE_integer("cut", 160, "data cut of the retrain (audio: tracks fitted)")


def main(argv) -> None:
  del argv
  chain = StandInChain(_WORKDIR.value)
  if chain.registry.current("head") is None:
    chain.train_all()
  server = ChainServer(chain)
  done = retrain(chain, server, _RETRAIN.value, _CUT.value)
  summary = {m: [b.to_dict() for b in chain.registry.batches(m)] for m in CHAIN}
  print(json.dumps({"retrained": done, "serving_head": server.head, "batches": summary}, indent=1))


if __name__ == "__main__":
  flags.mark_flag_as_required("workdir")
  app.run(main)
