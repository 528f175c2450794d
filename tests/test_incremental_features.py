"""NRT features and vectors equal the batch pipeline (paper 001, Sec. 4.2; issue 12 Must-show 1).

A random stream over every user of the tiny demo, each user cut at a random event time, is
micro-batched through the updater; each user's served vector must equal the batch pipeline's
vector at its last event (``user_features`` at t = last event + 1 s, standardised, and a NumPy
forward of the encoder -- an independent reference), and replaying / reordering the stream
must change nothing (bit-identical bins and vectors).
"""

from __future__ import annotations

import numpy as np
import pytest
from flax.core import meta

from configs import common
from data_pipelines import user_features
from larp_jax.serving import incremental
from larp_jax.serving import stores
from larp_jax.serving import updater as updater_lib


def numpy_encode(params, x: np.ndarray) -> np.ndarray:
  """Reference forward of the autoencoder's encoder (SELU MLP) in float64 NumPy."""
  enc = meta.unbox(params)["encoder"]
  h = np.asarray(x, np.float64)
  names = sorted((k for k in enc if k.startswith("dense_")), key=lambda k: int(k[6:]))
  alpha, scale = 1.6732632423543772, 1.0507009873554805
  for name in names:
    h = h @ np.asarray(enc[name]["kernel"], np.float64) + np.asarray(enc[name]["bias"])
    h = scale * np.where(h > 0, h, alpha * np.expm1(np.minimum(h, 0)))
  return h @ np.asarray(enc["out"]["kernel"], np.float64) + np.asarray(enc["out"]["bias"])


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  config = common.load_config("configs/user_rep.py:test")
  workdir = str(tmp_path_factory.getbasetemp() / "serving_user_rep")
  prepared, served, params = updater_lib.served_from_job(config, workdir, train=False)
  return prepared, served, params


def random_stream(listening, rng):
  """Every user's events up to a random event time (ties kept together), shuffled."""
  events, cut = [], {}
  by_user = {}
  for e in incremental.events_from_listening(listening):
    by_user.setdefault(e.user_id, []).append(e)
  for uid, mine in by_user.items():
    times = sorted({e.time for e in mine if e.time >= 0})
    tau = times[rng.integers(len(times))]
    kept = [e for e in mine if e.time <= tau]
    events.extend(kept)
    cut[uid] = tau + 1
  order = rng.permutation(len(events))
  return [events[i] for i in order], cut


def reference(prepared, served, params, uid: str, t: int) -> tuple[np.ndarray, np.ndarray]:
  listening = prepared.listening
  u = int(np.flatnonzero(listening.user_ids == uid)[0])
  x = user_features.user_features(
      user_features.user_record(listening, u), t, prepared.spaces, prepared.spec
  )
  standard = (x[served.columns].astype(np.float64) - served.mean) / served.std
  return x, numpy_encode(params, standard[None])[0]


def run_stream(served, events, batch: int) -> updater_lib.Updater:
  up = updater_lib.Updater(stores.SQLiteStore(":memory:"), [served])
  for i in range(0, len(events), batch):
    up.process(events[i : i + batch])
  return up


def test_nrt_vector_at_last_event_equals_batch(setup):
  prepared, served, params = setup
  rng = np.random.default_rng(0)
  events, cut = random_stream(prepared.listening, rng)
  up = run_stream(served, events, batch=257)
  state = up.state_of(served.batch_id)
  assert len(cut) == prepared.listening.num_users
  worst = 0.0
  for uid, t in cut.items():
    vec = up.store.get(uid, served.batch_id)
    assert vec is not None, uid
    assert vec.as_of == t == state.as_of(uid)
    x, z = reference(prepared, served, params, uid, t)
    np.testing.assert_array_equal(state.features(uid), x)  # the same function, exact
    worst = max(worst, float(np.abs(vec.z - z).max()))
  assert worst <= 1e-5, worst


def test_replay_and_reorder_change_nothing(setup):
  prepared, served, _ = setup
  rng = np.random.default_rng(1)
  events, cut = random_stream(prepared.listening, rng)
  in_order = sorted(events, key=lambda e: (e.time, e.event_id))
  replayed = events + [events[i] for i in rng.choice(len(events), len(events) // 3)] + in_order
  runs = [run_stream(served, s, b) for s, b in ((in_order, 1000), (events, 97), (replayed, 512))]
  states = [up.state_of(served.batch_id) for up in runs]
  assert states[2].counts["duplicate"] >= len(events)
  for uid in cut:
    base = states[0].bins(uid)
    for state in states[1:]:
      other = state.bins(uid)
      for a, b in zip(base, other):
        np.testing.assert_array_equal(a, b)
    z = [up.store.get(uid, served.batch_id) for up in runs]
    for v in z[1:]:
      np.testing.assert_array_equal(v.z, z[0].z)
      assert v.as_of == z[0].as_of


def test_old_days_evicted_and_late_events_ignored(setup):
  prepared, _, _ = setup
  spaces, spec = prepared.spaces, prepared.spec
  horizon, day = max(spec.horizons), user_features.DAY_SECONDS
  inc = incremental.IncrementalFeatures(spaces, spec)
  t0 = 1_700_000_000 - 1_700_000_000 % day
  plays = [
      incremental.Event(f"p{i}", "u", "play", t0 + i * 5 * day + 7, track=i % 50) for i in range(60)
  ]  # 300 days
  late = incremental.Event("late", "u", "play", t0 + 3, track=1)
  for e in plays[::-1] + [late]:
    inc.apply(e)
  bins = inc.bins("u")
  t = inc.as_of("u")
  assert bins.days.min() > t // day - horizon and len(inc.users["u"].seen) == len(bins.days)
  assert inc.counts["too_old"] >= 1
  record = user_features.UserRecord(
      np.array([e.track for e in plays + [late]]),
      np.array([e.time for e in plays + [late]]),
      -1,
      -1,
      -1,
      -1,
      np.zeros(0, np.int32),
      np.zeros(0, np.int64),
      -1,
      np.zeros(0, np.int32),
      np.zeros(0, np.int32),
  )
  for later in (t, t + 40 * day):
    np.testing.assert_array_equal(
        inc.features("u", later), user_features.user_features(record, later, spaces, spec)
    )


def test_bad_events_are_named(setup):
  prepared, _, _ = setup
  inc = incremental.IncrementalFeatures(prepared.spaces, prepared.spec)
  with pytest.raises(ValueError, match="'time'"):
    incremental.event_from_dict({"event_id": "e1", "user_id": "u", "kind": "play"})
  with pytest.raises(ValueError, match="kind='skip'"):
    incremental.event_from_dict({"event_id": "e1", "user_id": "u", "kind": "skip", "time": 1})
  with pytest.raises(ValueError, match="e9.*track 99999"):
    inc.apply(incremental.Event("e9", "u", "play", 10, track=99_999))
  inc.apply(incremental.Event("e2", "u", "play", 1000, track=0))
  with pytest.raises(ValueError, match="only moves forward"):
    inc.features("u", 10)
