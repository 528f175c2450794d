"""Throughput and MFU of our jitted steps on one accelerator, all in one run (benchmarks/gpu.sh).

    python -m benchmarks.gpu_steps [--smoke] [--only larp,mostra,user_ae,map2t] [--steps 10]
        [--warmup 3] [--peak_tflops X] [--output gpu_steps.json]

Each benchmark builds OUR step with the builder of its own benchmark (no model or step is
re-implemented here) and times it alone (no baseline), `--warmup` untimed then `--steps` timed
calls, each ending in `jax.block_until_ready`; step_ms = the median. Build and compile times are
reported and never timed.

  larp      `larp_step.build_ours` (the loop's state from `larp_job.make_state`, the step
            `larp_steps.make_train_step` jitted by `step_lib.jit_train_step`), compiled ahead of
            time, on `larp_step.random_batch`: `configs/larp.py:mpd` (HTS-AT tiny on 10 s at
            48 kHz, batch 50, queue 57,600, N_train = data.build.train_tracks = 100,000) in
            `model.dtype` bfloat16 and float32. The text tower is bert-base-uncased SIZED
            (`bert.BertConfig()`'s defaults: 12 x 768, 30,522 words) with random N(0, 0.02)
            weights, written as an HF directory (`write_random_bert`) that `model.text_model_dir`
            points at, since no pretrained weights are at hand; timing does not depend on values.
            Random playlists (`larp_step.random_groups`) with `loss.group_width` 16 where the
            preset says 0 (= read from the data, which there is none of).
  mostra    `larp_jax.decoding.beam_search.mostra_beam_search` as `beam_search._ours` calls it, on
            `beam_search._sessions` (B = 65,536, N = 100, J = 3, beam 5, length 10), once with the
            library's tile size (1024 sessions per `lax.map` step) and once as one tile (B).
  user_ae   `user_ae_step.build_ours`: `user_rep_job`'s autoencoder step (`configs/user_rep.py:
            demo`, d = 681), jitted by `step_lib.jit_train_step`, compiled by `compile_step`.
  map2t     `map2t_step.build_ours`: `map2t_job`'s step, run `map2t_full` of `configs/map2t.py:
            demo` (N = 240 books, d = 384), compiled the same way.

FLOPs per step = the 'flops' of `compiled.cost_analysis()` (XLA's HLO cost model: every op's
FLOPs, matmuls as 2 m n k, elementwise ops too; not a hand model count). XLA counts the body of a
while loop ONCE, not times its trip count, so `while_loops` (the count of while ops in the
optimised HLO) is recorded with each result; the decoder's FLOPs are counted on its one-tile
compilation (same sessions and arithmetic, no tile loop) for both tile sizes. achieved FLOP/s =
FLOPs / median step time; MFU = achieved / the device's peak for the benchmark's arithmetic
(`PEAK_TFLOPS`, `--peak_tflops` overrides every one); an unknown device (CPU) gives mfu n/a.

`--smoke`: tiny CPU sizes for the test (LARP `test` variant B = 2 with a 2-layer random BERT,
decoder B = 256 in tiles of 64, AE `test` B = 256, MAP-2T `test` B = 64).
Every benchmark runs in its own try/except: a failure is printed and recorded, the others still
run, and `main` exits non-zero at the end (`SystemExit(1)`) if any failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from typing import Any, Callable

import numpy as np

from benchmarks import user_ae_step

_ints = user_ae_step._ints  # the benchmarks' one comma-list parser

# Dense (no structured sparsity) peak TFLOP/s per arithmetic, from NVIDIA's data sheets / the
# "NVIDIA H100 Tensor Core GPU Architecture" white paper (H100 SXM5: BF16 989.4, TF32 494.7,
# FP32 66.9; PCIe: 756.5 / 378.0 / 51.2; NVL: half the data sheet's with-sparsity 1,671 / 835 and
# FP32 60), the H200 data sheet (SXM: H100 SXM5's figures; NVL: as H100 NVL) and the A100 data
# sheet (312 / 156 / 19.5). 'tf32' is what a float32 matmul or convolution at JAX's default
# precision runs as on these GPUs (jax.lax.Precision.DEFAULT: "on GPU uses tensorfloat32 if
# available (e.g. on A100 and H100 GPUs)"); 'fp32' is the CUDA-core (non-tensor-core) rate.
# Keys are matched against `jax.devices()[0].device_kind`, lower-cased, first match wins.
PEAK_TFLOPS: tuple[tuple[tuple[str, ...], dict[str, float]], ...] = (
    (('h200', 'nvl'), {'bf16': 835.5, 'tf32': 417.5, 'fp32': 60.0}),
    (('h200',), {'bf16': 989.4, 'tf32': 494.7, 'fp32': 66.9}),
    (('h100', 'pcie'), {'bf16': 756.5, 'tf32': 378.0, 'fp32': 51.2}),
    (('h100', 'nvl'), {'bf16': 835.5, 'tf32': 417.5, 'fp32': 60.0}),
    (('h100',), {'bf16': 989.4, 'tf32': 494.7, 'fp32': 66.9}),
    (('a100',), {'bf16': 312.0, 'tf32': 156.0, 'fp32': 19.5}),
)
BENCHMARKS = ('larp', 'mostra', 'user_ae', 'map2t')
# The bert-base-uncased shape of the mpd preset's text tower (BertConfig's defaults) and, for
# --smoke, a tiny one (vocabulary above larp_step.FIRST_WORD_ID = 1000, the first random word).
SMOKE_BERT = dict(
    vocab_size=2048,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    max_position_embeddings=64,
)


def _strs(text: str) -> list[str]:
  return [x for x in str(text).split(',') if x]


def _flags(argv: list[str] | None = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog='benchmarks.gpu_steps')
  parser.add_argument('--smoke', action='store_true', help='Tiny CPU sizes (for the test).')
  parser.add_argument('--only', type=_strs, default=list(BENCHMARKS), help='Comma list.')
  parser.add_argument('--steps', type=int, default=None, help='Timed calls (10; smoke 2).')
  parser.add_argument('--warmup', type=int, default=None, help='Untimed calls (3; smoke 1).')
  parser.add_argument('--larp_variant', default=None, help='configs/larp.py (mpd; smoke test).')
  parser.add_argument('--larp_batch', type=int, default=None, help='50 (smoke 2).')
  parser.add_argument('--larp_dtypes', type=_strs, default=['bfloat16', 'float32'])
  parser.add_argument('--larp_stages', type=_ints, default=[1], help='Comma list of 1, 2.')
  parser.add_argument('--larp_train_tracks', type=int, default=None, help='Preset (smoke 40).')
  parser.add_argument('--group_width', type=int, default=16, help='Where loss.group_width is 0.')
  parser.add_argument('--decoder_batch', type=int, default=None, help='65536 (smoke 256).')
  parser.add_argument('--decoder_tracks', type=int, default=100)
  parser.add_argument('--decoder_tile_sizes', type=_ints, default=None, help='0 = one tile.')
  parser.add_argument('--ae_variant', default=None, help='configs/user_rep.py (demo; smoke test).')
  parser.add_argument('--ae_batch', type=_ints, default=None, help='4096,65536 (smoke 256).')
  parser.add_argument('--map2t_variant', default=None, help='configs/map2t.py (demo; smoke test).')
  parser.add_argument('--map2t_batch', type=_ints, default=None, help='4096,65536 (smoke 64).')
  parser.add_argument('--books', type=int, default=None, help='MAP-2T catalogue (240; smoke 20).')
  parser.add_argument('--text_dim', type=int, default=None, help='MAP-2T d (384; smoke 16).')
  parser.add_argument('--peak_tflops', type=float, default=None, help='Overrides the table.')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--output', default=None, help='Write all results as JSON to this file.')
  args = parser.parse_args(argv)
  full = dict(steps=10, warmup=3, larp_variant='mpd', larp_batch=50, decoder_batch=65536)
  full.update(decoder_tile_sizes=[1024, 0], ae_variant='demo', ae_batch=[4096, 65536])
  full.update(map2t_variant='demo', map2t_batch=[4096, 65536], books=240, text_dim=384)
  smoke = dict(steps=2, warmup=1, larp_variant='test', larp_batch=2, larp_train_tracks=40)
  smoke.update(decoder_batch=256, decoder_tile_sizes=[64, 0], ae_variant='test', ae_batch=[256])
  smoke.update(map2t_variant='test', map2t_batch=[64], books=20, text_dim=16)
  for name, value in (smoke if args.smoke else full).items():
    if getattr(args, name) is None:
      setattr(args, name, value)
  unknown = sorted(set(args.only) - set(BENCHMARKS))
  if unknown:
    raise ValueError(f'--only: unknown {unknown}; choose from {BENCHMARKS}.')
  if args.steps <= 0 or args.warmup < 0:
    raise ValueError('--steps must be positive and --warmup >= 0.')
  return args


# ---------------------------------------------------------------------------------------------
# Measurements.


def flops_of(compiled) -> float:
  """'flops' of `compiled.cost_analysis()` (a dict, or a list of per-module dicts, summed)."""
  analysis = compiled.cost_analysis()
  if isinstance(analysis, dict):
    analysis = [analysis]
  return float(sum(float((a or {}).get('flops', 0.0)) for a in analysis or ()))


def while_loops(compiled) -> int:
  """Number of while ops in the optimised HLO (their bodies are counted once by `flops_of`)."""
  try:
    return sum(line.count(' while(') for line in compiled.as_text().splitlines())
  except Exception:  # pylint: disable=broad-except  # informative only
    return -1


def peak_tflops(device_kind: str, arithmetic: str, override: float | None) -> float | None:
  """The peak TFLOP/s of `arithmetic` ('bf16' | 'tf32' | 'fp32') on `device_kind` (see
  PEAK_TFLOPS); `override` wins; None for a device not in the table (CPU)."""
  if override:
    return float(override)
  kind = device_kind.lower()
  for keys, peaks in PEAK_TFLOPS:
    if all(k in kind for k in keys):
      return peaks[arithmetic]
  return None


def float32_arithmetic() -> str:
  """'tf32' at JAX's default matmul precision (what GPUs run float32 dots as), else 'fp32'."""
  import jax  # pylint: disable=g-import-not-at-top

  precision = str(jax.config.jax_default_matmul_precision or 'default').lower()
  return 'fp32' if precision in ('highest', 'float32', 'fastest_f32_off') else 'tf32'


