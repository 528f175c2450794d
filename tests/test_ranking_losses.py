"""Tests for larp_jax.losses.ranking (AttRank, BCE, RMSE, decoder losses)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from larp_jax.losses import ranking


def test_attrank_hand_computed_example():
  logits = np.array([[1.0, 2.0, 0.5], [0.3, -1.0, 5.0], [0.2, 0.1, 0.0]], np.float32)
  labels = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, 1.0], [0.0, 0.0, 0.0]], np.float32)
  mask = np.array(
      [
          [1, 1, 1],
          [1, 1, 0],  # item 2 is padding: its label 1 and logit 5 must not count
          [1, 1, 1],
      ],
      bool,
  )
  # List 0: weights exp(1), 0, exp(2) -> 1/(1+e) = 0.2689414, 0, e/(1+e) = 0.7310586;
  #   logsumexp(1, 2, 0.5) = 2.4643688; loss = 0.2689414*(2.4643688-1)
  #   + 0.7310586*(2.4643688-0.5) = 1.8298981.
  # List 1: only item 1 is a valid positive (weight 1); logsumexp(0.3, -1) = 0.5410085;
  #   loss = 0.5410085 + 1 = 1.5410085.
  # List 2: no positive -> 0. Mean over the 3 lists: 1.1236355.
  loss = ranking.attrank_loss(logits, labels, mask)
  chex.assert_shape(loss, ())
  chex.assert_type(loss, jnp.float32)
  np.testing.assert_allclose(loss, 1.1236355, rtol=1e-6)
  np.testing.assert_allclose(
      ranking.attrank_loss(logits[:1], labels[:1], mask[:1]), 1.8298981, rtol=1e-6
  )
  np.testing.assert_allclose(
      ranking.attrank_loss(logits[1:2], labels[1:2], mask[1:2]), 1.5410085, rtol=1e-6
  )
  np.testing.assert_allclose(
      ranking.attrank_weights(labels, mask),
      [[0.2689414, 0.0, 0.7310586], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]],
      atol=1e-6,
  )


def _numpy_attrank(logits, labels, mask):
  losses = []
  for s, y, m in zip(logits.astype(np.float64), labels, mask):
    w = np.where(m & (y > 0), np.exp(y), 0.0)
    if w.sum() == 0:
      losses.append(0.0)
      continue
    w = w / w.sum()
    lse = np.log(np.exp(s[m] - s[m].max()).sum()) + s[m].max()
    losses.append(-(w[m] * (s[m] - lse)).sum())
  return np.mean(losses)


def test_attrank_masking_matches_numpy_and_padding_is_ignored():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(6, 9)).astype(np.float32)
  labels = rng.integers(0, 3, size=(6, 9)).astype(np.float32)
  mask = rng.random((6, 9)) < 0.7
  mask[0] = False  # an all-padding list counts as 0
  loss = ranking.attrank_loss(logits, labels, mask)
  np.testing.assert_allclose(loss, _numpy_attrank(logits, labels, mask), rtol=1e-5)
  # Changing padded logits/labels changes nothing; gradients there are 0 and finite.
  perturbed = np.where(mask, logits, 100.0).astype(np.float32)
  relabeled = np.where(mask, labels, 5.0).astype(np.float32)
  np.testing.assert_allclose(ranking.attrank_loss(perturbed, relabeled, mask), loss, rtol=1e-6)
  grads = jax.grad(ranking.attrank_loss)(logits, labels, mask)
  assert np.isfinite(grads).all()
  assert (np.asarray(grads)[~mask] == 0).all()


def test_bce_and_rmse_match_numpy():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(4, 7)).astype(np.float32) * 3
  labels = (rng.random((4, 7)) < 0.5).astype(np.float32)
  mask = rng.random((4, 7)) < 0.6
  p = 1 / (1 + np.exp(-logits.astype(np.float64)))
  bce = -(labels * np.log(p) + (1 - labels) * np.log(1 - p))
  np.testing.assert_allclose(ranking.bce_loss(logits, labels, mask), bce[mask].mean(), rtol=1e-5)
  predictions = rng.random((4, 7)).astype(np.float32)
  rmse = np.sqrt(((predictions - labels)[mask] ** 2).mean())
  np.testing.assert_allclose(ranking.rmse_loss(predictions, labels, mask), rmse, rtol=1e-5)
  # Empty masks give 0, not NaN; RMSE at a perfect fit has a finite (zero) gradient.
  empty = np.zeros_like(mask)
  assert float(ranking.bce_loss(logits, labels, empty)) == 0.0
  assert float(ranking.rmse_loss(predictions, labels, empty)) == 0.0
  grads = jax.grad(ranking.rmse_loss)(labels, labels, mask)
  assert np.isfinite(grads).all() and (np.asarray(grads) == 0).all()
  # Large logits stay finite.
  big = np.full((1, 2), 200.0, np.float32)
  assert np.isfinite(ranking.bce_loss(big, np.zeros((1, 2), np.float32), np.ones((1, 2), bool)))


def test_pointer_and_stepwise_losses():
  rng = np.random.default_rng(2)
  step_logits = rng.normal(size=(2, 3, 4)).astype(np.float32)
  targets = np.array([[2, 0, -1], [1, 3, 0]], np.int32)
  log_probs = step_logits - np.log(np.exp(step_logits).sum(-1, keepdims=True))
  expected = -np.mean(
      [
          log_probs[0, 0, 2],
          log_probs[0, 1, 0],
          log_probs[1, 0, 1],
          log_probs[1, 1, 3],
          log_probs[1, 2, 0],
      ]
  )
  np.testing.assert_allclose(
      ranking.pointer_cross_entropy(step_logits, targets), expected, rtol=1e-5
  )
  labels = np.array([[1, 0, 1, 0], [0, 1, 0, 1]], np.float32)
  mask = np.array([[1, 1, 1, 0], [1, 1, 1, 1]], bool)
  # Step lists: row 0: {0,1,2}, {0,1}, {1}; row 1: {0,1,2,3}, {0,2,3}, {0,2}.
  available = np.array(
      [[[1, 1, 1, 0], [1, 1, 0, 0], [0, 1, 0, 0]], [[1, 1, 1, 1], [1, 0, 1, 1], [1, 0, 1, 0]]], bool
  )
  expected = _numpy_attrank(
      step_logits.reshape(6, 4), np.repeat(labels, 3, axis=0), available.reshape(6, 4)
  )
  np.testing.assert_allclose(
      ranking.stepwise_attrank_loss(step_logits, targets, labels, mask), expected, rtol=1e-5
  )


def test_shape_errors():
  with pytest.raises(ValueError, match='same shape'):
    ranking.attrank_loss(np.zeros((2, 3)), np.zeros((2, 4)), np.ones((2, 3), bool))
  with pytest.raises(ValueError, match='targets'):
    ranking.pointer_cross_entropy(np.zeros((2, 3, 4)), np.zeros((2, 4), np.int32))
