"""Audio encoder throughput: our jitted Flax HTS-AT vs laion_clap's PyTorch HTS-AT, same run.

    python -m benchmarks.encoders_audio [--variant tiny|base|small] [--audio_batch_size 4]
        [--seconds 10] [--repeats 5] [--warmup 1] [--torch_threads 2] [--json out.json]

or through `python -m benchmarks.encoders --what audio [...]`, which calls `benchmark_audio(args)`
and passes the flags it does not know in `args.extra`.

Both models get the same weights (the torch model's random init, converted with
`convert_torch_state_dict`) and the same random waveform batch on the same CPU; torch uses
`torch_threads` intra-op threads (default 2) under `torch.inference_mode()` in eval mode, ours is
`jax.jit(HTSAT(config).apply)` in eval mode (float32). Warm-up calls (JIT compilation included)
are excluded, timed calls alternate between the two, and the median call time gives clips/s. The
ratio ours/torch > 1 means we are faster. The max relative error of the embedding is reported too.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from typing import Any

import numpy as np


def _audio_flags(argv: list[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog='benchmarks.encoders_audio')
  parser.add_argument('--variant', choices=('tiny', 'base', 'small'), default='tiny')
  parser.add_argument(
      '--audio_batch_size',
      type=int,
      default=None,
      help='Clips per call (default: --batch_size when given, else 4).',
  )
  parser.add_argument(
      '--seconds',
      type=float,
      default=None,
      help='Clip length (default: the variant clip length, 10 s for tiny/base).',
  )
  parser.add_argument('--repeats', type=int, default=None)
  parser.add_argument('--warmup', type=int, default=None)
  parser.add_argument('--torch_threads', type=int, default=None)
  parser.add_argument('--batch_size', type=int, default=None)
  parser.add_argument('--json', default=None)
  return parser.parse_args(argv)


def _settings(args: argparse.Namespace) -> dict[str, Any]:
  """Merges attributes of `args` with the audio flags in `args.extra` (the latter win)."""
  extra = _audio_flags(list(getattr(args, 'extra', None) or []))

  def pick(name, default):
    value = getattr(extra, name, None)
    if value is None:
      value = getattr(args, name, None)
    return default if value is None else value

  batch = extra.audio_batch_size or pick('batch_size', 4)
  return {
      'variant': pick('variant', 'tiny'),
      'batch_size': int(batch),
      'seconds': pick('seconds', None),
      'repeats': int(pick('repeats', 5)),
      'warmup': int(pick('warmup', 1)),
      'torch_threads': int(pick('torch_threads', 2)),
  }


def _reference_module():
  """tests/reference_htsat.py (imports laion_clap's htsat.py without torchvision)."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  tests_dir = os.path.join(root, 'tests')
  if tests_dir not in sys.path:
    sys.path.insert(0, tests_dir)
  import reference_htsat  # pylint: disable=g-import-not-at-top

  return reference_htsat


def benchmark_audio(args: argparse.Namespace) -> dict[str, Any]:
  """Clips/s of our HTS-AT vs the laion_clap torch HTS-AT; prints a table and returns the numbers.

  Reads `variant`, `batch_size`, `seconds`, `repeats`, `warmup`, `torch_threads` from `args`
  (or from the flags in `args.extra`, see `_audio_flags`).
  """
  import jax  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top

  from larp_jax.models import htsat, htsat_convert  # pylint: disable=g-import-not-at-top

  s = _settings(args)
  config = htsat.htsat_config(s['variant'])
  seconds = s['seconds'] if s['seconds'] is not None else config.clip_samples / config.sample_rate
  samples = int(round(seconds * config.sample_rate))
  dataclasses.replace(config, clip_samples=samples)  # validates the clip length
  torch.set_num_threads(s['torch_threads'])
  torch.manual_seed(0)
  reference = _reference_module()
  torch_model = reference.create_reference_htsat(
      s['variant'], None if s['variant'] in ('tiny', 'base') else config
  )
  variables = htsat_convert.convert_torch_state_dict(
      reference.numpy_state_dict(torch_model), config
  )
  variables = jax.device_put(variables, jax.devices()[0])
  apply = jax.jit(lambda v, w: htsat.HTSAT(config).apply(v, w, train=False))
  waveform = (
      np.random.default_rng(0).uniform(-0.5, 0.5, (s['batch_size'], samples)).astype(np.float32)
  )
  waveform_jax = jax.device_put(waveform)
  waveform_torch = torch.from_numpy(waveform)

  def ours():
    return jax.block_until_ready(apply(variables, waveform_jax))

  def theirs():
    with torch.inference_mode():
      return torch_model({'waveform': waveform_torch})

  embed_ours = np.asarray(ours()['embedding'])
  embed_torch = theirs()['embedding'].numpy()
  rel_err = float(np.abs(embed_ours - embed_torch).max() / np.abs(embed_torch).max())
  for _ in range(s['warmup']):
    ours()
    theirs()
  times: dict[str, list[float]] = {'ours': [], 'torch': []}
  for _ in range(s['repeats']):
    for name, fn in (('ours', ours), ('torch', theirs)):
      start = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - start)
  median = {k: statistics.median(v) for k, v in times.items()}
  result = {
      'variant': s['variant'],
      'batch_size': s['batch_size'],
      'seconds': seconds,
      'ours_clips_per_s': s['batch_size'] / median['ours'],
      'torch_clips_per_s': s['batch_size'] / median['torch'],
      'ratio_ours_over_torch': median['torch'] / median['ours'],
      'embedding_max_rel_err': rel_err,
      'torch_threads': s['torch_threads'],
      'platform': jax.devices()[0].platform,
      'cpu_count': os.cpu_count(),
      'repeats': s['repeats'],
      'warmup': s['warmup'],
  }
  print(
      f"\nAudio encoder (HTS-AT {s['variant']}, {seconds:g} s clips at {config.sample_rate} Hz, "
      f"float32, {result['platform']} with {result['cpu_count']} cores; torch threads "
      f"{s['torch_threads']}; median of {s['repeats']} after {s['warmup']} warm-up)"
  )
  print('| variant | batch | ours clips/s | torch clips/s | ours/torch | embedding max rel err |')
  print('|---|---:|---:|---:|---:|---:|')
  print(
      f"| {s['variant']} | {s['batch_size']} | {result['ours_clips_per_s']:.2f} | "
      f"{result['torch_clips_per_s']:.2f} | {result['ratio_ours_over_torch']:.2f} | "
      f'{rel_err:.1e} |'
  )
  print(f"ratio htsat_clips_per_s_B{s['batch_size']} {result['ratio_ours_over_torch']:.2f}x")
  return result


def main() -> None:
  flags = _audio_flags(sys.argv[1:])
  result = benchmark_audio(argparse.Namespace(extra=sys.argv[1:]))
  if flags.json:
    with open(flags.json, 'w') as f:
      json.dump(result, f, indent=2)


if __name__ == '__main__':
  main()