def time_calls(fn: Callable[[], Any], warmup: int, steps: int) -> list[float]:
  """Seconds of `steps` calls of `fn` (which blocks on its outputs) after `warmup` calls."""
  return user_ae_step.time_alternating((fn,), warmup, steps)[0]


def measure_step(
    name, dtype, arithmetic, batch_size, compiled, state, inputs, loss_key, args, **extra
) -> dict[str, Any]:
  """Times `compiled(state, inputs)` on the carried (donated) state, blocking on every call
  (`--warmup` untimed, then `--steps` timed), and returns its `figures` with XLA's FLOPs, the
  while-loop count and float(metrics[loss_key]) of every call added."""
  import jax  # pylint: disable=g-import-not-at-top

  holder, losses = {'state': state}, []

  def fn():
    holder['state'], metrics = compiled(holder['state'], inputs)
    jax.block_until_ready((holder['state'], metrics))
    losses.append(float(metrics[loss_key]))

  times = time_calls(fn, args.warmup, args.steps)
  return figures(
      name,
      dtype,
      arithmetic,
      batch_size,
      times,
      flops_of(compiled),
      args,
      **extra,
      while_loops=while_loops(compiled),
      losses=losses,
  )


def figures(name, dtype, arithmetic, batch, times, flops, args, **extra) -> dict[str, Any]:
  """One result: median step, examples/s (= batch / median), GFLOP/step, achieved TFLOP/s, MFU."""
  import jax  # pylint: disable=g-import-not-at-top

  step_s = statistics.median(times)
  peak = peak_tflops(jax.devices()[0].device_kind, arithmetic, args.peak_tflops)
  achieved = flops / step_s / 1e12
  return {
      'name': name,
      'dtype': dtype,
      'batch': int(batch),
      'step_s': step_s,
      'step_s_all': times,
      'examples_per_s': batch / step_s,
      'flops_per_step': flops,
      'gflop_per_step': flops / 1e9,
      'achieved_tflops': achieved,
      'peak_arithmetic': arithmetic,
      'peak_tflops': peak,
      'mfu': achieved / peak if peak else None,
      **extra,
  }


