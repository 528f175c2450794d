"""Transfer-task heads on frozen user vectors (issue 11, paper Sec. 4.1 / 5.1), fitted in one jit.

Every comparison of the paper (Tables 1-3) trains the *same* small downstream model on top of
different frozen user vectors (z, average embeddings, NMF, LightFM, curated features, ...). Here all
those heads are fitted together in ONE jitted call: each user vector is standardised with the
mean / std of the training users, zero-padded to the widest vector D_max, the models are stacked on
a leading model axis ``[Mdl, ...]``, the per-model training is ``jax.vmap``-ed over that axis and
``lax.scan``-ned over the steps.

Why padding changes nothing: padded input columns are exactly 0 and the matching first-kernel rows
start at exactly 0; their gradient (input x upstream delta) is exactly 0 and Adam maps a zero
gradient to a zero update, so they stay 0 and the padded model computes the same function, with the
same gradients, as the unpadded one. Every model gets the same width, steps, learning rate,
minibatch sequence and seed; kernel rows are drawn per input column (`init_mlp`), so the
initialisation does not depend on D_max. Hence a head fitted alone equals the same head fitted in
a group up to float summation order (tested: |delta p| < 1e-5), and appending all-zero columns
changes nothing.

Heads: pair heads (future listening, artist follow) -- an MLP on ``[standardised user vector ||
item features]`` -> one logit, sigmoid BCE, Adam; `pair_metrics` gives accuracy (threshold 0.5) and
ROC-AUC (ties 1/2). Listwise rankers (item ranking) -- the same per-(user, item) scorer trained with
``rax.softmax_loss`` over each list's valid candidates; `list_metrics` gives rax's NDCG / MRR.

Item features are standardised too (mean / std over all I catalogue rows: content, no labels), the
same transform for every model; ``standardize_items=False`` feeds them raw (a zero-variance item
column gets std 1). A user column that is constant over the training users carries no information
the head could learn from: it is fed as exactly 0 (dropped) at fit and at scoring time.

Memory: training holds ``Mdl x U_train x D_max`` float32 standardised vectors plus ``I x F`` items;
scoring works in chunks of ``chunk_size`` pairs / lists.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import rax

from larp_jax.evaluation import metrics as metrics_lib
from larp_jax.evaluation.transfer_inputs import (  # pylint: disable=unused-import
    check_user_vectors,
    check_finite_rows,
    check_item_features,
    check_ids,
    _check_pairs,
    standardiser,
    stacked_vectors,
    item_standardiser,
)
from larp_jax.models.layers import MLP

Array = jax.Array


class PairSet(NamedTuple):
  """Labelled pairs: ``user`` int32 [P], ``item`` int32 [P], ``label`` float32 [P] in {0, 1}."""

  user: np.ndarray
  item: np.ndarray
  label: np.ndarray


class ListSet(NamedTuple):
  """Candidate lists: ``user`` int32 [L], ``items`` int32 [L, C], ``labels`` float32 [L, C] (1 =
  relevant), ``mask`` bool [L, C] (False = padding; its item id is ignored)."""

  user: np.ndarray
  items: np.ndarray
  labels: np.ndarray
  mask: np.ndarray


@dataclasses.dataclass(frozen=True)
class PairHeads:
  """Fitted heads of one comparison (numpy stats, jax params with a leading model axis).

  Attributes:
    names: model names, the order of the model axis.
    widths: D_name of each model's user vector.
    user_mean, user_std: float32 [Mdl, D_max] standardisation per model (padding: mean 0, std 1).
    user_informative: bool [Mdl, D_max]; False = padding or constant over the training users (that
      column is fed as 0, i.e. dropped).
    item_mean, item_std: float32 [F].
    params: pytree of ``layers.MLP`` params, every leaf with a leading [Mdl] axis.
    losses: float32 [Mdl, steps] training loss per step.
  """

  names: tuple[str, ...]
  widths: tuple[int, ...]
  user_mean: np.ndarray
  user_std: np.ndarray
  user_informative: np.ndarray
  item_mean: np.ndarray
  item_std: np.ndarray
  params: Any
  losses: np.ndarray


@dataclasses.dataclass(frozen=True)
class ListRankers(PairHeads):
  """Fitted listwise rankers; the same fields as `PairHeads` (the scorer has the same form)."""


def init_mlp(key: Array, informative: np.ndarray, item_width: int, features: Sequence[int]):
  """``layers.MLP`` params for the input ``[user (D_max columns) || item (item_width columns)]``.

  Initialisation is flax's ``lecun_normal`` (truncated normal, variance 1 / fan_in) with
  fan_in = #informative user columns + item_width for the first layer. User column j's kernel row is
  drawn from ``fold_in(key_user, j)`` if ``informative[j]`` and is exactly 0 otherwise (padding, and
  columns constant over the training users): those rows see a 0 input in training, get a 0 gradient
  and stay 0. So the parameters depend only on (key, the informative columns, item_width,
  features) -- not on D_max, nor on appended all-zero columns.

  Args:
    key: PRNG key; informative: bool [D_max]; item_width: F; features: layer widths.
  """
  informative = np.asarray(informative, bool)
  k_user, k_item, k_layers = jax.random.split(key, 3)
  fan_in = int(informative.sum()) + item_width
  correction = 0.87962566103423978  # std of a unit normal truncated to [-2, 2] (as in jax's init)
  std0 = (1.0 / max(fan_in, 1)) ** 0.5 / correction

  def rows(k, n):  # row j from fold_in(k, j): does not depend on the number of rows n
    draw = lambda j: jax.random.truncated_normal(jax.random.fold_in(k, j), -2, 2, (features[0],))
    return jax.vmap(draw)(jnp.arange(n)) * std0

  first = jnp.concatenate(
      [rows(k_user, informative.size) * informative[:, None], rows(k_item, item_width)]
  )
  params = {'dense_0': {'kernel': first, 'bias': jnp.zeros((features[0],), jnp.float32)}}
  init = nn.initializers.lecun_normal()
  for i, k in enumerate(jax.random.split(k_layers, len(features) - 1), start=1):
    kernel = init(k, (features[i - 1], features[i]), jnp.float32)
    params[f'dense_{i}'] = {'kernel': kernel, 'bias': jnp.zeros((features[i],), jnp.float32)}
  return params


def init_head(
    key: Array, informative: np.ndarray, item_width: int, features: Sequence[int], rank: int
):
  """A head's params: ``{'mlp': init_mlp(...)}`` plus, when ``rank > 0``, the interaction term's
  ``user_proj`` [D_max, rank] (row j from ``fold_in``, exactly 0 for non-informative columns, as
  `init_mlp`'s first kernel) and ``item_proj`` [F, rank], both with variance 1 / fan_in."""
  k_mlp, k_user, k_item = jax.random.split(key, 3)
  params = {'mlp': init_mlp(k_mlp, informative, item_width, features)}
  if rank > 0:
    informative = np.asarray(informative, bool)
    draw = lambda k, j, fan: jax.random.normal(jax.random.fold_in(k, j), (rank,)) / fan**0.5
    fan = max(int(informative.sum()), 1)
    user = jax.vmap(lambda j: draw(k_user, j, fan))(jnp.arange(informative.size))
    params['user_proj'] = user * informative[:, None]
    params['item_proj'] = jax.vmap(lambda j: draw(k_item, j, item_width))(jnp.arange(item_width))
  return params


def mlp_apply(params, x: Array) -> Array:
  """``layers.MLP`` (ReLU) with the widths read off ``params``: x [..., F_in] -> [..., F_out]."""
  widths = [params[f'dense_{i}']['kernel'].shape[-1] for i in range(len(params))]
  return MLP(features=widths).apply({'params': params}, x)


def stack_trees(trees: Sequence[Any]) -> Any:
  """Stack pytrees leaf-wise on a new leading (model) axis."""
  return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)


