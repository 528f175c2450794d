"""MOSTRA beam-search throughput: jitted batched decoder vs a per-session NumPy decoder, one run.

    python -m benchmarks.beam_search [--tracks 100,20] [--batch 1024] [--sweep 256,1024,4096,16384]
        [--objectives 3] [--beam_size 5] [--length 10] [--epsilon 0.05] [--numpy_sessions 128]
        [--repeats 15] [--threshold relative] [--gain total] [--tile_size 256] [--json out.json]

Ours: `larp_jax.decoding.beam_search.mostra_beam_search` on the whole batch (input checks, the
exact-pool pre-pass and one jitted call, tiled), float32, on the default JAX device. Baseline:
`benchmarks/beam_search_numpy.py`, one session at a time, NumPy vectorised over beams and
candidates. Both get the same random sessions: relevance U(0, 1), binary objectives with p = 0.3,
about 10% padded candidates.

For each N in --tracks: NumPy is timed on the first `--numpy_sessions` sessions and scaled to
sessions/s (its cost per session does not depend on the batch); the two are timed alternately,
`--repeats` times each, so load from other processes hits both alike; medians are reported (and
the 10th percentile, less sensitive to load). Compile time = first call (trace + compile + run)
minus the median steady call. The sequences are compared on the timed subset. Threads: each
side's process CPU time over its wall time (about 1.0 = one core; more = several threads). The
1-minute load average is printed before and after. Then a sweep over batch sizes (--sweep) of
ours alone.

Single-core fair by default (`--cpus 1`): the process is pinned to one CPU before JAX starts, so
XLA:CPU neither splits large loops over a second thread (it does on 2 cores for a few fusions)
nor gets more cores than the single-threaded NumPy baseline. `--cpus 0` leaves the affinity as is.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import jax
import numpy as np

from benchmarks import beam_search_numpy
from larp_jax.decoding.beam_search import DEFAULT_TILE_SIZE, mostra_beam_search


def _ints(text: str) -> list[int]:
  return [int(x) for x in text.split(',') if x]


def _flags(argv: list[str] | None = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog='benchmarks.beam_search')
  parser.add_argument('--batch', type=int, default=1024)
  parser.add_argument('--tracks', type=_ints, default=[100, 20])
  parser.add_argument('--sweep', type=_ints, default=[256, 1024, 4096, 16384])
  parser.add_argument('--objectives', type=int, default=3)
  parser.add_argument('--beam_size', type=int, default=5)
  parser.add_argument('--length', type=int, default=10)
  parser.add_argument('--epsilon', type=float, default=0.05)
  parser.add_argument('--threshold', choices=('relative', 'absolute'), default='relative')
  parser.add_argument('--gain', choices=('total', 'marginal'), default='total')
  parser.add_argument('--tile_size', type=int, default=DEFAULT_TILE_SIZE)
  parser.add_argument('--numpy_sessions', type=int, default=128)
  parser.add_argument('--repeats', type=int, default=15)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--cpus', type=int, default=1, help='Pin to this many CPUs (0: no pinning).')
  parser.add_argument('--json', default=None, help='Write the results to this file.')
  return parser.parse_args(argv)


def _sessions(batch: int, tracks: int, args: argparse.Namespace):
  rng = np.random.default_rng(args.seed)
  shape = (batch, tracks)
  relevance = rng.random(shape).astype(np.float32)
  objectives = (rng.random(shape + (args.objectives,)) < 0.3).astype(np.float32)
  valid = rng.random(shape) < 0.9
  return relevance, objectives, valid


def _options(args: argparse.Namespace) -> dict:
  return dict(
      length=args.length,
      beam_size=args.beam_size,
      epsilon=args.epsilon,
      threshold=args.threshold,
      gain=args.gain,
  )


def _ours(inputs, args):
  def call():
    return jax.block_until_ready(
        mostra_beam_search(*inputs, tile_size=args.tile_size, **_options(args))
    )

  return call


def compare(tracks: int, args: argparse.Namespace) -> dict[str, float]:
  """Ours vs the NumPy baseline at (B = args.batch, N = tracks)."""
  relevance, objectives, valid = _sessions(args.batch, tracks, args)
  ours = _ours([jax.device_put(x) for x in (relevance, objectives, valid)], args)
  subset = slice(0, min(args.numpy_sessions, args.batch))

  def baseline():
    return beam_search_numpy.decode_batch(
        relevance[subset], objectives[subset], valid[subset], **_options(args)
    )

  start = time.perf_counter()
  sequences, scores = ours()
  first_call = time.perf_counter() - start
  expected, expected_scores = baseline()  # warm-up, and the agreement check
  # Sequences may differ where extensions tie in exact arithmetic (e.g. two tracks without
  # objectives swapped): float32 rounding then decides. The best scores must agree.
  agree = float(np.mean(np.abs(np.asarray(scores)[subset] - expected_scores) <= 1e-4))
  same = float(np.mean(np.all(np.asarray(sequences)[subset] == expected, axis=1)))
  if agree < 0.99:
    raise RuntimeError(f'jitted decoder and NumPy baseline scores agree on only {agree:.1%}')
  ours_s, numpy_s, ours_cpu, numpy_cpu = [], [], 0.0, 0.0
  for _ in range(args.repeats):
    cpu, start = time.process_time(), time.perf_counter()
    ours()
    ours_s.append(time.perf_counter() - start)
    ours_cpu += time.process_time() - cpu
    cpu, start = time.process_time(), time.perf_counter()
    baseline()
    numpy_s.append(time.perf_counter() - start)
    numpy_cpu += time.process_time() - cpu
  ours_call = statistics.median(ours_s)
  numpy_call = statistics.median(numpy_s)
  numpy_count = subset.stop - subset.start
  results = {
      'batch': args.batch,
      'tracks': tracks,
      'ours_call_s': ours_call,
      'ours_sessions_per_s': args.batch / ours_call,
      'numpy_sessions_timed': numpy_count,
      'numpy_call_s': numpy_call,
      'numpy_sessions_per_s': numpy_count / numpy_call,
      'compile_s': first_call - ours_call,
      'agreement': agree,
      'same_sequence': same,
      'ours_threads': ours_cpu / sum(ours_s),
      'numpy_threads': numpy_cpu / sum(numpy_s),
      'ours_call_p10_s': _p10(ours_s),
      'numpy_call_p10_s': _p10(numpy_s),
  }
  results['ratio'] = results['ours_sessions_per_s'] / results['numpy_sessions_per_s']
  results['ratio_p10'] = (args.batch / results['ours_call_p10_s']) / (
      numpy_count / results['numpy_call_p10_s']
  )
  return results


def _p10(times: list[float]) -> float:
  return sorted(times)[len(times) // 10]


def sweep(tracks: int, args: argparse.Namespace) -> dict[int, float]:
  """Our sessions/s per batch size (median of `repeats` calls after one warm-up)."""
  out = {}
  for batch in args.sweep:
    inputs = [jax.device_put(x) for x in _sessions(batch, tracks, args)]
    ours = _ours(inputs, args)
    ours()
    times = []
    for _ in range(max(3, args.repeats // 2)):
      start = time.perf_counter()
      ours()
      times.append(time.perf_counter() - start)
    out[batch] = batch / statistics.median(times)
  return out


def run(args: argparse.Namespace) -> dict:
  load_before = os.getloadavg()[0]
  results = {
      'options': {**_options(args), 'objectives': args.objectives, 'tile_size': args.tile_size},
      'device': str(jax.devices()[0]),
      'compare': [compare(n, args) for n in args.tracks],
      'sweep': {str(n): sweep(n, args) for n in args.tracks} if args.sweep else {},
  }
  results['load_average_1min'] = [load_before, os.getloadavg()[0]]
  return results


def _print_table(results: dict) -> None:
  o = results['options']
  print(
      f"MOSTRA beam search, J={o['objectives']} beam={o['beam_size']} length={o['length']} "
      f"epsilon={o['epsilon']} {o['threshold']}/{o['gain']} tile={o['tile_size']} "
      f"on {results['device']}"
  )
  print(
      f"{'N':>4}{'B':>7}{'ours [ms]':>11}{'ours sess/s':>13}{'NumPy sess/s':>14}"
      f"{'ratio':>9}{'ratio p10':>11}{'compile [s]':>13}{'same score':>12}{'same seq':>10}"
      f"{'threads ours/NumPy':>20}"
  )
  for r in results['compare']:
    print(
        f"{r['tracks']:>4}{r['batch']:>7}{r['ours_call_s'] * 1e3:>11.2f}"
        f"{r['ours_sessions_per_s']:>13.0f}{r['numpy_sessions_per_s']:>14.0f}"
        f"{r['ratio']:>8.1f}x{r['ratio_p10']:>10.1f}x{r['compile_s']:>13.2f}"
        f"{r['agreement']:>12.0%}{r['same_sequence']:>10.0%}"
        f"{r['ours_threads']:>13.2f} / {r['numpy_threads']:.2f}"
    )
  load = results['load_average_1min']
  print(f"CPUs used by this process (affinity): {results.get('cpus')}")
  print(
      'NumPy (per session, vectorised over beams x candidates) timed on '
      f"{results['compare'][0]['numpy_sessions_timed']} sessions and scaled; medians (and 10th "
      f'percentiles) of alternating calls; 1-min load average {load[0]:.2f} -> {load[1]:.2f}.'
  )
  for n, by_batch in results['sweep'].items():
    cells = '  '.join(f'B={b}: {v:,.0f}' for b, v in by_batch.items())
    print(f'B sweep, N={n} (sessions/s): {cells}')


def pin_cpus(count: int) -> list[int]:
  """Restricts every thread of this process to the first `count` allowed CPUs (0: unchanged).

  Call before JAX's CPU backend starts: XLA sizes its thread pool and its loop splitting from the
  CPUs allowed then.
  """
  allowed = sorted(os.sched_getaffinity(0))
  if count <= 0 or count >= len(allowed):
    return allowed
  chosen = set(allowed[:count])
  for task in os.listdir('/proc/self/task'):
    try:
      os.sched_setaffinity(int(task), chosen)
    except OSError:  # a thread that ended meanwhile
      pass
  return sorted(chosen)


def main(argv: list[str] | None = None) -> None:
  args = _flags(argv)
  cpus = pin_cpus(args.cpus)
  results = run(args)
  results['cpus'] = cpus
  _print_table(results)
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(results, f, indent=2)


if __name__ == '__main__':
  main()