def result_line(r: dict[str, Any]) -> str:
  """'gpu <name> dtype=<d> batch=<B> step_ms=<..> examples_per_s=<..> gflop_per_step=<..>
  mfu=<..>' (mfu n/a without a peak)."""
  mfu = 'n/a' if r['mfu'] is None else f"{r['mfu']:.4f}"
  return (
      f"gpu {r['name']} dtype={r['dtype']} batch={r['batch']} step_ms={r['step_s'] * 1e3:.3f} "
      f"examples_per_s={r['examples_per_s']:.1f} gflop_per_step={r['gflop_per_step']:.3f} "
      f'mfu={mfu}'
  )


# ---------------------------------------------------------------------------------------------
# LARP.


def write_random_bert(directory: str, seed: int = 0, **sizes: int) -> str:
  """Writes an HF BERT directory (config.json + model.safetensors) of `bert.BertConfig(**sizes)`
  (default: bert-base-uncased's shape) with N(0, 0.02) float32 matrices, zero biases and unit
  LayerNorm scales, every tensor `bert_convert.load_pretrained` reads. Returns `directory`."""
  import dataclasses  # pylint: disable=g-import-not-at-top

  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top

  from larp_jax.models import bert, bert_convert  # pylint: disable=g-import-not-at-top

  config = bert.BertConfig(**sizes)
  rng = np.random.default_rng(seed)
  state = {}
  # The loader's own key -> shape table, so the file holds exactly what it checks for.
  for key, shape in bert_convert._expected_shapes(config).items():  # pylint: disable=protected-access
    if len(shape) > 1:
      state[key] = (0.02 * rng.standard_normal(shape, dtype=np.float32)).astype(np.float32)
    elif 'LayerNorm.weight' in key:
      state[key] = np.ones(shape, np.float32)
    else:
      state[key] = np.zeros(shape, np.float32)
  save_file(state, os.path.join(directory, 'model.safetensors'))
  hf = {k: v for k, v in dataclasses.asdict(config).items() if k != 'use_token_type_embeddings'}
  hf.update(model_type='bert', hidden_act='gelu', position_embedding_type='absolute')
  with open(os.path.join(directory, 'config.json'), 'w', encoding='utf-8') as f:
    json.dump(hf, f, indent=2)
  return directory


