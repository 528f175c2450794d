"""Paper 001's reconstruction loss (Eq. 2) on standardised feature blocks.

Eq. 2 as printed: ``L = 1/U Σ_u ||x_u − f_dec(f_enc(x_u))||`` -- an *unsquared* Euclidean norm
per user, averaged over users. ``squared=True`` switches to the squared norm (the usual MSE
reading). Each feature column is standardised beforehand (training users' mean and std); the
blocks (audio per horizon, collaborative per horizon, activity, static, onboarding) differ in
width by two orders of magnitude, so by default every block gets the same total weight
(``block_weighting='equal'``: a column of a block of width w weighs 1/w), otherwise an 80-d
audio aggregate would outweigh the country one-hot 80 to 1; ``'per_column'`` weighs every
column 1 (the plain reading of the formula).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def column_weights(block_widths: Sequence[int], block_weighting: str = "equal") -> np.ndarray:
  """float32 [d] weight of every column: ``1/width`` of its block ('equal') or 1 ('per_column')."""
  if block_weighting not in ("equal", "per_column"):
    raise ValueError(f"block_weighting={block_weighting!r}; expected 'equal' or 'per_column'.")
  widths = [int(w) for w in block_widths]
  if not widths or min(widths) < 1:
    raise ValueError(f"block widths must be >= 1, got {widths}.")
  if block_weighting == "per_column":
    return np.ones(sum(widths), np.float32)
  return np.concatenate([np.full(w, 1.0 / w, np.float32) for w in widths])


def reconstruction_loss(
    x: Array,
    x_hat: Array,
    weights: Array,
    *,
    squared: bool = False,
    mask: Array | None = None,
) -> tuple[Array, dict[str, Array]]:
  """Mean over users of the (weighted) reconstruction norm.

  Args:
    x: float32 [B, d] standardised features.
    x_hat: float32 [B, d] reconstruction.
    weights: float32 [d] column weights (``column_weights``).
    squared: False = Eq. 2 as printed (``sqrt(Σ_j w_j (x_j − x̂_j)²)``), True = squared norm.
    mask: bool [B] real rows (padding rows of a last batch count 0); None = all.

  Returns:
    ``(loss, {'norm': mean unsquared norm, 'mse': mean weighted squared error})``.
  """
  sq = jnp.sum(weights * jnp.square(x - x_hat), axis=-1)
  # sqrt's gradient is infinite at 0; a perfect reconstruction only happens on degenerate rows.
  norm = jnp.sqrt(sq + 1e-12)
  per_user = sq if squared else norm
  valid = jnp.ones(x.shape[0], jnp.float32) if mask is None else mask.astype(jnp.float32)
  count = jnp.maximum(valid.sum(), 1.0)
  loss = jnp.sum(per_user * valid) / count
  return loss, {
      "norm": jnp.sum(norm * valid) / count,
      "mse": jnp.sum(sq * valid) / count,
  }
