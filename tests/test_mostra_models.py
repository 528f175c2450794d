"""Tests for larp_jax.models.mostra: SetTRM scorer, DNN, MO-LTR labels, pointer decoders."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from larp_jax.losses import mostra_objectives, ranking
from larp_jax.models import mostra

TINY = mostra.SetTRMConfig(num_layers=2, num_heads=2, num_inducing=3, hidden_dim=8, ff_dim=16)
# One encoder layer for the autoregressive models: their tests are compile-bound.
TINY_1 = mostra.SetTRMConfig(num_layers=1, num_heads=2, num_inducing=3, hidden_dim=8, ff_dim=16)


def _inputs(seed=0, batch=3, num_items=7, width=5):
  rng = np.random.default_rng(seed)
  features = rng.normal(size=(batch, num_items, width)).astype(np.float32)
  mask = np.ones((batch, num_items), bool)
  mask[0, 5:] = False
  mask[1, [0, 2, 6]] = False
  return features, mask


def test_settrm_outputs_and_equivariance():
  model = mostra.SetTRM(TINY)
  features, mask = _inputs()
  variables = model.init(jax.random.key(0), features, mask)
  apply = jax.jit(model.apply)
  out = apply(variables, features, mask)
  chex.assert_shape([out['logits'], out['relevance']], (3, 7))
  chex.assert_type([out['logits'], out['relevance']], jnp.float32)
  np.testing.assert_allclose(out['relevance'], jax.nn.sigmoid(out['logits']), rtol=1e-6)
  # Permuting items (padding included) permutes every output.
  perm = np.random.default_rng(1).permutation(7)
  permuted = apply(variables, features[:, perm], mask[:, perm])
  np.testing.assert_allclose(permuted['logits'], np.asarray(out['logits'])[:, perm], atol=1e-5)
  # Padded items do not affect valid items' outputs.
  garbage = np.where(mask[..., None], features, 77.0).astype(np.float32)
  changed = apply(variables, garbage, mask)
  np.testing.assert_allclose(
      np.asarray(changed['logits'])[mask], np.asarray(out['logits'])[mask], atol=1e-5
  )
  # The encoder mixes items: changing a valid item moves the other items' scores.
  moved = features.copy()
  moved[2, 0] += 3.0
  other = apply(variables, moved, mask)['logits'][2, 1:]
  assert np.abs(np.asarray(other) - np.asarray(out['logits'])[2, 1:]).max() > 1e-4


def test_settrm_default_sizes_follow_the_paper():
  config = mostra.SetTRMConfig()
  assert (
      config.num_layers,
      config.num_heads,
      config.num_inducing,
      config.hidden_dim,
      config.ff_dim,
  ) == (6, 8, 20, 256, 1024)
  shapes = jax.eval_shape(
      mostra.SetTRM(config).init, jax.random.key(0), jnp.zeros((1, 4, 64)), jnp.ones((1, 4), bool)
  )
  params = nn.meta.unbox(shapes)['params']['encoder']
  assert sorted(params) == [f'{kind}_{i}' for kind in ('ffb', 'isab') for i in range(6)]
  assert params['isab_0']['inducing_points'].shape == (20, 256)
  assert params['ffb_5']['wi']['kernel'].shape == (256, 1024)
  with pytest.raises(ValueError, match='divisible'):
    mostra.SetTRMConfig(hidden_dim=10, num_heads=4)


def test_dnn_scorer_is_row_wise_with_paper_widths():
  model = mostra.DNNScorer(hidden_dims=(6, 12, 6))
  features, mask = _inputs()
  variables = model.init(jax.random.key(0), features, mask)
  out = model.apply(variables, features, mask)['logits']
  single = model.apply(variables, features[:, 3:4], mask[:, 3:4])['logits']
  np.testing.assert_allclose(single[:, 0], out[:, 3], rtol=1e-5)
  assert mostra.DNNScorer().hidden_dims == (256, 1024, 2048, 1024, 256)


def test_mo_ltr_labels_and_cosine_relevance():
  sat = np.array([[1, 0, 1]], np.float32)
  objectives = np.array([[[1, 1, 0], [1, 1, 1], [0, 0, 0]]], np.float32)
  # s_i = SAT_i + SAT_i * sum_j E_ij.
  np.testing.assert_allclose(mostra_objectives.mo_ltr_labels(sat, objectives), [[3, 0, 1]])
  np.testing.assert_allclose(
      mostra_objectives.mo_ltr_labels(sat, objectives, weights=[0.5, 0.0, 2.0]), [[1.5, 0, 1]]
  )
  with pytest.raises(ValueError, match='weights'):
    mostra_objectives.mo_ltr_labels(sat, objectives, weights=[1.0, 1.0])
  rng = np.random.default_rng(0)
  user = rng.normal(size=(2, 4)).astype(np.float32)
  tracks = rng.normal(size=(2, 5, 4)).astype(np.float32)
  expected = np.einsum('bd,bnd->bn', user, tracks) / (
      np.linalg.norm(user, axis=-1)[:, None] * np.linalg.norm(tracks, axis=-1)
  )
  np.testing.assert_allclose(mostra.cosine_relevance(user, tracks), expected, rtol=1e-5)


def test_teacher_forcing_targets_put_sat_first():
  labels = np.array([[0, 1, 0, 1, 1], [1, 0, 0, 0, 0]], np.float32)
  mask = np.array([[1, 1, 1, 1, 0], [0, 1, 1, 0, 0]], bool)
  np.testing.assert_array_equal(
      mostra_objectives.teacher_forcing_targets(labels, mask, 4), [[1, 3, 0, 2], [1, 2, -1, -1]]
  )


DECODERS = {
    'gru': lambda: mostra.SetTRM2GRU(TINY_1, decoder_hidden=8, decoder_size=12, attention_size=6),
    'trm': lambda: mostra.SetTRM2TRM(TINY_1, decoder_heads=2, decoder_ff_dim=16),
}


@pytest.mark.parametrize('name', sorted(DECODERS))
def test_pointer_decoders_emit_valid_distinct_items(name):
  model = DECODERS[name]()
  features, mask = _inputs(seed=3, batch=4, num_items=8)
  mask[3] = False  # an empty set
  labels = (np.random.default_rng(4).random(mask.shape) < 0.5).astype(np.float32)
  targets = mostra_objectives.teacher_forcing_targets(labels, mask, 6)
  variables = jax.jit(model.init)(jax.random.key(0), features, mask, targets)
  apply = jax.jit(model.apply)
  length = 10  # longer than every set
  decode = jax.jit(lambda v, f, m: model.apply(v, f, m, length=length, method='decode'))
  sequences = np.asarray(decode(variables, features, mask))
  chex.assert_shape(sequences, (4, length))
  assert sequences.dtype == np.int32
  for row, row_mask in zip(sequences, mask):
    num_valid = int(row_mask.sum())
    chosen = row[:num_valid]
    assert (row[num_valid:] == -1).all(), row
    assert len(set(chosen.tolist())) == num_valid and row_mask[chosen].all(), row
  # Teacher-forced logits mask padded and already-chosen items.
  logits = np.asarray(apply(variables, features, mask, targets))
  chex.assert_shape(logits, (4, 6, 8))
  assert (logits[~np.broadcast_to(mask[:, None], logits.shape)] == mostra.POINTER_MASK_VALUE).all()
  targets = np.asarray(targets)
  for b in range(2):
    for t in range(1, 6):
      for chosen in targets[b, :t]:
        if chosen >= 0:
          assert logits[b, t, chosen] == mostra.POINTER_MASK_VALUE
  # Greedy decoding agrees with teacher forcing fed its own choices (the first 6 steps of a
  # greedy decode do not depend on the decode length).
  greedy = sequences[:, :6]
  forced = np.asarray(apply(variables, features, mask, jnp.asarray(greedy)))
  argmax = np.where(greedy >= 0, forced.argmax(-1), -1)
  np.testing.assert_array_equal(argmax, greedy)


@pytest.mark.parametrize('name', sorted(DECODERS))
def test_teacher_forced_loss_decreases_on_toy_data(name):
  model = DECODERS[name]()
  rng = np.random.default_rng(5)
  features = rng.normal(size=(8, 6, 4)).astype(np.float32)
  mask = rng.random((8, 6)) < 0.85
  labels = (features[..., 0] > 0).astype(np.float32)  # SAT is readable from feature 0
  targets = mostra_objectives.teacher_forcing_targets(labels, mask, 4)
  params = jax.jit(model.init)(jax.random.key(1), features, mask, targets)['params']
  optimizer = optax.adam(1e-2)
  opt_state = optimizer.init(params)

  @jax.jit
  def step(params, opt_state):
    def loss_fn(p):
      logits = model.apply({'params': p}, features, mask, targets)
      return ranking.stepwise_attrank_loss(logits, targets, labels, mask)

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  losses = []
  for _ in range(15):
    params, opt_state, loss = step(params, opt_state)
    losses.append(float(loss))
  assert np.isfinite(losses).all()
  assert losses[-1] < 0.8 * losses[0], losses