def larp_config(args: argparse.Namespace, dtype: str, text_dir: str):
  """`configs/larp.py:<larp_variant>` with model.dtype = `dtype`, the text tower from
  `text_dir`, and loss.group_width = --group_width where the preset has 0."""
  from benchmarks import larp_step  # pylint: disable=g-import-not-at-top
  from larp_jax.training import runs  # pylint: disable=g-import-not-at-top

  config = larp_step.load_config(args.larp_variant)
  overrides = {'model.dtype': dtype, 'model.text_model_dir': text_dir}
  if not int(config.loss.group_width):
    overrides['loss.group_width'] = int(args.group_width)
  return runs.run_config(config, **overrides)


def bench_larp(args, dtype: str, stage: int, text_dir: str) -> dict[str, Any]:
  """The LARP train step (stage 1: B tracks; stage 2: B pairs = 2B clips) in `dtype`."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  from benchmarks import larp_step  # pylint: disable=g-import-not-at-top

  config = larp_config(args, dtype, text_dir)
  batch_size = int(args.larp_batch)
  if int(config.loss.queue_size) < stage * batch_size:
    raise ValueError(f'queue_size {config.loss.queue_size} < clips per step {stage * batch_size}.')
  num_train = int(args.larp_train_tracks or config.data.build.train_tracks)
  start = time.perf_counter()
  groups = larp_step.random_groups(num_train, int(config.loss.group_width), args.seed)
  ours = larp_step.build_ours(config, stage, groups, args.warmup + args.steps + 1)
  cfg = ours.cfg
  if cfg.dtype != jnp.dtype(dtype):
    raise AssertionError(f'model dtype {cfg.dtype}, asked for {dtype}')
  batch = larp_step.random_batch(
      args.seed + 1,
      stage,
      batch_size,
      cfg.audio.clip_samples,
      ours.max_text_length,
      cfg.text.vocab_size,
      groups,
  )
  inputs = ours.inputs(batch)
  build_s = time.perf_counter() - start
  compiled, trace_s, compile_s = larp_step.lower_and_compile(ours.step, ours.state, inputs)
  arithmetic = 'bf16' if dtype == 'bfloat16' else float32_arithmetic()
  return measure_step(
      f'larp_{args.larp_variant}_stage{stage}',
      dtype,
      arithmetic,
      batch_size,
      compiled,
      ours.state,
      inputs,
      'loss/total',
      args,
      clips_per_step=stage * batch_size,
      audio_variant=cfg.audio.variant,
      clip_samples=int(cfg.audio.clip_samples),
      text_layers=int(cfg.text.num_hidden_layers),
      text_hidden=int(cfg.text.hidden_size),
      queue_size=int(config.loss.queue_size),
      num_train_tracks=num_train,
      build_s=build_s,
      trace_lower_s=trace_s,
      compile_s=compile_s,
  )


# ---------------------------------------------------------------------------------------------
# MOSTRA decoder.


@contextlib.contextmanager
def recording_jitted_calls(module, names: tuple[str, ...]):
  """Wraps the jitted functions `names` of `module` so every call's (fn, args, kwargs) is
  appended to the yielded list (the public function looks them up at call time)."""
  calls: list[tuple[Any, tuple, dict]] = []
  originals = {name: getattr(module, name) for name in names}

  def wrap(fn):
    def recorded(*a, **k):
      calls.append((fn, a, k))
      return fn(*a, **k)

    return recorded

  try:
    for name, fn in originals.items():
      setattr(module, name, wrap(fn))
    yield calls
  finally:
    for name, fn in originals.items():
      setattr(module, name, fn)


def decoder_flops(inputs, bargs) -> tuple[float, int]:
  """(FLOPs, while ops) of one `mostra_beam_search` call as ONE tile: the pre-pass and the core
  with the exact arguments the public function passes them, lowered and compiled again."""
  from benchmarks import beam_search  # pylint: disable=g-import-not-at-top
  from larp_jax.decoding import beam_search as decoding  # pylint: disable=g-import-not-at-top

  one_tile = argparse.Namespace(**{**vars(bargs), 'tile_size': int(inputs[0].shape[0])})
  with recording_jitted_calls(decoding, ('_prepass', '_mostra_beam_search_jit')) as calls:
    beam_search._ours(inputs, one_tile)()  # pylint: disable=protected-access
  flops, loops = 0.0, 0
  for fn, a, k in calls:
    compiled = fn.lower(*a, **k).compile()
    flops += flops_of(compiled)
    loops += while_loops(compiled)
  return flops, loops


def bench_mostra(args, tile_size: int) -> dict[str, Any]:
  """`mostra_beam_search` on B sessions of N tracks (tile_size 0: one tile of B sessions)."""
  import jax  # pylint: disable=g-import-not-at-top

  from benchmarks import beam_search  # pylint: disable=g-import-not-at-top

  b = int(args.decoder_batch)
  tile = int(tile_size) or b
  bargs = beam_search._flags(  # pylint: disable=protected-access
      ['--batch', str(b), '--tile_size', str(tile), '--seed', str(args.seed)]
  )
  sessions = beam_search._sessions(b, int(args.decoder_tracks), bargs)  # pylint: disable=protected-access
  inputs = [jax.device_put(x) for x in sessions]
  call = beam_search._ours(inputs, bargs)  # pylint: disable=protected-access
  start = time.perf_counter()
  call()
  first_s = time.perf_counter() - start
  times = time_calls(call, args.warmup, args.steps)
  flops, loops = decoder_flops(inputs, bargs)
  return figures(
      f'mostra_decoder_tile{tile}',
      'float32',
      'fp32',  # comparisons, top-k, square roots: CUDA-core arithmetic, no matmul
      b,
      times,
      flops,
      args,
      tracks=int(args.decoder_tracks),
      tile_size=tile,
      options={**beam_search._options(bargs), 'objectives': bargs.objectives},  # pylint: disable=protected-access
      compile_s=first_s - statistics.median(times),
      first_call_s=first_s,
      while_loops=loops,
      flops_counted_on='one tile (no tile loop)',
  )


# ---------------------------------------------------------------------------------------------
# User AE and MAP-2T.


def bench_user_ae(args, batch_size: int) -> dict[str, Any]:
  """`user_rep_job`'s autoencoder train step at `batch_size` users."""
  from larp_jax.training import runs  # pylint: disable=g-import-not-at-top

  config = runs.run_config(user_ae_step.load_config(args.ae_variant), seed=int(args.seed))
  widths = user_ae_step.block_widths(config)
  start = time.perf_counter()
  compiled, state, inputs, _ = user_ae_step.build_ours(
      config, widths, batch_size, args.warmup + args.steps + 1
  )
  compile_s = time.perf_counter() - start
  return measure_step(
      f'user_ae_{args.ae_variant}',
      'float32',
      float32_arithmetic(),
      batch_size,
      compiled,
      state,
      inputs,
      'loss',
      args,
      features=int(sum(widths)),
      hidden=[int(h) for h in config.model.hidden],
      latent_dim=int(config.model.latent_dim),
      build_and_compile_s=compile_s,
      compile_s=compile_s,
  )


