"""Tests for larp_jax.decoding.beam_search against the independent float64 reference."""

import itertools
import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

import reference_beam_search
from larp_jax.decoding import beam_search
from larp_jax.decoding import beam_search_checks as checks
from larp_jax.decoding.baseline_decoders import sort_decode, weighted_sum_decode, weighted_sum_scores
from larp_jax.decoding.beam_search import mostra_beam_search

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


def _grid_batch(seed, batch=24, num_tracks=12, num_objectives=3):
  """Relevance on the 0.05 grid (r_hat - r_t = epsilon * r_hat happens exactly)."""
  relevance, objectives, valid = _random_batch(seed, batch, num_tracks, num_objectives)
  rng = np.random.default_rng(seed + 100)
  relevance[:] = rng.integers(1, 21, size=relevance.shape) / 20
  relevance[3, 5:] = relevance[3, 4]
  return relevance, objectives, valid


def _assert_matches_reference(relevance, objectives, valid, sequences, scores, **kwargs):
  """Sequences equal the float64 reference, or (near a tie) the decoder's pick is allowed and
  scores the same in float64; the decoder's own score is its sequence's float64 score."""
  sequences, scores = np.asarray(sequences), np.asarray(scores)
  epsilon, threshold, gain = kwargs['epsilon'], kwargs['threshold'], kwargs['gain']
  differing = 0
  for i in range(len(relevance)):
    expected = reference_beam_search.reference_session(
        relevance[i], objectives[i], valid[i], **kwargs
    )
    allowed, own = reference_beam_search.path_score(
        relevance[i],
        objectives[i],
        valid[i],
        sequences[i],
        epsilon=epsilon,
        threshold=threshold,
        gain=gain,
    )
    where = f'session {i} {kwargs}: got {sequences[i]}, reference {expected.sequence}'
    assert allowed, where
    if valid[i].any():
      np.testing.assert_allclose(scores[i], own, rtol=0, atol=1e-5, err_msg=where)
    if not np.array_equal(sequences[i], expected.sequence):
      differing += 1
      assert expected.near_tie, where
    np.testing.assert_allclose(own, expected.score, rtol=0, atol=1e-5, err_msg=where)
  return differing


@pytest.mark.parametrize('threshold,gain', SWITCHES)
def test_matches_float64_reference(threshold, gain):
  # Random, coarse-grid (ties) and 0.05-grid relevances; empty and short sessions included.
  batches = [
      _random_batch(0, quantized=False),
      _random_batch(1, quantized=True),
      _grid_batch(2),
      _grid_batch(3, num_objectives=1),
  ]
  for relevance, objectives, valid in batches:
    for epsilon in (0.0, 0.05, 0.1):
      kwargs = dict(length=8, beam_size=4, epsilon=epsilon, threshold=threshold, gain=gain)
      sequences, scores = mostra_beam_search(relevance, objectives, valid, **kwargs)
      chex.assert_type(sequences, jnp.int32)
      chex.assert_type(scores, jnp.float32)
      _assert_matches_reference(relevance, objectives, valid, sequences, scores, **kwargs)


def test_threshold_is_inclusive_at_exactly_epsilon():
  # The case: r_hat = 1.0, r_t = 0.95, epsilon = 0.05: delta = epsilon exactly, so t is
  # allowed and its objective makes it win (0.95 + 1 > 1.0 + 0); float32 1 - 0.95 > 0.05.
  relevance = np.array([[1.0, 0.95, 0.5]], np.float32)
  objectives = np.array([[[0.0], [1.0], [0.0]]], np.float32)
  valid = np.ones((1, 3), bool)
  assert np.float32(1.0) - np.float32(0.95) > np.float32(0.05) * np.float32(1.0)
  for threshold in ('relative', 'absolute'):
    sequences, _ = mostra_beam_search(
        relevance, objectives, valid, length=1, beam_size=2, epsilon=0.05, threshold=threshold
    )
    np.testing.assert_array_equal(sequences, [[1]])
  # Just above the threshold (delta = 0.0501 > epsilon + 1e-6): masked.
  relevance = np.array([[1.0, 0.9499, 0.5]], np.float32)
  sequences, _ = mostra_beam_search(
      relevance, objectives, valid, length=1, beam_size=2, epsilon=0.05
  )
  np.testing.assert_array_equal(sequences, [[0]])


