"""LARP train-step throughput: the loop's jitted step vs an eager PyTorch implementation, same run.

    python -m benchmarks.larp_step [--batch_size 16] [--steps 10] [--warmup 2] [--stage 1]
        [--variant demo] [--torch_threads 2] [--torch_adam fused] [--dataset_dir DIR]
        [--output out.json]

Ours is exactly the step the training loop runs, on a mesh of ONE CPU device: the state of a fresh
run from `larp_job.make_state` for `configs/larp.py:<variant>` (default `demo`: HTS-AT 'small' on
4 s 16 kHz clips, MiniLM text tower, 256-d projections, queue 512, text tower at 0.1x the learning
rate via `config.optimizer.rules`), the step `larp_steps.make_train_step(model, stage,
config.loss)` jitted by the one jit policy `step_lib.jit_train_step(step, shardings, mesh,
larp_steps.INPUT_SPECS)` (state sharded and donated, the [N_train, G] track -> playlist table a
replicated input), inputs placed by `step_lib.place_inputs`, compiled ahead of time (trace and
compile reported separately, excluded from the timings).

PyTorch (eager, `torch.set_num_threads(torch_threads)`): tests/reference_larp_torch.py, the same
model and objective written the usual way (laion_clap's HTS-AT, `transformers.BertModel`, Adam
with our schedule and `config.optimizer.rules` per top-level module, momentum copy, queues,
lookup tables; see that module). Both start from the same weights: torch's HTS-AT init is
converted into our params with `htsat_convert.convert_torch_state_dict`, both text towers load the
MiniLM checkpoint, and our projections/temperature are copied into torch. Parts the loss never
reaches (HTS-AT's classification conv, our playlist fusion block) are computed/updated as each
framework does by itself: torch runs HTS-AT's tscam conv in forward but skips params without
gradients in Adam; XLA drops the unused conv but Adam-updates every parameter.

Same random batch for both (audio N(0, 0.1^2) [B, S], token ids with varied lengths, unique track
indices; stage 2: B pairs of co-occurring tracks = 2B clips). Track groups: random playlists over
`--num_train_tracks` tracks (the state's lookup tables get that many rows), or with
`--dataset_dir` (a built LARP dataset, e.g. WORKDIR/data/... of a demo run) the dataset's own
training playlists via `larp_job.track_groups`. Warm-up steps are excluded; timed steps alternate
ours / torch so background load hits both alike. examples/s = B / median step time (stage 2
counts pairs, i.e. `--batch_size`). ratio = ours / torch (> 1: ours faster).

Run it on an otherwise idle machine: the 1-minute load average is recorded, because on an
oversubscribed CPU torch's 2 OpenMP threads stall at every op barrier (steps 5-20x slower, seen at
load ~7 on 2 cores) while XLA degrades gracefully, which inflates the ratio several-fold.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import statistics
import sys
import tempfile
import time
from typing import Any

import numpy as np

# Ids of MiniLM's (bert-base-uncased) vocabulary used for random captions.
CLS_ID, SEP_ID, PAD_ID, FIRST_WORD_ID = 101, 102, 0, 1000
TESTS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'tests')


def _flags(argv: list[str] | None = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog='benchmarks.larp_step')
  parser.add_argument('--batch_size', type=int, default=16)
  parser.add_argument('--steps', type=int, default=10, help='Timed steps per implementation.')
  parser.add_argument('--warmup', type=int, default=2, help='Untimed steps (after compiling).')
  parser.add_argument('--stage', type=int, choices=(1, 2), default=1)
  parser.add_argument('--variant', default='demo', help='configs/larp.py variant.')
  parser.add_argument(
      '--num_train_tracks',
      type=int,
      default=300,
      help='Rows of the lookup tables (demo: 300 training tracks); ignored with ' '--dataset_dir.',
  )
  parser.add_argument(
      '--dataset_dir',
      default=None,
      help='A built LARP dataset: its training tracks and playlists (default: '
      'random playlists over --num_train_tracks).',
  )
  parser.add_argument('--torch_threads', type=int, default=2)
  parser.add_argument('--torch_adam', choices=('fused', 'foreach', 'for-loop'), default='fused')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--output', default=None, help='Write the results as JSON to this file.')
  args = parser.parse_args(argv)
  for name in ('batch_size', 'steps', 'num_train_tracks', 'torch_threads'):
    if getattr(args, name) <= 0:
      raise ValueError(f'--{name} must be positive, got {getattr(args, name)}.')
  if args.warmup < 0:
    raise ValueError(f'--warmup must be >= 0, got {args.warmup}.')
  return args


def reference_module(name: str):
  """A module of tests/ (`reference_htsat`, `reference_larp_torch`), imported top-level with
  tests/ on `sys.path` as pytest imports it (tests/ is not a package), so both share one copy."""
  if TESTS_DIR not in sys.path:
    sys.path.append(TESTS_DIR)
  return importlib.import_module(name)


def load_config(variant: str = 'demo'):
  """`configs/larp.py:<variant>` as an ml_collections ConfigDict."""
  from configs import larp as larp_config  # pylint: disable=g-import-not-at-top

  return larp_config.get_config(variant)


def without_regularisation(cfg):
  """A LARPConfig whose train mode is deterministic (no drop path, SpecAugment or dropout);
  BatchNorm still uses batch statistics. For parity checks of the two steps."""
  audio = dataclasses.replace(
      cfg.audio, drop_path_rate=0.0, drop_rate=0.0, attn_drop_rate=0.0, spec_augment=False
  )
  text = dataclasses.replace(cfg.text, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
  return dataclasses.replace(cfg, audio=audio, text=text)


# ---------------------------------------------------------------------------------------------
# Random data.


def random_groups(
    num_tracks: int, width: int, seed: int, num_playlists: int = 400, playlist_length: int = 12
) -> np.ndarray:
  """int32 [num_tracks, width] playlist ids per track (-1 padded) from random playlists."""
  rng = np.random.default_rng(seed)
  tracks = np.stack(
      [rng.choice(num_tracks, playlist_length, replace=False) for _ in range(num_playlists)]
  )
  lengths = np.full((num_playlists,), playlist_length)
  from larp_jax.jobs import larp_steps  # pylint: disable=g-import-not-at-top

  return larp_steps.track_playlist_groups(tracks, lengths, num_tracks, width)


def random_tracks(
    rng: np.random.Generator,
    track_index: np.ndarray,
    clip_samples: int,
    text_length: int,
    vocab_size: int,
) -> dict[str, np.ndarray]:
  """{'audio' f32 [B, S], 'input_ids'/'attention_mask' int32 [B, L], 'track_index' int32 [B]}."""
  b = track_index.shape[0]
  lengths = rng.integers(4, text_length + 1, size=b)
  positions = np.arange(text_length)[None, :]
  words = rng.integers(FIRST_WORD_ID, vocab_size, size=(b, text_length))
  input_ids = np.where(positions < lengths[:, None] - 1, words, PAD_ID)
  input_ids[:, 0] = CLS_ID
  input_ids[np.arange(b), lengths - 1] = SEP_ID
  return {
      'audio': (0.1 * rng.standard_normal((b, clip_samples))).astype(np.float32),
      'input_ids': input_ids.astype(np.int32),
      'attention_mask': (positions < lengths[:, None]).astype(np.int32),
      'track_index': track_index.astype(np.int32),
  }


def random_batch(
    seed: int,
    stage: int,
    batch_size: int,
    clip_samples: int,
    text_length: int,
    vocab_size: int,
    groups: np.ndarray,
) -> dict[str, Any]:
  """A stage-1 track batch, or a stage-2 pair batch {'a', 'b', 'playlist_index'} whose partners
  share a playlist (per `groups` [N, G])."""
  rng = np.random.default_rng(seed)
  num_tracks = groups.shape[0]
  if batch_size > num_tracks:
    raise ValueError(f'batch_size={batch_size} exceeds num_train_tracks={num_tracks}.')
  if stage == 1:
    ids = rng.choice(num_tracks, batch_size, replace=False)
    return random_tracks(rng, ids, clip_samples, text_length, vocab_size)
  members: dict[int, list[int]] = {}
  for track, row in enumerate(groups):
    for p in row[row >= 0]:
      members.setdefault(int(p), []).append(track)
  playlists = [p for p, m in members.items() if len(m) >= 2]
  chosen = rng.choice(playlists, batch_size, replace=False)
  pairs = np.array([rng.choice(members[int(p)], 2, replace=False) for p in chosen])
  return {
      'a': random_tracks(rng, pairs[:, 0], clip_samples, text_length, vocab_size),
      'b': random_tracks(rng, pairs[:, 1], clip_samples, text_length, vocab_size),
      'playlist_index': chosen.astype(np.int32),
  }


# ---------------------------------------------------------------------------------------------
# Ours.


def shape_only_dataset(directory: str, num_train_tracks: int, max_text_length: int) -> str:
  """Writes the `larp_metadata.json` fields `larp_job.make_state` reads into `directory`.

  The state a fresh run builds depends on its dataset only through the number of training tracks
  (rows of the lookup tables) and the caption length (init shapes); this stands in for a built
  dataset when the benchmark runs on random batches. Returns `directory`.
  """
  from data_pipelines import playlist_audio  # pylint: disable=g-import-not-at-top

  meta = {
      'pad_id': {'train': int(num_train_tracks)},
      'config': {'max_text_length': int(max_text_length)},
  }
  with open(os.path.join(directory, playlist_audio.METADATA_FILE), 'w', encoding='utf-8') as f:
    json.dump(meta, f)
  return directory


@dataclasses.dataclass
class OursSetup:
  """Our model, train state and the loop's jitted (not yet compiled) step.

  `step` is `step_lib.jit_train_step(...)` (a `ShardedStep`): call it as
  `step(state, inputs(batch))`, or `step.lower(state, inputs(batch)).compile()`.
  """

  model: Any
  cfg: Any
  state: Any
  shardings: Any
  mesh: Any
  step: Any
  groups: np.ndarray
  total_steps: int
  max_text_length: int

  def inputs(self, batch: dict[str, Any]) -> dict[str, Any]:
    """The step's placed inputs: `{**batch, 'extra': {'track_groups': int32 [N_train, G]}}`
    through `step_lib.place_inputs` with `larp_steps.INPUT_SPECS`, as the loop places them."""
    from larp_jax.jobs import larp_steps  # pylint: disable=g-import-not-at-top
    from larp_jax.training import step as step_lib  # pylint: disable=g-import-not-at-top

    return step_lib.place_inputs(
        {**batch, 'extra': {'track_groups': self.groups}}, self.mesh, larp_steps.INPUT_SPECS
    )


def build_ours(
    config,
    stage: int,
    groups: np.ndarray,
    total_steps: int,
    *,
    dataset_dir: str | None = None,
    regularisation: bool = True,
    devices=None,
) -> OursSetup:
  """The loop's state and step for `stage` on a mesh of ONE device.

  State: `larp_job.make_state` (a fresh stage-1 run: pretrained text tower loaded through
  `init_from`; fusion as the config's run of this stage). Step:
  `step_lib.jit_train_step(larp_steps.make_train_step(model, stage, config.loss), shardings,
  mesh, larp_steps.INPUT_SPECS)`.

  Args:
    config: the LARP ConfigDict (`configs/larp.py`).
    stage: 1 or 2.
    groups: int32 [N_train, G] track -> playlist ids (the step's `extra` input).
    total_steps: length of the learning-rate schedule.
    dataset_dir: a built LARP dataset (its N_train must equal `groups.shape[0]`); None: a
      `shape_only_dataset` with N_train = `groups.shape[0]` and `config.data.build.max_text_length`.
    regularisation: False steps a model without drop path, SpecAugment or dropout (BatchNorm still
      uses batch statistics; the params are the same), for parity checks.
    devices: devices to take the first one from (default `jax.devices()`).
  """
  import jax  # pylint: disable=g-import-not-at-top

  from data_pipelines import playlist_audio  # pylint: disable=g-import-not-at-top
  from larp_jax.jobs import larp_job, larp_steps  # pylint: disable=g-import-not-at-top
  from larp_jax.models import larp_encoder  # pylint: disable=g-import-not-at-top
  from larp_jax.training import mesh as mesh_lib  # pylint: disable=g-import-not-at-top
  from larp_jax.training import step as step_lib  # pylint: disable=g-import-not-at-top

  devices = list(jax.devices() if devices is None else devices)[:1]
  mesh = mesh_lib.make_mesh({'shape': (1, 1)}, devices=devices)
  fusion = next((bool(spec.fusion) for spec in config.stages.values() if spec.stage == stage), True)
  if dataset_dir is None:
    max_text_length = int(config.data.build.max_text_length)
    with tempfile.TemporaryDirectory() as directory:
      model, state, shardings = larp_job.make_state(
          config,
          mesh,
          shape_only_dataset(directory, groups.shape[0], max_text_length),
          total_steps,
          fusion=fusion,
      )
  else:
    meta = playlist_audio.load_metadata(dataset_dir)
    if int(meta['pad_id']['train']) != groups.shape[0]:
      raise ValueError(
          f"{dataset_dir} has {meta['pad_id']['train']} training tracks, groups "
          f'{groups.shape[0]} rows.'
      )
    max_text_length = int(meta['config']['max_text_length'])
    model, state, shardings = larp_job.make_state(
        config, mesh, dataset_dir, total_steps, fusion=fusion
    )
  if not regularisation:
    model = larp_encoder.LARP(without_regularisation(model.config))
  step = step_lib.jit_train_step(
      larp_steps.make_train_step(model, stage, config.loss), shardings, mesh, larp_steps.INPUT_SPECS
  )
  return OursSetup(
      model=model,
      cfg=model.config,
      state=state,
      shardings=shardings,
      mesh=mesh,
      step=step,
      groups=np.asarray(groups, np.int32),
      total_steps=total_steps,
      max_text_length=max_text_length,
  )


def load_torch_htsat_into_ours(ours: OursSetup, torch_htsat) -> None:
  """Replaces our HTS-AT params (online and momentum) and bn0 statistics with the torch
  module's weights (`htsat_convert.convert_torch_state_dict`, strict)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  from larp_jax.models import htsat_convert  # pylint: disable=g-import-not-at-top

  variables = htsat_convert.convert_torch_state_dict(
      reference_module('reference_htsat').numpy_state_dict(torch_htsat), ours.cfg.audio
  )
  state = ours.state
  copy_tree = lambda tree: jax.tree.map(jnp.array, tree)  # noqa: E731  (separate buffers)
  params = {**state.params, 'audio_encoder': copy_tree(variables['params'])}
  momentum = {**state.model_state['momentum'], 'audio_encoder': copy_tree(variables['params'])}
  model_state = {
      **state.model_state,
      'momentum': momentum,
      'batch_stats': {'audio_encoder': copy_tree(variables['batch_stats'])},
  }
  state = state.replace(params=params, model_state=model_state)
  ours.state = jax.device_put(state, ours.shardings)


# ---------------------------------------------------------------------------------------------
# PyTorch (tests/reference_larp_torch.py).


def build_torch(config, ours: OursSetup, text_dir: str, adam: str = 'fused', seed: int = 0):
  """The torch reference with our initial weights (HTS-AT from torch's init, see module
  docstring), its momentum copy, Adam with our schedule and rules, our initial queues, zero tables.

  Returns a `reference_larp_torch.TorchSetup` (step: `reference_larp_torch.torch_train_step`).
  """
  import jax  # pylint: disable=g-import-not-at-top

  if float(config.loss.alpha) != 0.0:
    raise ValueError(
        f'config.loss.alpha={config.loss.alpha}: the torch baseline has no momentum '
        'distillation; use alpha = 0.'
    )
  reference = reference_module('reference_larp_torch')
  model = reference.make_torch_larp(ours.cfg, text_dir, seed)
  load_torch_htsat_into_ours(ours, model.audio_encoder)
  params = jax.device_get(ours.state.params)
  reference.copy_projections_to_torch(params, model)
  return reference.make_torch_setup(
      config,
      model,
      params,
      jax.device_get(ours.state.model_state),
      ours.groups,
      ours.total_steps,
      adam,
  )


# ---------------------------------------------------------------------------------------------
# Benchmark.


def lower_and_compile(step, state, inputs):
  """Compiles the jitted `step` ahead of time for `(state, inputs)`; returns `(compiled, trace
  + lower seconds, XLA compile seconds)`."""
  start = time.perf_counter()
  lowered = step.lower(state, inputs)
  trace_s = time.perf_counter() - start
  start = time.perf_counter()
  compiled = lowered.compile()
  return compiled, trace_s, time.perf_counter() - start


def run(args: argparse.Namespace) -> dict[str, Any]:
  """Builds both implementations, compiles ours, warms up, times alternating steps."""
  import jax  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top

  from larp_jax.jobs import larp_job, larp_setup  # pylint: disable=g-import-not-at-top

  torch.set_num_threads(args.torch_threads)
  load_before = os.getloadavg()[0]
  config = load_config(args.variant)
  if config.loss.queue_size < (args.stage * args.batch_size):
    raise ValueError(
        f'queue_size {config.loss.queue_size} < clips per step ' f'{args.stage * args.batch_size}.'
    )
  start = time.perf_counter()
  if args.dataset_dir:
    groups = larp_job.track_groups(config, args.dataset_dir)['track_groups']
  else:
    groups = random_groups(args.num_train_tracks, int(config.loss.group_width), args.seed)
  total_steps = args.warmup + args.steps + 1
  ours = build_ours(config, args.stage, groups, total_steps, dataset_dir=args.dataset_dir)
  setup = build_torch(config, ours, larp_setup.text_model_dir(config), args.torch_adam, args.seed)
  reference = reference_module('reference_larp_torch')
  build_s = time.perf_counter() - start
  cfg = ours.cfg
  batch_np = random_batch(
      args.seed + 1,
      args.stage,
      args.batch_size,
      cfg.audio.clip_samples,
      ours.max_text_length,
      cfg.text.vocab_size,
      groups,
  )
  inputs = ours.inputs(batch_np)
  batch_t = reference.torch_batch(batch_np)

  compiled, trace_s, compile_s = lower_and_compile(ours.step, ours.state, inputs)

  state = ours.state
  ours_losses, torch_losses = [], []

  def ours_step():
    nonlocal state
    state, metrics = compiled(state, inputs)
    jax.block_until_ready((state, metrics))
    ours_losses.append(float(metrics['loss/total']))

  def torch_step():
    torch_losses.append(reference.torch_train_step(setup, batch_t, args.stage, config.loss))

  for _ in range(args.warmup):
    ours_step()
    torch_step()
  ours_s, torch_s = [], []
  for _ in range(args.steps):
    for fn, times in ((ours_step, ours_s), (torch_step, torch_s)):
      start = time.perf_counter()
      fn()
      times.append(time.perf_counter() - start)
  ours_step_s, torch_step_s = statistics.median(ours_s), statistics.median(torch_s)
  results = {
      'variant': args.variant,
      'stage': args.stage,
      'batch_size': args.batch_size,
      'clips_per_step': args.stage * args.batch_size,
      'queue_size': int(config.loss.queue_size),
      'steps': args.steps,
      'warmup': args.warmup,
      'torch_threads': args.torch_threads,
      'torch_adam': args.torch_adam,
      'device': str(jax.devices()[0]),
      'ours_step_s': ours_step_s,
      'torch_step_s': torch_step_s,
      'ours_step_s_all': ours_s,
      'torch_step_s_all': torch_s,
      'ours_examples_per_s': args.batch_size / ours_step_s,
      'torch_examples_per_s': args.batch_size / torch_step_s,
      'trace_lower_s': trace_s,
      'compile_s': compile_s,
      'build_s': build_s,
      'ours_losses': ours_losses,
      'torch_losses': torch_losses,
      'log_keys': float(np.log(args.stage * args.batch_size + config.loss.queue_size)),
      'load_average_1min': [load_before, os.getloadavg()[0]],
  }
  results['ratio'] = results['ours_examples_per_s'] / results['torch_examples_per_s']
  return results


def _print_table(r: dict[str, Any]) -> None:
  unit = 'pairs' if r['stage'] == 2 else 'tracks'
  print(
      f"LARP stage-{r['stage']} train step, variant {r['variant']}, B={r['batch_size']} {unit} "
      f"({r['clips_per_step']} clips), queue {r['queue_size']}, on {r['device']}; "
      f"torch {r['torch_threads']} threads, Adam {r['torch_adam']}"
  )
  print(f"{'implementation':<30}{'step [s]':>10}{'examples/s':>12}{'first loss':>12}")
  for label, key in (('ours (jit_train_step)', 'ours'), ('PyTorch eager', 'torch')):
    print(
        f"{label:<30}{r[key + '_step_s']:>10.3f}{r[key + '_examples_per_s']:>12.2f}"
        f"{r[key + '_losses'][0]:>12.3f}"
    )
  print(
      f"ratio (ours / torch examples/s): {r['ratio']:.2f}x   "
      f"(medians of {r['steps']} alternating steps after {r['warmup']} warm-up)"
  )
  print(
      f"compile: trace+lower {r['trace_lower_s']:.1f} s + XLA compile {r['compile_s']:.1f} s "
      f"(excluded); build both models {r['build_s']:.1f} s"
  )
  print(
      f"log(clips + Q) = {r['log_keys']:.2f} (the per-term InfoNCE loss at init); 1-min load "
      f"average before/after: {r['load_average_1min'][0]:.1f} / {r['load_average_1min'][1]:.1f} "
      f"on {os.cpu_count()} CPUs (torch's OpenMP threads slow down far more than XLA under load)"
  )


def main(argv: list[str] | None = None) -> None:
  args = _flags(argv)
  results = run(args)
  _print_table(results)
  if args.output:
    with open(args.output, 'w') as f:
      json.dump(results, f, indent=2)


if __name__ == '__main__':
  main()