def bench_map2t(args, batch_size: int) -> dict[str, Any]:
  """`map2t_job`'s train step (run map2t_full) at `batch_size` users over `--books` books."""
  from benchmarks import map2t_step  # pylint: disable=g-import-not-at-top

  run = 'map2t_full'
  config = map2t_step.load_config(args.map2t_variant, args.seed)
  widths = map2t_step.input_widths(config, run, 0, int(args.text_dim))
  batch, items, popularity = map2t_step.random_data(
      args.seed + 1, batch_size, int(args.books), widths, int(args.text_dim)
  )
  start = time.perf_counter()
  compiled, state, inputs, _ = map2t_step.build_ours(
      config, run, batch, items, popularity, args.warmup + args.steps + 1
  )
  compile_s = time.perf_counter() - start
  return measure_step(
      f'map2t_{args.map2t_variant}_{run}',
      'float32',
      float32_arithmetic(),
      batch_size,
      compiled,
      state,
      inputs,
      'loss',
      args,
      books=int(args.books),
      input_widths=widths,
      dim=int(args.text_dim),
      build_and_compile_s=compile_s,
      compile_s=compile_s,
  )


# ---------------------------------------------------------------------------------------------
# Driver.


def planned(args: argparse.Namespace, text_dir: str) -> list[tuple[str, Callable[[], dict]]]:
  """(label, thunk) of every benchmark to run, in order."""
  jobs: list[tuple[str, Callable[[], dict]]] = []
  if 'larp' in args.only:
    for stage in args.larp_stages:
      for dtype in args.larp_dtypes:
        thunk = lambda s=stage, d=dtype: bench_larp(args, d, s, text_dir)  # noqa: E731
        jobs.append((f'larp stage {stage} {dtype}', thunk))
  if 'mostra' in args.only:
    for tile in args.decoder_tile_sizes:
      jobs.append((f'mostra tile {tile or "B"}', lambda t=tile: bench_mostra(args, t)))
  if 'user_ae' in args.only:
    for b in args.ae_batch:
      jobs.append((f'user_ae B={b}', lambda b=b: bench_user_ae(args, b)))
  if 'map2t' in args.only:
    for b in args.map2t_batch:
      jobs.append((f'map2t B={b}', lambda b=b: bench_map2t(args, b)))
  return jobs


