"""MOSTRA Table 1 job: sequencing metrics (vs a NumPy reference and a hand example) and a tiny
end-to-end train -> report -> resume run of `configs/mostra.py:test`."""

import json
import math
import os

import numpy as np
import pytest

from larp_jax.evaluation import sequencing
import job_runs  # tests/job_runs.py

# ------------------------------------------------------------------------- NumPy reference


def _np_ranked_relevance(sequence, labels, valid):
  """Relevance (0/1) of the decoded tracks in order, and |gt| (relevant valid tracks)."""
  chosen = [int(t) for t in sequence if t >= 0]
  assert len(set(chosen)) == len(chosen)
  rel = [float(labels[t] > 0 and valid[t]) for t in chosen if valid[t]]
  return np.array(rel), int(np.sum((labels > 0) & valid))


def np_ndcg(sequence, labels, valid, k):
  rel, num_gt = _np_ranked_relevance(sequence, labels, valid)
  if num_gt == 0:
    return math.nan
  dcg = sum(r / math.log2(i + 2) for i, r in enumerate(rel[:k]))
  idcg = sum(1 / math.log2(i + 2) for i in range(min(num_gt, k)))
  return dcg / idcg


def np_ap(sequence, labels, valid, k):
  rel, num_gt = _np_ranked_relevance(sequence, labels, valid)
  if num_gt == 0:
    return math.nan
  hits, total = 0, 0.0
  for i, r in enumerate(rel[:k]):
    if r:
      hits += 1
      total += hits / (i + 1)
  return total / min(num_gt, k)


def _random_case(rng, batch=64, n=12, length=8):
  valid = np.zeros((batch, n), bool)
  sequences = np.full((batch, length), -1, np.int32)
  for b in range(batch):
    num_valid = rng.integers(0, n + 1)
    valid[b, rng.choice(n, num_valid, replace=False)] = True
    order = rng.permutation(np.flatnonzero(valid[b]))[:length]
    sequences[b, : len(order)] = order
  labels = (rng.random((batch, n, 4)) < rng.uniform(0.05, 0.6, size=(batch, 1, 4))).astype(
      np.float32
  )
  return sequences, labels, valid


def test_hand_example():
  # Candidates 0..5, 5 is padding (labelled but never counted). Decoded order: 3, 0, 2, 1.
  sequences = np.array([[3, 0, 2, 1]], np.int32)
  valid = np.array([[1, 1, 1, 1, 1, 0]], bool)
  labels = np.array([[0, 1, 0, 1, 1, 1]], np.float32)  # relevant valid: 1, 3, 4 (4 not chosen)
  # Hits at ranks 1 (track 3) and 4 (track 1); |gt| = 3.
  np.testing.assert_allclose(
      sequencing.ndcg_at_k(sequences, labels, valid, 2), [1 / (1 + 1 / math.log2(3))], rtol=1e-6
  )
  np.testing.assert_allclose(
      sequencing.ndcg_at_k(sequences, labels, valid, 5),
      [(1 + 1 / math.log2(5)) / (1 + 1 / math.log2(3) + 0.5)],
      rtol=1e-6,
  )
  # AP@1 = 1; AP@2 = P@1 / min(3, 2) = 0.5; AP@5 = (P@1 + P@4) / min(3, 5) = (1 + 0.5) / 3.
  np.testing.assert_allclose(sequencing.ap_at_k(sequences, labels, valid, 1), [1.0], rtol=1e-6)
  np.testing.assert_allclose(sequencing.ap_at_k(sequences, labels, valid, 2), [0.5], rtol=1e-6)
  np.testing.assert_allclose(sequencing.ap_at_k(sequences, labels, valid, 5), [0.5], rtol=1e-6)
  # Order to scores: position p of L = 4 gets 4 - p; unchosen -inf.
  np.testing.assert_array_equal(
      sequencing.order_scores(sequences, 6)[0], [3, 1, 2, 4, -np.inf, -np.inf]
  )
  # No relevant valid track -> NaN (left out of the mean).
  none = np.array([[0, 0, 0, 0, 0, 1]], np.float32)
  assert np.isnan(sequencing.ndcg_at_k(sequences, none, valid, 5)[0])
  assert np.isnan(sequencing.ap_at_k(sequences, none, valid, 5)[0])


