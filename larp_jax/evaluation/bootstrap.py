"""Paired bootstrap intervals over users: is model A's metric really above model B's?

Demo-sized test sets put small differences inside the noise. We resample *users* (the unit the
protocol samples) with replacement, score both models on the same resample, and report the
percentile interval of the difference. A difference whose interval excludes 0 is a claim the data
supports; otherwise the report says "within noise".
"""

from __future__ import annotations

import numpy as np


def weighted_auc(
    scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None
) -> float:
  """ROC-AUC with per-example weights (ties count one half), as sklearn's ``sample_weight``.

  Args:
    scores: float [P]; labels: {0, 1} [P]; weights: float [P] >= 0 (None = 1).
  """
  scores = np.asarray(scores, np.float64)
  labels = np.asarray(labels) > 0.5
  weights = np.ones(len(scores)) if weights is None else np.asarray(weights, np.float64)
  pos_total, neg_total = weights[labels].sum(), weights[~labels].sum()
  if pos_total == 0 or neg_total == 0:
    raise ValueError("weighted_auc needs positive and negative examples with weight > 0.")
  values, inverse = np.unique(scores, return_inverse=True)
  pos = np.bincount(inverse, weights * labels, minlength=len(values))
  neg = np.bincount(inverse, weights * ~labels, minlength=len(values))
  neg_below = np.cumsum(neg) - neg
  return float((pos * (neg_below + 0.5 * neg)).sum() / (pos_total * neg_total))


def paired_bootstrap_auc(
    groups: np.ndarray,
    labels: np.ndarray,
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    *,
    reps: int = 500,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, float]:
  """AUC(A) − AUC(B) and its percentile interval under resampling of ``groups`` (users).

  Args:
    groups: int [P] the user of each pair; labels: {0,1} [P]; scores_a / scores_b: float [P].
    reps: bootstrap resamples; seed: their seed; level: interval coverage.

  Returns:
    ``{'diff', 'low', 'high', 'reps'}`` (diff on the full data).
  """
  groups = np.asarray(groups)
  if not (len(groups) == len(labels) == len(scores_a) == len(scores_b)):
    raise ValueError("groups, labels and both score arrays must have the same length.")
  unique, index = np.unique(groups, return_inverse=True)
  rng = np.random.default_rng(seed)
  diffs = []
  for _ in range(int(reps)):
    counts = np.bincount(rng.integers(0, len(unique), len(unique)), minlength=len(unique))
    w = counts[index].astype(np.float64)
    try:
      diffs.append(weighted_auc(scores_a, labels, w) - weighted_auc(scores_b, labels, w))
    except ValueError:
      continue
  tail = (1.0 - level) / 2.0
  low, high = np.quantile(diffs, [tail, 1.0 - tail]) if diffs else (np.nan, np.nan)
  return {
      "diff": weighted_auc(scores_a, labels) - weighted_auc(scores_b, labels),
      "low": float(low),
      "high": float(high),
      "reps": float(len(diffs)),
  }
