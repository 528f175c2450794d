"""LARP train-step throughput: our jitted step vs an eager PyTorch implementation, same run.

    python -m benchmarks.larp_step [--batch_size 16] [--steps 10] [--warmup 2] [--stage 1]
        [--variant demo] [--torch_threads 2] [--torch_adam fused] [--output out.json]

Ours: `larp_jax.jobs.larp.make_state` for `configs/larp.py:<variant>` (default `demo`: HTS-AT
'small' on 4 s 16 kHz clips, MiniLM text tower, 256-d projections, queue 512) on a mesh of ONE CPU
device, and `larp_steps.make_train_step(model, stage, config.loss, groups)` jitted as the loop does
(`jax.jit(step, donate_argnums=0)`), compiled ahead of time (trace + compile reported separately).

PyTorch (eager, `torch.set_num_threads(torch_threads)`): the same model and objective written the
usual way: laion_clap's `HTSAT_Swin_Transformer` with the same audio config (train mode: bn0 batch
statistics, SpecAugment, drop path), `transformers.BertModel` from the same MiniLM directory (train
mode, dropout), two `Linear(-> 256)` projections, a learnable temperature clamped to
[temperature_min, temperature_max], a momentum copy (`copy.deepcopy`, no grad, eval forward, EMA
0.995 after the optimizer step), feature/id/group queues [Q, ...], the WTC loss (stage 2: + TTC)
with the same positives, Adam (`lr` from the same warm-up + cosine schedule and the same per-tower
`lr_multipliers`), FIFO enqueue and the [N_train, 256] lookup-table writes. Both start from the
same weights: torch's HTS-AT init is converted into our params with
`htsat_convert.convert_torch_state_dict`, both text towers load the MiniLM checkpoint, and our
projections/temperature are copied into torch. Parts the loss never reaches (HTS-AT's
classification conv, our playlist fusion block) are computed/updated as each framework does by
itself: torch runs HTS-AT's tscam conv in forward but skips params without gradients in Adam; XLA
drops the unused conv but Adam-updates every parameter.

Same random batch for both (audio N(0, 0.1^2) [B, S], token ids with varied lengths, unique track
indices; stage 2: B pairs of co-occurring tracks = 2B clips). Warm-up steps are excluded; timed
steps alternate ours / torch so background load hits both alike. examples/s = B / median step time
(stage 2 counts pairs, i.e. `--batch_size`). ratio = ours / torch (> 1: ours faster).

Run it on an otherwise idle machine: the 1-minute load average is recorded, because on an
oversubscribed CPU torch's 2 OpenMP threads stall at every op barrier (steps 5-20x slower, seen at
load ~7 on 2 cores) while XLA degrades gracefully, which inflates the ratio several-fold.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import statistics
import sys
import time
from typing import Any

import numpy as np

# Ids of MiniLM's (bert-base-uncased) vocabulary used for random captions.
CLS_ID, SEP_ID, PAD_ID, FIRST_WORD_ID = 101, 102, 0, 1000


def _flags(argv: list[str] | None = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog='benchmarks.larp_step')
  parser.add_argument('--batch_size', type=int, default=16)
  parser.add_argument('--steps', type=int, default=10, help='Timed steps per implementation.')
  parser.add_argument('--warmup', type=int, default=2, help='Untimed steps (after compiling).')
  parser.add_argument('--stage', type=int, choices=(1, 2), default=1)
  parser.add_argument('--variant', default='demo', help='configs/larp.py variant.')
  parser.add_argument('--num_train_tracks', type=int, default=300,
                      help='Rows of the lookup tables (demo: 300 training tracks).')
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


def _reference_htsat_module():
  """tests/reference_htsat.py (imports laion_clap's htsat.py without torchvision)."""
  tests_dir = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'tests')
  if tests_dir not in sys.path:
    sys.path.insert(0, tests_dir)
  import reference_htsat  # pylint: disable=g-import-not-at-top
  return reference_htsat


