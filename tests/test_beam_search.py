"""Tests for larp_jax.decoding.beam_search against the per-session NumPy oracle."""

import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

import numpy_beam_search
from larp_jax.decoding import beam_search
from larp_jax.decoding.beam_search import (
    mostra_beam_search,
    sort_decode,
    weighted_sum_decode,
    weighted_sum_scores,
)

SWITCHES = list(itertools.product(('relative', 'absolute'), ('total', 'marginal')))


def _random_batch(seed, batch=24, num_tracks=12, num_objectives=3, quantized=True):
  """Relevance on a coarse grid (many exact ties) or continuous; some short/empty sessions."""
  rng = np.random.default_rng(seed)
  if quantized:
    relevance = rng.integers(1, 9, size=(batch, num_tracks)).astype(np.float32) / 8
  else:
    relevance = rng.random((batch, num_tracks)).astype(np.float32)
  objectives = (rng.random((batch, num_tracks, num_objectives)) < 0.4).astype(np.float32)
  valid = rng.random((batch, num_tracks)) < rng.uniform(0.2, 1.0, size=(batch, 1))
  valid[0] = False  # an empty session
  valid[1] = False
  valid[1, [1, num_tracks - 1]] = True  # fewer valid tracks than `length`
  valid[2] = True
  # Duplicated tracks (same relevance and objectives): exact ties between candidates.
  relevance[3, 5:] = relevance[3, 4]
  objectives[3, 5:] = objectives[3, 4]
  return relevance, objectives, valid


@pytest.mark.parametrize('threshold,gain', SWITCHES)
def test_matches_numpy_oracle(threshold, gain):
  # Exact sequences; scores to 1e-5 (they agree bit for bit on XLA:CPU, see the module doc).
  for seed, quantized in [(0, True), (1, True), (2, False)]:
    relevance, objectives, valid = _random_batch(seed, quantized=quantized)
    for epsilon in (0.0, 0.1, 0.35, 2.0):
      kwargs = dict(length=8, beam_size=4, epsilon=epsilon, threshold=threshold, gain=gain)
      sequences, scores = mostra_beam_search(relevance, objectives, valid, **kwargs)
      expected_sequences, expected_scores = numpy_beam_search.beam_search_batch(
          relevance, objectives, valid, **kwargs
      )
      chex.assert_type(sequences, jnp.int32)
      chex.assert_type(scores, jnp.float32)
      np.testing.assert_array_equal(
          np.asarray(sequences), expected_sequences, err_msg=f'seed={seed} epsilon={epsilon}'
      )
      np.testing.assert_allclose(np.asarray(scores), expected_scores, rtol=0, atol=1e-5)


def test_golden_example_by_hand():
  # r = [0.9, 0.85, 0.5], one objective on track 1, beam 1, length 2.
  relevance = np.array([[0.9, 0.85, 0.5]], np.float32)
  objectives = np.array([[[0.0], [1.0], [0.0]]], np.float32)
  valid = np.ones((1, 3), bool)
  run = lambda **kw: mostra_beam_search(relevance, objectives, valid, length=2, beam_size=1, **kw)
  # eps = 0.1: position 1 allows t0 (delta 0) and t1 (delta 0.05/0.9 = 0.056), not t2 (0.44);
  # t1 scores 0.85 + sqrt(1) = 1.85 > 0.9 + sqrt(0). Position 2: only t0 is allowed,
  # 0.9 + (1/2) sqrt(1 + 0) = 1.4; total 3.25.
  sequences, scores = run(epsilon=0.1)
  np.testing.assert_array_equal(sequences, [[1, 0]])
  np.testing.assert_allclose(scores, [3.25], atol=1e-6)
  # Marginal gain: position 2 gains (1/2)(sqrt(1) - sqrt(1)) = 0, total 1.85 + 0.9 = 2.75.
  sequences, scores = run(epsilon=0.1, gain='marginal')
  np.testing.assert_array_equal(sequences, [[1, 0]])
  np.testing.assert_allclose(scores, [2.75], atol=1e-6)
  # eps = 0: relevance order; 0.9 + 0 + 0.85 + (1/2) sqrt(1) = 2.25.
  sequences, scores = run(epsilon=0.0)
  np.testing.assert_array_equal(sequences, [[0, 1]])
  np.testing.assert_allclose(scores, [2.25], atol=1e-6)


