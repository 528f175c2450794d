"""MAP-2T train step: the loop's jitted step vs an eager PyTorch implementation, same run.

    python -m benchmarks.map2t_step [--batch_size 128[,512]] [--books 240] [--steps 20]
        [--warmup 3] [--run map2t_full] [--variant demo] [--music_dim 64] [--text_dim 384]
        [--torch_threads 2] [--torch_adam fused] [--output out.json]

Ours is exactly the step `map2t_job.train_variant` runs through `runs.train_run`, on a mesh of
ONE CPU device: the model `map2t_job.make_model(config, run, prepared)` (run `map2t_full` of
`configs/map2t.py:<variant>`: music FiLM sub-tower + gated podcast sub-tower, the paper's gated
fusion, item tower with deep (2 hidden) and shallow branches and the text residual; hidden 128,
d = the text width 384), the state `runs.create_state` (AdamW 1e-3, weight decay 1e-4, 20 warm-up
steps then cosine), the step `map2t_job.make_train_step(model, config)` (full-catalogue softmax
over the N books, tau 0.1, additive label smoothing 0.05, KL(q || p) to the popularity prior at
prior temperature 2, weight 0.02) jitted by `step_lib.jit_train_step(step, shardings, mesh,
map2t_job.input_specs(config))`; the catalogue `map2t_job.padded_catalogue(items, popularity,
devices)` is the step's replicated `extra` input, placed once as train_run places it; the batch is
placed by `step_lib.place_inputs` and the step compiled by `step_lib.compile_step` (reported,
not timed). `prepared` is a stand-in holding only `items` (make_model reads nothing else) and the
init function is train_variant's inline lambda, written out here.

Demo shapes (random, fixed over the steps): music inputs = ALS artist factors
(`config.inputs.als_factors` = 64 wide, N(0, 1)), podcast and audiobook-history inputs and the
book vectors = L2-normalised N(0, 1) rows of the MiniLM width 384, N = 240 books (the demo
catalogue, `--books`), popularity = rounded log-normal counts (some 0), positives uniform.

PyTorch (eager, `torch.set_num_threads(torch_threads)`): the same towers as `nn.Module`s named
like our params (Linear/GELU(tanh, flax's default)/LayerNorm(eps 1e-6, flax's)), the same loss
written the usual way (F.normalize, log_softmax, nll_loss, masked fill, xlogy), `AdamW`
(`fused=True` where CPU supports it, else foreach) with our betas, eps, decay and schedule.
Both start from our initial weights (copied into torch); `check_parity` asserts the first-step
loss agrees (rtol 1e-4; the step has no randomness) and the next two within 1e-3.

Warm-up steps are excluded; timed steps alternate ours / torch. examples/s = B / median step
time; ratio = ours / torch (> 1: ours faster), one per batch size. The 1-minute load average is
recorded (before, after): on an oversubscribed CPU torch's threads stall far more than XLA.
"""

from __future__ import annotations

import argparse
import os
import time
import types
from typing import Any

import numpy as np

from benchmarks import user_ae_step as common


def _flags(argv: list[str] | None = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog='benchmarks.map2t_step')
  parser.add_argument(
      '--batch_size', type=common._ints, default=None, help='Comma list (default: config).'
  )
  parser.add_argument('--books', type=int, default=240, help='Catalogue size N (demo: 240).')
  parser.add_argument('--steps', type=int, default=20, help='Timed steps per implementation.')
  parser.add_argument('--warmup', type=int, default=3, help='Untimed steps (after compiling).')
  parser.add_argument('--run', default='map2t_full', help='A config.run_specs entry.')
  parser.add_argument('--variant', default='demo', help='configs/map2t.py variant.')
  parser.add_argument('--music_dim', type=int, default=0, help='0: config.inputs.als_factors.')
  parser.add_argument('--text_dim', type=int, default=384, help='MiniLM width (podcast, books).')
  parser.add_argument('--hidden', type=int, default=0, help='0: config.model.hidden.')
  parser.add_argument('--torch_threads', type=int, default=2)
  parser.add_argument('--torch_adam', choices=('fused', 'foreach', 'for-loop'), default='fused')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--output', default=None, help='Write the results as JSON to this file.')
  args = parser.parse_args(argv)
  for name in ('books', 'steps', 'text_dim', 'torch_threads'):
    if getattr(args, name) <= 0:
      raise ValueError(f'--{name} must be positive, got {getattr(args, name)}.')
  return args


def load_config(variant: str, seed: int = 0, hidden: int = 0):
  """`configs/map2t.py:<variant>` with `seed` (and `model.hidden` when > 0)."""
  from configs import map2t as map2t_config  # pylint: disable=g-import-not-at-top
  from larp_jax.training import runs  # pylint: disable=g-import-not-at-top

  config = runs.run_config(map2t_config.get_config(variant), seed=int(seed))
  if hidden:
    config = runs.run_config(config, **{'model.hidden': int(hidden)})
  return config


