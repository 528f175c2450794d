"""The NRT updater end to end with the embedded parts (paper 001, Sec. 4.2-4.3; issue 12):
JSON-lines and in-process sources, the SQLite store, restart from the event log, cold start,
onboarding expiry and the daily batch run, current + legacy batches side by side, the launcher."""

from __future__ import annotations

import dataclasses
import queue

import numpy as np
import pytest

from configs import common
from data_pipelines import user_features
from larp_jax.serving import incremental
from larp_jax.serving import stores
from larp_jax.serving import updater as updater_lib

DAY = user_features.DAY_SECONDS


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  config = common.load_config("configs/user_rep.py:test")
  workdir = str(tmp_path_factory.getbasetemp() / "serving_user_rep")
  prepared, served, _ = updater_lib.served_from_job(config, workdir, train=False)
  return config, workdir, prepared, served


def batch_vector(prepared, served, u: int, t: int, spaces=None) -> np.ndarray:
  spaces = spaces or prepared.spaces
  x = user_features.user_features(
      user_features.user_record(prepared.listening, u), t, spaces, prepared.spec
  )
  return served.vectors(x[None])[0]


def test_jsonl_queue_and_restart_agree_with_the_batch_path(setup, tmp_path):
  _, _, prepared, served = setup
  users = range(0, 450, 9)
  events = incremental.events_from_listening(prepared.listening, users)
  path = str(tmp_path / "events.jsonl")
  updater_lib.write_events_jsonl(path, events)
  up = updater_lib.Updater(stores.SQLiteStore(str(tmp_path / "a.sqlite")), [served])
  total = up.run(stores.JsonLinesSource(path), max_batch=300, stop_after_idle_s=0.1)
  assert total.received == len(events)
  q = queue.Queue()
  for e in events:
    q.put(incremental.event_to_dict(e))
  q.put(None)
  via_queue = updater_lib.Updater(stores.SQLiteStore(":memory:"), [served])
  via_queue.run(stores.QueueSource(q), max_batch=128)
  # A restart half way: a new updater recovers from the log and re-reads the whole file.
  half = str(tmp_path / "b.sqlite")
  first = updater_lib.Updater(stores.SQLiteStore(half), [served])
  first.run(stores.JsonLinesSource(path), max_events=len(events) // 2, max_batch=200)
  second = updater_lib.Updater(stores.SQLiteStore(half), [served])
  assert second.recover() == len(events) // 2 - first.state_of(served.batch_id).counts["too_old"]
  second.run(stores.JsonLinesSource(path), max_batch=500, stop_after_idle_s=0.1)
  applied = up.state_of(served.batch_id).counts["applied"]
  assert second.store.num_applied() == up.store.num_applied() == applied
  for u in users:
    uid = str(prepared.listening.user_ids[u])
    vec = up.store.get(uid, served.batch_id)
    np.testing.assert_allclose(vec.z, batch_vector(prepared, served, u, vec.as_of), atol=1e-5)
    for other in (via_queue, second):
      got = other.store.get(uid, served.batch_id)
      np.testing.assert_array_equal(got.z, vec.z)
      assert got.as_of == vec.as_of


def _onboarding_flag(spec, x):
  start = 0
  for name, width in spec.blocks():
    if name == "onboarding":
      return x[start + width - 1]
    start += width
  raise AssertionError("no onboarding block")


def test_cold_start_vector_at_once_then_onboarding_stops_counting(setup):
  _, _, prepared, served = setup
  spec = prepared.spec
  created = int(prepared.listening.event_time.max()) + 10
  new = [
      incremental.Event("n:reg", "new-user", "registration", created, country=1, age=30, gender=0),
      incremental.Event(
          "n:onb", "new-user", "onboarding", created + 60, artists=(0, 3), languages=(1,)
      ),
  ]
  up = updater_lib.Updater(stores.SQLiteStore(":memory:"), [served])
  stats = up.process(new)
  assert stats.applied == 2 and stats.rows == 1
  vec = up.store.get("new-user", served.batch_id)
  assert vec is not None and vec.as_of == created + 61
  record = user_features.UserRecord(
      np.zeros(0, np.int32),
      np.zeros(0, np.int64),
      1,
      30,
      0,
      created,
      np.zeros(0, np.int32),
      np.zeros(0, np.int64),
      created + 60,
      np.array([0, 3], np.int32),
      np.array([1], np.int32),
  )
  for t in (
      vec.as_of,
      created + (spec.onboarding_days - 1) * DAY,
      created + (spec.onboarding_days + 1) * DAY,
  ):
    if t != vec.as_of:
      up.daily_refresh(t)
    x = user_features.user_features(record, t, prepared.spaces, spec)
    assert _onboarding_flag(spec, x) == (0.0 if t < created + spec.onboarding_days * DAY else 1.0)
    got = up.store.get("new-user", served.batch_id)
    assert got.as_of == t
    np.testing.assert_allclose(got.z, served.vectors(x[None])[0], atol=1e-6)


def test_current_and_legacy_batches_are_served_side_by_side(setup):
  _, _, prepared, served = setup
  rng = np.random.default_rng(3)
  spaces = dataclasses.replace(
      prepared.spaces,
      audio=(prepared.spaces.audio + rng.normal(0, 0.1, prepared.spaces.audio.shape)).astype(
          np.float32
      ),
      batch_ids={**prepared.spaces.batch_ids, "audio": "audio-retrained"},
  )
  new = dataclasses.replace(
      served, batch_id="user-rep-new", spaces=spaces, mean=served.mean + 0.5, status="current"
  )
  legacy = dataclasses.replace(served, status="legacy")
  users = range(3, 450, 40)
  events = incremental.events_from_listening(prepared.listening, users)
  up = updater_lib.Updater(stores.SQLiteStore(":memory:"), [legacy])
  up.process(events[: len(events) // 2])
  assert up.add_batch(new) > 0  # rebuilt from the event log and backfilled
  up.process(events[len(events) // 2 :])
  for u in users:
    uid = str(prepared.listening.user_ids[u])
    a, b = up.store.get(uid, legacy.batch_id), up.store.get(uid, new.batch_id)
    assert a.as_of == b.as_of
    np.testing.assert_allclose(a.z, batch_vector(prepared, legacy, u, a.as_of), atol=1e-5)
    np.testing.assert_allclose(b.z, batch_vector(prepared, new, u, b.as_of, spaces), atol=1e-5)
    assert not np.allclose(a.z, b.z)
  up.remove_batch(legacy.batch_id)
  assert [b.batch_id for b in up.served] == ["user-rep-new"]


def test_daily_batch_run_serves_returning_users_and_never_goes_back(setup):
  _, _, prepared, served = setup
  listening = prepared.listening
  t = int(listening.event_time.max()) + 30 * DAY
  store = stores.SQLiteStore(":memory:")
  users = np.arange(0, 450, 50)
  assert updater_lib.daily_batch_run(store, [served], listening, t, users) == len(users)
  for u in users:
    got = store.get(str(listening.user_ids[u]), served.batch_id)
    assert got.as_of == t
    np.testing.assert_allclose(got.z, batch_vector(prepared, served, int(u), t), atol=1e-6)
  uid = str(listening.user_ids[users[0]])
  store.write([stores.Row(uid, served.batch_id, np.zeros(len(got.z)), t - DAY)], [], 0.0)
  assert store.get(uid, served.batch_id).as_of == t  # an older vector does not replace it


def test_launcher_serves_the_demo(setup):
  config, workdir, prepared, _ = setup
  summary = updater_lib.serve(config, workdir, train=False, demo_users=30, stop_after_idle_s=0.1)
  assert summary["users_served"] == 30 and summary["recovered_events"] == 0
  assert summary["applied"] + summary["state/too_old"] == summary["received"]
  again = updater_lib.serve(config, workdir, train=False, demo_users=30, stop_after_idle_s=0.1)
  assert again["recovered_events"] == summary["applied"] and again["applied"] == 0
  assert again["received"] == summary["received"] and again["vectors_written"] == 0


def test_bad_inputs_are_named(setup, tmp_path):
  _, _, _, served = setup
  with pytest.raises(FileNotFoundError, match="nope.jsonl"):
    stores.JsonLinesSource(str(tmp_path / "nope.jsonl"))
  path = tmp_path / "bad.jsonl"
  path.write_text('{"event_id": "x", "user_id": "u", "kind": "play", "time": 5}\n')
  with pytest.raises(ValueError, match="bad.jsonl:1.*'track'"):
    stores.JsonLinesSource(str(path)).poll(10)
  with pytest.raises(ValueError, match="expected \\[N, "):
    served.vectors(np.zeros((2, 3), np.float32))