def test_absolute_and_relative_thresholds_differ_at_low_relevance():
  # r_hat = 0.2, r_1 = 0.15: relative drop 0.25 > 0.1 (masked), absolute gap 0.05 <= 0.1.
  relevance = np.array([[0.2, 0.15]], np.float32)
  objectives = np.array([[[0.0], [1.0]]], np.float32)
  valid = np.ones((1, 2), bool)
  relative, _ = mostra_beam_search(
      relevance, objectives, valid, length=1, beam_size=2, epsilon=0.1, threshold='relative'
  )
  absolute, _ = mostra_beam_search(
      relevance, objectives, valid, length=1, beam_size=2, epsilon=0.1, threshold='absolute'
  )
  np.testing.assert_array_equal(relative, [[0]])
  np.testing.assert_array_equal(absolute, [[1]])


@pytest.mark.parametrize('threshold,gain', SWITCHES)
def test_never_picks_padded_or_repeated_tracks(threshold, gain):
  relevance, objectives, valid = _random_batch(5, batch=64, num_tracks=20, quantized=False)
  length = 12
  sequences, _ = mostra_beam_search(
      relevance,
      objectives,
      valid,
      length=length,
      beam_size=5,
      epsilon=0.5,
      threshold=threshold,
      gain=gain,
  )
  sequences = np.asarray(sequences)
  for row, row_valid in zip(sequences, valid):
    num_valid = min(int(row_valid.sum()), length)
    chosen = row[:num_valid]
    assert (row[num_valid:] == -1).all()
    assert len(set(chosen.tolist())) == num_valid, row
    assert row_valid[chosen].all(), row


@pytest.mark.parametrize('threshold', ['relative', 'absolute'])
def test_zero_epsilon_is_a_relevance_sort(threshold):
  rng = np.random.default_rng(3)
  batch, num_tracks, length = 32, 15, 10
  relevance = rng.random((batch, num_tracks)).astype(np.float32)  # distinct values
  objectives = (rng.random((batch, num_tracks, 3)) < 0.5).astype(np.float32)
  valid = rng.random((batch, num_tracks)) < 0.8
  sequences, _ = mostra_beam_search(
      relevance, objectives, valid, length=length, beam_size=4, epsilon=0.0, threshold=threshold
  )
  order = np.argsort(np.where(valid, -relevance, np.inf), axis=-1, kind='stable')[:, :length]
  expected = np.where(np.arange(length) < valid.sum(-1, keepdims=True), order, -1)
  np.testing.assert_array_equal(sequences, expected)
  # Tied relevance and no objectives: ties go to the lower index (stable argsort).
  tied = (rng.integers(0, 4, size=(batch, num_tracks)) / 4 + 0.25).astype(np.float32)
  sequences, _ = mostra_beam_search(
      tied,
      np.zeros_like(objectives),
      valid,
      length=length,
      beam_size=4,
      epsilon=0.0,
      threshold=threshold,
  )
  order = np.argsort(np.where(valid, -tied, np.inf), axis=-1, kind='stable')[:, :length]
  expected = np.where(np.arange(length) < valid.sum(-1, keepdims=True), order, -1)
  np.testing.assert_array_equal(sequences, expected)
  # Tied relevance with objectives: objectives may reorder tied tracks, never across values.
  sequences, _ = mostra_beam_search(
      tied, objectives, valid, length=length, beam_size=4, epsilon=0.0, threshold=threshold
  )
  sequences = np.asarray(sequences)
  for row, r, v in zip(sequences, tied, valid):
    picked = r[row[row >= 0]]
    np.testing.assert_array_equal(picked, np.sort(r[v])[::-1][: len(picked)])


