"""MOSTRA Table 1 report: decode every method's sequence on one split and score it per objective.

Rows (Table 1 of the paper, in its order and groups):
  Relevance ranker                 sort by the raw user-track cosine (`arrays['cosine']`).
  DNN_{AttRank,BCE,RMSE}, SetRank (AttRank), SetRank_{BCE,RMSE}, MO-LTR_{AttRank,RMSE}
                                   sort by the trained scorer's logits.
  SetTRM2GRU_AttRank, SetTRM2TRM_AttRank   the pointer decoder's greedy sequence.
  Sort(same relevance)             sort by the relevance model's r (the fair baseline: MOSTRA and
                                   WtSUM decode the same r; epsilon = 0 without objectives).
  MOSTRA-WtSUM(alpha=a)            `weighted_sum_decode` of the relevance model's r = sigmoid
                                   (config `relevance_model`) with the true objective labels E.
  MOSTRA(eps=e)                    `mostra_beam_search` of the same r and E (config `beam_size`,
                                   `threshold`, `gain`).
E = the non-SAT label columns (BOOST, EXPOSURE, DISCOVERY): decorations known at inference.
Every decoder emits `max(ndcg_ks)` positions; metrics are defined in
`larp_jax.evaluation.sequencing` (NDCG@K with rax, AP@K normalised by min(|gt|, K) with
"streamed only" relevance for mAP, sessions without a relevant track left out).

`results.json` (flat keys; metric values are fractions in [0, 1], the printed table shows %):
  '<row>/ndcg@<K>/<OBJ>', '<row>/map@<k>/<OBJ>'   mean over the sessions where it is defined.
  '<row>/p_vs_<baseline>/ndcg@<K>/<OBJ>'          two-sided paired t-test p-value (uncorrected)
                                                  against `baseline_row` (default: the same
                                                  scorer's sort), per session.
  'sessions/total', 'sessions/<metric>/<OBJ>'     number of sessions each mean averages over.
  'fig5/MOSTRA(eps=e)/map@<k>/<OBJ>'              the Fig. 5 sweep over `plot_epsilons`.
  'claim/...'                                     the headline claim over one scorer
                                                  (`claim_check`).
  'meta/unavailable/<OBJ>'                        why an objective is missing from the data.
  'meta/...'                                      split, relevance model, decoder settings.
Row names: 'MOSTRA(eps=0.05)', 'MOSTRA-WtSUM(alpha=0.5)' (numbers formatted with `:g`).

`plots/map_vs_epsilon.png`: per-objective mAP@k of MOSTRA against eps (Fig. 5), with the
baseline's values as dashed lines. `plots/fig4_gains_by_competition.png`,
`plots/fig6_good_all.png` and the 'fig4/...', 'fig6/...' keys: larp_jax/jobs/mostra_figures.py
(when all four objectives are available).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from scipy import stats

from larp_jax.decoding import baseline_decoders
from larp_jax.decoding import beam_search
from larp_jax.evaluation import batched, sequencing
from larp_jax.jobs import mostra_figures

RELEVANCE_RANKER = 'Relevance ranker'
SORTED_SCORER_ROWS = (
    'DNN_AttRank',
    'DNN_BCE',
    'DNN_RMSE',
    'SetRank',
    'SetRank_BCE',
    'SetRank_RMSE',
    'MO-LTR_AttRank',
    'MO-LTR_RMSE',
)
POINTER_ROWS = ('SetTRM2GRU_AttRank', 'SetTRM2TRM_AttRank')
SHORT_NAMES = {'SAT': 'SAT', 'BOOST': 'BOOST', 'EXPOSURE': 'EXPOS.', 'DISCOVERY': 'DISCO.'}


# The relevance model's own sort (epsilon = 0 without objectives): the fair baseline of MOSTRA
# and MOSTRA-WtSUM, which decode the same relevance scores.
SAME_SCORER_SORT = 'Sort(same relevance)'


def wtsum_row(alpha: float) -> str:
  return f'MOSTRA-WtSUM(alpha={alpha:g})'


def mostra_row(epsilon: float) -> str:
  return f'MOSTRA(eps={epsilon:g})'


def table1_groups(report_config: Any) -> tuple[tuple[str, tuple[str, ...]], ...]:
  """(group title, row names) in the paper's order."""
  return (
      ('Track-level Single-objective', (RELEVANCE_RANKER, 'DNN_AttRank', 'DNN_BCE', 'DNN_RMSE')),
      (
          'Set-level Single-objective',
          ('SetTRM2GRU_AttRank', 'SetTRM2TRM_AttRank', 'SetRank', 'SetRank_BCE', 'SetRank_RMSE'),
      ),
      ('Set-level Learnt Multi-objective', ('MO-LTR_AttRank', 'MO-LTR_RMSE')),
      (
          'Set-level Online Multi-objective',
          (SAME_SCORER_SORT,)
          + tuple(wtsum_row(a) for a in report_config.alphas)
          + tuple(mostra_row(e) for e in report_config.epsilons),
      ),
  )