def test_perfect_order_scores_one_even_with_more_relevant_than_k():
  sequences = np.array([[0, 1, 2, 3, 4, 5, 6]], np.int32)
  valid = np.ones((1, 7), bool)
  labels = np.array([[1, 1, 1, 1, 1, 1, 0]], np.float32)
  assert float(sequencing.ap_at_k(sequences, labels, valid, 5)[0]) == pytest.approx(1.0)
  assert float(sequencing.ndcg_at_k(sequences, labels, valid, 5)[0]) == pytest.approx(1.0)
  reversed_order = sequences[:, ::-1].copy()
  assert float(sequencing.ndcg_at_k(reversed_order, labels, valid, 5)[0]) < 1.0


@pytest.mark.parametrize('k', [1, 3, 5, 10])
def test_metrics_match_numpy_reference(k):
  rng = np.random.default_rng(k)
  sequences, labels, valid = _random_case(rng)
  for j in range(4):
    ndcg = np.asarray(sequencing.ndcg_at_k(sequences, labels[..., j], valid, k))
    ap = np.asarray(sequencing.ap_at_k(sequences, labels[..., j], valid, k))
    ref_ndcg = [np_ndcg(s, l, v, k) for s, l, v in zip(sequences, labels[..., j], valid)]
    ref_ap = [np_ap(s, l, v, k) for s, l, v in zip(sequences, labels[..., j], valid)]
    np.testing.assert_allclose(ndcg, ref_ndcg, rtol=1e-5, atol=1e-6)  # NaN positions must match
    np.testing.assert_allclose(ap, ref_ap, rtol=1e-5, atol=1e-6)
    assert np.isnan(ndcg).sum() > 0 or j == 0  # the case does contain undefined sessions


def test_per_session_and_mean_metrics_streamed_only():
  rng = np.random.default_rng(0)
  sequences, labels, valid = _random_case(rng, batch=32)
  per = sequencing.per_session_metrics(sequences, labels, valid, ndcg_ks=(5, 10), map_ks=(5,))
  assert set(per) == {
      f'{m}/{o}' for m in ('ndcg@5', 'ndcg@10', 'map@5') for o in sequencing.DEFAULT_OBJECTIVES
  }
  streamed = (labels[..., 2] > 0) & (labels[..., 0] > 0)
  ref = [np_ap(s, l, v, 5) for s, l, v in zip(sequences, streamed, valid)]
  np.testing.assert_allclose(per['map@5/EXPOSURE'], ref, rtol=1e-5, atol=1e-6)
  means = sequencing.mean_metrics(per)
  assert means['count/map@5/EXPOSURE'] == int(np.sum(~np.isnan(ref)))
  assert means['map@5/EXPOSURE'] == pytest.approx(np.nanmean(ref), rel=1e-5)


def test_bad_inputs_raise():
  with pytest.raises(ValueError, match='labels must be'):
    sequencing.ndcg_at_k(np.zeros((2, 3), np.int32), np.zeros((3, 4)), np.zeros((3, 4), bool), 2)
  with pytest.raises(ValueError, match='valid must'):
    sequencing.ap_at_k(np.zeros((2, 3), np.int32), np.zeros((2, 4)), np.zeros((2, 5), bool), 2)
  with pytest.raises(ValueError, match='k must'):
    sequencing.ndcg_at_k(np.zeros((2, 3), np.int32), np.zeros((2, 4)), np.zeros((2, 4), bool), 0)
  with pytest.raises(ValueError, match='labels must be'):
    sequencing.per_session_metrics(
        np.zeros((2, 3), np.int32), np.zeros((2, 4, 3)), np.zeros((2, 4), bool)
    )


# ------------------------------------------------------------------------------- end to end

