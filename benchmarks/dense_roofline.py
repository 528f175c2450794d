"""How fast the user-AE step could be: its GEMMs alone, timed with XLA and with torch.

The paper-001 autoencoder step is twelve dense layers' worth of matrix products (forward x @ W,
backward dY @ W^T and X^T @ dY for each of the six layers) plus elementwise work (SELU, alpha
dropout, the loss, Adam). This benchmark times exactly those GEMMs, one at a time, on each
library's CPU kernels, then the two whole steps (`benchmarks.user_ae_step.run_one`, same process),
and prints:

- each library's GEMM-only time (the sum of its GEMMs) and its GEMM rate (GFLOP/s);
- `ceiling ratio = torch step / our GEMM-only time`: the ratio our step would reach if everything
  but its matrix products cost nothing. Where that ceiling is below a goal, the goal cannot be
  reached by fusion on this machine; only faster GEMM kernels would.

Usage:

    python -m benchmarks.dense_roofline [--batch_size 256] [--calls 50] [--output r.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
from typing import Any

import numpy as np

from benchmarks import user_ae_step


def step_gemms(widths: list[int], batch_size: int) -> list[tuple[int, int, int]]:
  """(m, k, n) of every GEMM in one train step of an MLP with layer widths `widths` [in, ..., out].

  Per layer (in -> out): forward [B, in] @ [in, out]; backward input grad [B, out] @ [out, in]
  (skipped for the first layer, whose input needs none) and weight grad [in, B] @ [B, out].
  """
  gemms = []
  for layer, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
    gemms.append((batch_size, fan_in, fan_out))
    if layer:
      gemms.append((batch_size, fan_out, fan_in))
    gemms.append((fan_in, batch_size, fan_out))
  return gemms


def time_gemms(gemms, calls: int, torch_threads: int) -> list[dict[str, Any]]:
  """Median seconds of each (m, k, n) float32 GEMM under jitted jnp.dot and torch.matmul
  (alternating calls, 2 untimed first)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top

  torch.set_num_threads(torch_threads)
  rng = np.random.default_rng(0)
  dot = jax.jit(jnp.dot)
  rows = []
  for m, k, n in gemms:
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    ja, jb = jnp.asarray(a), jnp.asarray(b)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    with torch.no_grad():
      ours, theirs = user_ae_step.time_alternating(
          (lambda: dot(ja, jb).block_until_ready(), lambda: torch.matmul(ta, tb)), 2, calls
      )
    ours, theirs = statistics.median(ours), statistics.median(theirs)
    rows.append({'mkn': [m, k, n], 'flops': 2 * m * k * n, 'xla_s': ours, 'torch_s': theirs})
  return rows


def run(args: argparse.Namespace) -> dict[str, Any]:
  """GEMM timings, then both full steps at the same batch size."""
  load_before = os.getloadavg()[0]
  from larp_jax.training import runs  # pylint: disable=g-import-not-at-top

  config = runs.run_config(user_ae_step.load_config(args.variant), seed=0)
  blocks = user_ae_step.block_widths(config)
  d = int(sum(blocks))
  hidden = [int(h) for h in config.model.hidden]
  widths = [d, *hidden, int(config.model.latent_dim), *reversed(hidden), d]
  rows = time_gemms(step_gemms(widths, args.batch_size), args.calls, args.torch_threads)
  flops = sum(r['flops'] for r in rows)
  xla_gemm_s = sum(r['xla_s'] for r in rows)
  torch_gemm_s = sum(r['torch_s'] for r in rows)
  step_args = argparse.Namespace(warmup=3, steps=args.steps, torch_adam='fused')
  step = user_ae_step.run_one(config, step_args, blocks, args.batch_size)
  return {
      'variant': args.variant,
      'layer_widths': widths,
      'batch_size': args.batch_size,
      'gemms': rows,
      'gemm_flops': flops,
      'xla_gemm_s': xla_gemm_s,
      'torch_gemm_s': torch_gemm_s,
      'xla_gemm_gflops': flops / xla_gemm_s / 1e9,
      'torch_gemm_gflops': flops / torch_gemm_s / 1e9,
      'ours_step_s': step['ours_step_s'],
      'torch_step_s': step['torch_step_s'],
      'step_ratio': step['ratio'],
      'ceiling_ratio': step['torch_step_s'] / xla_gemm_s,
      'ours_gemm_share': xla_gemm_s / step['ours_step_s'],
      'torch_gemm_share': torch_gemm_s / step['torch_step_s'],
      'load_average_1min': [load_before, os.getloadavg()[0]],
  }


def _print(r: dict[str, Any]) -> None:
  print(
      f"user AE step GEMMs, widths {r['layer_widths']}, B = {r['batch_size']}: "
      f"{len(r['gemms'])} GEMMs, {r['gemm_flops'] / 1e9:.3f} GFLOP"
  )
  print(f"{'m x k x n':>18}{'XLA [ms]':>10}{'torch [ms]':>12}")
  for g in r['gemms']:
    m, k, n = g['mkn']
    print(f"{f'{m}x{k}x{n}':>18}{g['xla_s'] * 1e3:>10.3f}{g['torch_s'] * 1e3:>12.3f}")
  print(
      f"GEMMs alone: XLA {r['xla_gemm_s'] * 1e3:.2f} ms ({r['xla_gemm_gflops']:.0f} GFLOP/s), "
      f"torch {r['torch_gemm_s'] * 1e3:.2f} ms ({r['torch_gemm_gflops']:.0f} GFLOP/s)"
  )
  print(
      f"whole step: ours {r['ours_step_s'] * 1e3:.2f} ms (GEMMs {r['ours_gemm_share']:.0%}), "
      f"torch {r['torch_step_s'] * 1e3:.2f} ms (GEMMs {r['torch_gemm_share']:.0%})"
  )
  print(f"ratio user_ae_step {r['step_ratio']:.2f}x")
  print(f"ratio user_ae_ceiling {r['ceiling_ratio']:.2f}x   (torch step / our GEMMs alone)")
  print(
      f"(1-min load average before/after {r['load_average_1min'][0]:.2f} / "
      f"{r['load_average_1min'][1]:.2f} on {os.cpu_count()} CPUs)"
  )


def main(argv: list[str] | None = None) -> dict[str, Any]:
  parser = argparse.ArgumentParser(prog='benchmarks.dense_roofline')
  parser.add_argument('--variant', default='demo', help='configs/user_rep.py variant.')
  parser.add_argument('--batch_size', type=int, default=256)
  parser.add_argument('--calls', type=int, default=50, help='Timed calls per GEMM.')
  parser.add_argument('--steps', type=int, default=20, help='Timed steps per implementation.')
  parser.add_argument('--torch_threads', type=int, default=2)
  parser.add_argument('--output', default=None, help='Write the results as JSON to this file.')
  args = parser.parse_args(argv)
  results = run(args)
  _print(results)
  user_ae_step.write_json(args.output, results)
  return results


if __name__ == '__main__':
  main()
