"""CLCRec for cold-start playlist continuation (LARP App. B.3; Wei et al., MM'21), in JAX/optax.

Parameters: playlist and track id embeddings z (dim_E = 64, Xavier-normal) and a content encoder
f: L2-normalised content -> Dense 256 -> leaky ReLU -> Dense 64. For a batch of observed (playlist
p, track s) pairs, two contrastive objectives (the paper's U-I and R-E mutual-information bounds):

  variant='paper' (CLCRec as its paper defines it), K negatives n_1..n_K sampled per pair among
  the tracks NOT in playlist p:
    x_t     = f(e_t) with probability num_sample, else z_t           (for t in {s, n_1..n_K})
    l_ui    = -log softmax_0([z_p . x_s, z_p . x_n1, ..., z_p . x_nK] / tau)
    l_re    = -log softmax_0([cos(z_s, f(e_s)), cos(z_s, f(e_n1)), ..., cos(z_s, f(e_nK))] / tau)
    reg     = (mean ||z_p||^2 + mean ||z_t||^2) / 2                    (L2 on the batch rows)
  variant='official' (LARP's continuation_full.py): in-batch negatives (every other row of the
  batch, same-playlist tracks included), reg with unsquared norms.
    loss    = lambda * mean l_re + (1 - lambda) * mean l_ui + reg_weight * reg

`clcrec_objective` computes the paper loss from explicit inputs (tests compare it with a NumPy
implementation of the formula); `clcrec_loss` is the official in-batch loss.
Adam lr 1e-3, 20 epochs, batches of 2048 pairs. Cold-start scoring (Eq. 30): a playlist is the mean
of f(e_s) over its seeds, score = playlist . f(E_test). `fit(validate=...)` keeps the epoch with the
best validation score (the official code reports the best test-set epoch instead).

Deviations (official variant): the official code replaces a random multiset of int(0.5 B) rows
(sampled with replacement, ~39% distinct); here each row is replaced independently with
probability num_sample (the paper's "probability of replacement 0.5").
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from flax import linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from larp_jax.losses import infonce
from larp_jax.models import layers
from larp_jax.recommenders import itemknn
from larp_jax.recommenders import popularity

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class CLCRecConfig:
  """CLCRec hyper-parameters (defaults: LARP official for MPD).

  LFM-LARP used reg 0.02, temp 3, lr 2e-4.

  Attributes:
    variant: 'paper' (sampled negatives outside the playlist, squared L2) or 'official'
      (in-batch negatives, LARP's code).
    num_negatives: K sampled negatives per pair (paper variant).
    dim_e: id-embedding and encoder-output size.
    hidden_dim: encoder hidden width.
    lr_lambda: weight of the item id <-> content loss.
    reg_weight: weight of the embedding-norm regulariser.
    temperature: InfoNCE temperature (logits / temperature).
    num_sample: probability of replacing a track id embedding by its content encoding.
    lr, epochs, batch_size: Adam training.
  """

  variant: str = 'paper'
  num_negatives: int = 128
  dim_e: int = 64
  hidden_dim: int = 256
  lr_lambda: float = 0.5
  reg_weight: float = 0.1
  temperature: float = 2.0
  num_sample: float = 0.5
  lr: float = 1e-3
  epochs: int = 20
  batch_size: int = 2048

  def __post_init__(self):
    if self.variant not in ('paper', 'official'):
      raise ValueError(f"variant must be 'paper' or 'official', got {self.variant!r}.")
    if self.num_negatives < 1:
      raise ValueError(f'num_negatives must be >= 1, got {self.num_negatives}.')
    if self.temperature <= 0:
      raise ValueError(f'temperature must be > 0, got {self.temperature}.')
    if not 0.0 <= self.num_sample <= 1.0:
      raise ValueError(f'num_sample must be in [0, 1], got {self.num_sample}.')


class ContentEncoder(nn.Module):
  """L2-normalised content [B, C] -> Dense(hidden) -> leaky ReLU -> Dense(dim_e), float32 [B, E]."""

  hidden_dim: int = 256
  dim_e: int = 64
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, content: Array) -> Array:
    x = layers.l2_normalize(content).astype(self.dtype)
    x = nn.Dense(self.hidden_dim, dtype=self.dtype, param_dtype=self.param_dtype)(x)
    x = nn.leaky_relu(x, negative_slope=0.01)
    x = nn.Dense(self.dim_e, dtype=self.dtype, param_dtype=self.param_dtype)(x)
    return x.astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class CLCRecModel:
  """Fitted CLCRec: config, encoder params and the trained id embeddings (unused for cold items)."""

  config: CLCRecConfig
  encoder_params: Any
  playlist_embeddings: np.ndarray  # float32 [M, dim_e]
  track_embeddings: np.ndarray  # float32 [N_train, dim_e]


def info_nce(a: Array, b: Array, temperature: float) -> Array:
  """In-batch InfoNCE: mean over rows of CE(a b^T / temperature, diagonal labels).

  `infonce.multi_positive_contrastive` with one positive per row (row i's positive is b[i]), no
  queue and no soft targets.

  Args:
    a: float32 [B, D] queries.
    b: float32 [B, D] keys; b[i] is the positive of a[i], the other rows are negatives.
    temperature: scalar > 0 (logits are divided by it).

  Returns:
    float32 scalar.
  """
  # The positives are a NumPy (compile-time constant) mask on purpose: XLA then folds the target
  # normalisation and row-validity mask away, and under jit (as in `fit`) values and gradients are
  # bit-identical to the plain `-mean(diag(log_softmax(logits)))`. A traced mask (jnp.eye,
  # pair_positives(jnp.arange(B))) gives the same maths but 1-ulp different gradients on XLA:CPU.
  positives = np.eye(a.shape[0], b.shape[0], dtype=bool)
  loss, _ = infonce.multi_positive_contrastive(a, b, None, positives, temperature)
  return loss


def clcrec_loss(
    params: Any,
    encoder: ContentEncoder,
    content: Array,
    playlists: Array,
    tracks: Array,
    replace: Array,
    config: CLCRecConfig,
) -> Array:
  """CLCRec batch loss.

  Args:
    params: {'encoder': ..., 'playlist': [M, E], 'track': [N, E]}.
    encoder: the ContentEncoder.
    content: float [B, C] content of the batch tracks.
    playlists, tracks: int [B] ids of the observed pairs.
    replace: bool [B], rows whose track id embedding is replaced by the content encoding.
    config: CLCRecConfig.

  Returns:
    float32 scalar.
  """
  feat = encoder.apply({'params': params['encoder']}, content)
  z_p = params['playlist'][playlists]
  z_s = params['track'][tracks]
  l_item = info_nce(layers.l2_normalize(z_s), layers.l2_normalize(feat), config.temperature)
  mixed = jnp.where(replace[:, None], feat, z_s)
  l_user = info_nce(z_p, mixed, config.temperature)
  reg = 0.5 * (jnp.mean(jnp.linalg.norm(z_p, axis=-1)) + jnp.mean(jnp.linalg.norm(z_s, axis=-1)))
  return config.lr_lambda * l_item + (1.0 - config.lr_lambda) * l_user + config.reg_weight * reg


def _sampled_nce(anchor: Array, keys: Array, temperature: float) -> Array:
  """mean_b -log softmax(anchor_b . keys_b,k / t)[0]: anchor [B, E], keys [B, 1 + K, E]."""
  logits = jnp.einsum('be,bke->bk', anchor, keys, precision=jax.lax.Precision.HIGHEST)
  return -jnp.mean(jax.nn.log_softmax(logits / temperature, axis=-1)[:, 0])


def clcrec_objective(
    z_playlist: Array,
    z_tracks: Array,
    content_encoded: Array,
    replace: Array,
    config: CLCRecConfig,
) -> tuple[Array, dict[str, Array]]:
  """The paper's CLCRec objective for one batch (see the module docstring).

  Args:
    z_playlist: float32 [B, E] playlist id embeddings z_p.
    z_tracks: float32 [B, 1 + K, E] id embeddings of the positive track (column 0) and its K
      negatives (tracks outside playlist p).
    content_encoded: float32 [B, 1 + K, E] f(e_t) of the same tracks.
    replace: bool [B, 1 + K], where x_t = f(e_t) replaces z_t in the U-I term.
    config: lr_lambda, reg_weight, temperature.

  Returns:
    (loss float32 scalar, {'ui', 're', 'reg'} float32 scalars).
  """
  mixed = jnp.where(replace[..., None], content_encoded, z_tracks)
  l_ui = _sampled_nce(z_playlist, mixed, config.temperature)
  l_re = _sampled_nce(
      layers.l2_normalize(z_tracks[:, 0]), layers.l2_normalize(content_encoded), config.temperature
  )
  reg = 0.5 * (jnp.mean(jnp.sum(z_playlist**2, -1)) + jnp.mean(jnp.sum(z_tracks**2, -1)))
  loss = config.lr_lambda * l_re + (1.0 - config.lr_lambda) * l_ui + config.reg_weight * reg
  return loss, {'ui': l_ui, 're': l_re, 'reg': reg}


def sample_outside(
    rng: np.random.Generator,
    playlists: np.ndarray,
    num_tracks: int,
    observed_keys: np.ndarray,
    k: int,
    rounds: int = 10,
) -> np.ndarray:
  """int64 [B, k] tracks not in each row's playlist (rejection against sorted `p * N + t` keys;
  after `rounds` retries a remaining collision is kept, only possible for nearly full playlists)."""
  neg = rng.integers(0, num_tracks, size=(playlists.shape[0], k))
  for _ in range(rounds):
    keys = playlists[:, None] * num_tracks + neg
    pos = np.searchsorted(observed_keys, keys)
    last = observed_keys.shape[0] - 1
    hit = (pos <= last) & (observed_keys[np.minimum(pos, last)] == keys)
    if not hit.any():
      break
    neg[hit] = rng.integers(0, num_tracks, size=int(hit.sum()))
  return neg


def fit(
    train_interactions,
    content_features,
    config: CLCRecConfig | None = None,
    seed: int = 0,
    validate=None,
) -> CLCRecModel:
  """Trains CLCRec on the training playlist-track pairs.

  Args:
    train_interactions: int [E, 2] (playlist, track) pairs; tracks index `content_features`.
    content_features: float [N_train, D].
    config: CLCRecConfig.
    seed: integer seed.
    validate: optional ``model -> float`` (higher = better, e.g. validation Recall@10), called
      after every epoch; the best epoch's model is returned.

  Returns:
    CLCRecModel.
  """
  config = config or CLCRecConfig()
  content = np.asarray(content_features, np.float32)
  if content.ndim != 2:
    raise ValueError(f'content_features must be [N, D], got {content.shape}.')
  pairs = popularity.check_interactions(train_interactions, content.shape[0])
  if pairs.shape[0] == 0:
    raise ValueError('train_interactions is empty.')
  num_playlists = int(pairs[:, 0].max()) + 1

  encoder = ContentEncoder(config.hidden_dim, config.dim_e)
  key = jax.random.PRNGKey(seed)
  k_enc, k_p, k_s, step_key = jax.random.split(key, 4)
  xavier = nn.initializers.xavier_normal()
  params = {
      'encoder': encoder.init(k_enc, jnp.zeros((1, content.shape[1])))['params'],
      'playlist': xavier(k_p, (num_playlists, config.dim_e), jnp.float32),
      'track': xavier(k_s, (content.shape[0], config.dim_e), jnp.float32),
  }
  tx = optax.adam(config.lr)
  opt_state = tx.init(params)
  content_table = jnp.asarray(content)

  def paper_loss(params, content_table, playlists, tracks, replace):
    feats = encoder.apply({'params': params['encoder']}, content_table[tracks])
    return clcrec_objective(
        params['playlist'][playlists], params['track'][tracks], feats, replace, config
    )[0]

  def official_loss(params, content_table, playlists, tracks, replace):
    return clcrec_loss(params, encoder, content_table[tracks], playlists, tracks, replace, config)

  loss_fn = paper_loss if config.variant == 'paper' else official_loss

  @jax.jit
  def step(params, opt_state, content_table, playlists, tracks, rng):
    replace = jax.random.bernoulli(rng, config.num_sample, tracks.shape)
    loss, grads = jax.value_and_grad(loss_fn)(params, content_table, playlists, tracks, replace)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  def model_of(params):
    return CLCRecModel(
        config=config,
        encoder_params=params['encoder'],
        playlist_embeddings=np.asarray(params['playlist']),
        track_embeddings=np.asarray(params['track']),
    )

  rng = np.random.default_rng(seed)
  observed = np.unique(pairs[:, 0] * content.shape[0] + pairs[:, 1])
  batch_size = min(config.batch_size, pairs.shape[0])
  best, best_score = None, -np.inf
  for _ in range(config.epochs):
    order = rng.permutation(pairs.shape[0])
    for start in range(0, pairs.shape[0] - batch_size + 1, batch_size):
      idx = order[start : start + batch_size]
      tracks = pairs[idx, 1]
      if config.variant == 'paper':
        negatives = sample_outside(
            rng, pairs[idx, 0], content.shape[0], observed, config.num_negatives
        )
        tracks = np.concatenate([tracks[:, None], negatives], axis=1)
      step_key, sub = jax.random.split(step_key)
      params, opt_state, _ = step(params, opt_state, content_table, pairs[idx, 0], tracks, sub)
    if validate is not None:
      score = float(validate(model_of(params)))
      if score > best_score:
        best, best_score = params, score
  return model_of(best if best is not None else params)


@functools.partial(jax.jit, static_argnums=0)
def _scores(encoder_dims, encoder_params, seeds, mask, content):
  encoder = ContentEncoder(*encoder_dims)
  feats = encoder.apply({'params': encoder_params}, content)
  playlist = itemknn.pool_seeds(feats, seeds, mask, 'mean')
  return jnp.matmul(playlist, feats.T, precision=jax.lax.Precision.HIGHEST)


def score(model: CLCRecModel, seeds, content_features, seed_mask=None) -> Array:
  """Eq. 30: mean of f(e_s) over the seeds, dotted with f(E_test).

  Args:
    model: from `fit`.
    seeds: int [B, S] indices into `content_features` (-1 = padding).
    content_features: float [N, D] test-track content.
    seed_mask: optional bool [B, S].

  Returns:
    float32 [B, N].
  """
  mask = itemknn.seed_mask_from(seeds, seed_mask)
  dims = (model.config.hidden_dim, model.config.dim_e)
  return _scores(
      dims,
      model.encoder_params,
      jnp.asarray(seeds, jnp.int32),
      mask,
      jnp.asarray(content_features, jnp.float32),
  )
