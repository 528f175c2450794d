"""MOSTRA (Bugliarello et al. 2022): train the Table 1 scorers, then decode and report.

Variants (``--config=configs/mostra.py:<variant>``):
  mssd   the paper preset on the Spotify MSSD as shipped: --config.data.manual_dir=DIR (layout in
         data_pipelines/mssd_sessions.py), candidate sets of <= 20, radio sessions only.
  paper  App. A sizes: SetTRM 6 layers, 8 heads, 20 inducing points, hidden 256, FF 1024; DNN
         [256, 1024, 2048, 1024, 256]; GRU decoder 256/512/128; Adam 5e-4 decayed to 5e-5
         (factor 0.1) over 12,500 steps; batches of 128 sessions padded to 100 tracks. Point
         --config.data.dir at a directory built by `data_pipelines/sessions.py` (empty: the demo
         generator's default data is built into WORKDIR/data).
  demo   2-core CPU: a small SetTRM (2 layers, hidden 64), few hundred steps per model, the whole
         Table 1 report in a few minutes on generated MSSD-style sessions.
  test   tiny and fast, for tests/test_mostra_job.py.

Paper vs reading switches: ``report.threshold`` ('relative' = Eq. 8, 'absolute' = blog), and
``report.gain`` ('total' or 'marginal' Eq. 9); see larp_jax/decoding/beam_search.py.
``report.relevance_model`` names the trained scorer whose sigmoid relevance r in [0, 1] feeds
MOSTRA and MOSTRA-WtSUM (see larp_jax/jobs/mostra_job.py for why SetRank_RMSE).
"""

import ml_collections

from configs import common

# Every scorer Table 1 needs (names as in SCORERS of larp_jax/models/mostra_scorers.py).
TABLE1_SCORERS = (
    'DNN_AttRank',
    'DNN_BCE',
    'DNN_RMSE',
    'SetRank',
    'SetRank_BCE',
    'SetRank_RMSE',
    'SetTRM2GRU_AttRank',
    'SetTRM2TRM_AttRank',
    'MO-LTR_AttRank',
    'MO-LTR_RMSE',
)


def _base() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0  # init and data seed
  c.batch_size = 128  # sessions per training batch
  c.eval_batch_size = 256  # sessions per validation/report batch
  c.scorers = TABLE1_SCORERS  # one training run per scorer, in order
  c.data = ml_collections.ConfigDict()
  c.data.dir = ''  # built sessions (data_pipelines/sessions.py); '' = demo data in WORKDIR/data
  # MSSD as shipped (training_set/log_*.csv, track_features/tf_*.csv, plain or .gz), streamed into
  # WORKDIR/data as array_record by data_pipelines/mssd_sessions.py; '' = not used.
  c.data.manual_dir = ''
  c.data.source = 'auto'  # 'auto' (dir, else manual_dir, else demo) | 'mssd' (manual_dir needed)
  c.data.builder = 'inprocess'  # 'inprocess' | 'beam' (experiments/build_dataset.py --beam_runner)
  c.data.context_types = ()  # keep only log rows with these context_type values; () = all
  c.data.max_set_size = 100  # candidates per session (padded/truncated)
  c.data.split_by = 'user'  # 'user' | 'session'
  c.data.split_seed = 0  # seed of the train/valid/test split
  c.data.split_fractions = (0.8, 0.1, 0.1)  # train, valid, test
  # Demo generator sizes (used when `dir` is empty): DemoSessionsConfig fields of
  # data_pipelines/demo/sessions.py; fields not set here keep the generator's defaults.
  c.data.demo = ml_collections.ConfigDict()
  c.model = ml_collections.ConfigDict()
  c.model.dtype = 'float32'  # computation dtype
  c.model.settrm = ml_collections.ConfigDict()  # Set Transformer encoder (App. A)
  c.model.settrm.num_layers = 6  # ISAB blocks
  c.model.settrm.num_heads = 8  # attention heads
  c.model.settrm.num_inducing = 20  # ISAB inducing points
  c.model.settrm.hidden_dim = 256  # model width
  c.model.settrm.ff_dim = 1024  # row-wise feed-forward width
  c.model.settrm.layer_norm = True  # LayerNorm in the MABs
  c.model.settrm.mab_row_ff = True  # row-wise feed-forward inside each MAB
  # 'official' (Set Transformer code's MAB) | 'paper' (Eq. 3: LN(Y + MHA(Y, Z, Z)) with W^O)
  c.model.settrm.mab_block = 'official'
  c.model.dnn_hidden_dims = (256, 1024, 2048, 1024, 256)  # DNN scorer widths
  c.model.gru = ml_collections.ConfigDict()  # SetTRM2GRU pointer decoder
  c.model.gru.decoder_hidden = 256  # GRU state width
  c.model.gru.decoder_size = 512  # decoder input width
  c.model.gru.attention_size = 128  # pointer attention width
  c.model.trm = ml_collections.ConfigDict()  # SetTRM2TRM pointer decoder
  c.model.trm.decoder_heads = 8  # attention heads
  c.model.trm.decoder_ff_dim = 1024  # feed-forward width
  c.model.pointer_train_length = 10  # teacher-forced pointer steps (the report scores the top 10)
  c.optimizer = common.optimizer(name='adam', learning_rate=5e-4, end_learning_rate=5e-5)
  c.mesh = common.mesh()
  # Model selection / early stopping on validation NDCG@10 of SAT; MO-LTR, whose target mixes
  # all four objectives, on the mean validation NDCG@10 over SAT, BOOST, EXPOSURE, DISCOVERY.
  c.mo_ltr_selection_metric = 'ndcg@10/mean'
  c.loop = common.loop(
      num_train_steps=12_500,
      log_every_steps=100,
      eval_every_steps=500,
      checkpoint_every_steps=1000,
      keep_checkpoints=2,
      early_stopping_metric='ndcg@10/SAT',
      early_stopping_mode='max',
      early_stopping_patience=5,
  )
  c.report = ml_collections.ConfigDict()
  c.report.split = 'test'  # split the report decodes
  c.report.ndcg_ks = (5, 10)  # NDCG cut-offs
  c.report.map_k = 5  # mAP cut-off
  c.report.decode_batch_size = 512  # sessions per beam-search batch
  c.report.beam_size = 5  # MOSTRA beam width
  c.report.epsilons = (0.01, 0.05, 0.1)  # MOSTRA thresholds in Table 1
  c.report.alphas = (1.0, 0.5, 0.1, 0.01)  # MOSTRA-WtSUM relevance weights in Table 1
  c.report.plot_epsilons = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3)  # Fig. mAP vs epsilon
  c.report.threshold = 'relative'  # 'relative' (Eq. 8) | 'absolute' (blog)
  c.report.gain = 'total'  # 'total' | 'marginal' (Eq. 9)
  c.report.relevance_model = 'SetRank_RMSE'  # scorer whose sigmoid relevance MOSTRA decodes
  c.report.wtsum_relevance_threshold = 0.5  # WtSUM's 1{r > threshold}
  # Significance tests against this row: the relevance model's own sort, so MOSTRA and WtSUM are
  # compared on the same scores (the SetRank rows stay as the paper's baselines).
  c.report.baseline_row = 'Sort(same relevance)'
  c.report.significance_level = 0.05  # paired-test level
  return c