def load_config(variant: str = 'demo'):
  """`configs/larp.py:<variant>` as an ml_collections ConfigDict."""
  from configs import larp as larp_config  # pylint: disable=g-import-not-at-top
  return larp_config.get_config(variant)


def without_regularisation(cfg):
  """A LARPConfig whose train mode is deterministic (no drop path, SpecAugment or dropout);
  BatchNorm still uses batch statistics. For parity checks of the two steps."""
  audio = dataclasses.replace(cfg.audio, drop_path_rate=0.0, drop_rate=0.0, attn_drop_rate=0.0,
                              spec_augment=False)
  text = dataclasses.replace(cfg.text, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
  return dataclasses.replace(cfg, audio=audio, text=text)


# ---------------------------------------------------------------------------------------------
# Random data.


def random_groups(num_tracks: int, width: int, seed: int, num_playlists: int = 400,
                  playlist_length: int = 12) -> np.ndarray:
  """int32 [num_tracks, width] playlist ids per track (-1 padded) from random playlists."""
  rng = np.random.default_rng(seed)
  tracks = np.stack([rng.choice(num_tracks, playlist_length, replace=False)
                     for _ in range(num_playlists)])
  lengths = np.full((num_playlists,), playlist_length)
  from larp_jax.jobs import larp_steps  # pylint: disable=g-import-not-at-top
  return larp_steps.track_playlist_groups(tracks, lengths, num_tracks, width)


def random_tracks(rng: np.random.Generator, track_index: np.ndarray, clip_samples: int,
                  text_length: int, vocab_size: int) -> dict[str, np.ndarray]:
  """{'audio' f32 [B, S], 'input_ids'/'attention_mask' int32 [B, L], 'track_index' int32 [B]}."""
  b = track_index.shape[0]
  lengths = rng.integers(4, text_length + 1, size=b)
  positions = np.arange(text_length)[None, :]
  words = rng.integers(FIRST_WORD_ID, vocab_size, size=(b, text_length))
  input_ids = np.where(positions < lengths[:, None] - 1, words, PAD_ID)
  input_ids[:, 0] = CLS_ID
  input_ids[np.arange(b), lengths - 1] = SEP_ID
  return {'audio': (0.1 * rng.standard_normal((b, clip_samples))).astype(np.float32),
          'input_ids': input_ids.astype(np.int32),
          'attention_mask': (positions < lengths[:, None]).astype(np.int32),
          'track_index': track_index.astype(np.int32)}


def random_batch(seed: int, stage: int, batch_size: int, clip_samples: int, text_length: int,
                 vocab_size: int, groups: np.ndarray) -> dict[str, Any]:
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
  return {'a': random_tracks(rng, pairs[:, 0], clip_samples, text_length, vocab_size),
          'b': random_tracks(rng, pairs[:, 1], clip_samples, text_length, vocab_size),
          'playlist_index': chosen.astype(np.int32)}


def _tracks_of(batch: dict[str, Any], stage: int) -> dict[str, np.ndarray]:
  if stage == 1:
    return batch
  return {k: np.concatenate([batch['a'][k], batch['b'][k]]) for k in batch['a']}


# ---------------------------------------------------------------------------------------------
# Ours.


@dataclasses.dataclass
class OursSetup:
  """Our model, train state and the jitted (not yet compiled) step."""
  model: Any
  cfg: Any
  state: Any
  shardings: Any
  mesh: Any
  step: Any
  total_steps: int


def build_ours(config, cfg, stage: int, groups: np.ndarray, total_steps: int,
               devices=None) -> OursSetup:
  """TrainState from `make_state` on a ONE-device mesh and `jax.jit(step, donate_argnums=0)`.

  Args:
    config: the LARP ConfigDict (`configs/larp.py`).
    cfg: LARPConfig (`larp_job.model_config(config)`, possibly `without_regularisation`).
    stage: 1 or 2.
    groups: int32 [N_train, G] track -> playlist ids.
    total_steps: length of the learning-rate schedule.
    devices: devices to take the first one from (default `jax.devices()`).
  """
  import jax  # pylint: disable=g-import-not-at-top

  from larp_jax.jobs import larp as larp_job, larp_steps  # pylint: disable=g-import-not-at-top
  from larp_jax.training import mesh as mesh_lib  # pylint: disable=g-import-not-at-top
  devices = list(jax.devices() if devices is None else devices)[:1]
  mesh = mesh_lib.make_mesh({'shape': (1, 1)}, devices=devices)
  max_text_length = int(config.data.build.max_text_length)
  model, state, shardings = larp_job.make_state(config, cfg, mesh, groups.shape[0], total_steps,
                                                max_text_length)
  step = larp_steps.make_train_step(model, stage, config.loss, groups)
  return OursSetup(model=model, cfg=cfg, state=state, shardings=shardings, mesh=mesh,
                   step=jax.jit(step, donate_argnums=0), total_steps=total_steps)


def load_torch_htsat_into_ours(ours: OursSetup, torch_htsat) -> None:
  """Replaces our HTS-AT params (online and momentum) and bn0 statistics with the torch
  module's weights (`htsat_convert.convert_torch_state_dict`, strict)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top

  from larp_jax.models import htsat_convert  # pylint: disable=g-import-not-at-top
  reference_htsat = _reference_htsat_module()
  variables = htsat_convert.convert_torch_state_dict(
      reference_htsat.numpy_state_dict(torch_htsat), ours.cfg.audio)
  state = ours.state
  copy_tree = lambda tree: jax.tree.map(jnp.array, tree)  # noqa: E731  (separate buffers)
  params = {**state.params, 'audio_encoder': copy_tree(variables['params'])}
  momentum = {**state.model_state['momentum'], 'audio_encoder': copy_tree(variables['params'])}
  model_state = {**state.model_state, 'momentum': momentum,
                 'batch_stats': {'audio_encoder': copy_tree(variables['batch_stats'])}}
  state = state.replace(params=params, model_state=model_state)
  ours.state = jax.device_put(state, ours.shardings)


# ---------------------------------------------------------------------------------------------
# PyTorch.


def _torch_modules():
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top
  return torch, nn


def make_torch_larp(cfg, text_dir: str, seed: int = 0):
  """torch LARP online module (HTS-AT + BertModel + projections + temperature) in train mode."""
  torch, nn = _torch_modules()
  import transformers  # pylint: disable=g-import-not-at-top
  torch.manual_seed(seed)
  audio = _reference_htsat_module().create_reference_htsat(cfg.audio.variant, cfg.audio)
  if not cfg.audio.spec_augment:
    audio.spec_augmenter = nn.Identity()
  text = transformers.BertModel.from_pretrained(
      text_dir, add_pooling_layer=False,
      hidden_dropout_prob=cfg.text.hidden_dropout_prob,
      attention_probs_dropout_prob=cfg.text.attention_probs_dropout_prob)

  class TorchLARP(nn.Module):
    """Online encoders; `encode_*` return L2-normalised float32 [B, embed_dim]."""

    def __init__(self):
      super().__init__()
      self.audio_encoder = audio
      self.text_encoder = text
      self.audio_proj = nn.Linear(cfg.audio.num_features, cfg.embed_dim)
      self.text_proj = nn.Linear(cfg.text.hidden_size, cfg.embed_dim)
      self.temp = nn.Parameter(torch.tensor(float(cfg.temperature_init)))

    def encode_audio(self, waveform):
      embedding = self.audio_encoder({'waveform': waveform})['embedding']
      return nn.functional.normalize(self.audio_proj(embedding), dim=-1)

    def encode_text(self, input_ids, attention_mask):
      hidden = self.text_encoder(input_ids=input_ids,
                                 attention_mask=attention_mask).last_hidden_state
      if cfg.text_pooling == 'cls':
        pooled = hidden[:, 0]
      else:
        mask = attention_mask[..., None].float()
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
      return nn.functional.normalize(self.text_proj(pooled), dim=-1)

    def temperature(self):
      return self.temp.clamp(cfg.temperature_min, cfg.temperature_max)

  return TorchLARP().train()


def copy_projections_to_torch(params, torch_model) -> None:
  """Our audio/text projection kernels, biases and temperature -> the torch module."""
  torch, _ = _torch_modules()
  with torch.no_grad():
    for name in ('audio_proj', 'text_proj'):
      layer = getattr(torch_model, name)
      layer.weight.copy_(torch.from_numpy(np.asarray(params[name]['kernel']).T.copy()))
      layer.bias.copy_(torch.from_numpy(np.asarray(params[name]['bias']).copy()))
    torch_model.temp.copy_(torch.tensor(float(np.asarray(params['temp']))))


def _shared_group_positives(query_groups, key_groups):
  """bool [B, K]: the two -1-padded id lists [B, G] / [K, H] share an id >= 0."""
  out = None
  for h in range(key_groups.shape[1]):
    key_h = key_groups[:, h]
    hit = ((query_groups[:, None, :] == key_h[None, :, None]) & (key_h[None, :, None] >= 0)).any(-1)
    out = hit if out is None else out | hit
  return out


def _soft_target_ce(query, keys, positives, temperature):
  """Mean over rows with a positive of -sum_j targets * log_softmax(query @ keys^T / t)."""
  torch, _ = _torch_modules()
  logits = query @ keys.T / temperature
  weights = positives.float()
  total = weights.sum(1)
  targets = weights / torch.where(total > 0, total, torch.ones_like(total))[:, None]
  per_row = -(targets * torch.log_softmax(logits, dim=-1)).sum(1)
  valid = total > 0
  return (per_row * valid).sum() / valid.sum().clamp_min(1)


def torch_wtc_loss(audio, text, audio_m, text_m, queue_audio, queue_text, temperature,
                   ids=None, queue_ids=None):
  """WTC (BLIP ITC with id positives): 0.5 * (CE_a2t + CE_t2a) over [momentum keys ; queue].

  Args:
    audio, text: float32 [B, D] online features; audio_m, text_m: [B, D] momentum features.
    queue_audio, queue_text: [Q, D].
    temperature: scalar tensor.
    ids: optional int [B] track ids (every key with the same id >= 0 is a positive too);
      queue_ids: int [Q] (-1 = unknown).
  """
  torch, _ = _torch_modules()
  b, q = audio.shape[0], queue_audio.shape[0]
  positives = torch.zeros((b, b + q), dtype=torch.bool)
  positives[:, :b] = torch.eye(b, dtype=torch.bool)
  if ids is not None:
    key_ids = torch.cat([ids, queue_ids])
    positives |= (ids[:, None] == key_ids[None, :]) & (key_ids[None, :] >= 0)
  loss_a2t = _soft_target_ce(audio, torch.cat([text_m, queue_text]), positives, temperature)
  loss_t2a = _soft_target_ce(text, torch.cat([audio_m, queue_audio]), positives, temperature)
  return 0.5 * (loss_a2t + loss_t2a)


def torch_ttc_loss(audio, text, audio_m, text_m, queue_audio, queue_text, temperature, partner,
                   groups=None, queue_groups=None):
  """TTC: audio[b] vs text of partner[b] and back, positives = partner plus co-occurring tracks
  (shared playlist id in `groups` [B, G] / `queue_groups` [Q, G]) when `groups` is given."""
  torch, _ = _torch_modules()
  b, q = audio.shape[0], queue_audio.shape[0]
  columns = torch.arange(b + q)
  pos_a2t = partner[:, None] == columns[None, :]
  pos_t2a = torch.arange(b)[:, None] == columns[None, :]
  if groups is not None:
    key_groups = torch.cat([groups, queue_groups])
    pos_a2t = pos_a2t | _shared_group_positives(groups, key_groups)
    pos_t2a = pos_t2a | _shared_group_positives(groups[partner], key_groups)
  loss_a2t = _soft_target_ce(audio, torch.cat([text_m, queue_text]), pos_a2t, temperature)
  loss_t2a = _soft_target_ce(text[partner], torch.cat([audio_m, queue_audio]), pos_t2a,
                             temperature)
  return 0.5 * (loss_a2t + loss_t2a)


@dataclasses.dataclass
class TorchSetup:
  """Everything the eager torch step reads and writes."""
  model: Any
  momentum_model: Any
  optimizer: Any
  learning_rates: np.ndarray
  queues: dict[str, Any]
  queue_ptr: int
  audio_table: Any
  text_table: Any
  groups: Any
  step: int = 0


def build_torch(config, ours: OursSetup, groups: np.ndarray, text_dir: str, adam: str = 'fused',
                seed: int = 0) -> TorchSetup:
  """The torch model with our initial weights (HTS-AT from torch's init, see module docstring),
  its momentum copy, Adam with our learning-rate schedule, our initial queues, zero tables."""
  torch, _ = _torch_modules()
  import jax  # pylint: disable=g-import-not-at-top

  from larp_jax.training import optimizers  # pylint: disable=g-import-not-at-top
  if float(config.loss.alpha) != 0.0:
    raise ValueError(f'config.loss.alpha={config.loss.alpha}: the torch baseline has no momentum '
                     'distillation; use alpha = 0.')
  model = make_torch_larp(ours.cfg, text_dir, seed)
  load_torch_htsat_into_ours(ours, model.audio_encoder)
  copy_projections_to_torch(jax.device_get(ours.state.params), model)
  momentum_model = copy.deepcopy(model).eval().requires_grad_(False)
  opt = config.optimizer
  kwargs = dict(lr=float(opt.learning_rate), betas=(opt.get('b1', 0.9), opt.get('b2', 0.999)),
                eps=opt.get('eps', 1e-8))
  if adam == 'fused':
    kwargs['fused'] = True
  else:
    kwargs['foreach'] = adam == 'foreach'
  # config.optimizer.lr_multipliers ({top-level param name: factor}) -> one param group each.
  multipliers = dict(opt.get('lr_multipliers', None) or {})
  grouped: dict[float, list[Any]] = {}
  for name, param in model.named_parameters():
    grouped.setdefault(float(multipliers.get(name.split('.')[0], 1.0)), []).append(param)
  optimizer = torch.optim.Adam([{'params': params, 'lr_multiplier': factor}
                                for factor, params in grouped.items()], **kwargs)
  schedule = optimizers.warmup_cosine(float(opt.learning_rate), opt.get('warmup_steps', 0),
                                      ours.total_steps, opt.get('end_learning_rate', 0.0))
  learning_rates = np.asarray(jax.vmap(schedule)(np.arange(ours.total_steps + 1)))
  initial = jax.device_get(ours.state.model_state)
  queues = {k: torch.from_numpy(np.array(v)) for k, v in initial['queues'].items()}
  table = torch.zeros(tuple(np.shape(initial['audio_table'])), dtype=torch.float32)
  return TorchSetup(model=model, momentum_model=momentum_model, optimizer=optimizer,
                    learning_rates=learning_rates, queues=queues, queue_ptr=0,
                    audio_table=table, text_table=table.clone(),
                    groups=torch.from_numpy(np.asarray(groups, np.int32)))


def torch_batch(batch: dict[str, Any]) -> dict[str, Any]:
  """numpy batch -> torch tensors (int64 ids/masks, as HF expects), same nesting."""
  torch, _ = _torch_modules()

  def convert(x):
    x = np.asarray(x)
    return torch.from_numpy(x.astype(np.int64) if x.dtype.kind in 'iu' else x)

  return {k: torch_batch(v) if isinstance(v, dict) else convert(v) for k, v in batch.items()}


def torch_train_step(setup: TorchSetup, batch: dict[str, Any], stage: int, loss_config) -> float:
  """One eager train step (same order as `larp_steps.make_train_step`); returns the loss."""
  torch, _ = _torch_modules()
  model, momentum_model = setup.model, setup.momentum_model
  tracks = batch if stage == 1 else {k: torch.cat([batch['a'][k], batch['b'][k]])
                                     for k in batch['a']}
  ids = tracks['track_index']
  groups = setup.groups[ids.clamp(0, setup.groups.shape[0] - 1)]
  queues = setup.queues
  with torch.no_grad():
    # Our momentum towers read the online bn0 statistics (shared batch_stats).
    momentum_model.audio_encoder.bn0.load_state_dict(model.audio_encoder.bn0.state_dict())
    audio_m = momentum_model.encode_audio(tracks['audio'])
    text_m = momentum_model.encode_text(tracks['input_ids'], tracks['attention_mask'])
  audio = model.encode_audio(tracks['audio'])
  text = model.encode_text(tracks['input_ids'], tracks['attention_mask'])
  temp = model.temperature()
  use_ids = bool(loss_config.wtc_id_positives)
  loss = torch_wtc_loss(audio, text, audio_m, text_m, queues['audio'], queues['text'], temp,
                        ids=ids if use_ids else None, queue_ids=queues['ids'] if use_ids else None)
  if stage == 2:
    b = batch['playlist_index'].shape[0]
    partner = torch.cat([torch.arange(b) + b, torch.arange(b)])
    cooccurrence = loss_config.ttc_positives == 'cooccurrence'
    loss = loss + torch_ttc_loss(audio, text, audio_m, text_m, queues['audio'], queues['text'],
                                 temp, partner, groups if cooccurrence else None,
                                 queues['groups'] if cooccurrence else None)
  learning_rate = float(setup.learning_rates[min(setup.step, len(setup.learning_rates) - 1)])
  for group in setup.optimizer.param_groups:
    group['lr'] = learning_rate * group['lr_multiplier']
  setup.optimizer.zero_grad(set_to_none=True)
  loss.backward()
  setup.optimizer.step()
  setup.step += 1
  with torch.no_grad():
    momentum = float(loss_config.momentum)
    # pylint: disable-next=protected-access
    torch._foreach_lerp_(list(momentum_model.parameters()), list(model.parameters()),
                         1.0 - momentum)
    size = queues['audio'].shape[0]
    rows = (setup.queue_ptr + torch.arange(ids.shape[0])) % size
    for name, value in (('audio', audio_m), ('text', text_m), ('ids', ids), ('groups', groups)):
      queues[name][rows] = value.to(queues[name].dtype)
    setup.queue_ptr = (setup.queue_ptr + ids.shape[0]) % size
    setup.audio_table[ids] = audio.detach()
    setup.text_table[ids] = text.detach()
  return float(loss.detach())


# ---------------------------------------------------------------------------------------------
# Benchmark.


def run(args: argparse.Namespace) -> dict[str, Any]:
  """Builds both implementations, compiles ours, warms up, times alternating steps."""
  import jax  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top

  from larp_jax.jobs import larp as larp_job  # pylint: disable=g-import-not-at-top
  from larp_jax.training import mesh as mesh_lib  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(args.torch_threads)
  load_before = os.getloadavg()[0]
  config = load_config(args.variant)
  if config.loss.queue_size < (args.stage * args.batch_size):
    raise ValueError(f'queue_size {config.loss.queue_size} < clips per step '
                     f'{args.stage * args.batch_size}.')
  start = time.perf_counter()
  cfg = larp_job.model_config(config)
  groups = random_groups(args.num_train_tracks, int(config.loss.group_width), args.seed)
  total_steps = args.warmup + args.steps + 1
  ours = build_ours(config, cfg, args.stage, groups, total_steps)
  setup = build_torch(config, ours, groups, larp_job.text_model_dir(config), args.torch_adam,
                      args.seed)
  build_s = time.perf_counter() - start
  batch_np = random_batch(args.seed + 1, args.stage, args.batch_size, cfg.audio.clip_samples,
                          int(config.data.build.max_text_length), cfg.text.vocab_size, groups)
  batch = jax.device_put(batch_np, mesh_lib.batch_sharding(ours.mesh))
  batch_t = torch_batch(batch_np)

  start = time.perf_counter()
  lowered = ours.step.lower(ours.state, batch)
  trace_s = time.perf_counter() - start
  start = time.perf_counter()
  compiled = lowered.compile()
  compile_s = time.perf_counter() - start

  state = ours.state
  ours_losses, torch_losses = [], []

  def ours_step():
    nonlocal state
    state, metrics = compiled(state, batch)
    jax.block_until_ready((state, metrics))
    ours_losses.append(float(metrics['loss/total']))

  def torch_step():
    torch_losses.append(torch_train_step(setup, batch_t, args.stage, config.loss))

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
      'variant': args.variant, 'stage': args.stage, 'batch_size': args.batch_size,
      'clips_per_step': args.stage * args.batch_size, 'queue_size': int(config.loss.queue_size),
      'steps': args.steps, 'warmup': args.warmup, 'torch_threads': args.torch_threads,
      'torch_adam': args.torch_adam, 'device': str(jax.devices()[0]),
      'ours_step_s': ours_step_s, 'torch_step_s': torch_step_s,
      'ours_step_s_all': ours_s, 'torch_step_s_all': torch_s,
      'ours_examples_per_s': args.batch_size / ours_step_s,
      'torch_examples_per_s': args.batch_size / torch_step_s,
      'trace_lower_s': trace_s, 'compile_s': compile_s, 'build_s': build_s,
      'ours_losses': ours_losses, 'torch_losses': torch_losses,
      'log_keys': float(np.log(args.stage * args.batch_size + config.loss.queue_size)),
      'load_average_1min': [load_before, os.getloadavg()[0]],
  }
  results['ratio'] = results['ours_examples_per_s'] / results['torch_examples_per_s']
  return results


def _print_table(r: dict[str, Any]) -> None:
  unit = 'pairs' if r['stage'] == 2 else 'tracks'
  print(f"LARP stage-{r['stage']} train step, variant {r['variant']}, B={r['batch_size']} {unit} "
        f"({r['clips_per_step']} clips), queue {r['queue_size']}, on {r['device']}; "
        f"torch {r['torch_threads']} threads, Adam {r['torch_adam']}")
  print(f"{'implementation':<30}{'step [s]':>10}{'examples/s':>12}{'first loss':>12}")
  for label, key in (('ours (jax.jit, donated state)', 'ours'), ('PyTorch eager', 'torch')):
    print(f"{label:<30}{r[key + '_step_s']:>10.3f}{r[key + '_examples_per_s']:>12.2f}"
          f"{r[key + '_losses'][0]:>12.3f}")
  print(f"ratio (ours / torch examples/s): {r['ratio']:.2f}x   "
        f"(medians of {r['steps']} alternating steps after {r['warmup']} warm-up)")
  print(f"compile: trace+lower {r['trace_lower_s']:.1f} s + XLA compile {r['compile_s']:.1f} s "
        f"(excluded); build both models {r['build_s']:.1f} s")
  print(f"log(clips + Q) = {r['log_keys']:.2f} (the per-term InfoNCE loss at init); 1-min load "
        f"average before/after: {r['load_average_1min'][0]:.1f} / {r['load_average_1min'][1]:.1f} "
        f"on {os.cpu_count()} CPUs (torch's OpenMP threads slow down far more than XLA under load)")


def main(argv: list[str] | None = None) -> None:
  args = _flags(argv)
  results = run(args)
  _print_table(results)
  if args.output:
    with open(args.output, 'w') as f:
      json.dump(results, f, indent=2)


if __name__ == '__main__':
  main()
