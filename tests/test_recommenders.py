"""Each downstream recommender fits a tiny cold-start problem with cluster structure and beats random.

Synthetic data: 8 clusters; track content = cluster centre + noise (D = 32); within a cluster track
popularity is Zipf-skewed. Training and test tracks are disjoint (strict cold start); each playlist
draws its tracks from one cluster. Test playlists: 8 seeds, 8 held-out tracks. Random Recall@10 is
about 10 / 192 ~ 0.05; a ranking that only knows the cluster gets ~0.4.
"""

import dataclasses
import time

import numpy as np
import pytest

from larp_jax.evaluation import continuation
from larp_jax.recommenders import clcrec
from larp_jax.recommenders import dropoutnet
from larp_jax.recommenders import itemknn
from larp_jax.recommenders import popularity
from larp_jax.recommenders import wmf

NUM_CLUSTERS, DIM = 8, 32


def _tracks(rng, n, centers):
  cluster = np.arange(n) % NUM_CLUSTERS
  content = centers[cluster] + 0.6 * rng.normal(size=(n, DIM))
  return content.astype(np.float32), cluster


def _playlists(rng, cluster, num_playlists, length):
  out = []
  for p in range(num_playlists):
    members = np.nonzero(cluster == p % NUM_CLUSTERS)[0]
    weights = 1.0 / np.arange(1, len(members) + 1) ** 0.8  # Zipf-skewed popularity
    chosen = rng.choice(members, size=length, replace=False, p=weights / weights.sum())
    out.append(rng.permutation(chosen))  # seeds = a random half, as in the official split
  return np.stack(out)


@pytest.fixture(scope='module')
def problem():
  rng = np.random.default_rng(0)
  centers = rng.normal(size=(NUM_CLUSTERS, DIM))
  train_content, train_cluster = _tracks(rng, 320, centers)
  test_content, test_cluster = _tracks(rng, 200, centers)
  train_lists = _playlists(rng, train_cluster, 160, 15)
  train_pairs = np.stack([np.repeat(np.arange(160), 15), train_lists.reshape(-1)], 1)
  test_lists = _playlists(rng, test_cluster, 64, 16)
  return dict(
      train_pairs=train_pairs,
      train_content=train_content,
      test_content=test_content,
      seeds=test_lists[:, :8].astype(np.int32),
      gt=test_lists[:, 8:].astype(np.int32),
  )


def _recall10(problem, score):
  out = continuation.evaluate_continuation(
      lambda ids, mask: score(ids, mask),
      problem['seeds'],
      problem['gt'],
      problem['test_content'].shape[0],
      ks=(10,),
      chunk_size=32,
  )
  return out['recall@10']


@pytest.fixture(scope='module')
def random_recall(problem):
  model = popularity.fit_random(problem['train_pairs'], problem['train_content'], seed=0)
  return _recall10(
      problem, lambda i, m: popularity.score_random(model, i, problem['test_content'], m)
  )


def test_random_is_near_chance_and_deterministic(problem, random_recall):
  assert random_recall < 0.12
  model = popularity.fit_random(None, problem['test_content'], seed=3)
  a = np.asarray(popularity.score_random(model, problem['seeds'][:4], problem['test_content']))
  b = np.asarray(
      popularity.score_random(model, problem['seeds'][:4][::-1], problem['test_content'])
  )
  np.testing.assert_array_equal(a, b[::-1])  # a row's scores do not depend on its batch position


def test_popularity_from_test_seeds_beats_random():
  """Popularity needs popularity skew across the catalogue: playlists drawn from a global Zipf."""
  rng = np.random.default_rng(1)
  n = 200
  weights = 1.0 / np.arange(1, n + 1) ** 1.0
  lists = np.stack(
      [rng.choice(n, size=16, replace=False, p=weights / weights.sum()) for _ in range(64)]
  )
  lists = np.stack([rng.permutation(row) for row in lists]).astype(np.int32)
  data = dict(seeds=lists[:, :8], gt=lists[:, 8:], test_content=np.zeros((n, 1), np.float32))
  model = popularity.fit(popularity.seeds_to_interactions(data['seeds']), data['test_content'])
  assert model.counts.sum() == data['seeds'].size
  recall = _recall10(data, lambda i, m: popularity.score(model, i, data['test_content'], m))
  rand = popularity.fit_random(None, data['test_content'], seed=0)
  random_recall = _recall10(
      data, lambda i, m: popularity.score_random(rand, i, data['test_content'], m)
  )
  assert recall > 2 * random_recall and recall > 0.15, (recall, random_recall)