def table1_rows(report_config: Any) -> tuple[str, ...]:
  return tuple(row for _, rows in table1_groups(report_config) for row in rows)


def decode_predictions(outputs: Mapping[str, Any], mask: Any, length: int) -> jax.Array:
  """int32 [B, length]: a pointer model's `sequences`, or the sort of a scorer's `logits`."""
  if 'sequences' in outputs:
    return jnp.asarray(outputs['sequences'])
  return baseline_decoders.sort_decode(
      jnp.asarray(outputs['logits']), jnp.asarray(mask), length=length
  )


def _mostra_sequences(relevance, objectives, valid, epsilon, report_config, length):
  """int32 [S, length]: `mostra_beam_search` in fixed-size batches (`batched.batched_apply`)."""
  size = min(int(report_config.decode_batch_size), len(valid))
  return batched.batched_apply(
      lambda b: beam_search.mostra_beam_search(
          b['relevance'],
          b['objectives'],
          b['valid'],
          length=length,
          beam_size=int(report_config.beam_size),
          epsilon=float(epsilon),
          threshold=report_config.threshold,
          gain=report_config.gain,
      )[0],
      {'relevance': relevance, 'objectives': objectives, 'valid': valid},
      size,
  )


def decode_all(
    report_config: Any,
    arrays: Mapping[str, np.ndarray],
    predictions: Mapping[str, Mapping[str, np.ndarray]],
    objective_names: Sequence[str],
) -> dict[str, np.ndarray]:
  """Sequences int32 [S, L] of every Table 1 row whose inputs are available."""
  valid = np.asarray(arrays['mask'], bool)
  length = max(max(report_config.ndcg_ks), int(report_config.map_k))
  objective_columns = [j for j, n in enumerate(objective_names) if n != 'SAT']
  objectives = np.asarray(arrays['labels'])[..., objective_columns].astype(np.float32)
  sequences = {}
  if np.any(arrays['cosine']):  # MSSD builds have no user vectors, hence no cosine
    sequences[RELEVANCE_RANKER] = np.asarray(
        baseline_decoders.sort_decode(
            jnp.asarray(arrays['cosine']), jnp.asarray(valid), length=length
        )
    )
  for row in SORTED_SCORER_ROWS + POINTER_ROWS:
    if row in predictions:
      sequences[row] = np.asarray(decode_predictions(predictions[row], valid, length))
  name = report_config.relevance_model
  if name not in predictions or 'relevance' not in predictions[name]:
    logging.warning('relevance model %r has no relevance scores: no MOSTRA rows', name)
    return sequences
  relevance = np.asarray(predictions[name]['relevance'], np.float32)
  sequences[SAME_SCORER_SORT] = np.asarray(
      baseline_decoders.sort_decode(jnp.asarray(relevance), jnp.asarray(valid), length=length)
  )
  for alpha in report_config.alphas:
    sequences[wtsum_row(alpha)] = np.asarray(
        baseline_decoders.weighted_sum_decode(
            relevance,
            objectives,
            valid,
            alpha=float(alpha),
            length=length,
            relevance_threshold=float(report_config.wtsum_relevance_threshold),
        )
    )
  for epsilon in sorted(set(report_config.epsilons) | set(report_config.plot_epsilons)):
    sequences[mostra_row(epsilon)] = _mostra_sequences(
        relevance, objectives, valid, epsilon, report_config, length
    )
  return sequences


