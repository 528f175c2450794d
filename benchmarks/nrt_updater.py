"""NRT updater speed (issue 12): events/s and p50/p99 event-to-vector latency with the embedded
SQLite store and with Redis, and batch inference users/s of the jitted encoder against a plain
NumPy forward of the same weights, in the same run.

python -m benchmarks.nrt_updater [--redis_url=redis://127.0.0.1:6379/0] [--rate=10000]
  [--output=nrt.json]

Events: the demo's (``configs/user_rep.py:test`` data, every user) with the paper's model size
(hidden 512, 256; z 120), random weights. Throughput: a backlog consumed at full speed.
Latency: a producer thread paced at ``--rate`` events/s; latency = store commit - send time.
"""

from __future__ import annotations

import json
import os
import queue
import tempfile
import threading
import time

import numpy as np
from absl import app
from absl import flags

from configs import common
from larp_jax.serving import incremental
from larp_jax.serving import stores
from larp_jax.serving import updater as updater_lib

_REDIS = flags.DEFINE_string("redis_url", "", "Redis URL ('' = embedded store only)")
_RATE = flags.DEFINE_float("rate", 10_000.0, "producer rate of the latency runs (events/s)")
_BATCH = flags.DEFINE_integer("max_batch", 512, "events per micro-batch")
_OUTPUT = flags.DEFINE_string("output", "", "write the results as JSON here")
_WORKDIR = flags.DEFINE_string("workdir", "", "user_rep workdir ('' = a temporary one)")


def _run(make_store, make_source, produce, served, events, rate):
  """(events/s of a backlog, latency percentiles ms at ``rate``)."""
  out = {}
  up = updater_lib.Updater(make_store("tput"), [served])
  src = make_source("tput")
  produce("tput", events, None)
  start = time.perf_counter()
  total = up.run(src, max_batch=_BATCH.value, stop_after_idle_s=0.2, max_events=len(events))
  out["events_per_s"] = total.received / (time.perf_counter() - start)
  up = updater_lib.Updater(make_store("lat"), [served])
  src = make_source("lat")
  sent: dict[str, float] = {}
  lat = []

  def on_commit(polled, stats):
    now = time.time()
    lat.extend(now - sent[e.event_id] for _, e in polled)

  producer = threading.Thread(target=produce, args=("lat", events, rate, sent))
  producer.start()
  up.run(
      src,
      max_batch=_BATCH.value,
      stop_after_idle_s=0.5,
      max_events=len(events),
      on_commit=on_commit,
  )
  producer.join()
  out["p50_ms"], out["p99_ms"] = (float(np.percentile(lat, q) * 1e3) for q in (50, 99))
  out["latency_events"] = len(lat)
  return out


def _paced(events, rate, emit, sent):
  start = time.time()
  for i, e in enumerate(events):
    if rate:
      wait = start + i / rate - time.time()
      if wait > 0:
        time.sleep(wait)
    if sent is not None:
      sent[e.event_id] = time.time()
    emit(e)


def main(argv):
  del argv
  config = common.load_config(
      "configs/user_rep.py:test", **{"model.hidden": (512, 256), "model.latent_dim": 120}
  )
  workdir = _WORKDIR.value or tempfile.mkdtemp(prefix="nrt_bench_")
  prepared, served, params = updater_lib.served_from_job(config, workdir, train=False)
  events = incremental.events_from_listening(prepared.listening)
  served.vectors(prepared.features[:1])  # compile
  results = {
      "events": len(events),
      "users": prepared.listening.num_users,
      "max_batch": _BATCH.value,
      "load_avg_1m": os.getloadavg()[0],
  }

  queues: dict[str, queue.Queue] = {}
  tmp = tempfile.mkdtemp(prefix="nrt_sqlite_")
  results["sqlite"] = _run(
      lambda name: stores.SQLiteStore(os.path.join(tmp, f"{name}.sqlite")),
      lambda name: stores.QueueSource(queues.setdefault(name, queue.Queue())),
      lambda name, evs, rate, sent=None: _paced(
          evs, rate, queues.setdefault(name, queue.Queue()).put, sent
      ),
      served,
      events,
      _RATE.value,
  )
  if _REDIS.value:
    import redis  # pylint: disable=g-import-not-at-top

    r = redis.Redis.from_url(_REDIS.value)
    r.delete(*(r.keys("bench:*") or ["bench:none"]))

    def produce(name, evs, rate, sent=None):
      if rate is None:
        stores.produce(r, f"bench:{name}", evs)
      else:
        _paced(
            evs,
            rate,
            lambda e: r.xadd(f"bench:{name}", {"e": json.dumps(incremental.event_to_dict(e))}),
            sent,
        )

    results["redis"] = _run(
        lambda name: stores.RedisStore(r, prefix=f"bench:{name}"),
        lambda name: stores.RedisStreamSource(r, f"bench:{name}", "g", "c0"),
        produce,
        served,
        events,
        _RATE.value,
    )

  # Batch inference: jitted encoder vs NumPy forward of the same weights.
  x = np.tile(prepared.features, (max(1, 20_000 // len(prepared.features)), 1))
  standard = ((x[:, served.columns] - served.mean) / served.std).astype(np.float32)
  served.encode(standard[:256])
  start = time.perf_counter()
  z = served.encode(standard)
  jax_s = time.perf_counter() - start
  enc = params["encoder"]
  start = time.perf_counter()
  h = standard
  for i in range(len(config.model.hidden)):
    h = h @ np.asarray(enc[f"dense_{i}"]["kernel"]) + np.asarray(enc[f"dense_{i}"]["bias"])
    h = 1.0507009873554805 * np.where(h > 0, h, 1.6732632423543772 * np.expm1(np.minimum(h, 0)))
  ref = h @ np.asarray(enc["out"]["kernel"]) + np.asarray(enc["out"]["bias"])
  np_s = time.perf_counter() - start
  results["batch"] = {
      "users": len(x),
      "jax_users_per_s": len(x) / jax_s,
      "numpy_users_per_s": len(x) / np_s,
      "max_abs_diff": float(np.abs(z - ref).max()),
  }
  for name in ("sqlite", "redis"):
    if name in results:
      s = results[name]
      print(
          f"{name}: {s['events_per_s']:,.0f} events/s; latency p50 {s['p50_ms']:.1f} ms, "
          f"p99 {s['p99_ms']:.1f} ms at {_RATE.value:,.0f} events/s"
      )
      print(f"ratio {name} events/s vs the 10k goal: {s['events_per_s'] / 1e4:.2f}x")
  b = results["batch"]
  print(
      f"batch inference: jax {b['jax_users_per_s']:,.0f} users/s, numpy "
      f"{b['numpy_users_per_s']:,.0f} users/s (max |diff| {b['max_abs_diff']:.1e})"
  )
  print(f"ratio batch jax vs numpy: {b['jax_users_per_s'] / b['numpy_users_per_s']:.2f}x")
  results["load_avg_1m_end"] = os.getloadavg()[0]
  if _OUTPUT.value:
    with open(_OUTPUT.value, "w") as f:
      json.dump(results, f, indent=1)


if __name__ == "__main__":
  app.run(main)