def _paper() -> ml_collections.ConfigDict:
  c = _base()
  c.data.context_types = ('radio',)  # the paper studies radio sessions (Sec. 3.1)
  return c


def _mssd() -> ml_collections.ConfigDict:
  c = _paper()
  c.data.source = 'mssd'  # set --config.data.manual_dir=/path/to/mssd
  c.data.max_set_size = 20  # MSSD sessions hold at most 20 tracks
  return c


def _demo() -> ml_collections.ConfigDict:
  c = _base()
  c.data.max_set_size = 60  # the generator's longest session: nothing is truncated
  c.data.demo.update(num_users=900, num_sessions=6000)  # the demo's sessions
  c.model.settrm.update(num_layers=2, num_heads=4, num_inducing=8, hidden_dim=32, ff_dim=64)
  c.model.dnn_hidden_dims = (64, 128, 64)
  c.model.gru.update(decoder_hidden=32, decoder_size=64, attention_size=16)
  c.model.trm.update(decoder_heads=4, decoder_ff_dim=64)
  c.optimizer.learning_rate = 2e-3
  c.optimizer.end_learning_rate = 2e-4
  c.loop.update(
      num_train_steps=200,
      log_every_steps=50,
      eval_every_steps=50,
      checkpoint_every_steps=100,
      early_stopping_patience=2,
      progress=False,
  )
  return c


def _test() -> ml_collections.ConfigDict:
  c = _base()
  c.batch_size = 16
  c.eval_batch_size = 32
  c.data.max_set_size = 24
  c.data.demo.update(
      num_users=40,
      num_sessions=160,
      num_artists=60,
      num_tracks=600,
      min_session_length=6,
      max_session_length=24,
      seed=1,
  )
  c.model.settrm.update(num_layers=1, num_heads=2, num_inducing=4, hidden_dim=8, ff_dim=16)
  c.model.dnn_hidden_dims = (16,)
  c.model.gru.update(decoder_hidden=8, decoder_size=8, attention_size=8)
  c.model.trm.update(decoder_heads=2, decoder_ff_dim=16)
  c.model.pointer_train_length = 5
  c.loop.update(
      num_train_steps=4,
      log_every_steps=2,
      eval_every_steps=0,
      checkpoint_every_steps=4,
      progress=False,
  )
  c.report.update(beam_size=2, plot_epsilons=(0.0, 0.05, 0.1), decode_batch_size=64)
  return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  return common.select_variant(
      arg,
      {'paper': _paper, 'mssd': _mssd, 'demo': _demo, 'test': _test},
      'configs/mostra.py',
      'demo',
  )
