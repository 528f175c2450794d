"""Table 2's CO-Playlist baseline (LARP Sec. 4.1.2, ref. [1]): its positive pairs come from the
training playlists only (brute force over the raw MPD files), its loss is NT-Xent as written from
the formula (NumPy), and one tiny run of the LARP job puts the CO-Playlist row in results.json."""

import itertools
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import larp
from larp_jax.jobs import larp_job, larp_setup
from larp_jax.losses import coplaylist as coplaylist_losses

import xla_env  # tests/xla_env.py


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The job in a 1-device process (as tests/test_larp_job.py runs it: the 8 fake devices of
# conftest.py would only slow compilation), then the audio-only row's HTS-AT it started from.
_JOB = """
import sys
import jax
import numpy as np
from absl import flags
flags.FLAGS.mark_as_parsed()
sys.path.insert(0, 'tests')
import test_larp_coplaylist
from larp_jax.jobs import larp_job, larp_setup
config = test_larp_coplaylist.tiny_config()
larp_job.train_and_evaluate(config, sys.argv[1])
start = larp_setup.audio_only_variables(config)['params']  # cached: what the run started from
leaves = jax.tree_util.tree_leaves_with_path(start)
flat = {jax.tree_util.keystr(p): np.asarray(x) for p, x in leaves}
np.savez(sys.argv[1] + '/audio_init.npz', **flat)
"""


def tiny_config():
  """The test variant with the CO-Playlist run alone, every playlist membership kept in the
  relation table (so it equals the brute-force co-occurrence), Table 2 under ItemKNN, no
  checkpoint but the final one."""
  config = larp.get_config("test")
  config.runs = ("coplaylist",)
  config.loss.group_width = 0
  config.recommenders.frameworks = ("itemknn",)
  config.recommenders.encoders = ("CO-Playlist",)
  config.loop.checkpoint_every_steps = 1000
  return config


@pytest.fixture(scope="module")
def job(tmp_path_factory):
  """The whole LARP job, once, with only the CO-Playlist run: (config, workdir, results)."""
  workdir = str(tmp_path_factory.mktemp("coplaylist"))
  env = dict(os.environ, XLA_FLAGS=xla_env.xla_flags(1))
  proc = subprocess.run(
      [sys.executable, "-c", _JOB, workdir],
      cwd=ROOT,
      env=env,
      capture_output=True,
      text=True,
      timeout=900,
  )
  assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
  with open(os.path.join(workdir, "results.json")) as f:
    return tiny_config(), workdir, json.load(f)


def _raw_playlists(workdir):
  """{pid: [track uri, ...]} of the raw demo MPD slices the job generated."""
  raw = os.path.join(workdir, "demo_raw", "data")
  out = {}
  for name in sorted(os.listdir(raw)):
    with open(os.path.join(raw, name)) as f:
      for playlist in json.load(f)["playlists"]:
        out[int(playlist["pid"])] = [t["track_uri"] for t in playlist["tracks"]]
  return out


def _cooccurring_uris(playlists, pids, keep):
  """Brute force: every ordered (uri_a, uri_b), a != b, both in ``keep`` and in one playlist."""
  pairs = set()
  for pid in pids:
    tracks = [u for u in playlists[pid] if u in keep]
    pairs.update((a, b) for a, b in itertools.permutations(tracks, 2) if a != b)
  return pairs


def test_positive_pairs_come_from_training_playlists_only(job):
  config, workdir, _ = job
  dataset_dir = larp_setup.prepare_dataset(config, workdir)
  from data_pipelines import playlist_audio

  meta = playlist_audio.load_metadata(dataset_dir)
  uris = meta["track_uris"]
  train_uris = set(uris["train"])
  raw = _raw_playlists(workdir)
  train_pairs = _cooccurring_uris(raw, meta["playlist_pids"]["train"], train_uris)
  held_out = set(uris["valid"]) | set(uris["test"])
  assert train_uris.isdisjoint(held_out)  # cold start: no held-out track is ever trained on

  per_epoch, _ = larp_job.stage_steps(config, dataset_dir, larp_job.COPLAYLIST, 1.0)
  data = iter(larp_job.stage_dataset(config, dataset_dir, larp_job.COPLAYLIST))
  groups_table = larp_job.track_groups(config, dataset_dir)["track_groups"]
  seen = 0
  for _ in range(per_epoch):
    batch = next(data)
    ids = np.concatenate([batch["a"]["track_index"], batch["b"]["track_index"]])
    b = batch["playlist_index"].shape[0]
    batch_uris = [uris["train"][i] for i in ids]
    for i in range(b):  # every sampled pair co-occurs in a TRAINING playlist of the raw files
      assert (batch_uris[i], batch_uris[b + i]) in train_pairs
    seen += b
    # The loss's positives against the brute force, in both modes.
    partner = np.concatenate([np.arange(b) + b, np.arange(b)])
    groups = groups_table[ids]
    for mode in ("pair", "cooccurrence"):
      got = np.asarray(coplaylist_losses.coplaylist_positives(partner, ids, groups, mode))
      want = np.zeros_like(got)
      for r, c in itertools.product(range(2 * b), repeat=2):
        if r == c:
          continue
        same = batch_uris[r] == batch_uris[c]
        cooccur = (batch_uris[r], batch_uris[c]) in train_pairs
        want[r, c] = c == partner[r] or same or (mode == "cooccurrence" and cooccur)
      np.testing.assert_array_equal(got, want, err_msg=mode)
  assert seen >= meta["counts"]["num_pairs"] - config.batch_size  # one epoch, remainder dropped


def _numpy_nt_xent(z, positives, temperature):
  """NT-Xent from the formula: per row r, targets uniform over its positives, softmax over every
  column c != r of z_r . z_c / t; the mean over rows that have a positive. float64."""
  z = z.astype(np.float64)
  losses = []
  for r in range(z.shape[0]):
    columns = [c for c in range(z.shape[0]) if c != r]
    logits = np.array([z[r] @ z[c] / temperature for c in columns])
    log_softmax = logits - np.log(np.sum(np.exp(logits - logits.max()))) - logits.max()
    pos = [j for j, c in enumerate(columns) if positives[r, c]]
    if pos:
      losses.append(-np.mean(log_softmax[pos]))
  return float(np.mean(losses))


def test_loss_equals_numpy_nt_xent():
  rng = np.random.default_rng(0)
  b, d, temperature = 6, 16, 0.1
  z = rng.standard_normal((2 * b, d)).astype(np.float32)
  z /= np.linalg.norm(z, axis=1, keepdims=True)
  partner = np.concatenate([np.arange(b) + b, np.arange(b)]).astype(np.int32)
  ids = rng.integers(0, 8, 2 * b).astype(np.int32)  # some tracks repeat in the batch
  groups = rng.integers(-1, 5, (2 * b, 3)).astype(np.int32)
  for mode in ("pair", "cooccurrence"):
    loss, _ = coplaylist_losses.coplaylist_loss(
        jnp.asarray(z), temperature, partner=partner, ids=ids, groups=groups, positives=mode
    )
    positives = np.asarray(coplaylist_losses.coplaylist_positives(partner, ids, groups, mode))
    assert not positives.diagonal().any()
    np.testing.assert_allclose(float(loss), _numpy_nt_xent(z, positives, temperature), rtol=1e-5)
  # Distinct tracks, one positive per row: SimCLR's -log(e^{s_rp/t} / sum_{c != r} e^{s_rc/t}).
  ids = np.arange(2 * b, dtype=np.int32)
  loss, _ = coplaylist_losses.coplaylist_loss(jnp.asarray(z), temperature, partner=partner, ids=ids)
  s = (z.astype(np.float64) @ z.T.astype(np.float64)) / temperature
  np.fill_diagonal(s, -np.inf)
  want = np.mean([np.log(np.exp(s[r]).sum()) - s[r, partner[r]] for r in range(2 * b)])
  np.testing.assert_allclose(float(loss), want, rtol=1e-5)
  # Gradients reach both sides of every pair and are finite.
  grad = jax.grad(
      lambda x: coplaylist_losses.coplaylist_loss(x, temperature, partner=partner, ids=ids)[0]
  )(jnp.asarray(z))
  assert np.isfinite(np.asarray(grad)).all() and (np.abs(np.asarray(grad)).sum(1) > 0).all()


def test_job_writes_the_coplaylist_row_and_trains_the_audio_tower_alone(job):
  config, workdir, results = job
  for k in config.eval.ks:
    for metric in ("recall", "ndcg"):
      assert 0.0 <= results[f"CO-Playlist/{metric}@{k}"] <= 1.0  # Table 3 (ItemKNN)
      assert results[f"itemknn/CO-Playlist/{metric}@{k}"] == results[f"CO-Playlist/{metric}@{k}"]
  assert results["train/coplaylist/seconds"] > 0 and results["report/encode_s/CO-Playlist"] > 0
  assert results["itemknn/CO-Playlist/cell_seconds"] > 0
  text = open(os.path.join(workdir, "results_table.txt")).read()
  assert text.count("CO-Playlist") >= 2  # Table 3 and Table 2's ItemKNN block

  from larp_jax.training import checkpoint

  best = checkpoint.load_params(os.path.join(workdir, "coplaylist", "best"))
  flat = lambda tree: {  # noqa: E731
      jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_leaves_with_path(tree)
  }
  params, momentum = flat(best["params"]), flat(best["model_state"]["momentum"])
  # Everything but the audio tower and its projection is frozen: it still equals its momentum
  # copy (both are the same fresh init, and the CO-Playlist step never updates the EMA).
  others = [k for k in params if "audio_encoder" not in k and "audio_proj" not in k]
  assert any("text_encoder" in k for k in others) and any("fusion" in k for k in others)
  for key in others:
    np.testing.assert_array_equal(params[key], momentum[key], err_msg=key)
  # The audio tower started from the audio-only row's HTS-AT and moved (a few small steps); an
  # independent init would be ~1.4 norms away.
  start = dict(np.load(os.path.join(workdir, "audio_init.npz")))
  trained = {k.replace("['audio_encoder']", "", 1): v for k, v in params.items()}
  trained = {k: v for k, v in trained.items() if k in start}
  assert len(trained) == len(start) == sum("audio_encoder" in k for k in params)
  delta = np.sqrt(sum(np.sum((trained[k] - start[k]) ** 2) for k in start))
  norm = np.sqrt(sum(np.sum(v**2) for v in start.values()))
  assert 0.0 < delta / norm < 0.05, delta / norm
