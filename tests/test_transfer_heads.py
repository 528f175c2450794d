"""Transfer-task heads, listwise rankers and two towers on frozen user vectors (issue 11).

References are independent: single fits vs the group fit, scikit-learn's roc_auc_score /
accuracy_score, and NumPy brute forces written from the metric formulas.
"""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.metrics import accuracy_score, roc_auc_score

from larp_jax.evaluation import transfer_heads as th
from larp_jax.evaluation import transfer_retrieval as tr

U, I, F = 160, 60, 4


def _synthetic(seed=0, num_pairs=2400):
  """Label = [user factor f and item feature 0 agree in sign]; 'good' holds f, 'noise' does not."""
  rng = np.random.default_rng(seed)
  f = rng.normal(size=U).astype(np.float32)
  items = rng.normal(size=(I, F)).astype(np.float32)
  vectors = {
      'good': np.stack([f, rng.normal(size=U)], 1).astype(np.float32),
      'noise': rng.normal(size=(U, 5)).astype(np.float32),
      'wide': rng.normal(size=(U, 9)).astype(np.float32),
  }
  u = rng.integers(0, U, num_pairs).astype(np.int32)
  i = rng.integers(0, I, num_pairs).astype(np.int32)
  label = ((f[u] * items[i, 0]) > 0).astype(np.float32)
  return vectors, items, f, u, i, label


def _pairs(u, i, label, sl):
  return th.PairSet(u[sl], i[sl], label[sl])


KW = dict(hidden=16, steps=150, batch_size=128, seed=3)


@pytest.fixture(scope='module')
def group():
  """One group fit: 'good' (2 columns) and 'padded' (= good + 3 zero columns) are padded to 9."""
  vectors, items, _, u, i, label = _synthetic()
  vectors['padded'] = np.concatenate([vectors['good'], np.zeros((U, 3), np.float32)], 1)
  train, test = _pairs(u, i, label, slice(0, 1800)), _pairs(u, i, label, slice(1800, None))
  heads = th.fit_pair_heads(vectors, items, train, **KW)
  return vectors, items, train, test, heads, th.score_pairs(heads, vectors, items, test)


def test_group_fit_equals_single_fits_and_informative_vector_wins(group):
  vectors, items, train, test, heads, scores = group
  assert heads.losses.shape == (4, 150)
  for name in ('good', 'wide'):  # 'good' is padded from 2 to 9 columns inside the group
    alone = th.fit_pair_heads({name: vectors[name]}, items, train, **KW)
    single = th.score_pairs(alone, {name: vectors[name]}, items, test)[name]
    np.testing.assert_allclose(single, scores[name], atol=1e-5)
  metrics = th.pair_metrics(scores, test.label)
  assert metrics['good']['auc'] > 0.9
  assert metrics['good']['auc'] > metrics['noise']['auc'] + 0.2
  assert metrics['good']['accuracy'] > metrics['noise']['accuracy'] + 0.15


def test_zero_columns_change_nothing(group):
  vectors, _, _, _, heads, scores = group
  np.testing.assert_allclose(scores['padded'], scores['good'], atol=1e-5)
  m = heads.names.index('padded')
  assert not heads.user_informative[m, 2:].any() and heads.user_informative[m, :2].all()
  # The first-kernel rows of the zero and padding columns stayed exactly 0 through training.
  kernel = np.asarray(heads.params['mlp']['dense_0']['kernel'])[m]
  assert np.all(kernel[2:9] == 0.0) and np.all(kernel[:2] != 0.0) and np.all(kernel[9:] != 0.0)
  # ...and so did the matching rows of the affinity term's user projection.
  proj = np.asarray(heads.params['user_proj'])[m]
  assert np.all(proj[2:] == 0.0) and np.all(proj[:2] != 0.0)


def test_ensemble_is_the_mean_of_one_head_per_seed(group):
  vectors, items, train, test, _, _ = group
  kw = {k: v for k, v in KW.items() if k != 'seed'}
  got = th.ensemble_pair_probabilities(vectors, items, train, test, seeds=(3, 8), **kw)
  one = [
      th.score_pairs(th.fit_pair_heads(vectors, items, train, seed=s, **kw), vectors, items, test)
      for s in (3, 8)
  ]
  for name in vectors:
    np.testing.assert_allclose(got[name], (one[0][name] + one[1][name]) / 2, atol=1e-6)
    assert not np.allclose(one[0][name], one[1][name], atol=1e-3)  # the seeds give other heads
  with pytest.raises(ValueError, match='seeds is empty'):
    th.ensemble_pair_probabilities(vectors, items, train, test, seeds=(), **kw)


