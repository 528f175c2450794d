"""LARP contrastive losses, queues, lookup tables, EMA and the TPC fusion layer vs NumPy references.

Each loss is compared with a loop-based NumPy transcription of its equation in the LARP paper
(App. A) or of the official PyTorch code path it can switch to. Tolerance: 1e-5 relative / 1e-6
absolute (float32 vs float64 references).
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from larp_jax.losses import infonce
from larp_jax.losses import larp as larp_losses
from larp_jax.models import larp_fusion
from larp_jax.training import memory

RTOL, ATOL = 1e-5, 1e-6


def _unit(rng, *shape):
  x = rng.normal(size=shape)
  return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _log_softmax(x):
  x = np.asarray(x, np.float64)
  m = x.max(-1, keepdims=True)
  return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def _softmax(x):
  return np.exp(_log_softmax(x))


def _ce(logits_row, target_row):
  return -float(np.sum(np.asarray(target_row, np.float64) * _log_softmax(logits_row)))


# --------------------------------------------------------------------------------------------------
# Core InfoNCE.
# --------------------------------------------------------------------------------------------------


def test_multi_positive_contrastive_matches_numpy_with_queue_and_distillation():
  rng = np.random.default_rng(0)
  b, q, d, temp, alpha = 6, 9, 8, 0.07, 0.3
  query, keys, queue = _unit(rng, b, d), _unit(rng, b, d), _unit(rng, q, d)
  positives = rng.random((b, b + q)) < 0.25
  positives[:, :b] |= np.eye(b, dtype=bool)
  positives[2] = False  # a row without positives: excluded
  soft = _softmax(rng.normal(size=(b, b + q)))

  loss, aux = infonce.multi_positive_contrastive(query, keys, queue, positives, temp, soft, alpha)

  all_keys = np.concatenate([keys, queue]).astype(np.float64)
  rows = []
  for i in range(b):
    if not positives[i].any():
      continue
    logits = query[i].astype(np.float64) @ all_keys.T / temp
    hard = positives[i] / positives[i].sum()
    rows.append(_ce(logits, (1 - alpha) * hard + alpha * soft[i]))
  np.testing.assert_allclose(float(loss), np.mean(rows), rtol=RTOL, atol=ATOL)
  assert not bool(aux['row_valid'][2]) and float(aux['per_row_loss'][2]) == 0.0
  chex.assert_shape(aux['logits'], (b, b + q))
  assert aux['logits'].dtype == jnp.float32

  # Official TPC quirk: rows without positives count in the denominator.
  loss_all, _ = infonce.multi_positive_contrastive(
      query, keys, queue, positives, temp, soft, alpha, mean_over_all_rows=True
  )
  np.testing.assert_allclose(float(loss_all), np.sum(rows) / b, rtol=RTOL, atol=ATOL)
  # row_mask drops rows.
  mask = np.ones(b, bool)
  mask[0] = False
  loss_masked, _ = infonce.multi_positive_contrastive(
      query, keys, queue, positives, temp, soft, alpha, row_mask=mask
  )
  np.testing.assert_allclose(float(loss_masked), np.mean(rows[1:]), rtol=RTOL, atol=ATOL)


def test_multi_positive_contrastive_float_weights_and_bad_shapes():
  rng = np.random.default_rng(1)
  query, keys = _unit(rng, 3, 4), _unit(rng, 3, 4)
  weights = np.array([[2.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.5, 0.5, 1.0]], np.float32)
  loss, _ = infonce.multi_positive_contrastive(query, keys, None, weights, 0.5)
  ref = np.mean([_ce(query[i] @ keys.T / 0.5, weights[i] / weights[i].sum()) for i in range(3)])
  np.testing.assert_allclose(float(loss), ref, rtol=RTOL, atol=ATOL)
  with pytest.raises(ValueError, match='positives'):
    infonce.multi_positive_contrastive(query, keys, None, weights[:, :2], 0.5)
  with pytest.raises(ValueError, match='query'):
    infonce.multi_positive_contrastive(query, keys[:, :3], None, weights, 0.5)


def test_shared_group_positives_matches_set_intersection():
  rng = np.random.default_rng(2)
  qg = rng.integers(-1, 6, size=(7, 3))
  kg = rng.integers(-1, 6, size=(11, 2))
  out = np.asarray(infonce.shared_group_positives(qg, kg))
  for i in range(7):
    for j in range(11):
      shared = (set(qg[i]) - {-1}) & (set(kg[j]) - {-1})
      assert out[i, j] == bool(shared)
  with pytest.raises(ValueError, match='query_groups'):
    infonce.shared_group_positives(qg.astype(np.float32), kg)


# --------------------------------------------------------------------------------------------------
# WTC (Eq. 1-3).
# --------------------------------------------------------------------------------------------------


def _wtc_reference(a, t, a_m, t_m, qa, qt, temp, alpha=0.0, ids=None, qids=None):
  """Eq. 2-3 (+ BLIP distillation / idx targets), one row at a time."""
  b = a.shape[0]
  keys_t = np.concatenate([t_m, qt]).astype(np.float64)
  keys_a = np.concatenate([a_m, qa]).astype(np.float64)
  if ids is None:
    hard = np.zeros((b, b + qa.shape[0]))
    hard[np.arange(b), np.arange(b)] = 1.0
  else:
    all_ids = np.concatenate([ids, qids])
    hard = ((ids[:, None] == all_ids[None, :]) & (all_ids[None, :] >= 0)).astype(np.float64)
    hard[np.arange(b), np.arange(b)] = 1.0
  a2t, t2a = [], []
  for i in range(b):
    tgt = hard[i] / hard[i].sum()
    soft_a = _softmax(a_m[i] @ keys_t.T / temp)
    soft_t = _softmax(t_m[i] @ keys_a.T / temp)
    a2t.append(_ce(a[i] @ keys_t.T / temp, (1 - alpha) * tgt + alpha * soft_a))
    t2a.append(_ce(t[i] @ keys_a.T / temp, (1 - alpha) * tgt + alpha * soft_t))
  return 0.5 * (np.mean(a2t) + np.mean(t2a))


@pytest.mark.parametrize('alpha', [0.0, 0.4])
def test_wtc_matches_equations_1_to_3(alpha):
  rng = np.random.default_rng(3)
  b, q, d, temp = 5, 12, 16, 0.07
  a, t, a_m, t_m = (_unit(rng, b, d) for _ in range(4))
  qa, qt = _unit(rng, q, d), _unit(rng, q, d)
  loss, aux = larp_losses.wtc_loss(a, t, a_m, t_m, qa, qt, temp, alpha=alpha)
  ref = _wtc_reference(a, t, a_m, t_m, qa, qt, temp, alpha)
  np.testing.assert_allclose(float(loss), ref, rtol=RTOL, atol=ATOL)
  assert set(aux) >= {'loss_a2t', 'loss_t2a', 'logits_a2t', 'logits_t2a'}


def test_wtc_id_queue_makes_same_track_entries_positive():
  rng = np.random.default_rng(4)
  b, q, d, temp = 4, 6, 8, 0.1
  a, t, a_m, t_m = (_unit(rng, b, d) for _ in range(4))
  qa, qt = _unit(rng, q, d), _unit(rng, q, d)
  ids = np.array([10, 11, 10, 12], np.int32)  # a repeated track in the batch
  qids = np.array([-1, 11, 3, 12, 12, -1], np.int32)  # queued copies of tracks 11 and 12
  loss, aux = larp_losses.wtc_loss(a, t, a_m, t_m, qa, qt, temp, ids=ids, queue_ids=qids, alpha=0.2)
  ref = _wtc_reference(a, t, a_m, t_m, qa, qt, temp, 0.2, ids, qids)
  np.testing.assert_allclose(float(loss), ref, rtol=RTOL, atol=ATOL)
  targets = np.asarray(aux['targets_a2t'])
  assert targets[3, b + 3] > 0 and targets[3, b + 4] > 0 and targets[0, 2] > 0
  # Without ids the same inputs give the identity-only (paper/official) loss, which differs.
  loss_identity, _ = larp_losses.wtc_loss(a, t, a_m, t_m, qa, qt, temp, alpha=0.2)
  assert abs(float(loss_identity) - float(loss)) > 1e-3


def test_wtc_jits_with_traced_temperature_and_alpha_and_has_finite_grads():
  rng = np.random.default_rng(5)
  a, t, a_m, t_m = (_unit(rng, 4, 8) for _ in range(4))
  qa, qt = _unit(rng, 8, 8), _unit(rng, 8, 8)

  def f(a, t, temp, alpha):
    return larp_losses.wtc_loss(a, t, a_m, t_m, qa, qt, temp, alpha=alpha)[0]

  grads = jax.jit(jax.grad(f, argnums=(0, 1, 2)))(a, t, jnp.float32(0.07), jnp.float32(0.4))
  for g in grads:
    assert np.all(np.isfinite(np.asarray(g)))
  np.testing.assert_allclose(
      float(jax.jit(f)(a, t, 0.07, 0.4)),
      _wtc_reference(a, t, a_m, t_m, qa, qt, 0.07, 0.4),
      rtol=RTOL,
      atol=ATOL,
  )
  with pytest.raises(ValueError, match='queue'):
    larp_losses.wtc_loss(a, t, a_m, t_m, qa, None, 0.07)
  with pytest.raises(ValueError, match='momentum distillation'):
    larp_losses.wtc_loss(a, t, None, None, qa, qt, 0.07, alpha=0.4)


# --------------------------------------------------------------------------------------------------
# TTC (Eq. 16-19).
# --------------------------------------------------------------------------------------------------


def _ttc_setup(seed, n=4, q=7, d=16, num_tracks=30, num_playlists=6):
  rng = np.random.default_rng(seed)
  incidence = rng.random((num_tracks, num_playlists)) < 0.25  # R^T: track x playlist
  incidence[np.arange(num_tracks), rng.integers(0, num_playlists, num_tracks)] = True
  o_graph = (incidence.astype(int) @ incidence.T.astype(int)) > 0  # O (includes the diagonal)
  batch_tracks = rng.choice(num_tracks, size=2 * n, replace=False)
  queue_tracks = rng.integers(0, num_tracks, size=q)
  width = incidence.sum(1).max()

  def groups_of(tracks):
    g = -np.ones((len(tracks), width), np.int32)
    for r, s in enumerate(tracks):
      ids = np.nonzero(incidence[s])[0]
      g[r, : len(ids)] = ids
    return g

  feats = {k: _unit(rng, 2 * n, d) for k in ('a', 't', 'a_m', 't_m')}
  feats['qa'], feats['qt'] = _unit(rng, q, d), _unit(rng, q, d)
  partner = np.concatenate([np.arange(n, 2 * n), np.arange(n)]).astype(np.int32)
  return dict(
      feats=feats,
      o=o_graph,
      batch=batch_tracks,
      queue=queue_tracks,
      n=n,
      groups=groups_of(batch_tracks),
      queue_groups=groups_of(queue_tracks),
      partner=partner,
  )


def _ttc_reference(s, temp):
  """Eq. 16-19 literally: loop over the sampled pairs (i = A_k, j = B_k)."""
  f, o, n = s['feats'], s['o'], s['n']
  tracks = s['batch']
  keys_t = np.concatenate([f['t_m'], f['qt']]).astype(np.float64)
  keys_a = np.concatenate([f['a_m'], f['qa']]).astype(np.float64)
  key_tracks = np.concatenate([tracks, s['queue']])

  def y(row_track, pair_col):  # Eq. 19: O row of the query's track, plus the sampled pair
    target = o[row_track, key_tracks].astype(np.float64)
    target[pair_col] = 1.0
    return target / target.sum()

  losses = []
  for k in range(n):
    i, j = k, n + k  # batch rows of s_i and s_j
    si, sj = tracks[i], tracks[j]
    ce_a2t_ij = _ce(f['a'][i] @ keys_t.T / temp, y(si, j))  # a_i -> t_j
    ce_t2a_ji = _ce(f['t'][j] @ keys_a.T / temp, y(sj, i))  # t_j -> a_i
    ce_t2a_ij = _ce(f['t'][i] @ keys_a.T / temp, y(si, j))  # t_i -> a_j
    ce_a2t_ji = _ce(f['a'][j] @ keys_t.T / temp, y(sj, i))  # a_j -> t_i
    contrast_a_t = 0.5 * (ce_a2t_ij + ce_t2a_ji)
    contrast_t_a = 0.5 * (ce_t2a_ij + ce_a2t_ji)
    losses.append(0.5 * (contrast_a_t + contrast_t_a))
  return np.mean(losses)


def test_ttc_matches_equations_16_to_19_with_cooccurrence_queue_positives():
  s = _ttc_setup(6)
  f = s['feats']
  loss, aux = larp_losses.ttc_loss(
      f['a'],
      f['t'],
      f['a_m'],
      f['t_m'],
      f['qa'],
      f['qt'],
      0.07,
      partner=s['partner'],
      groups=s['groups'],
      queue_groups=s['queue_groups'],
  )
  np.testing.assert_allclose(float(loss), _ttc_reference(s, 0.07), rtol=RTOL, atol=ATOL)
  # Some queue entry must actually be a positive for this check to mean anything.
  assert np.asarray(aux['targets_a2t'])[:, 2 * s['n'] :].sum() > 0


def _official_cross_reference(f, partner, temp, alpha):
  """Official LARP forward on the cross batch: audio_cross = audio, text_cross = text[partner],
  diagonal targets (+ alpha * momentum softmax), queue appended, (i2t + t2i) / 2."""
  a, a_m = f['a'].astype(np.float64), f['a_m'].astype(np.float64)
  t, t_m = f['t'][partner].astype(np.float64), f['t_m'][partner].astype(np.float64)
  t_all = np.concatenate([t_m, f['qt']])
  a_all = np.concatenate([a_m, f['qa']])
  b = a.shape[0]
  hard = np.zeros((b, t_all.shape[0]))
  hard[np.arange(b), np.arange(b)] = 1
  tgt_i2t = alpha * _softmax(a_m @ t_all.T / temp) + (1 - alpha) * hard
  tgt_t2i = alpha * _softmax(t_m @ a_all.T / temp) + (1 - alpha) * hard
  i2t = -np.sum(_log_softmax(a @ t_all.T / temp) * tgt_i2t, 1).mean()
  t2i = -np.sum(_log_softmax(t @ a_all.T / temp) * tgt_t2i, 1).mean()
  return (i2t + t2i) / 2


def test_ttc_pair_mode_matches_official_cross_batch_with_distillation():
  s = _ttc_setup(7)
  f = s['feats']
  loss, _ = larp_losses.ttc_loss(
      f['a'],
      f['t'],
      f['a_m'],
      f['t_m'],
      f['qa'],
      f['qt'],
      0.07,
      partner=s['partner'],
      positives='pair',
      alpha=0.4,
  )
  ref = _official_cross_reference(f, s['partner'], 0.07, 0.4)
  np.testing.assert_allclose(float(loss), ref, rtol=RTOL, atol=ATOL)
  with pytest.raises(ValueError, match='groups'):
    larp_losses.ttc_loss(
        f['a'], f['t'], f['a_m'], f['t_m'], f['qa'], f['qt'], 0.07, partner=s['partner']
    )
  with pytest.raises(ValueError, match='positives'):
    larp_losses.ttc_loss(
        f['a'],
        f['t'],
        f['a_m'],
        f['t_m'],
        f['qa'],
        f['qt'],
        0.07,
        partner=s['partner'],
        positives='identity',
    )


# --------------------------------------------------------------------------------------------------
# TPC (Eq. 20-25).
# --------------------------------------------------------------------------------------------------


def test_tpc_matches_equations_20_to_25_with_incidence_and_queue():
  rng = np.random.default_rng(8)
  b, p, q, d, temp = 6, 6, 5, 16, 0.07
  num_playlists = 9
  incidence = (
      rng.random((b + q, num_playlists)) < 0.3
  )  # track x playlist (batch tracks, then queue)
  playlist_ids = rng.choice(num_playlists, size=p, replace=False)
  parent = np.arange(b, dtype=np.int32)  # track i sampled with batch playlist i
  incidence[np.arange(b), playlist_ids[parent]] = True

  def groups_of(rows):
    g = -np.ones((len(rows), num_playlists), np.int32)
    for r, row in enumerate(rows):
      ids = np.nonzero(row)[0]
      g[r, : len(ids)] = ids
    return g

  ta, tt = _unit(rng, b, d), _unit(rng, b, d)
  pa, pt = rng.normal(size=(p, d)).astype(np.float32), rng.normal(size=(p, d)).astype(np.float32)
  qa, qt = _unit(rng, q, d), _unit(rng, q, d)
  loss, aux = larp_losses.tpc_loss(
      ta,
      tt,
      pa,
      pt,
      temp,
      parent=parent,
      track_groups=groups_of(incidence[:b]),
      playlist_ids=playlist_ids,
      queue_audio=qa,
      queue_text=qt,
      queue_groups=groups_of(incidence[b:]),
  )

  r = incidence[:, playlist_ids].astype(np.float64)  # [b+q, p]: R^T restricted to the batch
  pa_n = pa / np.linalg.norm(pa, axis=1, keepdims=True)  # sim() is a cosine
  pt_n = pt / np.linalg.norm(pt, axis=1, keepdims=True)
  keys_t = np.concatenate([tt, qt]).astype(np.float64)
  keys_a = np.concatenate([ta, qa]).astype(np.float64)

  def direction(queries, keys, targets):
    rows = [
        _ce(queries[i] @ keys.T / temp, targets[i] / targets[i].sum())
        for i in range(len(queries))
        if targets[i].sum() > 0
    ]
    return np.mean(rows)

  ce_ki_a2t = direction(pa_n, keys_t, r.T)  # a_p -> t_s (Eq. 22, first line)
  ce_ik_t2a = direction(tt, pa_n, r[:b])  # t_s -> a_p
  ce_ki_t2a = direction(pt_n, keys_a, r.T)  # t_p -> a_s
  ce_ik_a2t = direction(ta, pt_n, r[:b])  # a_s -> t_p
  ref = 0.5 * (0.5 * (ce_ki_a2t + ce_ik_t2a) + 0.5 * (ce_ki_t2a + ce_ik_a2t))
  np.testing.assert_allclose(float(loss), ref, rtol=RTOL, atol=ATOL)
  assert r[b:].sum() > 0  # the queue really holds positives


def test_tpc_official_switches_match_official_code():
  rng = np.random.default_rng(9)
  n, d, temp = 4, 8, 0.07
  audio_cross, text_cross = _unit(rng, 2 * n, d), _unit(rng, 2 * n, d)
  audio_p, text_p = rng.normal(size=(n, d)).astype(np.float32), rng.normal(size=(n, d)).astype(
      np.float32
  )
  parent = np.concatenate([np.arange(n), -np.ones(n)]).astype(np.int32)
  loss, _ = larp_losses.tpc_loss(
      audio_cross,
      text_cross,
      audio_p,
      text_p,
      temp,
      parent=parent,
      positives='pair',
      directions='track_to_playlist',
      normalize_playlists=False,
      mean_over_all_rows=True,
  )
  targets = np.zeros((2 * n, n))
  targets[np.arange(n), np.arange(n)] = 1  # fill_diagonal_ on [2n, n]
  loss_a = -np.sum(_log_softmax(audio_cross @ text_p.T / temp) * targets, 1).mean()
  loss_t = -np.sum(_log_softmax(text_cross @ audio_p.T / temp) * targets, 1).mean()
  np.testing.assert_allclose(float(loss), (loss_a + loss_t) / 2, rtol=RTOL, atol=ATOL)


def test_stage_loss_combines_terms_per_equations_7_to_9():
  losses = {'wtc': 1.0, 'ttc': 2.0, 'tpc': 4.0}
  assert float(larp_losses.stage_loss(1, losses)[0]) == 1.0
  assert float(larp_losses.stage_loss(2, losses)[0]) == 3.0
  total, metrics = larp_losses.stage_loss(3, losses)
  assert float(total) == 7.0 and float(metrics['loss/tpc']) == 4.0
  np.testing.assert_allclose(float(larp_losses.stage_loss(3, losses, reduction='mean')[0]), 7.0 / 3)
  np.testing.assert_allclose(float(larp_losses.stage_loss(2, losses, weights={'ttc': 0.5})[0]), 2.0)
  with pytest.raises(ValueError, match='missing'):
    larp_losses.stage_loss(3, {'wtc': 1.0, 'ttc': 1.0})
  with pytest.raises(ValueError, match='stage'):
    larp_losses.stage_loss(4, losses)


# --------------------------------------------------------------------------------------------------
# Queues, lookup tables, EMA.
# --------------------------------------------------------------------------------------------------


def test_enqueue_wraps_around_like_a_ring_buffer_and_keeps_pytrees_aligned():
  rng = np.random.default_rng(10)
  size, batch, d = 10, 4, 3
  queues, ptr = memory.init_queues(jax.random.PRNGKey(0), size, d, group_width=2)
  np.testing.assert_allclose(np.linalg.norm(np.asarray(queues['audio']), axis=1), 1.0, rtol=1e-5)
  assert (np.asarray(queues['ids']) == -1).all()
  ref = {k: np.array(v) for k, v in queues.items()}
  ref_ptr = 0
  step = jax.jit(memory.enqueue)
  for it in range(7):
    items = {
        'audio': rng.normal(size=(batch, d)).astype(np.float32),
        'text': rng.normal(size=(batch, d)).astype(np.float32),
        'ids': np.arange(batch, dtype=np.int32) + 100 * it,
        'groups': rng.integers(0, 9, size=(batch, 2)).astype(np.int32),
    }
    queues, ptr = step(queues, ptr, items)
    for r in range(batch):  # FIFO reference, one row at a time
      for k in ref:
        ref[k][(ref_ptr + r) % size] = items[k][r]
    ref_ptr = (ref_ptr + batch) % size
    assert int(ptr) == ref_ptr
    for k in ref:
      np.testing.assert_array_equal(np.asarray(queues[k]), ref[k])
  # After 7 batches of 4 into 10 rows the pointer wrapped twice: 28 % 10.
  assert int(ptr) == 8
  single, p2 = memory.enqueue(jnp.zeros((5, 2)), jnp.int32(3), jnp.ones((4, 2)))
  np.testing.assert_array_equal(np.asarray(single)[:, 0], [1, 1, 0, 1, 1])
  assert int(p2) == 2
  with pytest.raises(ValueError, match='cannot enqueue'):
    memory.enqueue(jnp.zeros((3, 2)), 0, jnp.ones((4, 2)))


def test_update_lookup_table_last_occurrence_wins_and_skips_invalid():
  table = jnp.zeros((6, 2))
  ids = jnp.array([1, 3, 1, 9, -1, 4])
  feats = jnp.arange(12, dtype=jnp.float32).reshape(6, 2)
  valid = jnp.array([True, True, True, True, True, False])
  new = np.asarray(jax.jit(memory.update_lookup_table)(table, ids, feats, valid))
  expected = np.zeros((6, 2), np.float32)
  expected[1] = [4, 5]  # rows 0 and 2 both write id 1; the later one wins
  expected[3] = [2, 3]
  np.testing.assert_array_equal(new, expected)  # 9 and -1 out of range, id 4 invalid


def test_gather_lookup_masks_and_stops_gradients():
  table = jnp.arange(12, dtype=jnp.float32).reshape(4, 3)
  ids = jnp.array([[2, 0, 77], [3, -5, 1]])
  mask = jnp.array([[True, True, False], [True, False, True]])
  out = np.asarray(memory.gather_lookup(table, ids, mask))
  np.testing.assert_array_equal(out[0, 0], [6, 7, 8])
  np.testing.assert_array_equal(out[0, 2], [0, 0, 0])
  np.testing.assert_array_equal(out[1, 1], [0, 0, 0])
  grad = jax.grad(lambda tb: jnp.sum(memory.gather_lookup(tb, ids, mask)))(table)
  assert float(jnp.abs(grad).sum()) == 0.0


def test_ema_update():
  pm = {'w': jnp.ones((2, 2)), 'b': jnp.zeros((3,), jnp.bfloat16)}
  p = {'w': jnp.full((2, 2), 3.0), 'b': jnp.ones((3,), jnp.bfloat16)}
  new = memory.ema_update(pm, p, 0.995)
  np.testing.assert_allclose(np.asarray(new['w']), 0.995 + 0.005 * 3.0, rtol=1e-6)
  assert new['b'].dtype == jnp.bfloat16


# --------------------------------------------------------------------------------------------------
# Fusion (Eq. 6, 23-24).
# --------------------------------------------------------------------------------------------------


def _fusion_reference(x, w_q, w_k, w_v):
  """Eq. 24 on the valid rows only, then the mean over rows (flax kernels are W^T)."""
  x = x.astype(np.float64)
  q, k, v = x @ w_q, x @ w_k, x @ w_v
  attn = _softmax(q @ k.T / np.sqrt(x.shape[1]))
  return (attn @ v).mean(0)


def _init_fusion(d=256, **kw):
  module = larp_fusion.FusionSelfAttention(features=d, **kw)
  variables = module.init(jax.random.PRNGKey(0), jnp.zeros((1, 3, d)), jnp.ones((1, 3), bool))
  return module, variables


def test_fusion_params_match_the_paper_layer():
  module, variables = _init_fusion()
  params = variables['params']
  assert set(params) == {'w_q', 'w_k', 'w_v'}
  for name in params:
    assert set(params[name]) == {'kernel'}  # no bias
    kernel = np.asarray(jax.tree.leaves(params[name]['kernel'])[0])
    assert kernel.shape == (256, 256)
    np.testing.assert_allclose(kernel.std(), np.sqrt(2.0 / 512), rtol=0.05)  # Xavier-normal
  assert params['w_q']['kernel'].names == ('embed', 'kv')


def test_fusion_padding_never_changes_the_playlist_vector():
  rng = np.random.default_rng(11)
  d, j_valid = 256, 6
  module, variables = _init_fusion(d)
  raw = jax.tree.map(np.asarray, jax.tree.leaves(variables['params']))  # sorted: w_k, w_q, w_v
  w_k, w_q, w_v = raw
  apply = jax.jit(module.apply)
  valid_rows = rng.normal(size=(j_valid, d)).astype(np.float32)
  ref = _fusion_reference(valid_rows, w_q, w_k, w_v)

  # Padded to 10 with garbage (including NaN/inf) in the padded slots.
  x = np.concatenate([valid_rows, rng.normal(size=(4, d)).astype(np.float32) * 100], 0)
  x[7, 0], x[8, 5] = np.nan, np.inf
  mask = np.arange(10) < j_valid
  out = np.asarray(apply(variables, x[None], mask[None]))[0]
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)

  # Other garbage in the same slots: bit-identical.
  x2 = x.copy()
  x2[j_valid:] = -3.0
  out2 = np.asarray(apply(variables, x2[None], mask[None]))[0]
  np.testing.assert_array_equal(out, out2)

  # Permuting rows (valid and padded together) and adding more padding: same vector.
  perm = rng.permutation(10)
  out3 = np.asarray(apply(variables, x[perm][None], mask[perm][None]))[0]
  np.testing.assert_allclose(out3, ref, rtol=1e-5, atol=1e-6)
  x4 = np.concatenate([x, np.full((6, d), 7.0, np.float32)], 0)
  mask4 = np.concatenate([mask, np.zeros(6, bool)])
  out4 = np.asarray(apply(variables, x4[None], mask4[None]))[0]
  np.testing.assert_allclose(out4, ref, rtol=1e-5, atol=1e-6)

  # A batch mixing several lengths, and an all-padding row -> zeros.
  xb = np.stack([x, x2, np.zeros_like(x)])
  mb = np.stack([mask, mask, np.zeros(10, bool)])
  outb = np.asarray(apply(variables, xb, mb))
  np.testing.assert_allclose(outb[0], ref, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(outb[2], np.zeros(d))


def test_fusion_official_quirk_switch_sums_padded_query_rows():
  rng = np.random.default_rng(12)
  d = 256
  module, variables = _init_fusion(d, official_padded_rows=True)
  w_k, w_q, w_v = jax.tree.map(np.asarray, jax.tree.leaves(variables['params']))
  x = rng.normal(size=(8, d)).astype(np.float32)
  mask = np.arange(8) < 5
  out = np.asarray(module.apply(variables, x[None], mask[None]))[0]
  q, k, v = x.astype(np.float64) @ w_q, x.astype(np.float64) @ w_k, x.astype(np.float64) @ w_v
  logits = np.where(mask[None, :], q @ k.T / np.sqrt(d), -1e9)
  ref = (_softmax(logits) @ v).sum(0) / mask.sum()
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
  x2 = x.copy()
  x2[6] += 1.0  # a padded slot changes -> the official output changes
  out2 = np.asarray(module.apply(variables, x2[None], mask[None]))[0]
  assert np.abs(out2 - out).max() > 1e-4


def test_masked_mean_pool():
  x = jnp.array([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
  out = larp_fusion.masked_mean_pool(x, jnp.array([[True, True, False]]))
  np.testing.assert_allclose(np.asarray(out), [[2.0, 3.0]])


def test_queue_and_lookup_table_ops_run_sharded_on_data_rows():
  """Queues / tables sharded on 'data' rows (8 fake CPU devices) give the unsharded results."""
  from jax.sharding import NamedSharding, PartitionSpec as P  # pylint: disable=g-import-not-at-top

  mesh = jax.make_mesh((8,), ('data',), axis_types=(jax.sharding.AxisType.Auto,))
  rows = NamedSharding(mesh, P('data', None))
  rng = np.random.default_rng(13)
  queue_a, queue_t = _unit(rng, 64, 16), _unit(rng, 64, 16)
  a, t, a_m, t_m = (_unit(rng, 8, 16) for _ in range(4))
  table = rng.normal(size=(40, 16)).astype(np.float32)
  ids = rng.integers(0, 40, size=8).astype(np.int32)

  def step(qa, qt, tb, ptr):
    loss, _ = larp_losses.wtc_loss(a, t, a_m, t_m, qa, qt, 0.07, alpha=0.4)
    (qa, qt), ptr = memory.enqueue((qa, qt), ptr, (a_m, t_m))
    tb = memory.update_lookup_table(tb, ids, a)
    return loss, qa, qt, tb, ptr

  expected = step(queue_a, queue_t, table, jnp.int32(60))
  sharded = jax.jit(step)(
      jax.device_put(queue_a, rows),
      jax.device_put(queue_t, rows),
      jax.device_put(table, rows),
      jnp.int32(60),
  )
  for e, s in zip(expected, sharded):
    np.testing.assert_allclose(np.asarray(s), np.asarray(e), rtol=1e-6, atol=1e-6)