@pytest.mark.parametrize('threshold,gain', [('relative', 'total'), ('absolute', 'marginal')])
def test_pool_and_tiles_do_not_change_results(threshold, gain):
  rng = np.random.default_rng(11)
  batch, num_tracks = 37, 70  # without the pool: 4 x 70 > FLAT_TOP_K_MAX, the row-wise top-k
  relevance = rng.random((batch, num_tracks)).astype(np.float32)
  relevance[:4] = rng.integers(1, 21, size=(4, num_tracks)) / 20  # grid ties
  objectives = (rng.random((batch, num_tracks, 3)) < 0.3).astype(np.float32)
  valid = rng.random((batch, num_tracks)) < 0.9
  valid[5, 7:] = False  # a short session
  for epsilon in (0.05, 0.3):
    kwargs = dict(length=8, beam_size=4, epsilon=epsilon, threshold=threshold, gain=gain)
    full = mostra_beam_search(relevance, objectives, valid, use_pool=False, **kwargs)
    pooled = mostra_beam_search(relevance, objectives, valid, **kwargs)
    tiled = mostra_beam_search(relevance, objectives, valid, tile_size=8, **kwargs)
    for got in (pooled, tiled):
      np.testing.assert_array_equal(got[0], full[0], err_msg=f'{epsilon=}')
      np.testing.assert_allclose(got[1], full[1], rtol=0, atol=1e-5)


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
  # The public entry point's own jit cache: one entry for one set of shapes/static args (the
  # exact pool may pick another static pool size per epsilon; without it, epsilon is traced).
  jitted = beam_search._mostra_beam_search_jit
  jitted.clear_cache()
  for epsilon in (0.0, 0.05, 0.2):
    mostra_beam_search(
        relevance * (1 + epsilon),
        objectives,
        valid,
        length=6,
        beam_size=3,
        epsilon=epsilon,
        use_pool=False,
    )
  assert jitted._cache_size() == 1


def test_bad_inputs_raise_naming_the_argument():
  relevance, objectives, valid = _random_batch(0, batch=4, num_tracks=5)
  run = lambda r=relevance, e=objectives, v=valid, **kw: mostra_beam_search(
      r, e, v, **{'length': 3, 'beam_size': 2, 'epsilon': 0.1, **kw}
  )
  with pytest.raises(ValueError, match='threshold'):
    run(threshold='ratio')
  with pytest.raises(ValueError, match='gain'):
    run(gain='sum')
  with pytest.raises(ValueError, match='objectives'):
    run(e=objectives[:, :4])
  with pytest.raises(ValueError, match='valid'):
    run(v=valid[:, :4])
  with pytest.raises(ValueError, match='valid must be bool'):
    run(v=valid.astype(np.float32))
  with pytest.raises(ValueError, match='relevance must be'):
    run(r=relevance[0])
  for bad in (-0.1, float('nan'), float('inf')):
    with pytest.raises(ValueError, match='epsilon'):
      run(epsilon=bad)
  with pytest.raises(ValueError, match='beam_size'):
    run(beam_size=0)
  for bad in (0, 2.5, None):
    with pytest.raises(ValueError, match='length'):
      run(length=bad)
  # Values: NaN/inf relevance, NaN/inf or negative objectives at a valid candidate.
  valid = np.ones_like(valid)
  for value in (np.nan, np.inf, -np.inf):
    r = relevance.copy()
    r[2, 3] = value
    with pytest.raises(ValueError, match=r'relevance has 1 NaN/inf .*\(2, 3\)'):
      run(r=r, v=valid)
    with pytest.raises(ValueError, match='relevance'):
      run(r=jnp.asarray(r), v=jnp.asarray(valid))  # device arrays too
    e = objectives.copy()
    e[1, 0, 2] = value
    with pytest.raises(ValueError, match='objectives has 1 NaN/inf'):
      run(e=e, v=valid)
  e = objectives.copy()
  e[0, 1, 0] = -1.0
  with pytest.raises(ValueError, match='objectives has 1 negative'):
    run(e=e, v=valid)
  # Padded candidates are ignored, whatever they hold.
  r, e, v = relevance.copy(), objectives.copy(), valid.copy()
  v[:, 4] = False
  r[:, 4], e[:, 4] = np.nan, -np.inf
  sequences, scores = run(r=r, e=e, v=v)
  clean = run(r=np.where(v, r, 0), e=np.where(v[..., None], e, 0), v=v)
  np.testing.assert_array_equal(sequences, clean[0])
  assert np.isfinite(np.asarray(scores)).all()


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