def test_itemknn_beats_random_and_faiss_matches_dense(problem, random_recall):
  model = itemknn.fit(problem['train_pairs'], problem['train_content'])
  recall = _recall10(problem, lambda i, m: itemknn.score(model, i, problem['test_content'], m))
  assert recall > 4 * random_recall and recall > 0.25
  mean_model = itemknn.fit(None, None, itemknn.ItemKNNConfig(pooling='mean'))
  assert (
      _recall10(problem, lambda i, m: itemknn.score(mean_model, i, problem['test_content'], m))
      == recall
  )
  ids, _ = itemknn.faiss_top_k(model, problem['seeds'][:5], problem['test_content'], 10)
  dense = continuation.recommend_top_k(
      lambda i, m: itemknn.score(model, i, problem['test_content'], m),
      problem['seeds'][:5],
      200,
      10,
  )
  np.testing.assert_array_equal(ids, dense)


@pytest.mark.parametrize('variant', ['paper', 'official'])
def test_dropoutnet_beats_random(problem, random_recall, variant):
  config = dropoutnet.DropoutNetConfig(
      variant=variant,
      wmf_iterations=4,
      mf_dim=16,
      mf_epochs=5,
      mf_lr=0.05,
      mf_batch_size=256,
      hidden_dims=(64, 32),
      out_dim=32,
      epochs=30,  # ~270 steps; with standardised (unit-scale) factor inputs 15 epochs underfit
      lr=0.05,
      batch_size=256,
  )
  start = time.perf_counter()
  model = dropoutnet.fit(problem['train_pairs'], problem['train_content'], config, seed=0)
  fit_seconds = time.perf_counter() - start
  recall = _recall10(problem, lambda i, m: dropoutnet.score(model, i, problem['test_content'], m))
  assert recall > 3 * random_recall and recall > 0.2, (recall, fit_seconds)
  assert model.cold_track_preference.shape == (16,)


