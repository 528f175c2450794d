"""User-representation autoencoder train step: the loop's jitted step vs eager PyTorch, same run.

    python -m benchmarks.user_ae_step [--batch_size 256[,1024,4096]] [--steps 20] [--warmup 3]
        [--variant demo] [--features D] [--torch_threads 2] [--torch_adam fused]
        [--output out.json]

Ours is exactly the step `user_rep_job.train_autoencoder` runs through `runs.train_run`, on a mesh
of ONE CPU device: the model `user_rep_job._model(config, d)` (paper 001's SELU autoencoder,
`configs/user_rep.py:<variant>`, demo: encoder 512-256, 120-d linear code, mirrored decoder,
alpha-dropout 0.05 after every hidden SELU), the state `runs.create_state` (the optimizer of
`config.optimizer`: Adam 1e-3, 50 warm-up steps then cosine, over warm-up + timed steps), the step
`user_rep_job.make_train_step(model, weights, config.loss.squared)` (Eq. 2, the unsquared
block-weighted norm) jitted by `step_lib.jit_train_step(step, shardings, mesh, None)` (state
sharded and donated, the batch on 'data'), the batch placed by `step_lib.place_inputs`, compiled
ahead of time by `step_lib.compile_step` as the loop does (compile time reported, not timed).
The init function is the one-line lambda of `train_autoencoder` (written out here: the job keeps
it inline). The column weights are `reconstruction.column_weights` of the demo's feature blocks
(`demo_spec`: the demo listening's vocabularies, audio/collab widths of `config.modality`), so
d = the demo's feature width (681); `--features D` uses one block of width D instead.

PyTorch (eager, `torch.set_num_threads(torch_threads)`): `nn.Sequential` of Linear + SELU +
`nn.AlphaDropout` (encoder, decoder), the same loss written the usual way
(`sqrt(sum_j w_j (x - x_hat)^2 + 1e-12).mean()`), `torch.optim.Adam` (`fused=True` when CPU
supports it, else foreach) with the same betas/eps and the learning rate set to our schedule's
value before every step. Both start from our initial weights (copied into torch).
`check_parity` first runs both without dropout (same weights, same batch) and asserts the
first-step loss agrees (rtol 1e-4) and the next two (after Adam updates) within 1e-3.

Inputs: the same random standardised features N(0, 1) [B, d] float32 for both, fixed over the
steps (no input pipeline is timed). Warm-up steps are excluded; timed steps alternate ours / torch
so background load hits both alike. examples/s = B / median step time; ratio = ours / torch
(> 1: ours faster), one per batch size. The 1-minute load average is recorded (before, after):
on an oversubscribed CPU torch's OpenMP threads stall far more than XLA, inflating the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def _ints(text: str) -> list[int]:
  return [int(x) for x in str(text).split(',') if x]


def _flags(argv: list[str] | None = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog='benchmarks.user_ae_step')
  parser.add_argument(
      '--batch_size', type=_ints, default=None, help='Comma list (default: the config batch).'
  )
  parser.add_argument('--steps', type=int, default=20, help='Timed steps per implementation.')
  parser.add_argument('--warmup', type=int, default=3, help='Untimed steps (after compiling).')
  parser.add_argument('--variant', default='demo', help='configs/user_rep.py variant.')
  parser.add_argument('--features', type=int, default=0, help='d (0: the demo feature width).')
  parser.add_argument('--torch_threads', type=int, default=2)
  parser.add_argument('--torch_adam', choices=('fused', 'foreach', 'for-loop'), default='fused')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--output', default=None, help='Write the results as JSON to this file.')
  args = parser.parse_args(argv)
  for name in ('steps', 'torch_threads'):
    if getattr(args, name) <= 0:
      raise ValueError(f'--{name} must be positive, got {getattr(args, name)}.')
  if args.warmup < 0 or args.features < 0:
    raise ValueError('--warmup and --features must be >= 0.')
  return args


# ---------------------------------------------------------------------------------------------
# Shared by the three benchmarks (map2t_step and user_features import these).


def one_device_mesh(devices=None):
  """A ('data', 'model') mesh of shape (1, 1) on the first of `devices` (default jax.devices())."""
  import jax  # pylint: disable=g-import-not-at-top

  from larp_jax.training import mesh as mesh_lib  # pylint: disable=g-import-not-at-top

  devices = list(jax.devices() if devices is None else devices)[:1]
  return mesh_lib.make_mesh({'shape': (1, 1)}, devices=devices)


def schedule_values(optimizer_config, total_steps: int) -> np.ndarray:
  """float64 [total_steps] learning rate of step k (`optimizers.make_schedule`, as optax applies
  it: step k uses schedule(k), k from 0)."""
  from larp_jax.training import optimizers  # pylint: disable=g-import-not-at-top

  schedule = optimizers.make_schedule(optimizer_config, total_steps)
  return np.array([float(schedule(k)) for k in range(total_steps)])


def torch_optimizer(optimizer_config, params, adam: str = 'fused'):
  """`torch.optim.Adam`/`AdamW` with `optimizer_config`'s betas, eps (and weight decay), lr 0
  (set per step from `schedule_values`). `adam`: 'fused' (falls back to 'foreach' where CPU
  fused Adam is unavailable), 'foreach' or 'for-loop'. Returns (optimizer, the kind used)."""
  import torch  # pylint: disable=g-import-not-at-top

  oc = optimizer_config
  if oc.get('rules', ()) or float(oc.get('grad_clip_norm', 0.0)):
    raise ValueError('torch baseline: optimizer.rules / grad_clip_norm are not mirrored.')
  name = oc.get('name', 'adam')
  if name not in ('adam', 'adamw'):
    raise ValueError(f'torch baseline: optimizer {name!r} not mirrored (adam | adamw).')
  params = list(params)
  kwargs = dict(lr=0.0, betas=(float(oc.b1), float(oc.b2)), eps=float(oc.eps))
  cls = torch.optim.Adam
  if name == 'adamw':
    cls, kwargs['weight_decay'] = torch.optim.AdamW, float(oc.weight_decay)
  kinds = {
      'fused': dict(fused=True),
      'foreach': dict(foreach=True),
      'for-loop': dict(foreach=False),
  }
  if adam == 'fused':
    try:
      probe = torch.nn.Parameter(torch.zeros(2))
      probe_opt = cls([probe], **kwargs, fused=True)
      probe.grad = torch.ones(2)
      probe_opt.step()
    except (RuntimeError, TypeError, ValueError):
      adam = 'foreach'
  return cls(params, **kwargs, **kinds[adam]), adam


def load_flax_params(module, params) -> None:
  """Copies a flax params tree into a torch module whose submodules carry the flax names.

  A dict with 'kernel' [in, out] -> `nn.Linear` (weight = kernel.T, bias); with 'scale' ->
  `nn.LayerNorm` (weight, bias); a bare array -> an `nn.Parameter` of that name; other dicts
  recurse into the submodule of that name. Every leaf must find its target (KeyError otherwise).
  """
  import torch  # pylint: disable=g-import-not-at-top

  def put(target, value):
    value = torch.as_tensor(np.array(value, np.float32))
    if tuple(target.shape) != tuple(value.shape):
      raise ValueError(f'shape {tuple(value.shape)} into {tuple(target.shape)}')
    with torch.no_grad():
      target.copy_(value)

  for key, value in params.items():
    if isinstance(value, dict) or hasattr(value, 'items'):
      sub = getattr(module, key) if not isinstance(module, torch.nn.ModuleDict) else module[key]
      if 'kernel' in value:
        put(sub.weight, np.asarray(value['kernel']).T)
        put(sub.bias, value['bias'])
      elif 'scale' in value:
        put(sub.weight, value['scale'])
        put(sub.bias, value['bias'])
      else:
        load_flax_params(sub, value)
    else:
      put(getattr(module, key), value)


def time_alternating(
    fns: Sequence[Callable[[], Any]], warmup: int, steps: int
) -> list[list[float]]:
  """Runs every fn `warmup` times, then `steps` rounds of one call each in turn (alternating, so
  background load hits all alike). Returns the seconds of every timed call, per fn."""
  for _ in range(warmup):
    for fn in fns:
      fn()
  times: list[list[float]] = [[] for _ in fns]
  for _ in range(steps):
    for fn, out in zip(fns, times):
      start = time.perf_counter()
      fn()
      out.append(time.perf_counter() - start)
  return times


def step_figures(
    batch_size: int,
    ours_s: list[float],
    torch_s: list[float],
    compile_s: float,
    torch_adam: str,
    ours_losses: list[float],
    torch_losses: list[float],
) -> dict[str, Any]:
  """One batch size's figures from the alternating step times (s): medians, examples/s and the
  ratio torch / ours (> 1: ours faster)."""
  o, t = statistics.median(ours_s), statistics.median(torch_s)
  return {
      'batch_size': batch_size,
      'ours_step_s': o,
      'torch_step_s': t,
      'ours_step_s_all': ours_s,
      'torch_step_s_all': torch_s,
      'ours_examples_per_s': batch_size / o,
      'torch_examples_per_s': batch_size / t,
      'ratio': t / o,
      'build_and_compile_s': compile_s,
      'torch_adam_used': torch_adam,
      'ours_losses': ours_losses,
      'torch_losses': torch_losses,
  }


def print_step_rows(r: dict[str, Any], ratio_name: str) -> None:
  """The per-batch-size table, one ``ratio <ratio_name>_B<B> X.XXx`` line each, the load line."""
  print(f"{'B':>6}{'ours [ms]':>11}{'torch [ms]':>12}{'ours ex/s':>12}{'torch ex/s':>12}")
  for x in r['results']:
    print(
        f"{x['batch_size']:>6}{x['ours_step_s'] * 1e3:>11.2f}{x['torch_step_s'] * 1e3:>12.2f}"
        f"{x['ours_examples_per_s']:>12.0f}{x['torch_examples_per_s']:>12.0f}"
    )
  for x in r['results']:
    print(f"ratio {ratio_name}_B{x['batch_size']} {x['ratio']:.2f}x")
  print_load_line(r, f"{r['steps']} alternating steps")


def print_load_line(r: dict[str, Any], timed: str) -> None:
  """'(medians of <timed> after <warmup> warm-up; 1-min load average before/after ...)'."""
  print(
      f"(medians of {timed} after {r['warmup']} warm-up; 1-min load "
      f"average before/after {r['load_average_1min'][0]:.2f} / {r['load_average_1min'][1]:.2f} "
      f'on {os.cpu_count()} CPUs)'
  )


def write_json(path: str | None, results: dict[str, Any]) -> None:
  if path:
    with open(path, 'w', encoding='utf-8') as f:
      json.dump(results, f, indent=2)


# ---------------------------------------------------------------------------------------------
# Shapes.


def load_config(variant: str = 'demo'):
  from configs import user_rep  # pylint: disable=g-import-not-at-top

  return user_rep.get_config(variant)


def demo_spec(config):
  """The `FeatureSpec` of the demo listening (`data_pipelines/demo/listening_logs`): its
  vocabularies (8 countries, 3 genders, 6 devices, the countries' languages + 'en'), the track
  spaces' widths (`config.modality`) and `config.features`; nothing dropped (run 'ae')."""
  from data_pipelines import user_features  # pylint: disable=g-import-not-at-top
  from data_pipelines.demo import listening_logs  # pylint: disable=g-import-not-at-top

  languages = set(listening_logs.COUNTRY_LANGUAGE.values()) | {'en'}
  return user_features.FeatureSpec(
      num_countries=len(listening_logs.COUNTRIES),
      num_genders=len(listening_logs.GENDERS),
      num_devices=len(listening_logs.DEVICES),
      num_languages=len(languages),
      audio_dim=int(config.modality.audio_dim),
      collab_dim=int(config.modality.collab_dim),
      horizons=tuple(int(h) for h in config.features.horizons),
      onboarding_days=int(config.features.onboarding_days),
      age_edges=tuple(int(a) for a in config.features.age_edges),
  )


def block_widths(config, features: int = 0) -> list[int]:
  """The feature blocks' widths: the demo's (`demo_spec`), or one block of width `features`."""
  return [int(features)] if features else [w for _, w in demo_spec(config).blocks()]


# ---------------------------------------------------------------------------------------------
# Ours.


def build_ours(config, widths: Sequence[int], batch_size: int, total_steps: int, devices=None):
  """The loop's state and compiled step for one batch size.

  Returns `(compiled, state, inputs, params0)`: `compiled(state, inputs) -> (state, metrics)`
  (state donated), inputs = {'x': float32 [B, d] N(0, 1)} placed on the mesh, params0 the
  initial params on the host (numpy).
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  from larp_jax.jobs import user_rep_job  # pylint: disable=g-import-not-at-top
  from larp_jax.losses import reconstruction  # pylint: disable=g-import-not-at-top
  from larp_jax.training import runs  # pylint: disable=g-import-not-at-top
  from larp_jax.training import step as step_lib  # pylint: disable=g-import-not-at-top

  d = int(sum(widths))
  config = runs.run_config(config, batch_size=int(batch_size))
  mesh = one_device_mesh(devices)
  model = user_rep_job._model(config, d)  # pylint: disable=protected-access
  weights = reconstruction.column_weights(widths, config.loss.block_weighting)
  init_fn = lambda rng: (  # noqa: E731  (train_autoencoder's init_fn)
      model.init(rng, jnp.zeros((1, d), jnp.float32))['params'],
      {},
  )
  state, shardings = runs.create_state(config, mesh, init_fn, total_steps)
  step = step_lib.jit_train_step(
      user_rep_job.make_train_step(model, weights, bool(config.loss.squared)), shardings, mesh
  )
  x = np.random.default_rng(int(config.seed) + 1).standard_normal((batch_size, d))
  inputs = step_lib.place_inputs({'x': x.astype(np.float32)}, mesh)
  params0 = jax.device_get(state.params)
  compiled = step_lib.compile_step(step, state, inputs, name='user_ae benchmark step')
  return compiled, state, inputs, params0


# ---------------------------------------------------------------------------------------------
# PyTorch.


def make_torch_autoencoder(config, d: int, dropout: bool = True):
  """`nn.Module` with `encoder`/`decoder` `nn.Sequential`s of Linear + SELU (+ AlphaDropout or
  Dropout), named like our params (`dense_<i>`, `out`) so `load_flax_params` fills them."""
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top

  rate = float(config.model.dropout_rate) if dropout else 0.0
  drop = nn.AlphaDropout if config.model.dropout_kind == 'alpha' else nn.Dropout

  def mlp(widths, in_dim, out_dim):
    layers = []
    for i, width in enumerate(widths):
      layers += [(f'dense_{i}', nn.Linear(in_dim, width)), (f'selu_{i}', nn.SELU())]
      if rate > 0:
        layers.append((f'dropout_{i}', drop(rate)))
      in_dim = width
    layers.append(('out', nn.Linear(in_dim, out_dim)))
    from collections import OrderedDict  # pylint: disable=g-import-not-at-top

    return nn.Sequential(OrderedDict(layers))

  hidden = [int(h) for h in config.model.hidden]
  k = int(config.model.latent_dim)
  model = nn.Module()
  model.encoder = mlp(hidden, d, k)
  model.decoder = mlp(hidden[::-1], k, d)
  return model.to(torch.float32)


def torch_loss(x, x_hat, weights, squared: bool):
  """Eq. 2: mean over rows of sqrt(sum_j w_j (x - x_hat)^2 + 1e-12) (or of the squared norm)."""
  sq = (weights * (x - x_hat) ** 2).sum(-1)
  return sq.mean() if squared else (sq + 1e-12).sqrt().mean()


def build_torch(config, widths, params0, batch_x: np.ndarray, lrs, adam, dropout: bool = True):
  """The torch model with our initial weights, its optimizer and a step function
  `() -> float loss` (the learning rate of step k = lrs[k])."""
  import torch  # pylint: disable=g-import-not-at-top

  from larp_jax.losses import reconstruction  # pylint: disable=g-import-not-at-top

  d = int(sum(widths))
  model = make_torch_autoencoder(config, d, dropout)
  load_flax_params(model, params0)
  model.train()
  opt, kind = torch_optimizer(config.optimizer, model.parameters(), adam)
  w = torch.as_tensor(reconstruction.column_weights(widths, config.loss.block_weighting))
  x = torch.as_tensor(np.array(batch_x, np.float32))
  squared = bool(config.loss.squared)
  count = [0]

  def step() -> float:
    for group in opt.param_groups:
      group['lr'] = float(lrs[min(count[0], len(lrs) - 1)])
    count[0] += 1
    opt.zero_grad(set_to_none=True)
    x_hat = model.decoder(model.encoder(x))
    loss = torch_loss(x, x_hat, w, squared)
    loss.backward()
    opt.step()
    return float(loss.detach())

  return step, kind


def check_parity(config, widths, batch_size: int, adam: str, steps: int = 3) -> dict[str, Any]:
  """Both steps without dropout, same weights and batch: asserts the first-step loss agrees
  (rtol 1e-4) and the next ones within rtol 1e-3. Returns the losses; raises AssertionError."""
  import jax  # pylint: disable=g-import-not-at-top

  from larp_jax.training import runs  # pylint: disable=g-import-not-at-top

  cfg = runs.run_config(config, **{'model.dropout_rate': 0.0})
  total = steps + 1
  compiled, state, inputs, params0 = build_ours(cfg, widths, batch_size, total)
  torch_step, _ = build_torch(
      cfg,
      widths,
      params0,
      np.asarray(jax.device_get(inputs['x'])),
      schedule_values(cfg.optimizer, total),
      adam,
      dropout=False,
  )
  ours, theirs = [], []
  for _ in range(steps):
    state, metrics = compiled(state, inputs)
    ours.append(float(metrics['loss']))
    theirs.append(torch_step())
  np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-4, err_msg='first-step loss')
  np.testing.assert_allclose(ours, theirs, rtol=1e-3, err_msg='losses after Adam updates')
  return {'ours_losses': ours, 'torch_losses': theirs, 'passed': True}


# ---------------------------------------------------------------------------------------------
# Benchmark.


def run_one(config, args, widths, batch_size: int) -> dict[str, Any]:
  """Ours vs torch at one batch size (dropout on, as the loop trains)."""
  import jax  # pylint: disable=g-import-not-at-top

  total = args.warmup + args.steps + 1
  start = time.perf_counter()
  compiled, state, inputs, params0 = build_ours(config, widths, batch_size, total)
  compile_s = time.perf_counter() - start
  torch_step, kind = build_torch(
      config,
      widths,
      params0,
      np.asarray(jax.device_get(inputs['x'])),
      schedule_values(config.optimizer, total),
      args.torch_adam,
  )
  holder = {'state': state}
  ours_losses, torch_losses = [], []

  def ours_step():
    holder['state'], metrics = compiled(holder['state'], inputs)
    jax.block_until_ready((holder['state'], metrics))
    ours_losses.append(float(metrics['loss']))

  def torch_call():
    torch_losses.append(torch_step())

  ours_s, torch_s = time_alternating((ours_step, torch_call), args.warmup, args.steps)
  return step_figures(batch_size, ours_s, torch_s, compile_s, kind, ours_losses, torch_losses)


def run(args: argparse.Namespace) -> dict[str, Any]:
  """Parity check, then one alternating comparison per batch size."""
  import jax  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top

  torch.set_num_threads(args.torch_threads)
  load_before = os.getloadavg()[0]
  from larp_jax.training import runs  # pylint: disable=g-import-not-at-top

  config = runs.run_config(load_config(args.variant), seed=int(args.seed))
  widths = block_widths(config, args.features)
  batches = args.batch_size or [int(config.batch_size)]
  parity = check_parity(config, widths, min(batches[0], 64), args.torch_adam)
  per_batch = [run_one(config, args, widths, b) for b in batches]
  return {
      'variant': args.variant,
      'features': int(sum(widths)),
      'block_widths': widths,
      'hidden': [int(h) for h in config.model.hidden],
      'latent_dim': int(config.model.latent_dim),
      'dropout': [float(config.model.dropout_rate), config.model.dropout_kind],
      'steps': args.steps,
      'warmup': args.warmup,
      'torch_threads': args.torch_threads,
      'torch_adam': args.torch_adam,
      'device': str(jax.devices()[0]),
      'parity': parity,
      'results': per_batch,
      'ratio': per_batch[0]['ratio'],
      'load_average_1min': [load_before, os.getloadavg()[0]],
  }


def _print_table(r: dict[str, Any]) -> None:
  print(
      f"user AE train step, variant {r['variant']}, d={r['features']} hidden={r['hidden']} "
      f"k={r['latent_dim']} dropout={r['dropout']}, on {r['device']}; torch "
      f"{r['torch_threads']} threads, Adam {r['results'][0]['torch_adam_used']}"
  )
  p = r['parity']
  print(
      f"parity (no dropout): first-step loss ours {p['ours_losses'][0]:.6f} torch "
      f"{p['torch_losses'][0]:.6f}: passed"
  )
  print_step_rows(r, 'user_ae_examples_per_s')


def main(argv: list[str] | None = None) -> dict[str, Any]:
  args = _flags(argv)
  results = run(args)
  _print_table(results)
  write_json(args.output, results)
  return results


if __name__ == '__main__':
  main()