def test_sharded_batch_matches_unsharded():
  assert jax.device_count() == 8
  mesh = jax.make_mesh((8,), ('data',), axis_types=(AxisType.Auto,))
  sharding = NamedSharding(mesh, P('data'))
  relevance, objectives, valid = _random_batch(7, batch=16, num_tracks=12, quantized=True)
  kwargs = dict(length=8, beam_size=3, epsilon=0.3)
  expected = mostra_beam_search(relevance, objectives, valid, **kwargs)
  inputs = [jax.device_put(x, sharding) for x in (relevance, objectives, valid)]
  decode = jax.jit(
      lambda r, e, v: mostra_beam_search(r, e, v, **kwargs),
      in_shardings=(sharding,) * 3,
      out_shardings=(sharding, sharding),
  )
  sequences, scores = decode(*inputs)
  assert sequences.sharding.is_equivalent_to(sharding, 2)
  np.testing.assert_array_equal(sequences, expected[0])
  np.testing.assert_array_equal(scores, expected[1])
  # The public function takes sharded inputs directly, too.
  sequences, _ = mostra_beam_search(*inputs, **kwargs)
  np.testing.assert_array_equal(sequences, expected[0])
  # And the project's (data, model) mesh, batch on `data`.
  mesh_2d = jax.make_mesh((4, 2), ('data', 'model'), axis_types=(AxisType.Auto,) * 2)
  inputs = [
      jax.device_put(x, NamedSharding(mesh_2d, P('data'))) for x in (relevance, objectives, valid)
  ]
  sequences, scores = mostra_beam_search(*inputs, **kwargs)
  np.testing.assert_array_equal(sequences, expected[0])
  np.testing.assert_array_equal(scores, expected[1])


def test_no_retrace_across_calls_and_epsilons():
  relevance, objectives, valid = _random_batch(8, batch=8, num_tracks=10)
  decode = jax.jit(
      chex.assert_max_traces(
          lambda r, e, v, eps: mostra_beam_search(r, e, v, length=6, beam_size=3, epsilon=eps), n=1
      )
  )
  for epsilon in (0.0, 0.05, 0.2):
    decode(relevance + epsilon, objectives, valid, jnp.float32(epsilon))
  # The public entry point's own jit cache: one entry for one set of shapes/static args.
  jitted = beam_search._mostra_beam_search_jit
  jitted.clear_cache()
  for epsilon in (0.0, 0.05, 0.2):
    mostra_beam_search(
        relevance * (1 + epsilon), objectives, valid, length=6, beam_size=3, epsilon=epsilon
    )
  assert jitted._cache_size() == 1


def test_bad_inputs_raise():
  relevance, objectives, valid = _random_batch(0, batch=4, num_tracks=5)
  with pytest.raises(ValueError, match='threshold'):
    mostra_beam_search(
        relevance, objectives, valid, length=3, beam_size=2, epsilon=0.1, threshold='ratio'
    )
  with pytest.raises(ValueError, match='gain'):
    mostra_beam_search(relevance, objectives, valid, length=3, beam_size=2, epsilon=0.1, gain='sum')
  with pytest.raises(ValueError, match='objectives'):
    mostra_beam_search(relevance, objectives[:, :4], valid, length=3, beam_size=2, epsilon=0.1)
  with pytest.raises(ValueError, match='epsilon'):
    mostra_beam_search(relevance, objectives, valid, length=3, beam_size=2, epsilon=-0.1)
  with pytest.raises(ValueError, match='beam_size'):
    mostra_beam_search(relevance, objectives, valid, length=3, beam_size=0, epsilon=0.1)


def test_sort_decode_and_weighted_sum_decode():
  scores = np.array([[0.3, 0.9, 0.3, 0.1, 0.9], [0.5, 0.2, 0.7, 0.1, 0.0]], np.float32)
  valid = np.array([[1, 1, 1, 1, 0], [1, 0, 1, 0, 0]], bool)
  np.testing.assert_array_equal(
      sort_decode(scores, valid, length=6), [[1, 0, 2, 3, -1, -1], [2, 0, -1, -1, -1, -1]]
  )
  rng = np.random.default_rng(0)
  relevance = rng.random((16, 9)).astype(np.float32)
  objectives = (rng.random((16, 9, 3)) < 0.5).astype(np.float32)
  valid = rng.random((16, 9)) < 0.8
  for alpha in (0.01, 0.5, 1.0):
    # Paper (App. A): s_i = r_i + 1{r_i > 0.5} alpha sum_j E_ij, then a sort.
    expected_scores = relevance + (relevance > 0.5) * alpha * objectives.sum(-1)
    np.testing.assert_allclose(
        weighted_sum_scores(relevance, objectives, alpha=alpha), expected_scores, rtol=1e-6
    )
    order = np.argsort(np.where(valid, -expected_scores, np.inf), axis=-1, kind='stable')[:, :5]
    expected = np.where(np.arange(5) < valid.sum(-1, keepdims=True), order, -1)
    np.testing.assert_array_equal(
        weighted_sum_decode(relevance, objectives, valid, alpha=alpha, length=5), expected
    )