def batch_schedule(num: int, batch_size: int, steps: int, seed: int) -> np.ndarray:
  """int32 [steps, B] minibatch indices: concatenated seeded permutations of range(num) (epochs),
  B = min(batch_size, num). The same schedule is used by every model of a group."""
  if steps < 1 or batch_size < 1:
    raise ValueError(f'steps and batch_size must be >= 1, got {steps}, {batch_size}.')
  b = min(batch_size, num)
  rng = np.random.default_rng(seed)
  need = steps * b
  perms = [rng.permutation(num) for _ in range(-(-need // num))]
  return np.concatenate(perms)[:need].reshape(steps, b).astype(np.int32)


def train_models(loss_fn, params, per_model, shared, batches, learning_rate):
  """vmap over models of a lax.scan of Adam steps.

  Args:
    loss_fn: ``(params, model_data, shared, batch_idx int32 [B]) -> scalar`` (static: a module-level
      function, so the jit cache is reused).
    params: pytree, leaves [Mdl, ...]; per_model: pytree, leaves [Mdl, ...];
    shared: pytree common to all models; batches: int32 [steps, B]; learning_rate: float scalar.

  Returns:
    (final params, losses float32 [Mdl, steps]).
  """
  tx = optax.adam(learning_rate)

  def one_model(p, data):
    def step(carry, idx):
      p, opt = carry
      loss, grads = jax.value_and_grad(loss_fn)(p, data, shared, idx)
      updates, opt = tx.update(grads, opt, p)
      return (optax.apply_updates(p, updates), opt), loss

    (p, _), losses = jax.lax.scan(step, (p, tx.init(p)), batches)
    return p, losses

  return jax.vmap(one_model)(params, per_model)


train_models_jit = jax.jit(train_models, static_argnums=0)


def _pair_logits(params, z, items, user_idx, item_idx):
  """Logits of one model: z [U', D_max], items [I, F] (standardised); user ids [P] or [L, 1]
  (broadcast against item ids [P] or [L, C]). ``MLP([u || v]) + <P u, Q v> / sqrt(rank)``."""
  item_x = items[item_idx]
  user_x = jnp.broadcast_to(z[user_idx], item_x.shape[:-1] + (z.shape[-1],))
  logits = mlp_apply(params['mlp'], jnp.concatenate([user_x, item_x], axis=-1))[..., 0]
  if 'user_proj' in params:
    rank = params['user_proj'].shape[-1]
    affinity = jnp.sum((user_x @ params['user_proj']) * (item_x @ params['item_proj']), -1)
    logits = logits + affinity / rank**0.5
  return logits


def _pair_loss(params, z, shared, idx):
  logits = _pair_logits(params, z, shared['items'], shared['user'][idx], shared['item'][idx])
  return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, shared['label'][idx]))


def _list_loss(params, z, shared, idx):
  mask = shared['mask'][idx]
  logits = _pair_logits(
      params, z, shared['items'], shared['user'][idx][:, None], shared['ids'][idx]
  )
  return rax.softmax_loss(logits, shared['labels'][idx], where=mask)


@jax.jit
def _score_chunk(params, z, items, user_idx, item_idx):
  logits = jax.vmap(_pair_logits, in_axes=(0, 0, None, None, None))  # over the model axis
  return logits(params, z, items, user_idx, item_idx)


def _fit(cls, loss_fn, user_vectors, item_features, user, shared, config):
  """Standardise, pad, stack, initialise and train all models; ``user`` int [N] train rows,
  ``shared`` the task's arrays (local user ids are added), ``config`` the fit keyword arguments."""
  names, arrays = check_user_vectors(user_vectors)
  items = check_item_features(item_features)
  rows = np.unique(user)
  for name, arr in zip(names, arrays):
    check_finite_rows(f"user_vectors['{name}']", arr, rows)
  mean, std, informative = standardiser(arrays, rows)
  i_mean, i_std = item_standardiser(items, config['standardize_items'])
  z = stacked_vectors(arrays, rows, mean, std, informative)
  features = [config['hidden']] * config['num_layers'] + [1]
  key = jax.random.key(config['seed'])
  rank = int(config['interaction_rank'])
  params = stack_trees([init_head(key, i, items.shape[1], features, rank) for i in informative])
  local = np.searchsorted(rows, user).astype(np.int32)
  shared = dict(shared, items=(items - i_mean) / i_std, user=local)
  batches = batch_schedule(user.size, config['batch_size'], config['steps'], config['seed'])
  lr = jnp.float32(config['learning_rate'])
  params, losses = train_models_jit(loss_fn, params, jnp.asarray(z), shared, batches, lr)
  check_losses(names, losses)
  widths = tuple(a.shape[1] for a in arrays)
  return cls(names, widths, mean, std, informative, i_mean, i_std, params, np.asarray(losses))


def check_losses(names: Sequence[str], losses) -> None:
  """Fail loudly if a model's training loss [Mdl, steps] went NaN / inf."""
  if bad := [n for n, row in zip(names, np.asarray(losses)) if not np.isfinite(row).all()]:
    raise FloatingPointError(f'training loss became NaN/inf for models {bad}.')


def _num_rows(user_vectors) -> int:
  return check_user_vectors(user_vectors)[1][0].shape[0]


def fit_pair_heads(
    user_vectors: Mapping[str, np.ndarray],
    item_features: np.ndarray,
    train: PairSet,
    *,
    hidden: int = 64,
    num_layers: int = 2,
    steps: int = 400,
    learning_rate: float = 3e-3,
    batch_size: int = 512,
    seed: int = 0,
    standardize_items: bool = True,
    interaction_rank: int = 16,
) -> PairHeads:
  """Fit one binary pair classifier per user-vector model, all in one jitted call.

  Args:
    user_vectors: name -> float32 [U, D_name] (the same U users for every name; D may differ).
    item_features: float32 [I, F] fixed track / artist features.
    train: `PairSet` (user int32 [P], item int32 [P], label float32 [P] in {0, 1}).
    hidden: width of each hidden layer; num_layers: number of hidden (ReLU) layers.
    steps, learning_rate, batch_size: Adam steps on minibatches of min(batch_size, P) pairs (the
      same seeded epoch-permutation schedule for every model).
    seed: initialisation and minibatch seed (the same for every model).
    standardize_items: standardise item features with their catalogue mean / std.
    interaction_rank: rank r of the head's affinity term ``<P u, Q v> / sqrt(r)`` added to the
      MLP's logit (0 = MLP only). A concatenation MLP learns user-item affinity only slowly from
      few pairs (on the demo a direct cosine of the history average with the track features
      scores AUC 0.76 on the 7-day task where MLP-only heads reached 0.68), so every head gets
      the same low-rank bilinear term -- the same form for every user vector.

  Returns:
    `PairHeads`. User vectors are standardised with the mean / std of the distinct users in
    ``train``; a head fitted alone equals the same head fitted in a group (see module docstring).
  """
  config = dict(hidden=hidden, num_layers=num_layers, steps=steps, learning_rate=learning_rate,
                batch_size=batch_size, seed=seed, standardize_items=standardize_items,
                interaction_rank=interaction_rank)  # fmt: skip
  num_items = np.asarray(item_features).shape[0]
  user, item, label = _check_pairs('train', train, _num_rows(user_vectors), num_items, True)
  shared = dict(item=item.astype(np.int32), label=label)
  return _fit(PairHeads, _pair_loss, user_vectors, item_features, user, shared, config)


def model_inputs(heads: PairHeads, user_vectors, item_features, users: np.ndarray):
  """Check inputs against fitted ``heads`` (any object with names / widths / stats).

  Returns:
    (z float32 [Mdl, U', D_max] standardised padded vectors of the distinct ``users`` (sorted),
    standardised items float32 [I, F], the sorted distinct user ids [U']).
  """
  names, arrays = check_user_vectors(user_vectors)
  if set(names) != set(heads.names):
    raise ValueError(f'user_vectors has models {sorted(names)}, the heads {sorted(heads.names)}.')
  arrays = [arrays[names.index(n)] for n in heads.names]
  for name, arr, width in zip(heads.names, arrays, heads.widths):
    if arr.shape[1] != width:
      raise ValueError(
          f"user_vectors['{name}'] has width {arr.shape[1]}, its head was fit on {width}."
      )
  items = check_item_features(item_features)
  if items.shape[1] != heads.item_mean.shape[0]:
    raise ValueError(
        f'item_features has {items.shape[1]} columns, the heads were fit on'
        f' {heads.item_mean.shape[0]}.'
    )
  rows = np.unique(users)
  for name, arr in zip(heads.names, arrays):
    check_finite_rows(f"user_vectors['{name}']", arr, rows)
  z = stacked_vectors(arrays, rows, heads.user_mean, heads.user_std, heads.user_informative)
  return jnp.asarray(z), jnp.asarray((items - heads.item_mean) / heads.item_std), rows


def _logits(heads, z, items, local_users, item_ids, chunk_size):
  """float32 [Mdl, N] logits for flat id arrays, in fixed-size (padded) chunks."""
  n, out = local_users.size, []
  pad = -n % chunk_size
  u = np.pad(local_users.astype(np.int32), (0, pad)).reshape(-1, chunk_size)
  i = np.pad(item_ids.astype(np.int32), (0, pad)).reshape(-1, chunk_size)
  for uc, ic in zip(u, i):
    out.append(np.asarray(_score_chunk(heads.params, z, items, uc, ic)))
  return np.concatenate(out, axis=1)[:, :n]


def score_pairs(
    heads: PairHeads, user_vectors, item_features, pairs, *, chunk_size: int = 8192
) -> dict[str, np.ndarray]:
  """Probabilities of each (user, item) pair under every model.

  Args:
    heads: from `fit_pair_heads`; user_vectors / item_features: as at fit time (same names, widths).
    pairs: anything indexable as (user int [P], item int [P], ...) -- a `PairSet` works.

  Returns:
    name -> float32 [P] sigmoid probabilities.
  """
  num_users = _num_rows(user_vectors)
  user, item, _ = _check_pairs('pairs', pairs, num_users, np.asarray(item_features).shape[0], False)
  z, items, rows = model_inputs(heads, user_vectors, item_features, user)
  local = np.searchsorted(rows, user).astype(np.int32)
  logits = _logits(heads, z, items, local, item.astype(np.int32), chunk_size)
  probs = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
  return {name: probs[m].astype(np.float32) for m, name in enumerate(heads.names)}


def ensemble_pair_probabilities(
    user_vectors, item_features, train: PairSet, pairs, *, seeds: Sequence[int], **fit_kwargs
) -> dict[str, np.ndarray]:
  """Mean probability over one head per seed for every model (a bagged `fit_pair_heads`).

  Args:
    user_vectors, item_features, train: as `fit_pair_heads`; pairs: as `score_pairs`.
    seeds: one head per seed (its init and minibatch order), at least one.
    **fit_kwargs: the other `fit_pair_heads` arguments, the same for every seed.

  Returns:
    name -> float32 [P], the mean of the heads' `score_pairs` probabilities.

  Why: a head on a few thousand users fits its training pairs almost perfectly (on the demo's
  7-day task training AUC ~0.999, test ~0.68), and its seed alone moves a model's test AUC by up
  to ±0.01 -- as much as the differences between user vectors a table compares, and a variance
  the paired bootstrap over test users does not see. Averaging heads cuts it, equally for all.
  """
  seeds = [int(s) for s in seeds]
  if not seeds:
    raise ValueError('seeds is empty: need at least one head per model.')
  total = None
  for seed in seeds:
    heads = fit_pair_heads(user_vectors, item_features, train, seed=seed, **fit_kwargs)
    probs = score_pairs(heads, user_vectors, item_features, pairs)
    total = probs if total is None else {m: total[m] + p for m, p in probs.items()}
  return {m: (p / len(seeds)).astype(np.float32) for m, p in total.items()}


def _one_pair_metrics(scores, labels, threshold):
  scores = np.asarray(scores, np.float32).reshape(-1)
  if scores.shape != labels.shape or not np.isfinite(scores).all():
    raise ValueError(f'scores must be finite [P] like labels {labels.shape}, got {scores.shape}.')
  auc = float(metrics_lib.auc(scores[None], labels[None] > 0.5)[0])
  return {'accuracy': float(np.mean((scores > threshold) == (labels > 0.5))), 'auc': auc}


def pair_metrics(scores, labels, *, threshold: float = 0.5) -> dict[str, Any]:
  """Accuracy (predict 1 iff score > threshold) and ROC-AUC (ties count 1/2) of binary scores.

  Args:
    scores: float [P] (probabilities for accuracy to mean anything; AUC only needs an order), or a
      mapping name -> [P] (e.g. the output of `score_pairs`).
    labels: {0, 1} [P], containing both classes.

  Returns:
    {'accuracy': float, 'auc': float}, or name -> that dict for a mapping.
  """
  labels = np.asarray(labels, np.float32).reshape(-1)
  if not np.isin(labels, (0.0, 1.0)).all():
    raise ValueError('labels must be 0 or 1.')
  if labels.size == 0 or labels.min() == labels.max():
    raise ValueError('labels must contain both classes (AUC is undefined otherwise).')
  if isinstance(scores, Mapping):
    return {name: _one_pair_metrics(s, labels, threshold) for name, s in scores.items()}
  return _one_pair_metrics(scores, labels, threshold)


def _check_lists(name, lists, num_users, num_items):
  user = np.asarray(lists[0]).reshape(-1)
  if user.size == 0:
    raise ValueError(f'{name} is empty: need at least one list.')
  user = check_ids(f'{name}.user', user, num_users)
  mask = np.asarray(lists[3]).astype(bool)
  if mask.ndim != 2 or mask.shape[0] != user.size:
    raise ValueError(f'{name}.mask must be [L={user.size}, C], got {mask.shape}.')
  ids = np.where(mask, np.asarray(lists[1]), 0)
  ids = check_ids(f'{name}.items (valid entries)', ids, num_items, mask.shape).astype(np.int32)
  labels = np.asarray(np.zeros(mask.shape) if lists[2] is None else lists[2], np.float32)
  if labels.shape != mask.shape:
    raise ValueError(f'{name}.labels must have shape {mask.shape}, got {labels.shape}.')
  labels = np.where(mask, labels, 0.0).astype(np.float32)
  if not np.isfinite(labels).all():
    raise ValueError(f'{name}.labels contains NaN or inf.')
  return user, ids, labels, mask


def fit_listwise_rankers(
    user_vectors: Mapping[str, np.ndarray],
    item_features: np.ndarray,
    train: ListSet,
    *,
    hidden: int = 64,
    num_layers: int = 2,
    steps: int = 400,
    learning_rate: float = 3e-3,
    batch_size: int = 64,
    seed: int = 0,
    standardize_items: bool = True,
    interaction_rank: int = 16,
) -> ListRankers:
  """Fit one listwise ranker per user-vector model (rax softmax loss), all in one jitted call.

  The scorer is the pair head's MLP applied to every (user, candidate); the loss is
  ``rax.softmax_loss(scores [B, C], labels [B, C], where=mask)`` averaged over the minibatch of
  ``min(batch_size, L)`` lists. Standardisation, padding and the one-jit training are as in
  `fit_pair_heads`.

  Args:
    train: `ListSet` (user int32 [L], items int32 [L, C], labels float32 [L, C], mask bool [L, C]);
      lists without a relevant valid candidate contribute zero loss.
    other arguments: as in `fit_pair_heads` (``batch_size`` counts lists).
  """
  config = dict(hidden=hidden, num_layers=num_layers, steps=steps, learning_rate=learning_rate,
                batch_size=batch_size, seed=seed, standardize_items=standardize_items,
                interaction_rank=interaction_rank)  # fmt: skip
  num_items = np.asarray(item_features).shape[0]
  user, ids, labels, mask = _check_lists('train', train, _num_rows(user_vectors), num_items)
  if not (labels > 0).any():
    raise ValueError('train has no relevant (label > 0) valid candidate in any list.')
  shared = dict(ids=ids, labels=labels, mask=mask)
  return _fit(ListRankers, _list_loss, user_vectors, item_features, user, shared, config)


def score_lists(
    rankers: ListRankers, user_vectors, item_features, lists, *, chunk_size: int = 8192
) -> dict[str, np.ndarray]:
  """Scores of every list's candidates under every model.

  Args:
    lists: a `ListSet`-like (user [L], items [L, C], labels (ignored, may be None), mask [L, C]).

  Returns:
    name -> float32 [L, C] logits; masked candidates get -inf.
  """
  num_users = _num_rows(user_vectors)
  user, ids, _, mask = _check_lists('lists', lists, num_users, np.asarray(item_features).shape[0])
  z, items, rows = model_inputs(rankers, user_vectors, item_features, user)
  local = np.repeat(np.searchsorted(rows, user).astype(np.int32), mask.shape[1])
  logits = _logits(rankers, z, items, local, ids.reshape(-1), chunk_size)
  logits = logits.reshape(len(rankers.names), *mask.shape)
  return {
      n: np.where(mask, logits[m], -np.inf).astype(np.float32) for m, n in enumerate(rankers.names)
  }


def _one_list_metrics(scores, labels, mask, ks):
  scores = np.asarray(scores, np.float32)
  if scores.shape != labels.shape:
    raise ValueError(f'scores must have shape {labels.shape}, got {scores.shape}.')
  if not np.isfinite(scores[mask]).all():
    raise ValueError('scores contains NaN or inf at valid candidates.')
  valid = ((labels > 0) & mask).any(axis=1)
  if (kept := int(valid.sum())) == 0:
    raise ValueError('no list has a relevant valid candidate.')
  s = jnp.asarray(np.where(mask, scores, -np.inf)[valid])
  y, w = jnp.asarray(labels[valid]), jnp.asarray(mask[valid])
  if min(ks) < 1:
    raise ValueError(f'ks must be >= 1, got {tuple(ks)}.')
  out = {f'ndcg@{k}': float(rax.ndcg_metric(s, y, where=w, topn=k)) for k in ks}
  out.update(
      mrr=float(rax.mrr_metric(s, y, where=w)), num_lists=kept, skipped=labels.shape[0] - kept
  )
  return out


def list_metrics(scores, labels, mask, *, ks: Sequence[int] = (10,)) -> dict[str, Any]:
  """rax NDCG@k and MRR over lists that have at least one relevant valid candidate.

  Definitions (rax 0.4.0, checked in its source): rank = 1-based position after sorting the valid
  candidates by score (ties keep their input order); DCG@k = sum over the top k of
  (2^label - 1) / log2(rank + 1); NDCG@k = DCG@k / DCG@k of the label-sorted list (binary labels:
  IDCG over min(k, |relevant|) ones); MRR = 1 / rank of the first relevant (label >= 1) candidate,
  no cut-off. Lists without a relevant valid candidate are skipped (rax would count them as 0).

  Args:
    scores: float [L, C] or a mapping name -> [L, C]; labels: float [L, C] (binary or graded);
    mask: bool [L, C] valid candidates; ks: NDCG cut-offs.

  Returns:
    {'ndcg@k': ..., 'mrr': ..., 'num_lists': int, 'skipped': int} (or name -> that dict).
  """
  mask = np.asarray(mask).astype(bool)
  labels = np.asarray(labels, np.float32)
  if mask.ndim != 2 or labels.shape != mask.shape:
    raise ValueError(f'labels and mask must both be [L, C], got {labels.shape}, {mask.shape}.')
  labels = np.where(mask, labels, 0.0)
  if isinstance(scores, Mapping):
    return {n: _one_list_metrics(s, labels, mask, ks) for n, s in scores.items()}
  return _one_list_metrics(scores, labels, mask, ks)