OBJECTIVES = ('SAT', 'BOOST', 'EXPOSURE', 'DISCOVERY')
TABLE1_ROWS = (
    'Relevance ranker',
    'DNN_AttRank',
    'DNN_BCE',
    'DNN_RMSE',
    'SetTRM2GRU_AttRank',
    'SetTRM2TRM_AttRank',
    'SetRank',
    'SetRank_BCE',
    'SetRank_RMSE',
    'MO-LTR_AttRank',
    'MO-LTR_RMSE',
    'MOSTRA-WtSUM(alpha=1)',
    'MOSTRA-WtSUM(alpha=0.5)',
    'MOSTRA-WtSUM(alpha=0.1)',
    'MOSTRA-WtSUM(alpha=0.01)',
    'Sort(same relevance)',
    'MOSTRA(eps=0.01)',
    'MOSTRA(eps=0.05)',
    'MOSTRA(eps=0.1)',
)


def _checkpoint_listing(workdir):
  listing = {}
  for root, _, files in os.walk(os.path.join(workdir, 'models')):
    for name in files:
      path = os.path.join(root, name)
      listing[os.path.relpath(path, workdir)] = os.path.getmtime(path)
  return listing


@pytest.fixture(scope='module')
def trained(mostra_test_run):
  """The session's MOSTRA test run (conftest.py)."""
  return mostra_test_run


def test_results_have_every_table1_row_in_unit_interval(trained):
  results = trained['results']
  for row in TABLE1_ROWS:
    for objective in OBJECTIVES:
      for metric in ('ndcg@5', 'ndcg@10', 'map@5'):
        value = results[f'{row}/{metric}/{objective}']
        assert 0.0 <= value <= 1.0, (row, metric, objective, value)
  assert results['sessions/total'] > 0
  assert all(results[f'sessions/ndcg@5/{o}'] > 0 for o in OBJECTIVES)
  # The Fig. 5 sweep and the paired tests against SetRank are there too.
  for eps in ('0', '0.05', '0.1'):
    assert f'fig5/MOSTRA(eps={eps})/map@5/BOOST' in results
  assert 0.0 <= results['MOSTRA(eps=0.05)/p_vs_Sort(same relevance)/ndcg@5/SAT'] <= 1.0
  assert results['meta/relevance_model'] == 'SetRank_RMSE'
  # The printed table lists every row.
  for row in TABLE1_ROWS:
    assert f'  {row} ' in trained['stdout'], row


def test_report_matches_independent_decoding(trained):
  results = trained['results']
  # eps = 0 admits only the best remaining track, so MOSTRA is the plain sort of its relevance
  # model (SetRank_RMSE): identical metrics. A larger eps must change something.
  for objective in OBJECTIVES:
    assert results[f'fig5/MOSTRA(eps=0)/map@5/{objective}'] == pytest.approx(
        results[f'SetRank_RMSE/map@5/{objective}'], abs=1e-9
    )
    # The fair baseline is that same sort.
    for metric in ('ndcg@5', 'ndcg@10', 'map@5'):
      assert results[f'Sort(same relevance)/{metric}/{objective}'] == pytest.approx(
          results[f'SetRank_RMSE/{metric}/{objective}'], abs=1e-9
      )
  assert any(
      results[f'fig5/MOSTRA(eps=0.1)/map@5/{o}'] != results[f'fig5/MOSTRA(eps=0)/map@5/{o}']
      for o in OBJECTIVES
  )
  # The relevance ranker recomputed here with NumPy from the built test split.
  with np.load(trained['workdir'] / 'data' / 'test.npz') as arrays:
    cosine, mask, labels = arrays['cosine'], arrays['mask'], arrays['labels']
  for j, objective in enumerate(OBJECTIVES):
    values = []
    for c, m, l in zip(cosine, mask, labels[..., j]):
      order = [i for i in np.argsort(-c, kind='stable') if m[i]][:10]
      values.append(np_ndcg(order, l, m, 5))
    assert results[f'Relevance ranker/ndcg@5/{objective}'] == pytest.approx(
        np.nanmean(values), abs=1e-6
    )


