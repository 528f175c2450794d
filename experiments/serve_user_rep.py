"""Near-real-time user representations (paper 001, Sec. 4.2-4.3): the NRT updater.

python -m experiments.serve_user_rep --config=configs/user_rep.py:demo --workdir=DIR
  [--events=EVENTS.jsonl | --redis_url=redis://127.0.0.1:6379/0 --stream=larp:events]
  [--notrain] [--demo_users=N]

Embedded (default): events from a JSON-lines file (the demo's events when --events is empty),
vectors to DIR/serving/vectors.sqlite. With --redis_url: a Redis Stream consumer group in, Redis
out. The user model of DIR is trained or resumed first (``--notrain``: random weights).
"""

import json

from absl import app
from absl import flags

from larp_jax.serving import updater
from larp_jax.training import launch

launch.define_flags("configs/user_rep.py")
_EVENTS = flags.DEFINE_string("events", "", "JSON-lines events file ('' = the demo's events)")
_REDIS = flags.DEFINE_string("redis_url", "", "Redis URL: stream in, vectors out")
_STREAM = flags.DEFINE_string("stream", "larp:events", "Redis stream of events")
_GROUP = flags.DEFINE_string("group", "nrt-updater", "Redis consumer group")
_CONSUMER = flags.DEFINE_string("consumer", "updater-0", "this consumer's name")
_TRAIN = flags.DEFINE_bool("train", True, "train/resume the user model (else random weights)")
_MAX_BATCH = flags.DEFINE_integer("max_batch", 1024, "events per micro-batch")
_IDLE = flags.DEFINE_float("stop_after_idle_s", 2.0, "stop when idle this long (<0: never)")
_DEMO_USERS = flags.DEFINE_integer("demo_users", None, "demo events of the first N users only")


def main(argv):
  if len(argv) > 1:
    raise ValueError(f"Unexpected positional arguments: {argv[1:]}")
  launch.quiet_library_logs()
  summary = updater.serve(
      flags.FLAGS.config,
      flags.FLAGS.workdir,
      events_path=_EVENTS.value,
      redis_url=_REDIS.value,
      stream=_STREAM.value,
      group=_GROUP.value,
      consumer=_CONSUMER.value,
      train=_TRAIN.value,
      max_batch=_MAX_BATCH.value,
      stop_after_idle_s=None if _IDLE.value < 0 else _IDLE.value,
      demo_users=_DEMO_USERS.value,
  )
  print(json.dumps(summary, indent=1))


if __name__ == "__main__":
  app.run(main)