def test_no_objectives_decodes_the_top_tracks():
  # J = 0 (an MSSD build with only SAT): every step score is r_t, so the best beams hold the
  # top-`length` tracks; their order ties in exact arithmetic (any allowed permutation sums the
  # same), so the float64 reference decides what is equivalent.
  rng = np.random.default_rng(4)
  relevance = rng.random((16, 12)).astype(np.float32)
  objectives = np.zeros((16, 12, 0), np.float32)
  valid = rng.random((16, 12)) < 0.8
  for epsilon in (0.0, 0.1):
    kwargs = dict(length=6, beam_size=3, epsilon=epsilon, threshold='relative', gain='total')
    sequences, scores = mostra_beam_search(relevance, objectives, valid, **kwargs)
    _assert_matches_reference(relevance, objectives, valid, sequences, scores, **kwargs)
    order = np.argsort(np.where(valid, -relevance, np.inf), axis=-1, kind='stable')[:, :6]
    expected = np.where(np.arange(6) < valid.sum(-1, keepdims=True), order, -1)
    for got, want in zip(np.asarray(sequences), expected):
      assert sorted(got.tolist()) == sorted(want.tolist())
    if epsilon == 0.0:  # only the best remaining track is allowed: exactly the sort
      np.testing.assert_array_equal(sequences, expected)


# ------------------------------------------------------------------ internal code paths


@pytest.mark.parametrize(
    'name,num_tracks,epsilon,tile_size,general',
    [
        ('general objectives, pool, tiles', 30, 0.1, 8, True),
        ('pool of > 32 slots (3 bitmask words), row-wise top-k', 80, 1.5, 16, False),
        ('no pool, 2 bitmask words, general', 40, 0.2, 1024, True),
        (
            'default tile, batch not a multiple of it',
            12,
            0.05,
            beam_search.DEFAULT_TILE_SIZE,
            False,
        ),
    ],
)
def test_internal_paths_match_reference(name, num_tracks, epsilon, tile_size, general):
  batch = 300 if tile_size == beam_search.DEFAULT_TILE_SIZE else 37
  relevance, objectives, valid = _random_batch(9, batch, num_tracks, quantized=False)
  if general:  # non-binary objectives: the sqrt-per-candidate path
    objectives = objectives * np.random.default_rng(9).integers(1, 4, objectives.shape) * 0.7
  use_pool = name != 'no pool, 2 bitmask words, general'
  for threshold, gain in [('relative', 'total'), ('absolute', 'marginal')]:
    kwargs = dict(length=8, beam_size=4, epsilon=epsilon, threshold=threshold, gain=gain)
    sequences, scores = mostra_beam_search(
        relevance, objectives, valid, tile_size=tile_size, use_pool=use_pool, **kwargs
    )
    _assert_matches_reference(relevance, objectives, valid, sequences, scores, **kwargs)


