"""Generalized user representations (paper 001): features, SELU autoencoder, transfer tasks.

Variants (``--config=configs/user_rep.py:<variant>[,key=value...]``):
  demo    the embedded demo: listening logs generated into WORKDIR/demo_listening (users of the
          LARP demo catalogue), audio vectors from ``modality.audio_npz`` or the demo's stand-in
          audio export
  lfm2b   LFM-2b as distributed (+ the platform tables) in ``data.manual_dir``; a LARP audio
          export in ``modality.audio_npz``
  test    tiny and short, for tests
``--config.data.manual_dir=DIR`` runs any variant on real-format files.
"""

import ml_collections

from configs import common


def _base() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0  # init, split and sampling seed
  c.batch_size = 256  # autoencoder global batch (users)

  c.data = ml_collections.ConfigDict()
  c.data.manual_dir = ""  # LFM-2b-format files; '' = generate the demo into WORKDIR/demo_listening
  c.data.demo = ml_collections.ConfigDict()  # overrides of DemoListeningConfig fields
  c.data.demo.seed = 0  # demo generator seed
  # Overrides of the demo catalogue's CatalogueConfig (the tracks the users play; the main job
  # sets LARP's own data.demo so that every played track is one LARP embedded).
  c.data.catalogue = ml_collections.ConfigDict()
  # New users register in the week after the cut time (the protocol's new cohort), not over the
  # last 30 days: only registrations after T are cold-start test users (see user_protocol).
  c.data.demo.new_user_days = 7.0

  c.split = ml_collections.ConfigDict()
  c.split.cut_time = "auto"  # ISO time (UTC) or 'auto' (latest day with a full future week)
  c.split.min_active_users = 50  # 'auto': users active in the week after T
  c.split.established_days = 30  # established: registered at least this long before T
  c.split.new_user_days = 7  # new: registered in [T, T + this)
  c.split.future_days = 7  # future-listening window of established users
  c.split.new_user_hours = 4  # future-listening window of new users
  c.split.follow_days = 30  # artist-follow window
  c.split.fractions = (0.7, 0.1, 0.2)  # train / validation / test users (stratified)

  c.modality = ml_collections.ConfigDict()
  c.modality.audio_npz = ""  # LARP export (ids + arrays); '' = the demo's stand-in export
  c.modality.audio_array = "audio"  # which array of the export
  c.modality.audio_dim = 80  # PCA width of the audio space
  c.modality.collab_dim = 80  # ALS factors of the collaborative space
  c.modality.session_gap_seconds = 1800  # a longer gap starts a new session
  c.modality.als_regularization = 0.05
  c.modality.als_iterations = 15

  c.features = ml_collections.ConfigDict()
  c.features.horizons = (7, 30, 182)  # days
  c.features.onboarding_days = 90  # onboarding counts while the user is younger than this
  c.features.age_edges = (18, 25, 35, 45, 55, 65)  # age bucket boundaries

  c.model = ml_collections.ConfigDict()
  c.model.hidden = (512, 256)  # encoder widths (decoder mirrors)
  c.model.latent_dim = 120  # z (paper: 120)
  c.model.dropout_rate = 0.05  # "a small dropout"
  c.model.dropout_kind = "alpha"  # 'alpha' | 'plain'

  c.loss = ml_collections.ConfigDict()
  c.loss.squared = False  # False: Eq. 2 as printed (unsquared norm); True: squared
  c.loss.block_weighting = "equal"  # 'equal' (each block weighs 1) | 'per_column'

  c.optimizer = common.optimizer(name="adam", learning_rate=1e-3, warmup_steps=50)
  c.mesh = common.mesh()
  c.loop = common.loop(
      num_train_steps=800,
      log_every_steps=100,
      eval_every_steps=200,
      checkpoint_every_steps=400,
      early_stopping_metric="val_loss",
      early_stopping_mode="min",
      early_stopping_patience=3,
  )
  c.init_from = ()

  # The autoencoders the job trains: the full model and the paper's ablations (Sec. 5.2.4).
  c.runs = ("ae", "ae_without_onboarding", "ae_without_modality", "ae_without_static")
  c.ablations = ml_collections.ConfigDict()
  c.ablations.ae = ()
  c.ablations.ae_without_onboarding = ("onboarding",)
  c.ablations.ae_without_modality = ("modality",)
  c.ablations.ae_without_static = ("static",)

  c.transfer = ml_collections.ConfigDict()
  c.transfer.hidden = 64  # head width, the same for every user vector
  c.transfer.steps = 600
  c.transfer.head_seeds = 5  # pair-task heads per user vector (seeds seed, seed+1, ...), probs averaged
  c.transfer.learning_rate = 3e-3
  c.transfer.batch_size = 512
  c.transfer.negatives = "popularity"  # 'popularity' (matched) | 'uniform'
  c.transfer.ranking_candidates = 20  # candidates per user list
  c.transfer.retrieval_softmax = "full"  # 'full' catalogue | 'in_batch'
  c.transfer.retrieval_dim = 64
  c.transfer.retrieval_ks = (10, 50)

  c.baselines = ml_collections.ConfigDict()
  c.baselines.nmf_components = 120
  c.baselines.nmf_max_iter = 200
  c.baselines.lightfm_components = 120
  c.baselines.lightfm_epochs = 20
  c.baselines.lightfm_loss = "warp"

  c.clusters = ml_collections.ConfigDict()
  c.clusters.k = 50  # nDCG@k over nearest neighbours
  c.clusters.num_queries = 500

  c.report = ml_collections.ConfigDict()
  c.report.projection = "pca"  # 'pca' | 'tsne' (Fig. 7)
  return c


def _demo() -> ml_collections.ConfigDict:
  return _base()


def _lfm2b() -> ml_collections.ConfigDict:
  c = _base()
  c.batch_size = 1024
  c.loop.update(num_train_steps=20_000, eval_every_steps=1000, checkpoint_every_steps=2000)
  c.split.min_active_users = 1000
  return c


def _test() -> ml_collections.ConfigDict:
  c = _base()
  c.batch_size = 32
  c.data.demo.update(num_established=300, num_new=150, mean_plays=120.0)
  c.split.min_active_users = 5
  c.modality.audio_dim = 16
  c.modality.collab_dim = 16
  c.modality.als_iterations = 5
  c.model.update(hidden=(64,), latent_dim=24)
  c.loop.update(
      num_train_steps=60,
      log_every_steps=20,
      eval_every_steps=20,
      checkpoint_every_steps=20,
      early_stopping_patience=0,
      progress=False,
  )
  c.transfer.update(
      steps=60, head_seeds=2, hidden=16, retrieval_dim=16, batch_size=128, ranking_candidates=8
  )
  c.baselines.update(nmf_components=8, nmf_max_iter=50, lightfm_components=8, lightfm_epochs=3)
  c.clusters.update(k=10, num_queries=100)
  return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return common.select_variant(
      arg, {"demo": _demo, "lfm2b": _lfm2b, "test": _test}, "configs/user_rep.py", "demo"
  )
