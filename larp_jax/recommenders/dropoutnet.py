"""DropoutNet for cold-start playlist continuation (LARP App. B.2; Volkovs et al., NIPS'17), in JAX.

Two stages. variant='paper' (DropoutNet as its paper defines it, with LARP App. B.2's settings):
  1. WMF preference model (Hu et al. '08) on the training playlist-track matrix R:
       min_{U,V} sum_{p,s} c_ps (r_ps - U_p . V_s)^2 + wmf_l2 (||U||^2 + ||V||^2),  c = 1 + alpha r
     solved exactly by alternating least squares (`wmf.train_wmf`, `wmf.wmf_objective`); mf_dim = 64.
  2. Two towers f_P, f_S: [preference || content] -> (Dense + BatchNorm + tanh) x [512, 256, 256]
     -> Dense 256, trained to reproduce the preference model on observed and sampled pairs:
       O = mean_(p,s) (U_p . V_s - f_P(U'_p, e_p) . f_S(V'_s, e_s))^2 + (weight_decay / 2) ||W||^2
     with preference dropout: each row's input U'_p (V'_s) is replaced by the cold value with
     probability 0.2 (`dropoutnet_objective`); SGD lr 0.005, momentum 0.9, L2 0.1, 20 epochs.
variant='official' (LARP's `evaluation/continuation_full.py`): cosine MF trained by SGD with MSE to
1 (observed) / 0 (one sampled unobserved track), towers regressing the same 0/1 targets, no L2.
With `standardize_inputs` (on by default, as DropoutNet's own code prepares its inputs with
`prep_standardize`), every content column and preference-factor column is standardised with the
training tracks' (playlists') mean and standard deviation before it enters a tower; the regression
targets stay the raw factors' dot products, and the cold preference (the mean) becomes 0
(so 'mean' and 'zero' coincide). Without
it, the tower's first Dense sees content at whatever scale the encoder emits, and unit-norm
encoders (per-column std ~0.04 at 256 d) lose to the preference input. A playlist's content is
the mean of its tracks' (standardised) content. Cold items and playlists (everything at
test time) use the cold preference: the mean of the training factors (Eq. 27,
`cold_preference='mean'`) or zeros ('zero'). Scores: f_P(mean seed content || cold U) .
f_S(test content || cold V) (Eq. 28). `fit(validate=...)` keeps the best validation epoch (the
official code reports the best test-set epoch). A tower epoch is one compiled `lax.scan` of
`train_step` over batches drawn up front (`epoch_batches`, `train_epoch`).

Deviations from the official code, on purpose: its preference dropout zeroes a copy of the selected
rows (`Uin[idx].zero_()` on an advanced-indexing copy), so it never drops anything; here dropout is
real. Its cold vectors swap U and V means (`cold_item = U.mean`); here items get the V mean.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax
from flax import linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from larp_jax.models import layers
from larp_jax.recommenders import itemknn
from larp_jax.recommenders import popularity
from larp_jax.recommenders import wmf

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class DropoutNetConfig:
  """DropoutNet hyper-parameters (defaults: LARP official / App. B.2).

  Attributes:
    variant: 'paper' (WMF + score regression + L2) or 'official' (cosine MF, 0/1 targets).
    wmf_alpha, wmf_l2, wmf_iterations: WMF confidence weight, L2 and ALS sweeps (paper variant).
    negatives_per_positive: sampled unobserved pairs per observed pair in tower training.
    mf_dim: preference-factor size.
    mf_epochs, mf_lr, mf_momentum, mf_batch_size: MF training.
    hidden_dims: tower widths (Dense + BN + tanh each).
    out_dim: final Dense size.
    preference_dropout: probability of replacing a row's preference input by the cold value.
    cold_preference: 'mean' (Eq. 27) or 'zero'.
    epochs, lr, momentum, batch_size: tower training (SGD with momentum).
    lr_decay_every_epochs, lr_decay: step schedule (torch StepLR(50, 0.1)).
    weight_decay: L2 of the tower kernels (App. B.2: 0.1; official: 0).
    init_std: truncated-normal std of the Dense kernels.
    bn_momentum: flax BatchNorm momentum (= 1 - torch momentum 0.01).
    bn_epsilon: BatchNorm epsilon.
    standardize_inputs: standardise content and preference columns with training statistics
      (DropoutNet's code; LARP's official code: off).
  """

  variant: str = 'paper'
  wmf_alpha: float = 10.0
  wmf_l2: float = 0.1
  wmf_iterations: int = 10
  negatives_per_positive: int = 1
  mf_dim: int = 64
  mf_epochs: int = 10
  mf_lr: float = 0.005
  mf_momentum: float = 0.9
  mf_batch_size: int = 2048
  hidden_dims: tuple[int, ...] = (512, 256, 256)
  out_dim: int = 256
  preference_dropout: float = 0.2
  cold_preference: str = 'mean'
  epochs: int = 20
  lr: float = 0.005
  momentum: float = 0.9
  batch_size: int = 2048
  lr_decay_every_epochs: int = 50
  lr_decay: float = 0.1
  weight_decay: float = 0.1
  init_std: float = 0.01
  bn_momentum: float = 0.99
  bn_epsilon: float = 1e-3
  standardize_inputs: bool = True

  def __post_init__(self):
    if self.variant not in ('paper', 'official'):
      raise ValueError(f"variant must be 'paper' or 'official', got {self.variant!r}.")
    if self.negatives_per_positive < 1:
      raise ValueError(f'negatives_per_positive must be >= 1, got {self.negatives_per_positive}.')
    if self.cold_preference not in ('mean', 'zero'):
      raise ValueError(f"cold_preference must be 'mean' or 'zero', got {self.cold_preference!r}.")
    if not 0.0 <= self.preference_dropout < 1.0:
      raise ValueError(f'preference_dropout must be in [0, 1), got {self.preference_dropout}.')


class DropoutNetTower(nn.Module):
  """[preference || content] -> (Dense + BatchNorm + tanh) per hidden width -> Dense(out_dim)."""

  hidden_dims: tuple[int, ...]
  out_dim: int
  init_std: float = 0.01
  bn_momentum: float = 0.99
  bn_epsilon: float = 1e-3
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, preference: Array, content: Array, train: bool) -> Array:
    """preference [B, R], content [B, C] -> float32 [B, out_dim]."""
    init = nn.initializers.truncated_normal(self.init_std)
    x = jnp.concatenate([preference, content], axis=-1).astype(self.dtype)
    for width in self.hidden_dims:
      x = nn.Dense(width, kernel_init=init, dtype=self.dtype, param_dtype=self.param_dtype)(x)
      x = nn.BatchNorm(
          use_running_average=not train,
          momentum=self.bn_momentum,
          epsilon=self.bn_epsilon,
          dtype=self.dtype,
          param_dtype=self.param_dtype,
      )(x)
      x = jnp.tanh(x)
    x = nn.Dense(self.out_dim, kernel_init=init, dtype=self.dtype, param_dtype=self.param_dtype)(x)
    return x.astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class DropoutNetModel:
  """Fitted DropoutNet: tower variables, cold preference vectors and the config."""

  config: DropoutNetConfig
  playlist_variables: Any
  track_variables: Any
  cold_playlist_preference: np.ndarray  # float32 [mf_dim]
  cold_track_preference: np.ndarray  # float32 [mf_dim]
  content_mean: np.ndarray | float = 0.0  # float32 [D]: content enters as (x - mean) / scale
  content_scale: np.ndarray | float = 1.0  # float32 [D]


def _tower(config: DropoutNetConfig) -> DropoutNetTower:
  return DropoutNetTower(
      config.hidden_dims, config.out_dim, config.init_std, config.bn_momentum, config.bn_epsilon
  )


def sample_negatives(
    rng: np.random.Generator,
    playlists: np.ndarray,
    num_tracks: int,
    observed_keys: np.ndarray,
    rounds: int = 10,
) -> np.ndarray:
  """One unobserved track per playlist (rejection sampling against sorted `playlist * N + track` keys).

  After `rounds` retries a remaining collision is kept (only possible for nearly full playlists).
  """
  neg = rng.integers(0, num_tracks, size=playlists.shape[0])
  for _ in range(rounds):
    keys = playlists * num_tracks + neg
    pos = np.searchsorted(observed_keys, keys)
    last = observed_keys.shape[0] - 1
    hit = (pos <= last) & (observed_keys[np.minimum(pos, last)] == keys)
    if not hit.any():
      break
    neg[hit] = rng.integers(0, num_tracks, size=int(hit.sum()))
  return neg


def _epoch_batches(rng: np.random.Generator, num_pairs: int, batch_size: int):
  """Shuffled full batches (the remainder is dropped; it is seen in other epochs)."""
  batch_size = min(batch_size, num_pairs)
  order = rng.permutation(num_pairs)
  for start in range(0, num_pairs - batch_size + 1, batch_size):
    yield order[start : start + batch_size]


def train_preference_factors(
    pairs: np.ndarray, num_playlists: int, num_tracks: int, config: DropoutNetConfig, seed: int
) -> tuple[np.ndarray, np.ndarray]:
  """Stage 1: MF factors (U float32 [M, mf_dim], V float32 [N, mf_dim]) from (playlist, track) pairs."""
  key_u, key_v = jax.random.split(jax.random.PRNGKey(seed))
  init = nn.initializers.xavier_uniform()
  params = {
      'U': init(key_u, (num_playlists, config.mf_dim), jnp.float32),
      'V': init(key_v, (num_tracks, config.mf_dim), jnp.float32),
  }
  tx = optax.sgd(config.mf_lr, momentum=config.mf_momentum)
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state, users, items, targets):
    def loss_fn(p):
      pred = jnp.sum(
          layers.l2_normalize(p['U'][users]) * layers.l2_normalize(p['V'][items]), axis=-1
      )
      return jnp.mean((pred - targets) ** 2)

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  rng = np.random.default_rng(seed)
  observed = np.unique(pairs[:, 0] * num_tracks + pairs[:, 1])
  for _ in range(config.mf_epochs):
    for idx in _epoch_batches(rng, pairs.shape[0], config.mf_batch_size):
      users, pos = pairs[idx, 0], pairs[idx, 1]
      neg = sample_negatives(rng, users, num_tracks, observed)
      targets = np.concatenate([np.ones_like(pos), np.zeros_like(neg)]).astype(np.float32)
      params, opt_state, _ = step(
          params, opt_state, np.concatenate([users, users]), np.concatenate([pos, neg]), targets
      )
  return np.asarray(params['U']), np.asarray(params['V'])


def _kernel_l2(params: Any) -> Array:
  leaves = jax.tree_util.tree_leaves_with_path(params)
  return sum(jnp.sum(x**2) for path, x in leaves if getattr(path[-1], 'key', None) == 'kernel')


def dropoutnet_objective(
    tower: 'DropoutNetTower',
    variables: dict[str, Any],
    preference_in: tuple[Array, Array],
    content: tuple[Array, Array],
    targets: Array,
    weight_decay: float,
    train: bool = True,
) -> tuple[Array, Any]:
  """O = mean_b (targets_b - f_P(U'_b, e_b) . f_S(V'_b, e_b))^2 + weight_decay / 2 * ||W||^2.

  Args:
    tower: the DropoutNetTower module (shared by both towers).
    variables: {'playlist': {'params', 'batch_stats'}, 'track': {...}}.
    preference_in: (U' [B, R], V' [B, R]) preference inputs after dropout.
    content: (playlist content [B, C], track content [B, C]).
    targets: float32 [B]: U_p . V_s of the preference model (paper) or 0/1 (official).
    weight_decay: L2 weight of the Dense kernels of both towers.
    train: BatchNorm in training mode (batch statistics) and updated running statistics.

  Returns:
    (loss float32 scalar, new batch statistics {'playlist', 'track'}).
  """
  fu, new_p = tower.apply(
      variables['playlist'], preference_in[0], content[0], train=train, mutable=['batch_stats']
  )
  fv, new_t = tower.apply(
      variables['track'], preference_in[1], content[1], train=train, mutable=['batch_stats']
  )
  loss = jnp.mean((targets - jnp.sum(fu * fv, axis=-1)) ** 2)
  if weight_decay:
    params = {'p': variables['playlist']['params'], 't': variables['track']['params']}
    loss = loss + 0.5 * weight_decay * _kernel_l2(params)
  return loss, {'playlist': new_p['batch_stats'], 'track': new_t['batch_stats']}


def _column_stats(x: np.ndarray, standardize: bool) -> tuple[np.ndarray, np.ndarray]:
  """(mean, std) float32 [D] of x's columns (std 1 where a column is constant), or (0, 1)."""
  if not standardize:
    return np.zeros(x.shape[1], np.float32), np.ones(x.shape[1], np.float32)
  std = x.std(axis=0, dtype=np.float64)
  return x.mean(axis=0, dtype=np.float64).astype(np.float32), np.where(std > 0, std, 1.0).astype(
      np.float32
  )


