"""CLCRec for cold-start playlist continuation (LARP App. B.3; Wei et al., MM'21), in JAX/optax.

Parameters (LARP's `continuation_full.py`): playlist and track id embeddings (dim_E = 64,
Xavier-normal) and a content encoder f: L2-normalised content -> Dense 256 -> leaky ReLU ->
Dense 64. For a batch of observed (playlist p, track s) pairs:

    l_item  = InfoNCE(normalize(z_s), normalize(f(e_s)))           item id <-> content (in-batch)
    l_user  = InfoNCE(z_p, x_s),  x_s = f(e_s) with prob num_sample else z_s   (playlist <-> track)
    reg     = (mean ||z_p|| + mean ||z_s||) / 2
    loss    = lambda * l_item + (1 - lambda) * l_user + reg_weight * reg

InfoNCE(a, b) = CE(a b^T / temperature, diagonal labels), temperature 2.0 (logits are divided by
it): the shared multi-positive InfoNCE of `larp_jax.losses.infonce` with the diagonal as the only
positive.
Adam lr 1e-3, 20 epochs, batches of 2048 pairs. Cold-start scoring (Eq. 30): a playlist is the mean
of f(e_s) over its seeds, score = playlist . f(E_test).

Deviations: the official code replaces a random multiset of int(0.5 B) rows (sampled with
replacement, ~39% distinct); here each row is replaced independently with probability num_sample
(the paper's "probability of replacement 0.5"). Its evaluation reports the best test-set epoch;
`fit` runs a fixed number of epochs.
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
    dim_e: id-embedding and encoder-output size.
    hidden_dim: encoder hidden width.
    lr_lambda: weight of the item id <-> content loss.
    reg_weight: weight of the embedding-norm regulariser.
    temperature: InfoNCE temperature (logits / temperature).
    num_sample: probability of replacing a track id embedding by its content encoding.
    lr, epochs, batch_size: Adam training.
  """

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


def fit(
    train_interactions, content_features, config: CLCRecConfig | None = None, seed: int = 0
) -> CLCRecModel:
  """Trains CLCRec on the training playlist-track pairs.

  Args:
    train_interactions: int [E, 2] (playlist, track) pairs; tracks index `content_features`.
    content_features: float [N_train, D].
    config: CLCRecConfig (defaults = official MPD settings).
    seed: integer seed.

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

  @jax.jit
  def step(params, opt_state, content_table, playlists, tracks, rng):
    replace = jax.random.bernoulli(rng, config.num_sample, tracks.shape)
    loss, grads = jax.value_and_grad(clcrec_loss)(
        params, encoder, content_table[tracks], playlists, tracks, replace, config
    )
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  rng = np.random.default_rng(seed)
  batch_size = min(config.batch_size, pairs.shape[0])
  for _ in range(config.epochs):
    order = rng.permutation(pairs.shape[0])
    for start in range(0, pairs.shape[0] - batch_size + 1, batch_size):
      idx = order[start : start + batch_size]
      step_key, sub = jax.random.split(step_key)
      params, opt_state, _ = step(
          params, opt_state, content_table, pairs[idx, 0], pairs[idx, 1], sub
      )

  return CLCRecModel(
      config=config,
      encoder_params=params['encoder'],
      playlist_embeddings=np.asarray(params['playlist']),
      track_embeddings=np.asarray(params['track']),
  )


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
