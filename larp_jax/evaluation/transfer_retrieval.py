"""Two-tower candidate generation on frozen user vectors (issue 11, paper Sec. 4.1), in one jit.

User tower: ``layers.MLP`` (ReLU, widths ``(hidden, embed_dim)``) on the standardised, zero-padded
user vector; item tower: the same form on the (standardised) item features; both outputs are
L2-normalised (``normalize=False`` keeps raw dot products) and the score is
``<u, v> / temperature``. All models of a comparison are trained together exactly as the pair heads
of `transfer_heads` (stacked on a model axis, vmap over models, lax.scan over steps, the same seed,
minibatch sequence and initialisation for every model; padded columns stay exactly 0, so a tower
fitted alone equals the same tower fitted in a group).

Softmax (``softmax=``):
  * ``'full'``: for each positive pair, a softmax over the whole catalogue of I items (the item
    tower runs over all I items every step: cost ~ steps x I x F x hidden and logits [B, I] per
    model, all models at once).
  * ``'in_batch'``: the other pairs' items of the minibatch are the negatives. Repeated items: a
    column whose item id equals the row's positive item (another copy of the same item) is an
    accidental hit and is masked out of that row's softmax (TFRS ``remove_accidental_hits``), so an
    item never acts as its own negative; the diagonal stays the positive. No logQ correction.
  A user's other positives are not removed from the negatives in either mode (one softmax per pair).

Retrieval (`retrieval_recall`): exact maximum inner product with faiss ``IndexFlatIP`` over all item
embeddings (cosine when normalised), items in ``exclude`` removed, then
``Recall@K = |top-K ∩ R| / |R|`` (RecBole's definition, divided by |R|, not min(K, |R|)), where R
is the user's relevant set minus its excluded items; a user with empty R is skipped and counted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.sparse as sp

from larp_jax.evaluation import transfer_heads as th
from larp_jax.evaluation import transfer_inputs as ti

Array = jax.Array
SOFTMAX_MODES = ('full', 'in_batch')


@dataclasses.dataclass(frozen=True)
class TwoTowers(th.PairHeads):
  """Fitted towers of one comparison: `transfer_heads.PairHeads`' fields (names, widths and the
  standardisation statistics), with ``params = {'user': MLP params, 'item': MLP params}`` (every
  leaf with a leading [Mdl] axis), plus the settings used: temperature, normalize, softmax.
  """

  temperature: float
  normalize: bool
  softmax: str


def _safe_l2_normalize(x: Array, eps: float = 1e-12) -> Array:
  """x / max(||x||, eps) with a finite gradient at x = 0 (``layers.l2_normalize`` goes through
  ``jnp.linalg.norm``, whose gradient at 0 is NaN -- a tower output of exactly 0, e.g. an item whose
  ReLU units are all off at init, would poison the whole 'full' softmax)."""
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), eps * eps))


def _embed(params, x: Array, normalize) -> Array:
  out = th.mlp_apply(params, x)
  return jnp.where(normalize, _safe_l2_normalize(out), out)


def _full_loss(params, z, shared, idx):
  u = _embed(params['user'], z[shared['user'][idx]], shared['normalize'])
  v = _embed(params['item'], shared['items'], shared['normalize'])  # [I, E]
  logits = u @ v.T / shared['temperature']
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, shared['item'][idx]))


def _in_batch_loss(params, z, shared, idx):
  item_ids = shared['item'][idx]
  u = _embed(params['user'], z[shared['user'][idx]], shared['normalize'])
  v = _embed(params['item'], shared['items'][item_ids], shared['normalize'])  # [B, E]
  logits = u @ v.T / shared['temperature']
  eye = jnp.eye(idx.shape[0], dtype=bool)
  accidental = (item_ids[:, None] == item_ids[None, :]) & ~eye
  logits = jnp.where(accidental, -1e9, logits)
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, jnp.arange(idx.shape[0])))


_LOSSES = {'full': _full_loss, 'in_batch': _in_batch_loss}


def fit_two_towers(
    user_vectors: Mapping[str, np.ndarray],
    item_features: np.ndarray,
    train: th.PairSet,
    *,
    embed_dim: int = 64,
    hidden: int = 128,
    steps: int = 400,
    learning_rate: float = 3e-3,
    batch_size: int = 512,
    temperature: float = 0.1,
    softmax: str = 'full',
    normalize: bool = True,
    seed: int = 0,
    standardize_items: bool = True,
) -> TwoTowers:
  """Fit one user tower + item tower per user-vector model, all in one jitted call.

  Args:
    user_vectors: name -> float32 [U, D_name] (same U users for every name).
    item_features: float32 [I, F] fixed item features (the whole catalogue).
    train: `PairSet` of positive pairs (user int32 [P], item int32 [P]); ``label`` is ignored
      (may be all ones or None). User vectors are standardised with the mean / std of its
      distinct users.
    embed_dim, hidden: tower widths (``MLP((hidden, embed_dim))`` for both towers).
    steps, learning_rate, batch_size, seed: Adam on minibatches of min(batch_size, P) pairs, the
      same schedule and initialisation for every model.
    temperature: logits = <u, v> / temperature.
    softmax: ``'full'`` (whole catalogue) or ``'in_batch'`` (see module docstring).
    normalize: L2-normalise both towers' outputs.
    standardize_items: standardise item features with their catalogue mean / std.
  """
  if softmax not in SOFTMAX_MODES:
    raise ValueError(f'softmax must be one of {SOFTMAX_MODES}, got {softmax!r}.')
  if not temperature > 0:
    raise ValueError(f'temperature must be > 0, got {temperature}.')
  names, arrays = ti.check_user_vectors(user_vectors)
  items = ti.check_item_features(item_features)
  user = np.asarray(train[0]).reshape(-1)
  if user.size == 0:
    raise ValueError('train is empty: need at least one positive pair.')
  user = ti.check_ids('train.user', user, arrays[0].shape[0])
  item = ti.check_ids('train.item', np.asarray(train[1]).reshape(-1), items.shape[0], user.shape)
  if softmax == 'in_batch' and min(batch_size, user.size) < 2:
    raise ValueError('in_batch softmax needs batch_size >= 2 and at least 2 training pairs.')
  rows = np.unique(user)
  for name, arr in zip(names, arrays):
    ti.check_finite_rows(f"user_vectors['{name}']", arr, rows)
  mean, std, informative = ti.standardiser(arrays, rows)
  i_mean, i_std = ti.item_standardiser(items, standardize_items)
  z = ti.stacked_vectors(arrays, rows, mean, std, informative)
  key_user, key_item = jax.random.split(jax.random.key(seed))
  tower = [hidden, embed_dim]
  params = th.stack_trees(
      [
          {
              'user': th.init_mlp(key_user, info, 0, tower),
              'item': th.init_mlp(key_item, np.zeros(0, bool), items.shape[1], tower),
          }
          for info in informative
      ]
  )
  shared = dict(
      items=(items - i_mean) / i_std,
      user=np.searchsorted(rows, user).astype(np.int32),
      item=item.astype(np.int32),
      temperature=np.float32(temperature),
      normalize=np.bool_(normalize),
  )
  batches = th.batch_schedule(user.size, batch_size, steps, seed)
  params, losses = th.train_models_jit(
      _LOSSES[softmax], params, jnp.asarray(z), shared, batches, jnp.float32(learning_rate)
  )
  th.check_losses(names, losses)
  return TwoTowers(
      names=names,
      widths=tuple(a.shape[1] for a in arrays),
      user_mean=mean,
      user_std=std,
      user_informative=informative,
      item_mean=i_mean,
      item_std=i_std,
      params=params,
      losses=np.asarray(losses),
      temperature=float(temperature),
      normalize=bool(normalize),
      softmax=softmax,
  )


@jax.jit
def _user_embeddings(params, z, normalize):
  return jax.vmap(lambda p, x: _embed(p['user'], x, normalize))(params, z)


@jax.jit
def _item_embeddings(params, items, normalize):
  return jax.vmap(lambda p: _embed(p['item'], items, normalize))(params)


def tower_embeddings(
    towers: TwoTowers, user_vectors, item_features, users
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
  """User embeddings of ``users`` and item embeddings of the whole catalogue.

  Args:
    users: int [Q] user rows.

  Returns:
    (name -> float32 [Q, E], name -> float32 [I, E]).
  """
  users = np.asarray(users).reshape(-1)
  num_users = ti.check_user_vectors(user_vectors)[1][0].shape[0]
  users = ti.check_ids('users', users, num_users)
  if users.size == 0:
    raise ValueError('users is empty.')
  z, items, rows = th.model_inputs(towers, user_vectors, item_features, users)
  local = np.searchsorted(rows, users)
  user_emb = np.asarray(_user_embeddings(towers.params, z, towers.normalize))[:, local]
  item_emb = np.asarray(_item_embeddings(towers.params, items, towers.normalize))
  return (
      {n: user_emb[m] for m, n in enumerate(towers.names)},
      {n: item_emb[m] for m, n in enumerate(towers.names)},
  )


def _rows(name: str, sets, num_rows: int, num_items: int) -> list[np.ndarray]:
  """A CSR matrix [Q, I] or a list of Q int arrays -> list of Q unique int64 arrays."""
  if sp.issparse(sets):
    csr = sp.csr_matrix(sets)
    if csr.shape[0] != num_rows or csr.shape[1] > num_items:
      raise ValueError(f'{name} must be a [Q={num_rows}, I={num_items}] matrix, got {csr.shape}.')
    csr.eliminate_zeros()
    out = [
        np.asarray(csr.indices[csr.indptr[q] : csr.indptr[q + 1]], np.int64)
        for q in range(num_rows)
    ]
  else:
    sets = list(sets)
    if len(sets) != num_rows:
      raise ValueError(f'{name} has {len(sets)} rows, users has {num_rows}.')
    out = [
        ti.check_ids(f'{name}[{q}]', np.asarray(r).reshape(-1), num_items)
        for q, r in enumerate(sets)
    ]
  return [np.unique(r) for r in out]


def recall_from_embeddings(
    user_emb: np.ndarray,
    item_emb: np.ndarray,
    relevant,
    *,
    ks: Sequence[int] = (10, 50),
    exclude=None,
) -> dict[str, float]:
  """Recall@K by exact faiss inner-product search; see the module docstring for the definition.

  Args:
    user_emb: float32 [Q, E]; item_emb: float32 [I, E].
    relevant: CSR [Q, I] or list of Q int arrays (row q = query q's relevant items).
    ks: cut-offs (each <= I minus the largest exclusion set).
    exclude: optional CSR [Q, I] or list of Q int arrays of items never retrieved for query q.

  Returns:
    {'recall@k': float for each k, 'num_queries': int, 'skipped': int (queries with empty R)}.
  """
  import faiss  # pylint: disable=g-import-not-at-top  (optional dependency, only needed here)

  user_emb = np.ascontiguousarray(user_emb, np.float32)
  item_emb = np.ascontiguousarray(item_emb, np.float32)
  num_q, num_items = user_emb.shape[0], item_emb.shape[0]
  if user_emb.ndim != 2 or item_emb.ndim != 2 or user_emb.shape[1] != item_emb.shape[1]:
    raise ValueError(
        f'user_emb [Q, E] and item_emb [I, E] disagree: {user_emb.shape}, {item_emb.shape}.'
    )
  if not (np.isfinite(user_emb).all() and np.isfinite(item_emb).all()):
    raise ValueError('user_emb / item_emb contain NaN or inf.')
  ks = tuple(int(k) for k in ks)
  rel = _rows('relevant', relevant, num_q, num_items)
  exc = _rows('exclude', exclude, num_q, num_items) if exclude is not None else None
  max_exc = max((e.size for e in exc), default=0) if exc else 0
  if not ks or min(ks) < 1 or max(ks) > num_items - max_exc:
    raise ValueError(
        f'ks {ks} must be >= 1 and <= the {num_items} items minus the largest exclusion set'
        f' ({max_exc}).'
    )
  index = faiss.IndexFlatIP(item_emb.shape[1])
  index.add(item_emb)
  _, found = index.search(user_emb, max(ks) + max_exc)
  sums = np.zeros(len(ks))
  count = skipped = 0
  for q in range(num_q):
    r = rel[q] if exc is None else np.setdiff1d(rel[q], exc[q])
    if r.size == 0:
      skipped += 1
      continue
    ids = found[q][found[q] >= 0]
    if exc is not None:
      ids = ids[~np.isin(ids, exc[q])]
    hit = np.isin(ids[: max(ks)], r)
    sums += [hit[:k].sum() / r.size for k in ks]
    count += 1
  if count == 0:
    raise ValueError('relevant is empty for every query.')
  out: dict[str, Any] = {f'recall@{k}': float(s / count) for k, s in zip(ks, sums)}
  out.update(num_queries=count, skipped=skipped)
  return out


def retrieval_recall(
    towers: TwoTowers,
    user_vectors,
    item_features,
    users,
    relevant,
    *,
    ks: Sequence[int] = (10, 50),
    exclude=None,
) -> dict[str, dict[str, float]]:
  """Recall@K of every model's towers through exact faiss search over the whole catalogue.

  Args:
    towers: from `fit_two_towers`; user_vectors / item_features: as at fit time.
    users: int32 [Q] query users; relevant: CSR [Q, I] or list of Q int arrays (row q belongs to
      users[q]); exclude: optional, same form (e.g. items played before T).
    ks: cut-offs.

  Returns:
    name -> {'recall@k': ..., 'num_queries': int, 'skipped': int}.
  """
  user_emb, item_emb = tower_embeddings(towers, user_vectors, item_features, users)
  return {
      n: recall_from_embeddings(user_emb[n], item_emb[n], relevant, ks=ks, exclude=exclude)
      for n in towers.names
  }