def _playlist_content(pairs: np.ndarray, num_playlists: int, content: np.ndarray) -> np.ndarray:
  """Mean content of each playlist's tracks (row-normalised incidence @ content), float32 [M, D]."""
  sums = np.zeros((num_playlists, content.shape[1]), np.float64)
  np.add.at(sums, pairs[:, 0], content[pairs[:, 1]])
  counts = np.bincount(pairs[:, 0], minlength=num_playlists).astype(np.float64)
  return (sums / np.maximum(counts, 1.0)[:, None]).astype(np.float32)


def fit(
    train_interactions,
    content_features,
    config: DropoutNetConfig | None = None,
    seed: int = 0,
    validate=None,
) -> DropoutNetModel:
  """Trains the preference model and the two DropoutNet towers on the training split.

  Args:
    train_interactions: int [E, 2] (playlist, track) pairs; tracks index `content_features`.
    content_features: float [N_train, D] training-track content embeddings.
    config: DropoutNetConfig (defaults = the paper).
    seed: integer seed for init, shuffling, negatives and dropout.
    validate: optional ``model -> float`` (higher = better), called after every epoch; the best
      epoch's model is returned.

  Returns:
    DropoutNetModel.
  """
  config = config or DropoutNetConfig()
  content = np.asarray(content_features, np.float32)
  if content.ndim != 2:
    raise ValueError(f'content_features must be [N, D], got {content.shape}.')
  num_tracks = content.shape[0]
  pairs = popularity.check_interactions(train_interactions, num_tracks)
  if pairs.shape[0] == 0:
    raise ValueError('train_interactions is empty.')
  num_playlists = int(pairs[:, 0].max()) + 1

  if config.variant == 'paper':
    u_pref, v_pref = wmf.train_wmf(
        pairs,
        num_playlists,
        num_tracks,
        factors=config.mf_dim,
        alpha=config.wmf_alpha,
        l2=config.wmf_l2,
        iterations=config.wmf_iterations,
        seed=seed,
    )
  else:
    u_pref, v_pref = train_preference_factors(pairs, num_playlists, num_tracks, config, seed)
  content_mean, content_scale = _column_stats(content, config.standardize_inputs)
  content = (content - content_mean) / content_scale
  u_mean, u_scale = _column_stats(u_pref, config.standardize_inputs)
  v_mean, v_scale = _column_stats(v_pref, config.standardize_inputs)
  u_in, v_in = (u_pref - u_mean) / u_scale, (v_pref - v_mean) / v_scale  # the towers' inputs
  if config.cold_preference == 'mean':
    cold_u, cold_v = u_in.mean(axis=0), v_in.mean(axis=0)
  else:
    cold_u = cold_v = np.zeros((config.mf_dim,), np.float32)
  p_content = _playlist_content(pairs, num_playlists, content)

  tower = _tower(config)
  key = jax.random.PRNGKey(seed + 1)
  key, kp, kt = jax.random.split(key, 3)
  dummy_pref = jnp.zeros((2, config.mf_dim), jnp.float32)
  p_vars = tower.init(kp, dummy_pref, jnp.zeros((2, content.shape[1])), train=False)
  t_vars = tower.init(kt, dummy_pref, jnp.zeros((2, content.shape[1])), train=False)
  params = {'playlist': p_vars['params'], 'track': t_vars['params']}
  stats = {'playlist': p_vars['batch_stats'], 'track': t_vars['batch_stats']}

  negatives = config.negatives_per_positive if config.variant == 'paper' else 1
  steps_per_epoch = max(pairs.shape[0] // min(config.batch_size, pairs.shape[0]), 1)
  opt_state = tower_optimizer(config, steps_per_epoch).init(params)
  tables = {
      k: jnp.asarray(v)
      for k, v in dict(
          u_pref=u_pref, v_pref=v_pref, u_in=u_in, v_in=v_in, p_content=p_content, t_content=content
      ).items()
  }
  cold = {'u': jnp.asarray(cold_u), 'v': jnp.asarray(cold_v)}

  def model_of(params, stats):
    return DropoutNetModel(
        config=config,
        playlist_variables=flax.core.freeze(
            {'params': params['playlist'], 'batch_stats': stats['playlist']}
        ),
        track_variables=flax.core.freeze(
            {'params': params['track'], 'batch_stats': stats['track']}
        ),
        cold_playlist_preference=np.asarray(cold_u, np.float32),
        cold_track_preference=np.asarray(cold_v, np.float32),
        content_mean=content_mean,
        content_scale=content_scale,
    )

  rng = np.random.default_rng(seed + 2)
  observed = np.unique(pairs[:, 0] * num_tracks + pairs[:, 1])
  step_key = jax.random.PRNGKey(seed + 3)
  best, best_score = None, -np.inf
  for _ in range(config.epochs):
    batches = epoch_batches(rng, pairs, num_tracks, observed, config, negatives)
    params, stats, opt_state, step_key, _ = train_epoch(
        config, steps_per_epoch, params, stats, opt_state, tables, cold, *batches, step_key
    )
    if validate is not None:
      score = float(validate(model_of(params, stats)))
      if score > best_score:
        best, best_score = (params, stats), score
  return model_of(*(best if best is not None else (params, stats)))


def epoch_batches(
    rng: np.random.Generator,
    pairs: np.ndarray,
    num_tracks: int,
    observed: np.ndarray,
    config: DropoutNetConfig,
    negatives: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """One epoch of tower-training batches, drawn up front in the order a per-step loop draws them
  (the permutation, then each batch's negatives).

  Returns:
    (users int64 [S, E], items int64 [S, E], targets float32 [S, E]): S steps of E = b (1 + n)
    pairs each, b = min(batch_size, #pairs): the batch's observed pairs (target 1) followed by n
    sampled unobserved tracks per pair (target 0).
  """
  users_out, items_out, targets_out = [], [], []
  for idx in _epoch_batches(rng, pairs.shape[0], config.batch_size):
    users, pos = pairs[idx, 0], pairs[idx, 1]
    negs = [sample_negatives(rng, users, num_tracks, observed) for _ in range(negatives)]
    users_out.append(np.concatenate([users] * (1 + negatives)))
    items_out.append(np.concatenate([pos] + negs))
    targets_out.append(np.concatenate([np.ones_like(pos)] + [np.zeros_like(n) for n in negs]))
  return np.stack(users_out), np.stack(items_out), np.stack(targets_out).astype(np.float32)


def tower_optimizer(config: DropoutNetConfig, steps_per_epoch: int) -> optax.GradientTransformation:
  """SGD with momentum and the step learning-rate decay of the tower training."""
  schedule = optax.exponential_decay(
      config.lr, config.lr_decay_every_epochs * steps_per_epoch, config.lr_decay, staircase=True
  )
  return optax.sgd(schedule, momentum=config.momentum)


def train_step(
    config: DropoutNetConfig,
    steps_per_epoch: int,
    params: Any,
    stats: Any,
    opt_state: Any,
    tables: dict[str, Array],
    cold: dict[str, Array],
    users: Array,
    items: Array,
    targets: Array,
    rng: Array,
) -> tuple[Any, Any, Any, Array]:
  """One SGD step of the two towers (pure): preference dropout, ``dropoutnet_objective``.

  Args:
    config, steps_per_epoch: the DropoutNetConfig and the epoch length (learning-rate schedule).
    params, stats, opt_state: {'playlist', 'track'} params, BatchNorm statistics; SGD state.
    tables: float32 'u_pref' [M, R], 'v_pref' [N, R] (targets), 'u_in', 'v_in' (the same, as the
      towers see them), 'p_content' [M, C], 't_content' [N, C].
    cold: float32 'u', 'v' [R] cold preference vectors.
    users, items, targets: int [E] (playlist, track) rows, float32 [E] 0/1 targets (the paper
      variant regresses U_p . V_s instead); rng: the step's key (preference dropout).

  Returns:
    (params, stats, opt_state, loss float32 scalar).
  """
  tower = _tower(config)
  tx = tower_optimizer(config, steps_per_epoch)
  # Paper: the L2 is part of the objective; official: none (weight_decay 0).
  weight_decay = config.weight_decay if config.variant == 'paper' else 0.0
  k_u, k_v = jax.random.split(rng)
  u_in, v_in = tables['u_in'][users], tables['v_in'][items]
  if config.variant == 'paper':  # reproduce the preference model's scores
    targets = jnp.sum(tables['u_pref'][users] * tables['v_pref'][items], axis=-1)
  drop_u = jax.random.bernoulli(k_u, config.preference_dropout, (users.shape[0], 1))
  drop_v = jax.random.bernoulli(k_v, config.preference_dropout, (items.shape[0], 1))
  u_in = jnp.where(drop_u, cold['u'][None, :], u_in)
  v_in = jnp.where(drop_v, cold['v'][None, :], v_in)

  def loss_fn(p):
    variables = {
        'playlist': {'params': p['playlist'], 'batch_stats': stats['playlist']},
        'track': {'params': p['track'], 'batch_stats': stats['track']},
    }
    return dropoutnet_objective(
        tower,
        variables,
        (u_in, v_in),
        (tables['p_content'][users], tables['t_content'][items]),
        targets,
        weight_decay,
    )

  (loss, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
  updates, opt_state = tx.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), new_stats, opt_state, loss


@functools.partial(jax.jit, static_argnums=(0, 1))
def train_epoch(
    config: DropoutNetConfig,
    steps_per_epoch: int,
    params: Any,
    stats: Any,
    opt_state: Any,
    tables: dict[str, Array],
    cold: dict[str, Array],
    users: Array,
    items: Array,
    targets: Array,
    step_key: Array,
) -> tuple[Any, Any, Any, Array, Array]:
  """One epoch of ``train_step`` as one compiled ``lax.scan`` over its S batches.

  Step keys: ``step_key, sub = split(step_key)`` each step, so it equals S calls of ``train_step``
  to float tolerance. Compiled once per config and shapes (encoders of one width share it).

  Args:
    users, items, targets: [S, E] from ``epoch_batches``; the rest as ``train_step``.

  Returns:
    (params, stats, opt_state, step_key after the epoch, losses float32 [S]).
  """

  def body(carry, batch):
    params, stats, opt_state, key = carry
    key, sub = jax.random.split(key)
    params, stats, opt_state, loss = train_step(
        config, steps_per_epoch, params, stats, opt_state, tables, cold, *batch, sub
    )
    return (params, stats, opt_state, key), loss

  (params, stats, opt_state, step_key), losses = jax.lax.scan(
      body, (params, stats, opt_state, step_key), (users, items, targets)
  )
  return params, stats, opt_state, step_key, losses


def score(model: DropoutNetModel, seeds, content_features, seed_mask=None) -> Array:
  """Eq. 28: f_P(mean seed content || cold U) . f_S(test content || cold V).

  Args:
    model: from `fit`.
    seeds: int [B, S] indices into `content_features` (-1 = padding).
    content_features: float [N, D] test-track content (standardised here with the training
      statistics the model keeps).
    seed_mask: optional bool [B, S].

  Returns:
    float32 [B, N].
  """
  mask = itemknn.seed_mask_from(seeds, seed_mask)
  config = model.config
  tower_cfg = (
      config.hidden_dims,
      config.out_dim,
      config.init_std,
      config.bn_momentum,
      config.bn_epsilon,
  )
  return _scores(
      tower_cfg,
      model.playlist_variables,
      model.track_variables,
      jnp.asarray(model.cold_playlist_preference),
      jnp.asarray(model.cold_track_preference),
      jnp.asarray(seeds, jnp.int32),
      mask,
      (jnp.asarray(content_features, jnp.float32) - model.content_mean) / model.content_scale,
  )


@functools.partial(jax.jit, static_argnums=0)
def _scores(tower_cfg, p_vars, t_vars, cold_u, cold_v, seeds, mask, content):
  tower = DropoutNetTower(*tower_cfg)
  seed_content = itemknn.pool_seeds(content, seeds, mask, 'mean')
  fu = tower.apply(
      p_vars, jnp.broadcast_to(cold_u, (seeds.shape[0], cold_u.shape[0])), seed_content, train=False
  )
  fv = tower.apply(
      t_vars, jnp.broadcast_to(cold_v, (content.shape[0], cold_v.shape[0])), content, train=False
  )
  return jnp.matmul(fu, fv.T, precision=jax.lax.Precision.HIGHEST)
