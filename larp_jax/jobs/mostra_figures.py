"""MOSTRA Fig. 4 (gains by competition within sets) and Fig. 6 (Good/All top-5 tracks).

Both compare decoders of ONE relevance scorer (the report's `relevance_model`): MOSTRA rows and
WtSUM rows against that scorer's own sort (`mostra_report.SAME_SCORER_SORT`).

Fig. 4: sessions are grouped by which non-user objectives their valid tracks hold and in what
order of frequency: 'BOOST only', 'EXPOSURE only', 'DISCOVERY only' (the paper's diagonal), and
for sessions with several, the objectives present ordered by count, e.g. 'BOOST>EXPOSURE' or
'EXPOSURE>DISCOVERY>BOOST' (ties broken in BOOST, EXPOSURE, DISCOVERY order). Per group and
objective: mean NDCG@5 of the MOSTRA row minus that of the same-scorer sort, over the group's
sessions where the objective's NDCG is defined. Keys 'fig4/<row>/<group>/<OBJ>' (fractions)
and 'fig4/<row>/<group>/sessions'.

Fig. 6: per row, the mean number of top-5 tracks per session with objective j ('All') and with
objective j that were also streamed, SAT = 1 ('Good'). Keys 'fig6/<row>/all@5/<OBJ>',
'fig6/<row>/good@5/<OBJ>'.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

OTHERS = ('BOOST', 'EXPOSURE', 'DISCOVERY')


def session_groups(labels: np.ndarray, valid: np.ndarray, names: Sequence[str]) -> np.ndarray:
  """Group name per session (str [S]); '' for sessions with none of BOOST/EXPOSURE/DISCOVERY."""
  columns = [list(names).index(o) for o in OTHERS]
  counts = np.where(valid[..., None], labels[..., columns], 0).sum(axis=1)  # [S, 3]
  groups = []
  for row in counts:
    present = [(-c, k) for k, c in enumerate(row) if c > 0]
    if not present:
      groups.append('')
    elif len(present) == 1:
      groups.append(f'{OTHERS[present[0][1]]} only')
    else:
      groups.append('>'.join(OTHERS[k] for _, k in sorted(present)))
  return np.array(groups)


def top_counts(sequences: np.ndarray, labels: np.ndarray, sat_index: int, column: int, k: int = 5):
  """(All, Good) float [S]: top-k tracks with objective `column`, and those also streamed."""
  top = sequences[:, :k]
  picked = np.take_along_axis(labels, np.maximum(top, 0)[..., None], axis=1)  # [S, k, J]
  real = (top >= 0)[..., None]
  objective = (picked[..., column] > 0) & real[..., 0]
  good = objective & (picked[..., sat_index] > 0)
  return objective.sum(1).astype(float), good.sum(1).astype(float)


def figure_results(
    per_session: Mapping[str, Mapping[str, np.ndarray]],
    sequences: Mapping[str, np.ndarray],
    labels: np.ndarray,
    valid: np.ndarray,
    names: Sequence[str],
    base: str,
    rows: Sequence[str],
) -> dict[str, Any]:
  """Flat Fig. 4 / Fig. 6 results (module docstring) for `rows` against `base`."""
  if not all(o in names for o in OTHERS) or 'ndcg@5/SAT' not in per_session.get(base, {}):
    return {}
  out: dict[str, Any] = {}
  groups = session_groups(labels, valid, names)
  sat = list(names).index('SAT')
  for row in [r for r in rows if r in per_session]:
    for group in sorted(set(groups) - {''}):
      members = groups == group
      out[f'fig4/{row}/{group}/sessions'] = int(members.sum())
      for objective in names:
        a = per_session[row][f'ndcg@5/{objective}'][members]
        b = per_session[base][f'ndcg@5/{objective}'][members]
        defined = ~np.isnan(a) & ~np.isnan(b)
        out[f'fig4/{row}/{group}/{objective}'] = (
            float(np.mean(a[defined] - b[defined])) if defined.any() else float('nan')
        )
  for row in [base] + [r for r in rows if r in sequences]:
    for objective in OTHERS:
      shown, good = top_counts(sequences[row], labels, sat, list(names).index(objective))
      out[f'fig6/{row}/all@5/{objective}'] = float(shown[valid.any(1)].mean())
      out[f'fig6/{row}/good@5/{objective}'] = float(good[valid.any(1)].mean())
  return out


def plot_figures(results: Mapping[str, Any], base: str, rows: Sequence[str], plot_dir: str) -> None:
  """plots/fig4_gains_by_competition.png and plots/fig6_good_all.png (if the keys exist)."""
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

  os.makedirs(plot_dir, exist_ok=True)
  fig4_rows = [r for r in rows if any(k.startswith(f'fig4/{r}/') for k in results)]
  if fig4_rows:
    row = fig4_rows[len(fig4_rows) // 2]
    groups = sorted({k.split('/')[2] for k in results if k.startswith(f'fig4/{row}/')})
    objectives = ('SAT',) + OTHERS
    grid = np.array([[results[f'fig4/{row}/{g}/{o}'] for o in objectives] for g in groups])
    fig, ax = plt.subplots(figsize=(6.4, 0.45 * len(groups) + 1.5))
    limit = np.nanmax(np.abs(grid)) or 1.0
    image = ax.imshow(100 * grid, cmap='RdBu', vmin=-100 * limit, vmax=100 * limit, aspect='auto')
    ax.set_xticks(range(len(objectives)), objectives)
    ax.set_yticks(
        range(len(groups)),
        [f"{g} ({results[f'fig4/{row}/{g}/sessions']})" for g in groups],
        fontsize=7,
    )
    for (i, j), v in np.ndenumerate(grid):
      ax.text(j, i, f'{100 * v:+.1f}', ha='center', va='center', fontsize=7)
    fig.colorbar(image, label=f'NDCG@5 gain over {base} [points]')
    ax.set_title(f'{row} vs {base} by session composition (Fig. 4)', fontsize=9)
    fig.tight_layout()
    fig.savefig(os.path.join(plot_dir, 'fig4_gains_by_competition.png'), dpi=120)
    plt.close(fig)
  fig6_rows = [r for r in [base] + list(rows) if f'fig6/{r}/all@5/BOOST' in results]
  if fig6_rows:
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.6), sharey=False)
    for ax, objective in zip(axes, OTHERS):
      shown = [results[f'fig6/{r}/all@5/{objective}'] for r in fig6_rows]
      good = [results[f'fig6/{r}/good@5/{objective}'] for r in fig6_rows]
      x = np.arange(len(fig6_rows))
      ax.bar(x, shown, color='C0', alpha=0.4, label='All')
      ax.bar(x, good, color='C0', label='Good (streamed)')
      ax.set_xticks(x, fig6_rows, rotation=60, ha='right', fontsize=7)
      ax.set_title(f'{objective}: top-5 tracks / session', fontsize=9)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(plot_dir, 'fig6_good_all.png'), dpi=120)
    plt.close(fig)