def run(args: argparse.Namespace) -> dict[str, Any]:
  """Runs every planned benchmark (each in its own try/except) and returns all results."""
  import jax  # pylint: disable=g-import-not-at-top

  device = jax.devices()[0]
  header = {
      'device': str(device),
      'device_kind': device.device_kind,
      'platform': device.platform,
      'jax_version': jax.__version__,
      'python': platform.python_version(),
      'default_matmul_precision': jax.config.jax_default_matmul_precision,
      'float32_arithmetic': float32_arithmetic(),
      'peaks_tflops': {
          a: peak_tflops(device.device_kind, a, args.peak_tflops) for a in ('bf16', 'tf32', 'fp32')
      },
      'smoke': bool(args.smoke),
      'steps': args.steps,
      'warmup': args.warmup,
  }
  print(
      f"gpu_steps on {header['device_kind']} ({header['platform']}), jax {jax.__version__}, "
      f"peak TFLOP/s {header['peaks_tflops']}, float32 runs as {header['float32_arithmetic']}; "
      f'medians of {args.steps} calls after {args.warmup} warm-up',
      flush=True,
  )
  results, failures = [], []
  start_all = time.perf_counter()
  with tempfile.TemporaryDirectory() as text_dir:
    if 'larp' in args.only:
      start = time.perf_counter()
      write_random_bert(text_dir, args.seed, **(SMOKE_BERT if args.smoke else {}))
      print(f'gpu random BERT written in {time.perf_counter() - start:.1f} s', flush=True)
    for label, job in planned(args, text_dir):
      start = time.perf_counter()
      try:
        r = job()
      except Exception as e:  # pylint: disable=broad-except  # report it, run the rest
        traceback.print_exc()
        failures.append({'benchmark': label, 'error': f'{type(e).__name__}: {e}'})
        print(f'gpu {label} FAILED: {type(e).__name__}: {e}', flush=True)
        continue
      r['wall_s'] = time.perf_counter() - start
      results.append(r)
      print(
          f"gpu {r['name']} ({label}): compile {r['compile_s']:.1f} s, {r['wall_s']:.1f} s in "
          f"all, {r['achieved_tflops']:.3f} TFLOP/s vs {r['peak_arithmetic']} peak "
          f"{r['peak_tflops']}, {r['while_loops']} while loops",
          flush=True,
      )
      print(result_line(r), flush=True)
  return {
      **header,
      'results': results,
      'failures': failures,
      'total_s': time.perf_counter() - start_all,
  }


def main(argv: list[str] | None = None) -> dict[str, Any]:
  """Runs, prints a line per benchmark, writes --output; SystemExit(1) after any failure."""
  args = _flags(argv)
  out = run(args)
  if args.output:
    with open(args.output, 'w', encoding='utf-8') as f:
      json.dump(out, f, indent=2)
  if out['failures']:
    print(f"gpu_steps: {len(out['failures'])} failed: {out['failures']}", file=sys.stderr)
    raise SystemExit(1)
  return out


if __name__ == '__main__':
  main()