def test_dropoutnet_standardises_its_inputs(problem):
  """DropoutNet's code standardises content (and factor) columns with training statistics: then
  a per-column affine change of the encoder's output (scale 0.02-50, any shift) leaves every
  score unchanged; without it the same change moves the scores."""
  config = dropoutnet.DropoutNetConfig(
      wmf_iterations=2, mf_dim=8, hidden_dims=(32, 16), out_dim=16, epochs=3, lr=0.05,
      batch_size=256,
  )
  train, test = problem['train_content'], problem['test_content']
  rng = np.random.default_rng(5)
  scale = np.exp(rng.uniform(np.log(0.02), np.log(50.0), DIM)).astype(np.float32)
  shift = rng.normal(scale=10.0, size=DIM).astype(np.float32)
  seeds = problem['seeds']

  def scores(standardize, transform):
    cfg = dataclasses.replace(config, standardize_inputs=standardize)
    model = dropoutnet.fit(problem['train_pairs'], transform(train), cfg, seed=0)
    return model, np.asarray(dropoutnet.score(model, seeds, transform(test)))

  identity, affine = (lambda x: x), (lambda x: x * scale + shift)
  model, base = scores(True, identity)
  np.testing.assert_allclose(model.content_mean, train.mean(0), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(model.content_scale, train.std(0), rtol=1e-5)
  np.testing.assert_allclose(model.cold_track_preference, 0.0, atol=1e-5)  # the mean, standardised
  np.testing.assert_allclose(scores(True, affine)[1], base, rtol=1e-3, atol=1e-4)
  raw = scores(False, identity)[1]
  assert np.abs(scores(False, affine)[1] - raw).max() > 1e-2 * np.abs(raw).max()


@pytest.mark.parametrize('variant', ['paper', 'official'])
def test_clcrec_beats_random(problem, random_recall, variant):
  config = clcrec.CLCRecConfig(
      variant=variant,
      num_negatives=32,
      dim_e=32,
      hidden_dim=64,
      epochs=15,
      batch_size=256,
      lr=1e-2,
      temperature=0.2,
  )
  model = clcrec.fit(problem['train_pairs'], problem['train_content'], config, seed=0)
  recall = _recall10(problem, lambda i, m: clcrec.score(model, i, problem['test_content'], m))
  assert recall > 3 * random_recall and recall > 0.2, recall


def test_fit_rejects_bad_interactions(problem):
  with pytest.raises(ValueError, match='train_interactions'):
    clcrec.fit(np.array([[0, 999]]), problem['train_content'])
  with pytest.raises(ValueError, match='train_interactions'):
    dropoutnet.fit(np.zeros((3,), np.int64), problem['train_content'])
  with pytest.raises(ValueError, match='seeds'):
    itemknn.score(itemknn.fit(None, None), np.zeros((2, 3), np.float32), problem['test_content'])


# ------------------------------------------------- objectives against NumPy versions of the papers


def _np_wmf(pairs, u, v, alpha, l2):
  """Hu et al. '08: sum_{p,s} (1 + alpha r_ps) (r_ps - u_p . v_s)^2 + l2 (||U||^2 + ||V||^2)."""
  r = np.zeros((u.shape[0], v.shape[0]))
  r[pairs[:, 0], pairs[:, 1]] = 1.0
  c = 1.0 + alpha * r
  return np.sum(c * (r - u @ v.T) ** 2) + l2 * (np.sum(u**2) + np.sum(v**2)), r, c


def test_wmf_objective_and_als_are_the_papers():
  rng = np.random.default_rng(3)
  pairs = np.unique(np.stack([rng.integers(0, 12, 60), rng.integers(0, 20, 60)], 1), axis=0)
  u, v = rng.normal(size=(12, 4)), rng.normal(size=(20, 4))
  expected, r, c = _np_wmf(pairs, u, v, 5.0, 0.3)
  np.testing.assert_allclose(wmf.wmf_objective(pairs, u, v, 5.0, 0.3), expected, rtol=1e-12)
  # One ALS half-step is the exact minimiser over U: the formula's gradient in U vanishes there.
  u_new = wmf.als_side(pairs[:, 0], pairs[:, 1], v, 12, 5.0, 0.3, block_pairs=7)
  grad = -2 * (c * (r - u_new @ v.T)) @ v + 2 * 0.3 * u_new
  np.testing.assert_allclose(grad, 0.0, atol=1e-9)
  settings = dict(factors=4, alpha=5.0, l2=0.3, seed=0)
  u1, v1 = wmf.train_wmf(pairs, 12, 20, iterations=1, **settings)
  u3, v3 = wmf.train_wmf(pairs, 12, 20, iterations=3, **settings)
  assert _np_wmf(pairs, u3, v3, 5.0, 0.3)[0] <= _np_wmf(pairs, u1, v1, 5.0, 0.3)[0] + 1e-6


def _np_tower(variables, pref, content, eps):
  params = variables['params']
  x = np.concatenate([pref, content], -1).astype(np.float64)
  names = sorted((k for k in params if k.startswith('Dense')), key=lambda k: int(k.split('_')[1]))
  bns = sorted((k for k in params if k.startswith('BatchNorm')), key=lambda k: int(k.split('_')[1]))
  for dense, bn in zip(names[:-1], bns):
    x = x @ np.asarray(params[dense]['kernel']) + np.asarray(params[dense]['bias'])
    mean, var = x.mean(0), x.var(0)
    x = (x - mean) / np.sqrt(var + eps) * np.asarray(params[bn]['scale']) + np.asarray(
        params[bn]['bias']
    )
    x = np.tanh(x)
  return x @ np.asarray(params[names[-1]]['kernel']) + np.asarray(params[names[-1]]['bias'])


def test_dropoutnet_objective_is_the_papers():
  """O = mean (U_p . V_s - f_P(U'_p, e_p) . f_S(V'_s, e_s))^2 + wd/2 ||W||^2 (Volkovs et al.)."""
  import jax

  rng = np.random.default_rng(0)
  config = dropoutnet.DropoutNetConfig(mf_dim=6, hidden_dims=(16, 8), out_dim=5, init_std=0.3)
  tower = dropoutnet._tower(config)
  b, c = 9, 7
  pref_u, pref_v = rng.normal(size=(b, 6)), rng.normal(size=(b, 6))
  cont_u, cont_v = rng.normal(size=(b, c)), rng.normal(size=(b, c))
  variables = {
      name: jax.tree.map(np.asarray, tower.init(jax.random.PRNGKey(i), pref_u, cont_u, train=False))
      for i, name in enumerate(('playlist', 'track'))
  }
  targets = np.sum(rng.normal(size=(b, 6)) * rng.normal(size=(b, 6)), -1)
  loss, _ = dropoutnet.dropoutnet_objective(
      tower, variables, (pref_u, pref_v), (cont_u, cont_v), targets, 0.1
  )
  fu = _np_tower(variables['playlist'], pref_u, cont_u, config.bn_epsilon)
  fv = _np_tower(variables['track'], pref_v, cont_v, config.bn_epsilon)
  l2 = sum(
      np.sum(np.asarray(v['kernel']) ** 2)
      for tree in variables.values()
      for k, v in tree['params'].items()
      if k.startswith('Dense')
  )
  expected = np.mean((targets - np.sum(fu * fv, -1)) ** 2) + 0.05 * l2
  np.testing.assert_allclose(float(loss), expected, rtol=1e-5)


def test_dropoutnet_epoch_scan_equals_the_per_step_loop():
  """One compiled epoch (lax.scan) = the per-step loop it replaced: the same batches and negatives
  drawn in the same order, and the same parameters, statistics and losses after S steps."""
  import jax

  rng = np.random.default_rng(0)
  m, n, c, r = 30, 40, 12, 6
  pairs = np.unique(np.stack([rng.integers(0, m, 300), rng.integers(0, n, 300)], 1), axis=0)
  observed = np.unique(pairs[:, 0] * n + pairs[:, 1])
  for variant in ('paper', 'official'):
    config = dropoutnet.DropoutNetConfig(
        variant=variant, mf_dim=r, hidden_dims=(16, 8), out_dim=5, batch_size=32,
        negatives_per_positive=2, lr_decay_every_epochs=1,  # the schedule steps inside the epoch
    )
    negatives = 2 if variant == 'paper' else 1
    users, items, targets = dropoutnet.epoch_batches(
        np.random.default_rng(3), pairs, n, observed, config, negatives
    )
    # The old loop's draws: the permutation, then each batch's negatives, in turn.
    ref = np.random.default_rng(3)
    order = ref.permutation(pairs.shape[0])
    steps = pairs.shape[0] // 32
    assert users.shape == items.shape == targets.shape == (steps, 32 * (1 + negatives))
    for s in range(steps):
      idx = order[s * 32 : (s + 1) * 32]
      users_s = pairs[idx, 0]
      negs = [dropoutnet.sample_negatives(ref, users_s, n, observed) for _ in range(negatives)]
      np.testing.assert_array_equal(items[s], np.concatenate([pairs[idx, 1]] + negs))
      np.testing.assert_array_equal(users[s], np.tile(pairs[idx, 0], 1 + negatives))
      assert targets[s].sum() == 32
    tower = dropoutnet._tower(config)
    zeros = (np.zeros((2, r)), np.zeros((2, c)))
    init = [tower.init(jax.random.PRNGKey(i), *zeros, train=False) for i in (0, 1)]
    params = {'playlist': init[0]['params'], 'track': init[1]['params']}
    stats = {'playlist': init[0]['batch_stats'], 'track': init[1]['batch_stats']}
    opt_state = dropoutnet.tower_optimizer(config, steps).init(params)
    tables = {
        'u_pref': rng.normal(size=(m, r)).astype(np.float32),
        'v_pref': rng.normal(size=(n, r)).astype(np.float32),
        'p_content': rng.normal(size=(m, c)).astype(np.float32),
        't_content': rng.normal(size=(n, c)).astype(np.float32),
    }
    for side in ('u', 'v'):  # the towers' inputs: the factors standardised, as `fit` does
      x = tables[f'{side}_pref']
      tables[f'{side}_in'] = (x - x.mean(0)) / x.std(0)
    cold = {'u': np.zeros(r, np.float32), 'v': np.zeros(r, np.float32)}
    key = jax.random.PRNGKey(7)
    got = dropoutnet.train_epoch(
        config, steps, params, stats, opt_state, tables, cold, users, items, targets, key
    )
    step = jax.jit(dropoutnet.train_step, static_argnums=(0, 1))
    state, losses = (params, stats, opt_state), []
    for s in range(steps):
      key, sub = jax.random.split(key)
      *state, loss = step(config, steps, *state, tables, cold, users[s], items[s], targets[s], sub)
      losses.append(float(loss))
    np.testing.assert_allclose(np.asarray(got[4]), losses, rtol=1e-5, atol=1e-6)
    assert len(set(np.round(losses, 6))) > 1  # the steps really differ
    for want, have in zip(jax.tree.leaves(state[:2]), jax.tree.leaves(got[:2])):
      np.testing.assert_allclose(np.asarray(have), np.asarray(want), rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(got[3]), np.asarray(key))


def test_clcrec_objective_is_the_papers():
  """lambda * L_RE + (1 - lambda) * L_UI + reg (Wei et al.), with K sampled negatives."""
  rng = np.random.default_rng(1)
  b, k, e = 6, 4, 5
  config = clcrec.CLCRecConfig(lr_lambda=0.3, reg_weight=0.2, temperature=0.7)
  z_p = rng.normal(size=(b, e)).astype(np.float32)
  z_t = rng.normal(size=(b, 1 + k, e)).astype(np.float32)
  f_t = rng.normal(size=(b, 1 + k, e)).astype(np.float32)
  replace = rng.random((b, 1 + k)) < 0.5
  loss, parts = clcrec.clcrec_objective(z_p, z_t, f_t, replace, config)

  def nce(scores):  # -log exp(s_0 / t) / sum_j exp(s_j / t), averaged over rows
    scores = scores / 0.7
    return np.mean(np.log(np.exp(scores).sum(1)) - scores[:, 0])

  x = np.where(replace[..., None], f_t, z_t).astype(np.float64)
  ui = nce(np.einsum('be,bke->bk', z_p, x))
  unit = lambda a: a / np.linalg.norm(a, axis=-1, keepdims=True)  # noqa: E731
  re = nce(
      np.einsum('be,bke->bk', unit(z_t[:, 0].astype(np.float64)), unit(f_t.astype(np.float64)))
  )
  reg = 0.5 * (np.mean(np.sum(z_p**2, -1)) + np.mean(np.sum(z_t**2, -1)))
  np.testing.assert_allclose(float(parts['ui']), ui, rtol=1e-5)
  np.testing.assert_allclose(float(parts['re']), re, rtol=1e-5)
  np.testing.assert_allclose(float(loss), 0.3 * re + 0.7 * ui + 0.2 * reg, rtol=1e-5)


def test_clcrec_negatives_exclude_the_playlists_tracks():
  rng = np.random.default_rng(0)
  pairs = np.stack([np.repeat(np.arange(5), 12), rng.integers(0, 15, 60)], 1)
  observed = np.unique(pairs[:, 0] * 15 + pairs[:, 1])
  negatives = clcrec.sample_outside(rng, pairs[:, 0], 15, observed, 8)
  members = {p: set(pairs[pairs[:, 0] == p, 1]) for p in range(5)}
  for p, row in zip(pairs[:, 0], negatives):
    assert not set(row.tolist()) & members[p]
