"""MAP-2T's retrieval objective (paper 002, Sec. 3.2.3): softmax CE + smoothing + prior KL + entropy.

``map2t_loss`` is the one loss of the MAP-2T towers. With ``s_b = cos(u_b, v_a) / tau`` over the
valid catalogue items (``item_mask``; masked items get exactly zero probability) and
``p_b = softmax(s_b)`` (natural logs throughout):

  L_retrieval = mean_b -log p_b[pos_b]
  L_smooth    = mean_b -(1 / N_valid) sum_{a valid} log p_b[a]
  q           ∝ popularity ** (1 / prior_temperature) over the valid items
  L_pop       = mean_b KL(q || p_b) = mean_b sum_a q_a (log q_a - log p_b[a])   (0 log 0 = 0)
  L_div       = -mean_b H(p_b) = mean_b sum_a p_b[a] log p_b[a]                (an entropy bonus)
  loss        = L_retrieval + label_smoothing L_smooth + kl_weight L_pop + entropy_weight L_div

``label_smoothing`` is an additive weight λ, not the ε of ordinary label smoothing: the pair
``L_retrieval + λ L_smooth`` equals ``(1 + λ)`` times cross-entropy against the smoothed target
``(1 - ε) onehot + ε uniform_valid`` with ``ε = λ / (1 + λ)``.

The large-catalogue switch (``in_batch_candidates``): the candidates are the batch's unique
positives (accidental hits are removed by construction: a repeated positive is one candidate) and
the logits get the logQ correction ``s - log Q(a)`` (after the temperature division, as TFRS does),
passed to ``map2t_loss`` as ``logq``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

Array = jax.Array


def safe_cosine(user: Array, items: Array, eps: float = 1e-12) -> Array:
  """Cosine similarities ``[B, N]`` of ``user [B, D]`` and ``items [N, D]`` in their dtype.

  Zero vectors score 0 with a finite gradient (``layers.l2_normalize``'s gradient at 0 is NaN).
  """
  un = user * jax.lax.rsqrt(jnp.maximum(jnp.sum(user * user, -1, keepdims=True), eps))
  vn = items * jax.lax.rsqrt(jnp.maximum(jnp.sum(items * items, -1, keepdims=True), eps))
  return un @ vn.T


def popularity_prior(popularity: Array, item_mask: Array, prior_temperature: float) -> Array:
  """``q [N]`` ∝ ``popularity ** (1 / prior_temperature)`` over valid items (0 elsewhere).

  Computed as ``(pop / max pop) ** (1 / T)`` so small temperatures do not overflow.
  """
  pop = jnp.where(item_mask, jnp.maximum(popularity, 0), 0)
  top = jnp.maximum(jnp.max(pop), jnp.finfo(pop.dtype).tiny)
  w = jnp.where(pop > 0, (pop / top) ** (1.0 / prior_temperature), 0)
  return w / jnp.maximum(jnp.sum(w), jnp.finfo(pop.dtype).tiny)


def map2t_loss(
    user: Array,
    items: Array,
    positives: Array,
    popularity: Array,
    item_mask: Array,
    *,
    temperature: float,
    label_smoothing: float,
    kl_weight: float,
    prior_temperature: float,
    entropy_weight: float,
    logq: Array | None = None,
) -> tuple[Array, dict[str, Array]]:
  """The MAP-2T objective (module docstring), in the dtype of ``user``/``items``.

  Args:
    user: float [B, D] user vectors (the user tower's output; normalised here).
    items: float [N, D] catalogue (or candidate) vectors; may be row-sharded.
    positives: int32 [B] index of each row's positive into ``items`` (must be a valid item).
    popularity: float [N] non-negative popularity counts (pre-T); only its shape matters for
      masked items.
    item_mask: bool [N]; False = padding (zero probability, never a positive).
    temperature: tau of the cosine logits.
    label_smoothing: λ_ls, an additive weight (ε = λ / (1 + λ) of ordinary smoothing, times
      1 + λ).
    kl_weight: λ_kl on KL(q || p_b).
    prior_temperature: T of q ∝ popularity ** (1 / T).
    entropy_weight: λ_ent on L_div = -mean H(p_b).
    logq: optional float [N] log sampling probabilities subtracted from the logits (the
      in-batch switch; None for the full catalogue).

  Returns:
    ``(loss scalar, aux)`` with the unweighted terms ``retrieval``, ``smooth``, ``pop_kl``,
    ``diversity`` (scalars in the input dtype).
  """
  dtype = jnp.result_type(user, items)
  user, items = user.astype(dtype), items.astype(dtype)
  mask = jnp.asarray(item_mask, bool)
  logits = safe_cosine(user, items) / jnp.asarray(temperature, dtype)
  if logq is not None:
    logits = logits - jnp.asarray(logq, dtype)[None, :]
  big_negative = jnp.asarray(jnp.finfo(dtype).min / 4, dtype)
  logits = jnp.where(mask[None, :], logits, big_negative)
  log_p = jax.nn.log_softmax(logits, axis=-1)
  # Masked entries: log p := 0 and p := 0, so no -inf ever meets a zero cotangent.
  log_p = jnp.where(mask[None, :], log_p, 0)
  p = jnp.where(mask[None, :], jnp.exp(log_p), 0)
  n_valid = jnp.maximum(jnp.sum(mask), 1).astype(dtype)

  retrieval = -jnp.mean(jnp.take_along_axis(log_p, positives[:, None].astype(jnp.int32), 1)[:, 0])
  smooth = -jnp.mean(jnp.sum(log_p, -1) / n_valid)
  q = jax.lax.stop_gradient(
      popularity_prior(jnp.asarray(popularity, dtype), mask, prior_temperature)
  )
  q_log_q = jnp.where(q > 0, q * jnp.log(jnp.where(q > 0, q, 1)), 0)
  pop_kl = jnp.mean(jnp.sum(q_log_q[None, :] - q[None, :] * log_p, -1))
  diversity = jnp.mean(jnp.sum(p * log_p, -1))
  loss = retrieval + label_smoothing * smooth + kl_weight * pop_kl + entropy_weight * diversity
  aux = {"retrieval": retrieval, "smooth": smooth, "pop_kl": pop_kl, "diversity": diversity}
  return loss, aux


def in_batch_candidates(
    positives: Array, popularity: Array, item_mask: Array
) -> tuple[Array, Array, Array, Array]:
  """The large-catalogue switch: the batch's unique positives as the candidate set.

  Args:
    positives: int32 [B] catalogue indices.
    popularity: float [N] counts (Q(a) ∝ popularity: the chance ``a`` is a batch positive).
    item_mask: bool [N].

  Returns:
    ``(candidate_ids int32 [B], candidate_mask bool [B], local_positives int32 [B],
    logq float [B])``: unique ids padded with the first id (mask False), each row's positive
    as an index into the candidates, and ``log Q`` of each candidate. Gather ``items`` and
    ``popularity`` with ``candidate_ids`` and call ``map2t_loss(..., logq=logq)``.
  """
  b = positives.shape[0]
  ids, inverse = jnp.unique(positives, size=b, fill_value=-1, return_inverse=True)
  cand_mask = ids >= 0
  ids = jnp.where(cand_mask, ids, positives[0]).astype(jnp.int32)
  pop = jnp.where(item_mask, popularity, 0).astype(jnp.float32)
  q = jnp.maximum(pop[ids], 1e-12) / jnp.maximum(jnp.sum(pop), 1e-12)
  return ids, cand_mask, inverse.reshape(-1).astype(jnp.int32), jnp.log(q)


def loss_kwargs(config: Any) -> dict[str, float]:
  """The keyword arguments of ``map2t_loss`` from a config's ``loss`` section."""
  return {
      "temperature": float(config.temperature),
      "label_smoothing": float(config.label_smoothing),
      "kl_weight": float(config.kl_weight),
      "prior_temperature": float(config.prior_temperature),
      "entropy_weight": float(config.entropy_weight),
  }