def test_pair_metrics_match_sklearn():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 2, 500).astype(np.float32)
  scores = np.round(np.clip(0.5 + 0.2 * (labels - 0.5) + rng.normal(0, 0.2, 500), 0, 1), 1)
  assert len(np.unique(scores)) < 20  # many ties
  got = th.pair_metrics(scores, labels)
  assert got['auc'] == pytest.approx(roc_auc_score(labels, scores), abs=1e-6)
  assert got['accuracy'] == pytest.approx(accuracy_score(labels, scores > 0.5))
  both = th.pair_metrics({'x': scores, 'y': 1 - scores}, labels)
  assert both['y']['auc'] == pytest.approx(1 - got['auc'], abs=1e-6)
  with pytest.raises(ValueError, match='both classes'):
    th.pair_metrics(scores, np.ones(500))


def test_bad_inputs_raise_clear_errors():
  vectors, items, _, u, i, label = _synthetic(num_pairs=100)
  train = _pairs(u, i, label, slice(None))
  bad = dict(vectors, noise=vectors['noise'].copy())
  bad['noise'][u[0], 1] = np.nan
  with pytest.raises(ValueError, match=r"user_vectors\['noise'\].*NaN"):
    th.fit_pair_heads(bad, items, train, steps=1)
  with pytest.raises(ValueError, match=r"user_vectors\['wide'\] has 10 rows"):
    th.fit_pair_heads(dict(vectors, wide=vectors['wide'][:10]), items, train, steps=1)
  with pytest.raises(ValueError, match='train is empty'):
    th.fit_pair_heads(vectors, items, th.PairSet(u[:0], i[:0], label[:0]), steps=1)
  with pytest.raises(ValueError, match=r'train.item must lie'):
    th.fit_pair_heads(vectors, items, th.PairSet(u, i + I, label), steps=1)


def test_scoring_checks_models_against_heads(group):
  vectors, items, _, test, heads, _ = group
  with pytest.raises(ValueError, match=r"user_vectors\['good'\] has width 5"):
    th.score_pairs(heads, dict(vectors, good=vectors['noise']), items, test)
  with pytest.raises(ValueError, match='models'):
    th.score_pairs(heads, {'good': vectors['good']}, items, test)


def _ndcg_numpy(scores, labels, mask, k):
  """NDCG@k from the formula: binary gains, 1/log2(r+1) discounts, IDCG over min(k, |R|) ones."""
  values = []
  for s, y, m in zip(scores, labels, mask):
    if not (y[m] > 0).any():
      continue
    order = np.argsort(-s[m], kind='stable')
    rel = (y[m][order] > 0).astype(float)
    disc = 1 / np.log2(np.arange(2, rel.size + 2))
    ideal = disc[: min(k, int(rel.sum()))].sum()
    values.append((rel[:k] * disc[:k]).sum() / ideal)
  return float(np.mean(values))


def _mrr_numpy(scores, labels, mask):
  values = []
  for s, y, m in zip(scores, labels, mask):
    if not (y[m] > 0).any():
      continue
    rel = y[m][np.argsort(-s[m], kind='stable')] > 0
    values.append(1.0 / (np.argmax(rel) + 1))
  return float(np.mean(values))


def test_listwise_rankers_learn_and_rax_metrics_match_formula():
  rng = np.random.default_rng(0)
  vectors, items, f, _, _, _ = _synthetic()
  num_lists, c = 240, 12
  user = rng.integers(0, U, num_lists).astype(np.int32)
  cand = np.stack([rng.choice(I, c, replace=False) for _ in range(num_lists)]).astype(np.int32)
  affinity = f[user][:, None] * items[cand, 0]
  labels = (affinity >= np.sort(affinity, 1)[:, -3:-2]).astype(np.float32)  # top 3 relevant
  mask = np.ones((num_lists, c), bool)
  mask[::3, -4:] = False  # ragged lists
  cand[::3, -4:] = -1  # padded ids are ignored
  lists = th.ListSet(user, cand, labels, mask)
  train, test = th.ListSet(*(a[:180] for a in lists)), th.ListSet(*(a[180:] for a in lists))
  rankers = th.fit_listwise_rankers(
      {'good': vectors['good'], 'noise': vectors['noise']}, items, train, hidden=16, steps=150,
      batch_size=32,
  )  # fmt: skip
  scores = th.score_lists(
      rankers, {'good': vectors['good'], 'noise': vectors['noise']}, items, test
  )
  assert np.isneginf(scores['good'][~test.mask]).all()
  got = th.list_metrics(scores, test.labels, test.mask, ks=(5, 10))
  random = rng.normal(size=test.mask.shape)
  rand = th.list_metrics(random, test.labels, test.mask, ks=(5, 10))
  assert got['good']['ndcg@5'] > rand['ndcg@5'] + 0.2
  assert got['good']['ndcg@5'] > got['noise']['ndcg@5'] + 0.1
  for s, m in ((scores['good'], got['good']), (random, rand)):
    for k in (5, 10):
      assert m[f'ndcg@{k}'] == pytest.approx(_ndcg_numpy(s, test.labels, test.mask, k), abs=1e-5)
    assert m['mrr'] == pytest.approx(_mrr_numpy(s, test.labels, test.mask), abs=1e-5)
  assert rankers.losses[0, -20:].mean() < rankers.losses[0, :20].mean()


