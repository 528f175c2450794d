"""MOSTRA beam-search throughput: jitted batched decoder vs the per-session NumPy oracle, one run.

    python -m benchmarks.beam_search [--batch 1024] [--tracks 100] [--objectives 3]
        [--beam_size 5] [--length 10] [--epsilon 0.05] [--numpy_sessions 128] [--repeats 7]
        [--threshold relative] [--gain total] [--json out.json]

Ours: `larp_jax.decoding.beam_search.mostra_beam_search` on the whole batch (one jitted
`lax.scan`), float32, on the default JAX device (CPU here). Baseline: `tests/numpy_beam_search.py`
(`beam_search_session`, one session at a time, loops over positions and beams, NumPy over the
tracks of a beam). Both get the same random sessions: relevance U(0, 1), binary objectives with
p = 0.3, about 10% padded candidates.

NumPy is timed on the first `--numpy_sessions` sessions and scaled to sessions/s (its cost per
session does not depend on the batch). The two are timed alternately, `--repeats` times each, so
load from other processes hits both alike; the median is reported. Compile time = first call
(trace + compile + run) minus the median steady call. The outputs are checked to be equal on the
timed NumPy subset.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import jax
import numpy as np

from larp_jax.decoding.beam_search import mostra_beam_search

sys.path.insert(
    0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'tests')
)
import numpy_beam_search  # noqa: E402  (the oracle lives with the tests)


def _flags(argv: list[str] | None = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog='benchmarks.beam_search')
  parser.add_argument('--batch', type=int, default=1024)
  parser.add_argument('--tracks', type=int, default=100)
  parser.add_argument('--objectives', type=int, default=3)
  parser.add_argument('--beam_size', type=int, default=5)
  parser.add_argument('--length', type=int, default=10)
  parser.add_argument('--epsilon', type=float, default=0.05)
  parser.add_argument('--threshold', choices=('relative', 'absolute'), default='relative')
  parser.add_argument('--gain', choices=('total', 'marginal'), default='total')
  parser.add_argument('--numpy_sessions', type=int, default=128)
  parser.add_argument('--repeats', type=int, default=7)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--json', default=None, help='Write the results to this file.')
  return parser.parse_args(argv)


def _sessions(args: argparse.Namespace):
  rng = np.random.default_rng(args.seed)
  shape = (args.batch, args.tracks)
  relevance = rng.random(shape).astype(np.float32)
  objectives = (rng.random(shape + (args.objectives,)) < 0.3).astype(np.float32)
  valid = rng.random(shape) < 0.9
  return relevance, objectives, valid


def run(args: argparse.Namespace) -> dict[str, float]:
  relevance, objectives, valid = _sessions(args)
  options = dict(
      length=args.length,
      beam_size=args.beam_size,
      epsilon=args.epsilon,
      threshold=args.threshold,
      gain=args.gain,
  )
  device_inputs = [jax.device_put(x) for x in (relevance, objectives, valid)]

  def ours():
    return jax.block_until_ready(mostra_beam_search(*device_inputs, **options))

  subset = slice(0, min(args.numpy_sessions, args.batch))

  def baseline():
    return numpy_beam_search.beam_search_batch(
        relevance[subset], objectives[subset], valid[subset], **options
    )

  start = time.perf_counter()
  sequences, _ = ours()
  first_call = time.perf_counter() - start
  expected, _ = baseline()  # warm-up, and the equality check
  if not np.array_equal(np.asarray(sequences)[subset], expected):
    raise RuntimeError('jitted decoder and NumPy oracle disagree on the benchmark sessions')
  ours_s, numpy_s = [], []
  for _ in range(args.repeats):
    start = time.perf_counter()
    ours()
    ours_s.append(time.perf_counter() - start)
    start = time.perf_counter()
    baseline()
    numpy_s.append(time.perf_counter() - start)
  ours_call = statistics.median(ours_s)
  numpy_call = statistics.median(numpy_s)
  numpy_count = subset.stop - subset.start
  results = {
      'batch': args.batch,
      'tracks': args.tracks,
      'objectives': args.objectives,
      'beam_size': args.beam_size,
      'length': args.length,
      'epsilon': args.epsilon,
      'ours_call_s': ours_call,
      'ours_sessions_per_s': args.batch / ours_call,
      'numpy_sessions_timed': numpy_count,
      'numpy_call_s': numpy_call,
      'numpy_sessions_per_s': numpy_count / numpy_call,
      'compile_s': first_call - ours_call,
      'device': str(jax.devices()[0]),
  }
  results['ratio'] = results['ours_sessions_per_s'] / results['numpy_sessions_per_s']
  return results


def _print_table(r: dict[str, float]) -> None:
  print(
      f"MOSTRA beam search, B={r['batch']} N={r['tracks']} J={r['objectives']} "
      f"beam={r['beam_size']} length={r['length']} epsilon={r['epsilon']} on {r['device']}"
  )
  print(f"{'implementation':<34}{'call [ms]':>12}{'sessions/s':>14}")
  print(
      f"{'jitted lax.scan (whole batch)':<34}{r['ours_call_s'] * 1e3:>12.2f}"
      f"{r['ours_sessions_per_s']:>14.0f}"
  )
  label = f"NumPy per session ({r['numpy_sessions_timed']} timed)"
  print(f"{label:<34}{r['numpy_call_s'] * 1e3:>12.2f}{r['numpy_sessions_per_s']:>14.0f}")
  print(
      f"NumPy sessions/s is measured on {r['numpy_sessions_timed']} sessions and scaled "
      f'(per-session cost); medians of alternating timed calls.'
  )
  print(f"ratio (jitted / NumPy sessions/s): {r['ratio']:.1f}x")
  print(f"compile time (first call - steady call): {r['compile_s']:.2f} s")


def main(argv: list[str] | None = None) -> None:
  args = _flags(argv)
  results = run(args)
  _print_table(results)
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(results, f, indent=2)


if __name__ == '__main__':
  main()
