"""Where the LARP train step's time goes: forward / backward / optimizer split and the top ops.

    python -m benchmarks.larp_profile [--stage 1] [--variant demo] [--batch_size 16]
        [--steps 5] [--top 10] [--output profile.json]

Builds exactly the step `benchmarks.larp_step` times (`larp_step.build_ours`: the loop's
`jit_train_step` of `larp_job.make_state`'s state, same random batch) and compiles three variants
of it by swapping `step_lib.gradient_step` (the one place the step differentiates and updates)
while tracing:

  forward    loss_fn(params) only: momentum towers, online towers, losses, EMA/queue/table
             writes (params unchanged, so the EMA is still computed);
  fwd+bwd    + `jax.value_and_grad` and the gradient norm (no optimizer update);
  full       the unmodified step (+ optimizer update: Adam per `config.optimizer.rules`).

Backward = fwd+bwd - forward, optimizer = full - fwd+bwd (medians of `--steps` interleaved calls
per variant). XLA's cost analysis (flops, bytes accessed) is reported per variant. The full step
then runs under `jax.profiler.trace` with XLA:CPU per-thunk trace events
(`--xla_cpu_enable_xprof_traceme`, set before jax is imported), parsed with
`jax.profiler.ProfileData`; each thunk (an HLO instruction of the entry computation: a fusion, a
dot, a copy/transpose, ...) is summed over the traced steps and tagged fwd/bwd/opt from its HLO
metadata (`phase_of`: backward, online forward, momentum forward, rest = losses/optimizer/EMA).

Timings are noisy on a shared CPU: the 1-minute load average is printed next to every figure.
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import re
import statistics
import tempfile
import time
from typing import Any

if '--xla_cpu_enable_xprof_traceme' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (
      os.environ.get('XLA_FLAGS', '') + ' --xla_cpu_enable_xprof_traceme=true'
  ).strip()

from benchmarks import larp_step  # noqa: E402  (after XLA_FLAGS)

VARIANTS = ('forward', 'fwd+bwd', 'full')


def _flags(argv: list[str] | None = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog='benchmarks.larp_profile')
  parser.add_argument('--stage', type=int, choices=(1, 2), default=1)
  parser.add_argument('--variant', default='demo', help='configs/larp.py variant.')
  parser.add_argument('--batch_size', type=int, default=16)
  parser.add_argument('--steps', type=int, default=5, help='Timed calls per step variant.')
  parser.add_argument('--trace_steps', type=int, default=3, help='Full steps under the profiler.')
  parser.add_argument('--top', type=int, default=10, help='Rows of the op table.')
  parser.add_argument('--num_train_tracks', type=int, default=300)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--output', default=None, help='Write the results as JSON to this file.')
  return parser.parse_args(argv)


def _load() -> float:
  return os.getloadavg()[0]


def _gradient_step_variant(variant: str, original):
  """A drop-in for `step_lib.gradient_step` that stops after the forward or the backward."""
  import jax  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top

  if variant == 'full':
    return original

  def gradient_step(state, loss_fn):
    if variant == 'forward':
      loss, (metrics, aux) = loss_fn(state.params)
      return state, {**metrics, 'loss': loss}, aux
    (loss, (metrics, aux)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    return state, {**metrics, 'loss': loss, 'grad_norm': optax.tree.norm(grads)}, aux

  return gradient_step


def compile_variants(args: argparse.Namespace) -> tuple[Any, dict[str, Any], Any]:
  """(OursSetup, {variant: compiled step}, placed inputs) for the three step variants."""
  from larp_jax.jobs import larp_steps  # pylint: disable=g-import-not-at-top
  from larp_jax.training import step as step_lib  # pylint: disable=g-import-not-at-top

  config = larp_step.load_config(args.variant)
  groups = larp_step.random_groups(args.num_train_tracks, int(config.loss.group_width), args.seed)
  ours = larp_step.build_ours(config, args.stage, groups, total_steps=100)
  batch = larp_step.random_batch(
      args.seed + 1,
      args.stage,
      args.batch_size,
      ours.cfg.audio.clip_samples,
      ours.max_text_length,
      ours.cfg.text.vocab_size,
      groups,
  )
  inputs = ours.inputs(batch)
  original = step_lib.gradient_step
  compiled = {}
  try:
    for variant in VARIANTS:
      step_lib.gradient_step = _gradient_step_variant(variant, original)
      step = step_lib.jit_train_step(
          larp_steps.make_train_step(ours.model, args.stage, config.loss),
          ours.shardings,
          ours.mesh,
          larp_steps.INPUT_SPECS,
      )
      start = time.perf_counter()
      compiled[variant] = step.lower(ours.state, inputs).compile()
      print(f'compiled {variant:<8} in {time.perf_counter() - start:5.1f} s (load {_load():.2f})')
  finally:
    step_lib.gradient_step = original
  return ours, compiled, inputs


def time_variants(ours, compiled, inputs, steps: int) -> dict[str, list[float]]:
  """Interleaved wall times [s] of each compiled variant (one warm-up call each)."""
  import jax  # pylint: disable=g-import-not-at-top

  # The state is donated: keep one fresh copy per variant and thread it through.
  states = {v: jax.tree.map(lambda x: x.copy(), ours.state) for v in VARIANTS}
  times: dict[str, list[float]] = {v: [] for v in VARIANTS}
  for i in range(steps + 1):
    for variant in VARIANTS:
      start = time.perf_counter()
      states[variant], metrics = compiled[variant](states[variant], inputs)
      jax.block_until_ready((states[variant], metrics))
      if i:
        times[variant].append(time.perf_counter() - start)
  ours.state = states['full']
  return times


def hlo_metadata(hlo_text: str) -> dict[str, str]:
  """{instruction name: op_name metadata} for every HLO instruction of the compiled module."""
  out = {}
  pattern = re.compile(r'^\s*(?:ROOT )?%?([\w.\-]+) = .*?metadata=\{[^}]*op_name="([^"]*)"')
  for line in hlo_text.splitlines():
    match = pattern.match(line)
    if match:
      out[match.group(1)] = match.group(2)
  return out


def phase_of(op_name: str) -> str:
  """Phase of an HLO op from its jax name stack: 'bwd' (transpose of the online towers' jvp),
  'fwd' (online towers' forward, under jvp), 'mom' (momentum towers, no jvp), 'rest' (losses,
  optimizer update, EMA, queues and tables: optax ops carry no name scope)."""
  if 'transpose(' in op_name:
    return 'bwd'
  if 'jvp(' in op_name:
    return 'fwd'
  if 'LARP.' in op_name:
    return 'mom'
  return 'rest'


def trace_ops(ours, compiled, inputs, steps: int) -> tuple[list[dict[str, Any]], float]:
  """Per-thunk time of the full step under the profiler: rows sorted by total time, and the
  traced wall time per step [s]."""
  import jax  # pylint: disable=g-import-not-at-top
  from jax._src.lib import _profile_data  # pylint: disable=g-import-not-at-top

  metadata = hlo_metadata(compiled.as_text())
  state = ours.state
  directory = tempfile.mkdtemp(prefix='larp_profile_')
  with jax.profiler.trace(directory):
    start = time.perf_counter()
    for _ in range(steps):
      state, metrics = compiled(state, inputs)
      jax.block_until_ready((state, metrics))
    wall = (time.perf_counter() - start) / steps
  ours.state = state
  path = sorted(glob.glob(os.path.join(directory, '**', '*.xplane.pb'), recursive=True))[-1]
  data = _profile_data.ProfileData.from_file(path)
  total_ns: dict[str, float] = collections.defaultdict(float)
  count: dict[str, int] = collections.defaultdict(int)
  for plane in data.planes:
    if plane.name != '/host:CPU':
      continue
    for line in plane.lines:
      if not line.name.startswith('tf_XLA'):
        continue
      for event in line.events:
        name = event.name
        if name.startswith(('end: ', 'ThreadpoolListener', 'ThunkExecutor')):
          continue
        total_ns[name] += event.duration_ns
        count[name] += 1
  rows = []
  for name, ns in sorted(total_ns.items(), key=lambda kv: -kv[1]):
    op_name = metadata.get(name, '')
    rows.append(
        {
            'name': name,
            'ms_per_step': ns / 1e6 / steps,
            'calls_per_step': count[name] / steps,
            'phase': phase_of(op_name) if op_name else '?',
            'tower': next((t for t in ('audio', 'text') if f'encode_{t}' in op_name), 'rest'),
            'op_name': op_name,
        }
    )
  return rows, wall


def _short(op_name: str, width: int = 70) -> str:
  op_name = re.sub(r'jit\(train_step\)/', '', op_name)
  return op_name if len(op_name) <= width else '...' + op_name[-(width - 3) :]


def run(args: argparse.Namespace) -> dict[str, Any]:
  ours, compiled, inputs = compile_variants(args)
  cost = {}
  for variant, exe in compiled.items():
    analysis = exe.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
    cost[variant] = {k: float(analysis.get(k, 0.0)) for k in ('flops', 'bytes accessed')}
  load_before = _load()
  times = time_variants(ours, compiled, inputs, args.steps)
  load_after = _load()
  median = {v: statistics.median(t) for v, t in times.items()}
  split = {
      'forward': median['forward'],
      'backward': median['fwd+bwd'] - median['forward'],
      'optimizer': median['full'] - median['fwd+bwd'],
  }
  rows, traced_wall = trace_ops(ours, compiled['full'], inputs, args.trace_steps)
  phase_ms = collections.defaultdict(float)
  for row in rows:
    phase_ms[f"{row['tower']}/{row['phase']}"] += row['ms_per_step']
  return {
      'variant': args.variant,
      'stage': args.stage,
      'batch_size': args.batch_size,
      'steps': args.steps,
      'median_s': median,
      'times_s': times,
      'split_s': split,
      'cost': cost,
      'traced_step_s': traced_wall,
      'traced_phase_ms': dict(phase_ms),
      'ops': rows,
      'load_average_1min': [load_before, load_after, _load()],
  }


def _print(r: dict[str, Any], top: int) -> None:
  full = r['median_s']['full']
  print(
      f"\nLARP stage-{r['stage']} step, variant {r['variant']}, B={r['batch_size']}: medians of "
      f"{r['steps']} interleaved calls; 1-min load {r['load_average_1min'][0]:.2f} -> "
      f"{r['load_average_1min'][1]:.2f}"
  )
  print(f"{'variant':<10}{'step [ms]':>10}{'GFLOP':>9}{'GB accessed':>13}")
  for v in VARIANTS:
    c = r['cost'][v]
    print(
        f"{v:<10}{1e3 * r['median_s'][v]:>10.1f}{c['flops'] / 1e9:>9.2f}"
        f"{c['bytes accessed'] / 1e9:>13.2f}"
    )
  print(f"{'part':<10}{'ms':>10}{'% step':>9}")
  for part, s in r['split_s'].items():
    print(f'{part:<10}{1e3 * s:>10.1f}{100 * s / full:>8.1f}%')
  phases = ', '.join(f'{k} {v:.1f}' for k, v in sorted(r['traced_phase_ms'].items()))
  print(
      f"\nprofiled full step {1e3 * r['traced_step_s']:.1f} ms; thunk time by tower/phase [ms] "
      f"(thunks on parallel threads overlap; load {r['load_average_1min'][2]:.2f}):\n  {phases}"
  )
  print(f"{'#':<3}{'thunk':<34}{'ms/step':>9}{'calls':>7}  {'phase':<6}op_name (HLO metadata)")
  for i, row in enumerate(r['ops'][:top]):
    print(
        f"{i + 1:<3}{row['name'][:33]:<34}{row['ms_per_step']:>9.2f}"
        f"{row['calls_per_step']:>7.0f}  {row['phase']:<6}{_short(row['op_name'])}"
    )


def main(argv: list[str] | None = None) -> None:
  args = _flags(argv)
  results = run(args)
  _print(results, args.top)
  if args.output:
    with open(args.output, 'w') as f:
      json.dump(results, f, indent=2)


if __name__ == '__main__':
  main()