def _recall_numpy(user_emb, item_emb, relevant, exclude, k):
  values = []
  for q, r in enumerate(relevant):
    s = user_emb[q] @ item_emb.T
    s[exclude[q]] = -np.inf
    r = np.setdiff1d(r, exclude[q])
    if r.size:
      values.append(np.isin(np.argsort(-s)[:k], r).sum() / r.size)
  return float(np.mean(values)), len(relevant) - len(values)


def test_two_towers_train_and_recall_matches_brute_force():
  rng = np.random.default_rng(0)
  vectors, items, f, _, _, _ = _synthetic()
  # Positives: each user's 4 items with the highest f * item[:, 0] (plus noise).
  aff = f[:, None] * items[None, :, 0] + 0.3 * rng.normal(size=(U, I))
  top = np.argsort(-aff, 1)[:, :4]
  users = np.repeat(np.arange(U), 2).astype(np.int32)
  train = th.PairSet(users, top[:, :2].reshape(-1).astype(np.int32), None)
  vecs = {'good': vectors['good'], 'noise': vectors['noise']}
  for mode in ('full', 'in_batch'):
    towers = tr.fit_two_towers(
        vecs, items, train, embed_dim=8, hidden=16, steps=120, batch_size=64, softmax=mode
    )
    assert (towers.losses[:, -20:].mean(1) < 0.9 * towers.losses[:, :20].mean(1)).all(), mode
  queries = np.arange(0, U, 2)
  relevant = [top[q, 2:] for q in queries]
  relevant[0] = top[0, :2]  # fully excluded below -> skipped
  exclude = [top[q, :2] for q in queries]
  got = tr.retrieval_recall(towers, vecs, items, queries, relevant, ks=(5, 10), exclude=exclude)
  user_emb, item_emb = tr.tower_embeddings(towers, vecs, items, queries)
  for name in vecs:
    for k in (5, 10):
      want, skipped = _recall_numpy(user_emb[name], item_emb[name], relevant, exclude, k)
      assert got[name][f'recall@{k}'] == pytest.approx(want, abs=1e-9)
      assert got[name]['skipped'] == skipped == 1
  assert got['good']['recall@10'] > got['noise']['recall@10']
  as_csr = lambda rows: sp.csr_matrix(
      (np.ones(sum(map(len, rows))), np.concatenate(rows), np.cumsum([0] + list(map(len, rows)))),
      shape=(len(rows), I),
  )
  csr = tr.recall_from_embeddings(
      user_emb['good'], item_emb['good'], as_csr(relevant), ks=(5, 10), exclude=as_csr(exclude)
  )
  assert csr == got['good']
  with pytest.raises(ValueError, match='ks'):
    tr.retrieval_recall(towers, vecs, items, queries, relevant, ks=(I,), exclude=exclude)


def test_in_batch_loss_masks_repeated_items():
  """The in-batch softmax equals a NumPy cross-entropy in which copies of the row's positive item
  (other columns with the same item id) are removed from that row's negatives."""
  vectors, items, _, _, _, _ = _synthetic()
  vecs = {'good': vectors['good']}
  train = th.PairSet(np.arange(U, dtype=np.int32), np.arange(U, dtype=np.int32) % I, None)
  # hidden=8: some items' towers output exactly 0 at init -- the normalisation must keep gradients
  # finite there (a NaN would fail the fit).
  towers = tr.fit_two_towers(vecs, items, train, embed_dim=4, hidden=8, steps=5, batch_size=8)
  users = np.array([0, 1, 2, 3, 4, 5], np.int32)
  item_ids = np.array([7, 7, 3, 9, 3, 7], np.int32)  # repeated items 7 and 3
  user_emb, item_emb = tr.tower_embeddings(towers, vecs, items, users)
  logits = user_emb['good'] @ item_emb['good'][item_ids].T / towers.temperature
  want = []
  for r in range(len(users)):
    keep = (item_ids != item_ids[r]) | (np.arange(len(users)) == r)
    row = logits[r][keep].astype(np.float64)
    want.append(np.log(np.exp(row - row.max()).sum()) + row.max() - logits[r, r])
  z, items_std, rows = th.model_inputs(towers, vecs, items, users)
  shared = dict(
      items=items_std, user=np.searchsorted(rows, users), item=item_ids,
      temperature=np.float32(towers.temperature), normalize=np.bool_(True),
  )  # fmt: skip
  params = {
      k: {n: {p: v[0] for p, v in d.items()} for n, d in t.items()}
      for k, t in towers.params.items()
  }
  loss = tr._in_batch_loss  # pylint: disable=protected-access
  got = loss(params, z[0], shared, np.arange(len(users)))
  assert float(got) == pytest.approx(np.mean(want), rel=1e-5)