def _paired_p_value(a: np.ndarray, b: np.ndarray) -> float:
  defined = ~np.isnan(a) & ~np.isnan(b)
  diff = a[defined] - b[defined]
  if len(diff) < 2:
    return float('nan')
  if np.allclose(diff, diff[0]):
    return 1.0 if np.isclose(diff[0], 0.0) else 0.0
  return float(stats.ttest_rel(a[defined], b[defined]).pvalue)


def claim_check(results: Mapping[str, Any], report_config: Any) -> dict[str, Any]:
  """The headline claim on NDCG@5, over ONE scorer: MOSTRA(eps=0.05) raises BOOST, EXPOSURE and
  DISCOVERY over the same relevance model's sort while its SAT drop is smaller than
  MOSTRA-WtSUM(alpha=0.5)'s (both decode that relevance model's scores). Needs all four."""
  base = SAME_SCORER_SORT
  mostra, wtsum = mostra_row(0.05), wtsum_row(0.5)
  others = ('BOOST', 'EXPOSURE', 'DISCOVERY')
  needed = [f'{r}/ndcg@5/{o}' for r in (base, mostra, wtsum) for o in ('SAT',) + others]
  if any(k not in results for k in needed):
    return {}
  delta = lambda row, obj: results[f'{row}/ndcg@5/{obj}'] - results[f'{base}/ndcg@5/{obj}']
  out = {f'claim/{mostra}-{base}/ndcg@5/{obj}': delta(mostra, obj) for obj in ('SAT',) + others}
  out[f'claim/{wtsum}-{base}/ndcg@5/SAT'] = delta(wtsum, 'SAT')
  out['claim/raises_others'] = bool(all(delta(mostra, o) > 0 for o in others))
  out['claim/sat_drop_smaller_than_wtsum'] = bool(-delta(mostra, 'SAT') < -delta(wtsum, 'SAT'))
  out['claim/holds'] = out['claim/raises_others'] and out['claim/sat_drop_smaller_than_wtsum']
  return out


def format_table(
    results: Mapping[str, Any], report_config: Any, objective_names: Sequence[str]
) -> str:
  """Table 1 as text (values in %); '*' marks a Bonferroni-significant difference from the
  baseline (paired t-test over sessions; the correction counts every row x NDCG metric)."""
  ks = tuple(report_config.ndcg_ks)
  map_k = int(report_config.map_k)
  metrics = [f'ndcg@{k}/{o}' for k in ks for o in objective_names] + [
      f'map@{map_k}/{o}' for o in objective_names
  ]
  base = report_config.baseline_row
  groups = table1_groups(report_config)
  rows = [r for _, rs in groups for r in rs if f'{r}/{metrics[0]}' in results]
  tested = [r for r in rows if r != base]
  num_tests = max(1, len(tested) * len(ks) * len(objective_names))
  level = float(report_config.significance_level)
  width = max(len(r) for r in rows) + 2 if rows else 20
  head1 = (
      ' ' * width
      + ''.join(f'{f"NDCG@{k} [%]":<{8 * len(objective_names)}}' for k in ks)
      + f'mAP@{map_k} [%] (streamed)'
  )
  head2 = f'{"Method":<{width}}' + ''.join(
      f'{SHORT_NAMES.get(o, o[:7]):>8}' for _ in range(len(ks) + 1) for o in objective_names
  )
  lines = [head1, head2]
  for title, group_rows in groups:
    present = [r for r in group_rows if r in rows]
    if not present:
      continue
    lines.append(title)
    for row in present:
      cells = []
      for metric in metrics:
        value = results.get(f'{row}/{metric}', float('nan'))
        p = results.get(f'{row}/p_vs_{base}/{metric}')
        mark = '*' if p is not None and p * num_tests < level else ' '
        cells.append(f'{100 * value:7.2f}{mark}')
      lines.append(f'  {row:<{width - 2}}' + ''.join(cells))
  lines.append(
      f'* = differs from {base} (paired t-test, p < {level:g} after Bonferroni over '
      f"{num_tests} tests); {results.get('sessions/total', '?')} sessions of split "
      f"'{report_config.split}'; MOSTRA/WtSUM relevance: {report_config.relevance_model}"
  )
  return '\n'.join(lines)