def test_plot_and_summaries_written(trained):
  workdir = trained['workdir']
  plot = workdir / 'plots' / 'map_vs_epsilon.png'
  assert plot.exists() and plot.stat().st_size > 5000
  with open(plot, 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'
  with open(workdir / 'training_summary.json') as f:
    summary = json.load(f)
  assert set(summary['training']) == {
      r
      for r in TABLE1_ROWS
      if r not in ('Relevance ranker', 'Sort(same relevance)') and not r.startswith('MOSTRA')
  }
  for name, info in summary['training'].items():
    assert info['step'] == 4 and info['steps_trained_now'] == 4, (name, info)
    assert (workdir / 'models' / name / 'best').is_dir()
  assert summary['training']['MO-LTR_RMSE']['selection_metric'] == 'ndcg@10/mean'
  assert summary['training']['SetRank']['selection_metric'] == 'ndcg@10/SAT'


def test_rerun_resumes_without_retraining(trained):
  workdir = trained['workdir']
  before = _checkpoint_listing(workdir)
  stdout, seconds = job_runs.train_mostra(workdir, trained['cache'])
  assert '(0 steps this run)' in stdout
  with open(workdir / 'training_summary.json') as f:
    summary = json.load(f)
  assert all(info['steps_trained_now'] == 0 for info in summary['training'].values())
  assert _checkpoint_listing(workdir) == before  # no checkpoint or best weights rewritten
  with open(workdir / 'results.json') as f:
    assert json.load(f) == trained['results']  # same weights, same decoders, same report
  assert seconds < trained['seconds']


def test_config_errors_name_the_offending_key(tmp_path):
  from configs import mostra as mostra_config
  from larp_jax.jobs import mostra_job
  from larp_jax.models import mostra_scorers

  with pytest.raises(ValueError, match='Unknown variant'):
    mostra_config.get_config('nope')
  config = mostra_config.get_config('test')
  config.scorers = ('SetRank', 'SetRankk')
  with pytest.raises(ValueError, match="unknown scorer 'SetRankk'"):
    mostra_job.train_and_evaluate(config, str(tmp_path))
  config = mostra_config.get_config('test')
  config.data.dir = str(tmp_path / 'missing')
  with pytest.raises(ValueError, match='config.data.dir'):
    mostra_job.prepare_data(config, str(tmp_path))
  assert set(mostra_config.TABLE1_SCORERS) == set(mostra_scorers.SCORERS)


# ----------------------------------------------------------------------- batched prediction


def _zero_padded_outputs(fn, arrays, size):
  """The former chunking: fixed-size chunks, the last padded with empty (all-zero) sessions."""
  total = len(next(iter(arrays.values())))
  outputs = {}
  for start in range(0, total, size):
    chunk = {n: a[start : start + size] for n, a in arrays.items()}
    real = len(next(iter(chunk.values())))
    chunk = {
        n: np.concatenate([a, np.zeros((size - real,) + a.shape[1:], a.dtype)])
        for n, a in chunk.items()
    }
    out = fn(chunk)
    for key, value in (out.items() if isinstance(out, dict) else [('out', out)]):
      outputs.setdefault(key, []).append(np.asarray(value)[:real])
  return {key: np.concatenate(values) for key, values in outputs.items()}


def _random_split(num_sessions, num_items, num_features, seed=0):
  rng = np.random.default_rng(seed)
  mask = rng.random((num_sessions, num_items)) < 0.7
  mask[3] = False  # an empty session
  return {
      'features': rng.normal(size=(num_sessions, num_items, num_features)).astype(np.float32),
      'mask': mask,
      'labels': (rng.random((num_sessions, num_items, 4)) < 0.4).astype(np.float32),
      'cosine': rng.normal(size=(num_sessions, num_items)).astype(np.float32),
  }


def test_batched_prediction_matches_zero_padded_chunks():
  # Repeating the last session instead of zero padding the last batch cannot change the real
  # sessions' outputs: every session is an independent row.
  import flax.linen as nn
  import jax
  from configs import mostra as mostra_config
  from data_pipelines import sessions as sessions_lib
  from larp_jax.jobs import mostra_job
  from larp_jax.models import mostra_scorers

  assert sessions_lib.OBJECTIVES.index('SAT') == mostra_scorers.SAT
  config = mostra_config.get_config('test')
  n, f = config.data.max_set_size, 5
  arrays = _random_split(37, n, f)  # 37 = 2 x 16 + 5: a padded last batch
  for name in ('DNN_BCE', 'MO-LTR_RMSE', 'SetTRM2GRU_AttRank', 'SetTRM2TRM_AttRank'):
    spec = mostra_scorers.scorer_spec(name)
    model = mostra_scorers.build_model(config.model, spec)
    params = nn.meta.unbox(
        mostra_scorers.init_params(
            model,
            spec,
            jax.random.PRNGKey(0),
            arrays['features'][:1],
            arrays['mask'][:1],
            arrays['labels'][:1],
            int(config.model.pointer_train_length),
        )
    )
    predict_fn = mostra_job.make_predict_fn(config, name)
    got = mostra_job._predict_split(predict_fn, params, arrays, 16)
    want = _zero_padded_outputs(
        lambda b: predict_fn(params, b['features'], b['mask'], b['labels']),
        {k: arrays[k] for k in ('features', 'mask', 'labels')},
        16,
    )
    assert set(got) == set(want), name
    for key in want:
      assert got[key].shape[0] == 37
      np.testing.assert_array_equal(got[key], want[key], err_msg=f'{name}/{key}')


def test_batched_beam_search_matches_zero_padded_chunks():
  from configs import mostra as mostra_config
  from larp_jax.decoding import beam_search
  from larp_jax.jobs import mostra_report

  report_config = mostra_config.get_config('test').report
  report_config.decode_batch_size = 16
  arrays = _random_split(37, 12, 1, seed=1)
  relevance = np.random.default_rng(2).random((37, 12)).astype(np.float32)
  objectives = arrays['labels'][..., 1:]
  for epsilon in (0.0, 0.1):
    got = mostra_report._mostra_sequences(
        relevance, objectives, arrays['mask'], epsilon, report_config, 10
    )
    want = _zero_padded_outputs(
        lambda b: beam_search.mostra_beam_search(
            b['r'],
            b['e'],
            b['v'],
            length=10,
            beam_size=int(report_config.beam_size),
            epsilon=float(epsilon),
            threshold=report_config.threshold,
            gain=report_config.gain,
        )[0],
        {'r': relevance, 'e': objectives, 'v': arrays['mask']},
        16,
    )['out']
    np.testing.assert_array_equal(got, want)


# ------------------------------------------------------------------ the demo claim, asserted


@pytest.fixture(scope='module')
def demo_claim(tmp_path_factory):
  """The demo generator's data (half the demo's sessions), one relevance scorer (SetRank_RMSE)
  trained as the demo trains it, and the report's decoders over its scores."""
  from test_mostra_mssd import launch

  workdir = tmp_path_factory.mktemp('mostra_demo_claim')
  results, stdout = launch(
      str(workdir),
      'demo',
      {
          'scorers': "('SetRank_RMSE',)",
          'data.demo.num_sessions': 3000,
          'data.demo.num_users': 450,
          'report.plot_epsilons': '(0.0,0.05)',
      },
      tmp_path_factory.mktemp('jax_cache_claim'),
  )
  return results, stdout


def test_demo_claim_holds_over_the_same_scorer(demo_claim):
  """MOSTRA(eps=0.05) raises BOOST, EXPOSURE and DISCOVERY NDCG@5 over the same scorer's sort,
  and drops SAT by less than MOSTRA-WtSUM(alpha=0.5) drops it (all on that scorer's scores)."""
  results, stdout = demo_claim
  ndcg = lambda row, objective: results[f'{row}/ndcg@5/{objective}']
  base, mostra, wtsum = 'Sort(same relevance)', 'MOSTRA(eps=0.05)', 'MOSTRA-WtSUM(alpha=0.5)'
  for objective in ('BOOST', 'EXPOSURE', 'DISCOVERY'):
    assert ndcg(mostra, objective) > ndcg(base, objective), objective
  sat_drop_mostra = ndcg(base, 'SAT') - ndcg(mostra, 'SAT')
  sat_drop_wtsum = ndcg(base, 'SAT') - ndcg(wtsum, 'SAT')
  assert sat_drop_mostra < sat_drop_wtsum, (sat_drop_mostra, sat_drop_wtsum)
  assert results['claim/holds'] is True and 'HOLDS' in stdout
  assert results['meta/relevance_model'] == 'SetRank_RMSE'
  # Fig. 4 / Fig. 6 of the same comparison were written.
  assert any(k.startswith(f'fig4/{mostra}/') for k in results)
  assert results[f'fig6/{mostra}/all@5/BOOST'] >= results[f'fig6/{mostra}/good@5/BOOST']
