"""Smoke job: tiny transformer on generated sequences.

Variants (``--config=configs/toy.py:<variant>[,key=value...]``):
  default  all devices on `data` (1 CPU device works)
  sharded  (4, 2) data x model mesh: needs 8 devices (e.g. XLA_FLAGS=--xla_force_host_platform_device_count=8)
  test     tiny and short, for unit tests
"""

import ml_collections

from configs import common


def _base() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0  # init and data seed
  config.batch_size = 32  # global batch (sequences)
  config.data = ml_collections.ConfigDict()
  config.data.vocab_size = 64  # tokens
  config.data.seq_len = 32  # tokens per sequence
  config.data.num_examples = 1_000_000  # generated sequences per epoch
  config.model = ml_collections.ConfigDict()
  config.model.num_layers = 2  # transformer blocks
  config.model.embed_dim = 64  # model width
  config.model.num_heads = 4  # attention heads
  config.model.mlp_dim = 256  # feed-forward width
  config.model.dtype = "float32"  # computation dtype
  config.optimizer = common.optimizer(
      name="adamw", learning_rate=3e-3, warmup_steps=20, weight_decay=1e-4, grad_clip_norm=1.0
  )
  config.mesh = common.mesh()
  config.loop = common.loop(
      num_train_steps=300,
      log_every_steps=25,
      eval_every_steps=100,
      checkpoint_every_steps=100,
      keep_checkpoints=3,
      early_stopping_metric="accuracy",
      early_stopping_patience=3,
  )
  config.init_from = ()  # warm-start entries (configs.common.init_from)
  return config


def _sharded() -> ml_collections.ConfigDict:
  config = _base()
  config.mesh.shape = (4, 2)
  return config


def _test() -> ml_collections.ConfigDict:
  config = _base()
  config.batch_size = 8
  config.data.seq_len = 8
  config.model.update(num_layers=1, embed_dim=16, num_heads=2, mlp_dim=32)
  config.loop.update(
      num_train_steps=12,
      log_every_steps=2,
      eval_every_steps=6,
      checkpoint_every_steps=4,
      early_stopping_metric="",
      progress=False,
  )
  return config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return common.select_variant(
      arg, {"default": _base, "sharded": _sharded, "test": _test}, "configs/toy.py", "default"
  )
