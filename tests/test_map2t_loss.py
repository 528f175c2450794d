"""map2t_loss against an independent NumPy float64 implementation of the issue's formula.

Each term alone (the other weights zero) and all together; value and gradient (central finite
differences of the NumPy reference, float64); masked items; finite gradients with masked items.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from larp_jax.losses import retrieval

B, N, D = 5, 9, 4
TAU, PRIOR_T = 0.3, 2.0


def numpy_loss(user, items, positives, popularity, mask, ls, kl, ent, tau=TAU, prior_t=PRIOR_T):
  """The formula, written directly over the valid items (float64)."""
  valid = np.flatnonzero(mask)
  v = items[valid]
  cos = (user / np.linalg.norm(user, axis=1, keepdims=True)) @ (
      v / np.linalg.norm(v, axis=1, keepdims=True)
  ).T
  s = cos / tau
  s = s - s.max(1, keepdims=True)
  log_p = s - np.log(np.exp(s).sum(1, keepdims=True))
  p = np.exp(log_p)
  pos_local = np.searchsorted(valid, positives)
  l_ret = -np.mean(log_p[np.arange(len(user)), pos_local])
  l_smooth = -np.mean(log_p.mean(1))
  w = popularity[valid] ** (1.0 / prior_t)
  q = w / w.sum()
  qlogq = np.where(q > 0, q * np.log(np.where(q > 0, q, 1.0)), 0.0)
  l_pop = np.mean(np.sum(qlogq[None] - q[None] * log_p, 1))
  l_div = np.mean(np.sum(p * log_p, 1))
  total = l_ret + ls * l_smooth + kl * l_pop + ent * l_div
  return total, {"retrieval": l_ret, "smooth": l_smooth, "pop_kl": l_pop, "diversity": l_div}


def _inputs(seed, masked):
  rng = np.random.default_rng(seed)
  user = rng.normal(size=(B, D))
  items = rng.normal(size=(N, D))
  mask = np.ones(N, bool)
  if masked:
    mask[[2, 5, 8]] = False
  popularity = rng.integers(0, 20, N).astype(np.float64)
  popularity[np.flatnonzero(mask)[0]] = 0.0  # a valid item with zero popularity: 0 log 0 = 0
  positives = rng.choice(np.flatnonzero(mask), B).astype(np.int32)
  return user, items, positives, popularity, mask


WEIGHTS = {
    "retrieval": (0.0, 0.0, 0.0),
    "smooth": (0.7, 0.0, 0.0),
    "pop_kl": (0.0, 0.4, 0.0),
    "diversity": (0.0, 0.0, 0.3),
    "all": (0.7, 0.4, 0.3),
}


def _jax_loss(user, items, positives, popularity, mask, ls, kl, ent):
  return retrieval.map2t_loss(
      user,
      items,
      jnp.asarray(positives),
      popularity,
      jnp.asarray(mask),
      temperature=TAU,
      label_smoothing=ls,
      kl_weight=kl,
      prior_temperature=PRIOR_T,
      entropy_weight=ent,
  )


def _finite_difference(f, x, h=1e-6):
  grad = np.zeros_like(x)
  for idx in itertools.product(*map(range, x.shape)):
    plus, minus = x.copy(), x.copy()
    plus[idx] += h
    minus[idx] -= h
    grad[idx] = (f(plus) - f(minus)) / (2 * h)
  return grad


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("term", list(WEIGHTS))
def test_value_and_gradient_match_numpy(term, masked):
  user, items, positives, popularity, mask = _inputs(1 + masked, masked)
  ls, kl, ent = WEIGHTS[term]
  with jax.enable_x64(True):
    loss, aux = _jax_loss(user, items, positives, popularity, mask, ls, kl, ent)
    assert loss.dtype == jnp.float64
    grad_fn = jax.grad(
        lambda u, v: _jax_loss(u, v, positives, popularity, mask, ls, kl, ent)[0], (0, 1)
    )
    g_user, g_items = (np.asarray(g) for g in grad_fn(user, items))
  ref_total, ref_aux = numpy_loss(user, items, positives, popularity, mask, ls, kl, ent)
  np.testing.assert_allclose(float(loss), ref_total, rtol=1e-10, atol=1e-12)
  for name, value in ref_aux.items():
    np.testing.assert_allclose(float(aux[name]), value, rtol=1e-10, atol=1e-12)
  ref = lambda u, v: numpy_loss(u, v, positives, popularity, mask, ls, kl, ent)[0]  # noqa: E731
  np.testing.assert_allclose(g_user, _finite_difference(lambda u: ref(u, items), user), atol=1e-7)
  np.testing.assert_allclose(g_items, _finite_difference(lambda v: ref(user, v), items), atol=1e-7)
  if masked:
    assert np.all(g_items[~mask] == 0.0)  # masked rows get no gradient at all


def test_masked_items_have_zero_probability_and_finite_float32_gradients():
  user, items, positives, popularity, mask = _inputs(3, True)
  items[~mask] = 0.0  # padding rows are zeros in the job: the safe cosine keeps them finite
  args = [np.float32(user), np.float32(items), positives, np.float32(popularity), mask]
  grads = jax.grad(lambda u, v: _jax_loss(u, v, *args[2:], 0.7, 0.4, 0.3)[0], (0, 1))(*args[:2])
  assert all(np.isfinite(np.asarray(g)).all() for g in grads)
  # Padding rows changed arbitrarily do not change the loss (they have zero probability).
  moved = args[1].copy()
  moved[~mask] = 100.0
  a = _jax_loss(args[0], args[1], *args[2:], 0.7, 0.4, 0.3)[0]
  b = _jax_loss(args[0], moved, *args[2:], 0.7, 0.4, 0.3)[0]
  assert float(a) == float(b)


def test_label_smoothing_is_scaled_ordinary_smoothing():
  user, items, positives, popularity, mask = _inputs(4, True)
  lam = 0.5
  eps = lam / (1 + lam)
  with jax.enable_x64(True):
    loss, _ = _jax_loss(user, items, positives, popularity, mask, lam, 0.0, 0.0)
  ref_ret = numpy_loss(user, items, positives, popularity, mask, 0, 0, 0)[1]
  valid = np.flatnonzero(mask)
  # Ordinary label smoothing with eps over the valid items, times 1 + lam.
  _, parts = numpy_loss(user, items, positives, popularity, mask, 1.0, 0, 0)
  ordinary = (1 - eps) * ref_ret["retrieval"] + eps * parts["smooth"]
  np.testing.assert_allclose(float(loss), (1 + lam) * ordinary, rtol=1e-10)
  assert len(valid) == 6


def test_in_batch_candidates_remove_accidental_hits_and_apply_logq():
  positives = jnp.asarray([3, 1, 3, 7], jnp.int32)
  popularity = jnp.arange(10, dtype=jnp.float32) + 1
  mask = jnp.ones(10, bool)
  ids, cand_mask, local, logq = retrieval.in_batch_candidates(positives, popularity, mask)
  ids, cand_mask, local = np.asarray(ids), np.asarray(cand_mask), np.asarray(local)
  assert sorted(ids[cand_mask].tolist()) == [1, 3, 7]  # each positive once: no accidental hit
  np.testing.assert_array_equal(ids[local], np.asarray(positives))
  np.testing.assert_allclose(np.asarray(logq)[cand_mask], np.log((ids[cand_mask] + 1) / 55.0))
