"""The Redis parts of the NRT service (issue 12): a Redis Stream consumer group in, Redis out.

Must-show: an updater killed mid-stream and restarted loses no event and applies none twice.
The killed consumer ("updater-a") dies twice over: once after writing a micro-batch but before
acknowledging it, once with a polled micro-batch it never wrote; the replacement ("updater-b", a
fresh process state that recovers from the store's log) reclaims both with XAUTOCLAIM.

Redis: ``LARP_TEST_REDIS_URL`` (``.ci/run`` starts one), else a ``redis-server`` binary on a free
loopback port started here; with neither the tests FAIL (a skipped test is not a pass).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

import numpy as np
import pytest

from configs import common
from data_pipelines import user_features
from larp_jax.serving import incremental
from larp_jax.serving import stores
from larp_jax.serving import updater as updater_lib


@pytest.fixture(scope="module")
def redis_client(tmp_path_factory):
  try:
    import redis  # pylint: disable=g-import-not-at-top
  except ImportError:
    pytest.fail("the 'redis' Python client is not installed (pin it in requirements.txt).")
  url, proc = os.environ.get("LARP_TEST_REDIS_URL", ""), None
  if not url:
    binary = shutil.which("redis-server")
    if binary is None:
      pytest.fail(
          "no LARP_TEST_REDIS_URL and no redis-server binary: apt-get install "
          "redis-server (the Redis tests must run, not skip)."
      )
    with socket.socket() as s:
      s.bind(("127.0.0.1", 0))
      port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path_factory.mktemp("redis")),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
  client = redis.Redis.from_url(url)
  for _ in range(100):
    try:
      client.ping()
      break
    except redis.ConnectionError:
      time.sleep(0.05)
  client.ping()
  yield client
  client.close()
  if proc is not None:
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  config = common.load_config("configs/user_rep.py:test")
  workdir = str(tmp_path_factory.getbasetemp() / "serving_user_rep")
  prepared, served, _ = updater_lib.served_from_job(config, workdir, train=False)
  return prepared, served


def test_killed_updater_restarted_loses_nothing_and_applies_nothing_twice(setup, redis_client):
  prepared, served = setup
  r, stream, group = redis_client, "test:events", "nrt"
  r.delete(stream, *r.keys("kill:*"))
  users = range(1, 450, 15)
  events = incremental.events_from_listening(prepared.listening, users)
  # Re-delivery by the producer too: a slice of the stream is sent twice.
  sent = stores.produce(r, stream, events + events[100:300])
  store = stores.RedisStore(r, prefix="kill")
  a = updater_lib.Updater(store, [served])
  src_a = stores.RedisStreamSource(r, stream, group, "updater-a", min_idle_ms=60_000)
  polled = src_a.poll(250)
  a.process([e for _, e in polled])  # written, then killed before the ack
  src_a.poll(250)  # polled, then killed before the write
  del a, src_a
  assert r.xpending(stream, group)["pending"] == 500
  time.sleep(0.1)
  b = updater_lib.Updater(stores.RedisStore(r, prefix="kill"), [served])
  recovered = b.recover()
  src_b = stores.RedisStreamSource(r, stream, group, "updater-b", min_idle_ms=50)
  total = b.run(src_b, max_batch=200, stop_after_idle_s=0.3)
  assert src_b.reclaimed == 500 and r.xpending(stream, group)["pending"] == 0
  assert recovered == 250 and total.received == sent  # every entry reached the new updater
  clean = incremental.IncrementalFeatures(prepared.spaces, prepared.spec)
  for e in events:
    clean.apply(e)
  state = b.state_of(served.batch_id)
  assert store.num_applied() == clean.counts["applied"]  # each applicable event once
  for u in users:
    uid = str(prepared.listening.user_ids[u])
    for x, y in zip(state.bins(uid), clean.bins(uid)):
      np.testing.assert_array_equal(x, y)
    vec = store.get(uid, served.batch_id)
    assert vec.as_of == clean.as_of(uid)
    x = user_features.user_features(
        user_features.user_record(prepared.listening, u), vec.as_of, prepared.spaces, prepared.spec
    )
    np.testing.assert_allclose(vec.z, served.vectors(x[None])[0], atol=1e-5)


def test_redis_store_keeps_the_freshest_vector(redis_client):
  store = stores.RedisStore(redis_client, prefix="fresh")
  redis_client.delete(*redis_client.keys("fresh:*") or ["fresh:none"])
  e = incremental.Event("e1", "u1", "play", 100, track=3)
  store.write([stores.Row("u1", "b1", np.arange(3, dtype=np.float32), 200)], [e], 1.5)
  store.write([stores.Row("u1", "b1", np.zeros(3, np.float32), 150)], [], 2.5)
  got = store.get("u1", "b1")
  np.testing.assert_array_equal(got.z, np.arange(3, dtype=np.float32))
  assert (got.as_of, got.updated_at) == (200, 1.5)
  assert store.users("b1") == ["u1"] and store.batch_ids() == ["b1"]
  assert list(store.applied_events()) == [e] and store.get("u2", "b1") is None