def input_widths(config, run: str, music_dim: int, text_dim: int) -> dict[str, int]:
  """{modality: F_m} of the run's user inputs (music: ALS factors; podcast, audiobook: text)."""
  widths = {'music': music_dim or int(config.inputs.als_factors), 'podcast': text_dim}
  widths['audiobook'] = text_dim
  return {m: widths[m] for m in config.run_specs[run].modalities}


def random_data(seed: int, batch_size: int, books: int, widths: dict[str, int], text_dim: int):
  """(batch {modality: float32 [B, F_m], 'positive': int32 [B]}, items float32 [N, d],
  popularity float32 [N])."""
  rng = np.random.default_rng(seed)

  def unit(shape):
    x = rng.standard_normal(shape)
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)

  batch = {}
  for m, f in widths.items():
    batch[m] = (
        rng.standard_normal((batch_size, f)).astype(np.float32)
        if m == 'music'
        else unit((batch_size, f))
    )
  batch['positive'] = rng.integers(0, books, batch_size).astype(np.int32)
  popularity = np.floor(np.exp(rng.normal(1.0, 1.2, books))).astype(np.float32)
  return batch, unit((books, text_dim)), popularity


# ---------------------------------------------------------------------------------------------
# Ours.


def build_ours(config, run, batch, items, popularity, total_steps, devices=None):
  """The loop's state and compiled step. Returns `(compiled, state, inputs, params0)`:
  `compiled(state, inputs) -> (state, metrics)` (state donated), inputs = the placed batch +
  'extra' catalogue, params0 the initial params (numpy)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  from larp_jax.jobs import map2t_job  # pylint: disable=g-import-not-at-top
  from larp_jax.training import runs  # pylint: disable=g-import-not-at-top
  from larp_jax.training import step as step_lib  # pylint: disable=g-import-not-at-top

  config = runs.run_config(config, batch_size=int(batch['positive'].shape[0]))
  mesh = common.one_device_mesh(devices)
  model = map2t_job.make_model(config, run, types.SimpleNamespace(items=items))
  modalities = model.config.modalities
  dummy = {m: jnp.zeros((1, batch[m].shape[1]), jnp.float32) for m in modalities}
  items0 = jnp.zeros((1, items.shape[1]), jnp.float32)
  init_fn = lambda rng: (model.init(rng, dummy, items0)['params'], {})  # noqa: E731
  state, shardings = runs.create_state(config, mesh, init_fn, total_steps)
  specs = dict(map2t_job.input_specs(config))
  step = step_lib.jit_train_step(map2t_job.make_train_step(model, config), shardings, mesh, specs)
  catalogue = map2t_job.padded_catalogue(items, popularity, mesh.devices.size)
  extra = step_lib.place_inputs({'extra': catalogue}, mesh, {'extra': specs['extra']})['extra']
  inputs = step_lib.place_inputs({**batch, 'extra': extra}, mesh, specs)
  params0 = jax.device_get(state.params)
  compiled = step_lib.compile_step(step, state, inputs, name='map2t benchmark step')
  return compiled, state, inputs, params0


# ---------------------------------------------------------------------------------------------
# PyTorch.


def make_torch_map2t(config, run: str, widths: dict[str, int], dim: int):
  """The MAP-2T towers in torch, submodules named like our params (see larp_jax/models/map2t)."""
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top

  hidden, deep_layers = int(config.model.hidden), int(config.model.deep_layers)
  spec = config.run_specs[run]
  modalities, fusion = tuple(spec.modalities), spec.fusion

  class MLP(nn.Module):
    """Linear `dense_<i>` layers, GELU (tanh) between them, none after the last."""

    def __init__(self, in_dim, features):
      super().__init__()
      self.n = len(features)
      for i, width in enumerate(features):
        setattr(self, f'dense_{i}', nn.Linear(in_dim, width))
        in_dim = width
      self.act = nn.GELU(approximate='tanh')

    def forward(self, x):
      for i in range(self.n):
        x = getattr(self, f'dense_{i}')(x)
        if i < self.n - 1:
          x = self.act(x)
      return x

  ffn = lambda in_dim, depth=1: MLP(in_dim, [hidden] * depth + [dim])  # noqa: E731
  norm = lambda: nn.LayerNorm(dim, eps=1e-6)  # noqa: E731

  class Calibrated(nn.Module):

    def __init__(self, in_dim):
      super().__init__()
      self.proj, self.ffn, self.norm = nn.Linear(in_dim, dim), ffn(dim), norm()
      self.gamma, self.beta = nn.Parameter(torch.ones(dim)), nn.Parameter(torch.zeros(dim))

    def forward(self, x):
      z = self.gamma * self.proj(x) + self.beta
      return self.norm(z + self.ffn(z))

  class GatedPodcast(nn.Module):

    def __init__(self, in_dim):
      super().__init__()
      self.ffn_1, self.ffn_2, self.gate = ffn(in_dim), ffn(in_dim), ffn(in_dim)
      self.ffn, self.norm = ffn(dim), norm()

    def forward(self, x):
      g = torch.sigmoid(self.gate(x))
      u = g * self.ffn_1(x) + (1 - g) * self.ffn_2(x)
      return self.norm(u + self.ffn(u))

  class Fusion(nn.Module):

    def __init__(self, k):
      super().__init__()
      self.k = k
      if k > 1 and fusion == 'concat':
        self.concat = nn.Linear(k * dim, dim)
      elif k == 2:
        self.gate = MLP(4 * dim, [hidden, dim])
      elif k > 2:
        self.gate = MLP(k * dim, [hidden, k * dim])

    def forward(self, parts):
      if self.k == 1:
        return parts[0]
      if fusion == 'concat':
        return self.concat(torch.cat(parts, -1))
      if self.k == 2:
        a, b = parts
        alpha = torch.sigmoid(self.gate(torch.cat([a, b, (a - b).abs(), a * b], -1)))
        return alpha * a + (1 - alpha) * b
      stacked = torch.stack(parts, 1)
      w = torch.softmax(self.gate(torch.cat(parts, -1)).view(stacked.shape), dim=1)
      return (w * stacked).sum(1)

  class Item(nn.Module):

    def __init__(self):
      super().__init__()
      self.deep, self.shallow = ffn(dim, deep_layers), nn.Linear(dim, dim)
      self.mixer, self.norm = nn.Linear(2 * dim, dim), norm()

    def forward(self, x):
      return self.norm(self.mixer(torch.cat([self.deep(x), self.shallow(x)], -1)) + x)

  class Towers(nn.Module):

    def __init__(self):
      super().__init__()
      for m in modalities:
        setattr(self, m, GatedPodcast(widths[m]) if m == 'podcast' else Calibrated(widths[m]))
      self.fusion, self.item = Fusion(len(modalities)), Item()

    def forward(self, users, items):
      parts = [getattr(self, m)(users[m]) for m in modalities]
      return self.fusion(parts), self.item(items)

  return Towers()


def torch_loss(u, v, positives, popularity, mask, loss_config):
  """`retrieval.map2t_loss` written the usual way (full catalogue, no logQ)."""
  import torch  # pylint: disable=g-import-not-at-top
  import torch.nn.functional as F  # pylint: disable=g-import-not-at-top

  lc = loss_config
  logits = F.normalize(u, dim=-1, eps=1e-6) @ F.normalize(v, dim=-1, eps=1e-6).T / lc.temperature
  logits = logits.masked_fill(~mask, torch.finfo(logits.dtype).min / 4)
  log_p = F.log_softmax(logits, -1).masked_fill(~mask, 0.0)
  p = log_p.exp() * mask
  retrieval = F.nll_loss(log_p, positives)
  smooth = -(log_p.sum(-1) / mask.sum().clamp(min=1)).mean()
  with torch.no_grad():
    pop = popularity.clamp(min=0) * mask
    w = torch.where(pop > 0, (pop / pop.max()) ** (1.0 / lc.prior_temperature), 0.0)
    q = w / w.sum()
  pop_kl = (torch.special.xlogy(q, q).sum() - (q * log_p).sum(-1)).mean()
  diversity = (p * log_p).sum(-1).mean()
  return (
      retrieval
      + lc.label_smoothing * smooth
      + lc.kl_weight * pop_kl
      + lc.entropy_weight * diversity
  )


def build_torch(config, run, batch, items, popularity, params0, lrs, adam):
  """The torch towers with our weights, AdamW and a step `() -> float loss` (lr of step k =
  lrs[k])."""
  import torch  # pylint: disable=g-import-not-at-top

  if config.loss.candidates != 'catalogue':
    raise ValueError('torch baseline: only loss.candidates="catalogue" is mirrored.')
  widths = {m: batch[m].shape[1] for m in config.run_specs[run].modalities}
  model = make_torch_map2t(config, run, widths, items.shape[1])
  common.load_flax_params(model, params0)
  model.train()
  opt, kind = common.torch_optimizer(config.optimizer, model.parameters(), adam)
  users = {m: torch.as_tensor(np.array(batch[m])) for m in widths}
  pos = torch.as_tensor(np.array(batch['positive'], np.int64))
  items_t, pop_t = torch.as_tensor(np.array(items)), torch.as_tensor(np.array(popularity))
  mask = torch.ones(items.shape[0], dtype=torch.bool)
  count = [0]

  def step() -> float:
    for group in opt.param_groups:
      group['lr'] = float(lrs[min(count[0], len(lrs) - 1)])
    count[0] += 1
    opt.zero_grad(set_to_none=True)
    u, v = model(users, items_t)
    loss = torch_loss(u, v, pos, pop_t, mask, config.loss)
    loss.backward()
    opt.step()
    return float(loss.detach())

  return step, kind


def check_parity(config, run, batch, items, popularity, adam: str, steps: int = 3) -> dict:
  """Same weights and inputs: asserts the first-step loss agrees (rtol 1e-4) and the next ones
  (after AdamW updates) within rtol 1e-3. Returns the losses; raises AssertionError."""
  total = steps + 1
  compiled, state, inputs, params0 = build_ours(config, run, batch, items, popularity, total)
  lrs = common.schedule_values(config.optimizer, total)
  torch_step, _ = build_torch(config, run, batch, items, popularity, params0, lrs, adam)
  ours, theirs = [], []
  for _ in range(steps):
    state, metrics = compiled(state, inputs)
    ours.append(float(metrics['loss']))
    theirs.append(torch_step())
  np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-4, err_msg='first-step loss')
  np.testing.assert_allclose(ours, theirs, rtol=1e-3, err_msg='losses after AdamW updates')
  return {'ours_losses': ours, 'torch_losses': theirs, 'passed': True}


# ---------------------------------------------------------------------------------------------
# Benchmark.


def run_one(config, args, widths, batch_size: int) -> dict[str, Any]:
  import jax  # pylint: disable=g-import-not-at-top

  batch, items, popularity = random_data(
      args.seed + 1, batch_size, args.books, widths, args.text_dim
  )
  total = args.warmup + args.steps + 1
  start = time.perf_counter()
  compiled, state, inputs, params0 = build_ours(config, args.run, batch, items, popularity, total)
  compile_s = time.perf_counter() - start
  lrs = common.schedule_values(config.optimizer, total)
  torch_step, kind = build_torch(
      config, args.run, batch, items, popularity, params0, lrs, args.torch_adam
  )
  holder = {'state': state}
  ours_losses, torch_losses = [], []

  def ours_step():
    holder['state'], metrics = compiled(holder['state'], inputs)
    jax.block_until_ready((holder['state'], metrics))
    ours_losses.append(float(metrics['loss']))

  def torch_call():
    torch_losses.append(torch_step())

  ours_s, torch_s = common.time_alternating((ours_step, torch_call), args.warmup, args.steps)
  return common.step_figures(
      batch_size, ours_s, torch_s, compile_s, kind, ours_losses, torch_losses
  )


def run(args: argparse.Namespace) -> dict[str, Any]:
  """Parity check, then one alternating comparison per batch size."""
  import jax  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top

  torch.set_num_threads(args.torch_threads)
  load_before = os.getloadavg()[0]
  config = load_config(args.variant, args.seed, args.hidden)
  if args.run not in config.run_specs:
    raise ValueError(f'--run {args.run!r} not in config.run_specs {sorted(config.run_specs)}.')
  widths = input_widths(config, args.run, args.music_dim, args.text_dim)
  batches = args.batch_size or [int(config.batch_size)]
  batch, items, popularity = random_data(
      args.seed + 1, min(batches[0], 64), args.books, widths, args.text_dim
  )
  parity = check_parity(config, args.run, batch, items, popularity, args.torch_adam)
  per_batch = [run_one(config, args, widths, b) for b in batches]
  return {
      'variant': args.variant,
      'run': args.run,
      'fusion': config.run_specs[args.run].fusion,
      'input_widths': widths,
      'dim': args.text_dim,
      'hidden': int(config.model.hidden),
      'books': args.books,
      'loss': dict(config.loss.to_dict()),
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
      f"MAP-2T train step, {r['variant']}/{r['run']} ({r['fusion']}), inputs "
      f"{r['input_widths']}, d={r['dim']} hidden={r['hidden']}, N={r['books']} books "
      f"(full softmax), on {r['device']}; torch {r['torch_threads']} threads, AdamW "
      f"{r['results'][0]['torch_adam_used']}"
  )
  p = r['parity']
  print(
      f"parity: first-step loss ours {p['ours_losses'][0]:.6f} torch "
      f"{p['torch_losses'][0]:.6f}: passed"
  )
  common.print_step_rows(r, 'map2t_examples_per_s')


def main(argv: list[str] | None = None) -> dict[str, Any]:
  args = _flags(argv)
  results = run(args)
  _print_table(results)
  common.write_json(args.output, results)
  return results


if __name__ == '__main__':
  main()
