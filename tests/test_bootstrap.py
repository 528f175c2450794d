"""Paired bootstrap over users: weighted AUC against scikit-learn, and intervals that behave."""

import numpy as np
from sklearn import metrics

from larp_jax.evaluation import bootstrap


def test_weighted_auc_matches_sklearn_with_ties_and_weights():
  rng = np.random.default_rng(0)
  scores = np.round(rng.normal(size=500), 1)  # many ties
  labels = rng.integers(0, 2, 500)
  weights = rng.integers(0, 4, 500).astype(float)
  want = metrics.roc_auc_score(labels, scores, sample_weight=weights)
  np.testing.assert_allclose(bootstrap.weighted_auc(scores, labels, weights), want, rtol=1e-12)
  np.testing.assert_allclose(
      bootstrap.weighted_auc(scores, labels), metrics.roc_auc_score(labels, scores), rtol=1e-12
  )


def test_paired_interval_excludes_zero_only_for_a_real_gain():
  rng = np.random.default_rng(1)
  users = np.repeat(np.arange(200), 10)
  labels = rng.integers(0, 2, len(users))
  noise = rng.normal(size=len(users))
  good = labels + noise  # informative
  same = noise + 1e-3 * rng.normal(size=len(users))  # no information either way
  gain = bootstrap.paired_bootstrap_auc(users, labels, good, noise, reps=200)
  assert gain["low"] > 0 and gain["diff"] > 0.2
  null = bootstrap.paired_bootstrap_auc(users, labels, same, noise, reps=200)
  assert null["low"] < 0 < null["high"]