def plot_map_vs_epsilon(
    results: Mapping[str, Any], report_config: Any, objective_names: Sequence[str], path: str
) -> None:
  """Fig. 5: MOSTRA mAP@k per objective against eps; dashed: the baseline row."""
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

  map_k = int(report_config.map_k)
  epsilons = sorted(set(report_config.epsilons) | set(report_config.plot_epsilons))
  base = report_config.baseline_row
  fig, ax = plt.subplots(figsize=(6.4, 4.2))
  for j, obj in enumerate(objective_names):
    color = f'C{j}'
    values = [results.get(f'fig5/{mostra_row(e)}/map@{map_k}/{obj}', np.nan) for e in epsilons]
    ax.plot(epsilons, values, marker='o', color=color, label=obj)
    if f'{base}/map@{map_k}/{obj}' in results:
      ax.axhline(results[f'{base}/map@{map_k}/{obj}'], color=color, linestyle='--', linewidth=0.8)
  ax.set_xlabel('relaxation threshold $\\epsilon$')
  ax.set_ylabel(f'mAP@{map_k} (streamed tracks)')
  ax.set_title(f'MOSTRA ({report_config.relevance_model} relevance); dashed: {base}')
  ax.legend()
  ax.grid(alpha=0.3)
  fig.tight_layout()
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fig.savefig(path, dpi=120)
  plt.close(fig)