def test_prepass_bound_codes_and_pool_count():
  rng = np.random.default_rng(12)
  for num_tracks in (20, 100):
    relevance = (rng.integers(0, 40, (64, num_tracks)) / 40).astype(np.float32)  # many ties
    valid = rng.random((64, num_tracks)) < 0.9
    valid[0, 3:] = False  # fewer valid tracks than `length`: no bound
    masked = np.where(valid, relevance, -np.inf)
    for k in (1, 5, 10):
      bound = np.asarray(checks.kth_lower_bound(jnp.asarray(masked), k))
      exact = -np.sort(-masked, axis=1)[:, k - 1]
      assert (bound <= exact).all()
      np.testing.assert_array_equal(bound[exact == -np.inf], -np.inf)
    objectives = (rng.random((64, num_tracks, 2)) < 0.4).astype(np.float32)
    code, bound, count = checks.prepass(
        relevance, objectives, valid, 0.05, length=10, threshold='relative'
    )
    assert code == checks.CODE_BINARY
    assert count == np.max(np.sum(valid & (relevance >= np.asarray(bound)[:, None]), axis=1))
    objectives[1, 2, 1] = 0.5
    assert (
        checks.prepass(relevance, objectives, valid, 0.05, length=10, threshold='relative')[0]
        == checks.CODE_GENERAL
    )
    objectives[1, 2, 1] = np.nan
    assert (
        checks.prepass(relevance, objectives, valid, 0.05, length=10, threshold='relative')[0]
        == checks.CODE_BAD
    )
    objectives[1, 2, 1] = 0.0
    relevance[5, np.flatnonzero(valid[5])[0]] = np.inf
    assert (
        checks.prepass(relevance, objectives, valid, 0.05, length=10, threshold='relative')[0]
        == checks.CODE_BAD
    )


def test_custom_top_k_matches_lax_top_k():
  rng = np.random.default_rng(13)
  for beams, size in [(5, 24), (5, 70), (1, 3)]:  # flat, row-wise, fewer entries than beam_size
    candidates = (rng.integers(0, 6, (32, beams, size)) / 4).astype(np.float32)  # ties
    candidates[rng.random(candidates.shape) < 0.5] = beam_search.NEG_INF
    flat = candidates.reshape(32, beams * size)
    want_scores, want_index = jax.lax.top_k(jnp.asarray(flat), min(5, beams * size))
    got_flat = beam_search._top_extensions_flat(jnp.asarray(flat), 5, size)
    got_rows = beam_search._top_extensions(jnp.asarray(candidates), 5)
    for scores, parent, track in (got_flat, got_rows):
      keep = want_index.shape[1]
      np.testing.assert_array_equal(scores[:, :keep], want_scores)
      np.testing.assert_array_equal(parent[:, :keep] * size + track[:, :keep], want_index)
      assert (np.asarray(scores[:, keep:]) == -np.inf).all()


def test_benchmark_runs_small(tmp_path, capsys):
  from benchmarks import beam_search as bench  # pylint: disable=g-import-not-at-top

  path = tmp_path / 'beam.json'
  flags = [
      '--batch',
      '64',
      '--tracks',
      '30',
      '--sweep',
      '32,64',
      '--numpy_sessions',
      '8',
      '--cpus',
      '0',
  ]
  bench.main(flags + ['--repeats', '2', '--tile_size', '32', '--json', str(path)])
  results = json.loads(path.read_text())
  (row,) = results['compare']
  assert row['agreement'] >= 0.99 and row['ratio'] > 0 and row['ratio_p10'] > 0
  assert row['ours_threads'] > 0 and row['numpy_threads'] > 0
  assert set(results['sweep']['30']) == {'32', '64'}
  assert 'ratio' in capsys.readouterr().out