def write_report(
    report_config: Any,
    workdir: str,
    arrays: Mapping[str, np.ndarray],
    predictions: Mapping[str, Mapping[str, np.ndarray]],
    *,
    objective_names: Sequence[str] = sequencing.DEFAULT_OBJECTIVES,
    unavailable: Mapping[str, str] | None = None,
) -> dict[str, Any]:
  """Decodes, scores, prints Table 1 and writes results.json and plots/map_vs_epsilon.png.

  Args:
    report_config: `config.report` (see configs/mostra.py).
    workdir: output directory.
    arrays: one split of `data_pipelines.sessions.load_sessions` (mask [S, N], labels
      [S, N, J], cosine [S, N]).
    predictions: {scorer name: {'logits', 'relevance'} float [S, N] or {'sequences'} int
      [S, L]} for the trained scorers.
    objective_names: the J label columns (must include 'SAT').
    unavailable: {objective: reason} of objectives the data cannot give (reported as such).

  Returns:
    The flat results dict written to results.json.
  """
  if 'SAT' not in objective_names:
    raise ValueError(f"objective_names must include 'SAT', got {tuple(objective_names)}")
  sat_index = list(objective_names).index('SAT')
  valid = np.asarray(arrays['mask'], bool)
  labels = np.asarray(arrays['labels'], np.float32)
  sequences = decode_all(report_config, arrays, predictions, objective_names)
  table_rows = set(table1_rows(report_config))
  fig5_rows = {mostra_row(e) for e in report_config.plot_epsilons}
  map_k = int(report_config.map_k)
  per_session = {
      row: sequencing.per_session_metrics(
          seq,
          labels,
          valid,
          ndcg_ks=tuple(report_config.ndcg_ks),
          map_ks=(map_k,),
          objective_names=objective_names,
          sat_index=sat_index,
          streamed_only=True,
      )
      for row, seq in sequences.items()
  }
  results: dict[str, Any] = {'sessions/total': int(valid.any(axis=1).sum())}
  for row, values in per_session.items():
    means = sequencing.mean_metrics(values)
    for metric in values:
      if row in table_rows:
        results[f'{row}/{metric}'] = means[metric]
      if row in fig5_rows and metric.startswith('map@'):
        results[f'fig5/{row}/{metric}'] = means[metric]
      results.setdefault(f'sessions/{metric}', means[f'count/{metric}'])
  base = report_config.baseline_row
  if base in per_session:
    for row in table_rows & set(per_session) - {base}:
      for metric, values in per_session[row].items():
        if metric.startswith('ndcg@'):
          results[f'{row}/p_vs_{base}/{metric}'] = _paired_p_value(
              values, per_session[base][metric]
          )
  missing = sorted(table_rows - set(per_session))
  if missing:
    logging.warning('Table 1 rows without inputs (not trained?): %s', missing)
  results.update(claim_check(results, report_config))
  online = [wtsum_row(a) for a in report_config.alphas] + [
      mostra_row(e) for e in report_config.epsilons
  ]
  results.update(
      mostra_figures.figure_results(
          per_session, sequences, labels, valid, objective_names, SAME_SCORER_SORT, online
      )
  )
  results.update(
      {
          'meta/split': report_config.split,
          'meta/relevance_model': report_config.relevance_model,
          'meta/beam_size': int(report_config.beam_size),
          'meta/threshold': report_config.threshold,
          'meta/gain': report_config.gain,
          'meta/decode_length': max(max(report_config.ndcg_ks), map_k),
          'meta/objectives': list(objective_names),
      }
  )
  for objective, reason in (unavailable or {}).items():
    results[f'meta/unavailable/{objective}'] = reason
  table = format_table(results, report_config, objective_names)
  if unavailable:
    table += '\n' + '\n'.join(
        f'{objective}: unavailable ({reason})' for objective, reason in unavailable.items()
    )
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, 'results.json'), 'w') as f:
      json.dump(results, f, indent=1, sort_keys=True)
    with open(os.path.join(workdir, 'table1.txt'), 'w') as f:
      f.write(table + '\n')
    plot_map_vs_epsilon(
        results,
        report_config,
        objective_names,
        os.path.join(workdir, 'plots', 'map_vs_epsilon.png'),
    )
    mostra_figures.plot_figures(results, SAME_SCORER_SORT, online, os.path.join(workdir, 'plots'))
  print('Table 1 (MOSTRA), test split:')
  print(table)
  if 'claim/holds' in results:
    print(_claim_text(results, report_config))
  return results


def _claim_text(results: Mapping[str, Any], report_config: Any) -> str:
  base = SAME_SCORER_SORT
  mostra, wtsum = mostra_row(0.05), wtsum_row(0.5)
  deltas = ', '.join(
      f"{o} {100 * results[f'claim/{mostra}-{base}/ndcg@5/{o}']:+.2f}"
      for o in ('SAT', 'BOOST', 'EXPOSURE', 'DISCOVERY')
  )
  return (
      f'Claim check (NDCG@5 points vs {base}, the same scorer): {mostra}: {deltas}; {wtsum}: SAT '
      f"{100 * results[f'claim/{wtsum}-{base}/ndcg@5/SAT']:+.2f} -> "
      f"{'HOLDS' if results['claim/holds'] else 'DOES NOT HOLD'}"
  )
