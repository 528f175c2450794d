"""LARP in eager PyTorch, written the usual way: the baseline of benchmarks/larp_step.py and the
parity reference of tests/test_benchmark_larp_step.py.

laion_clap's `HTSAT_Swin_Transformer` (via tests/reference_htsat.py; train mode: bn0 batch
statistics, SpecAugment, drop path), `transformers.BertModel` from the MiniLM directory (train
mode, dropout), two `Linear(-> embed_dim)` projections, a learnable temperature clamped to
[temperature_min, temperature_max], a momentum copy (`copy.deepcopy`, no grad, eval forward, EMA
after the optimizer step), feature/id/group queues [Q, ...], the WTC loss (stage 2: + TTC) with
the positives of `larp_jax.losses.larp`, Adam with our learning-rate schedule and
`config.optimizer.rules`, FIFO enqueue and the [N_train, embed_dim] lookup-table writes.

Import it as a top-level module with tests/ on `sys.path` (`import reference_larp_torch`), as
pytest does for the tests and the benchmark does for itself; it imports `reference_htsat` the
same way.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from typing import Any

import numpy as np
import torch
from torch import nn

import reference_htsat


def make_torch_larp(cfg, text_dir: str, seed: int = 0) -> nn.Module:
  """The torch LARP online module (HTS-AT + BertModel + projections + temperature), train mode.

  Args:
    cfg: a `larp_encoder.LARPConfig` (audio/text settings, embed_dim, pooling, temperature).
    text_dir: the HF BERT directory both text towers load.
    seed: `torch.manual_seed` for the HTS-AT and projection init.

  Returns:
    A module with `encode_audio(waveform f32 [B, S])`, `encode_text(input_ids, attention_mask
    int64 [B, L])` (L2-normalised float32 [B, embed_dim]) and `temperature()` (scalar).
  """
  import transformers  # pylint: disable=g-import-not-at-top

  torch.manual_seed(seed)
  audio = reference_htsat.create_reference_htsat(cfg.audio.variant, cfg.audio)
  if not cfg.audio.spec_augment:
    audio.spec_augmenter = nn.Identity()
  text = transformers.BertModel.from_pretrained(
      text_dir,
      add_pooling_layer=False,
      hidden_dropout_prob=cfg.text.hidden_dropout_prob,
      attention_probs_dropout_prob=cfg.text.attention_probs_dropout_prob,
  )

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
      hidden = self.text_encoder(
          input_ids=input_ids, attention_mask=attention_mask
      ).last_hidden_state
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
  """Our audio/text projection kernels [in, D], biases [D] and temperature -> the torch module."""
  with torch.no_grad():
    for name in ('audio_proj', 'text_proj'):
      layer = getattr(torch_model, name)
      layer.weight.copy_(torch.from_numpy(np.asarray(params[name]['kernel']).T.copy()))
      layer.bias.copy_(torch.from_numpy(np.asarray(params[name]['bias']).copy()))
    torch_model.temp.copy_(torch.tensor(float(np.asarray(params['temp']))))


# ---------------------------------------------------------------------------------------------
# Losses.


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
  logits = query @ keys.T / temperature
  weights = positives.float()
  total = weights.sum(1)
  targets = weights / torch.where(total > 0, total, torch.ones_like(total))[:, None]
  per_row = -(targets * torch.log_softmax(logits, dim=-1)).sum(1)
  valid = total > 0
  return (per_row * valid).sum() / valid.sum().clamp_min(1)


def torch_wtc_loss(
    audio, text, audio_m, text_m, queue_audio, queue_text, temperature, ids=None, queue_ids=None
):
  """WTC (BLIP ITC with id positives): 0.5 * (CE_a2t + CE_t2a) over [momentum keys ; queue].

  Args:
    audio, text: float32 [B, D] online features; audio_m, text_m: [B, D] momentum features.
    queue_audio, queue_text: [Q, D].
    temperature: scalar tensor.
    ids: optional int [B] track ids (every key with the same id >= 0 is a positive too);
      queue_ids: int [Q] (-1 = unknown).

  Returns:
    The scalar float32 loss tensor.
  """
  b, q = audio.shape[0], queue_audio.shape[0]
  positives = torch.zeros((b, b + q), dtype=torch.bool)
  positives[:, :b] = torch.eye(b, dtype=torch.bool)
  if ids is not None:
    key_ids = torch.cat([ids, queue_ids])
    positives |= (ids[:, None] == key_ids[None, :]) & (key_ids[None, :] >= 0)
  loss_a2t = _soft_target_ce(audio, torch.cat([text_m, queue_text]), positives, temperature)
  loss_t2a = _soft_target_ce(text, torch.cat([audio_m, queue_audio]), positives, temperature)
  return 0.5 * (loss_a2t + loss_t2a)


def torch_ttc_loss(
    audio,
    text,
    audio_m,
    text_m,
    queue_audio,
    queue_text,
    temperature,
    partner,
    groups=None,
    queue_groups=None,
):
  """TTC: audio[b] vs text of partner[b] and back.

  Args:
    audio, text, audio_m, text_m: float32 [B, D]; queue_audio, queue_text: [Q, D].
    temperature: scalar tensor.
    partner: int [B] row of each row's partner.
    groups: optional int [B, G] playlist ids (-1 padded); with `queue_groups` int [Q, G], keys
      sharing a playlist id are positives too (co-occurrence); None: the partner only.

  Returns:
    The scalar float32 loss tensor.
  """
  b, q = audio.shape[0], queue_audio.shape[0]
  columns = torch.arange(b + q)
  pos_a2t = partner[:, None] == columns[None, :]
  pos_t2a = torch.arange(b)[:, None] == columns[None, :]
  if groups is not None:
    key_groups = torch.cat([groups, queue_groups])
    pos_a2t = pos_a2t | _shared_group_positives(groups, key_groups)
    pos_t2a = pos_t2a | _shared_group_positives(groups[partner], key_groups)
  loss_a2t = _soft_target_ce(audio, torch.cat([text_m, queue_text]), pos_a2t, temperature)
  loss_t2a = _soft_target_ce(text[partner], torch.cat([audio_m, queue_audio]), pos_t2a, temperature)
  return 0.5 * (loss_a2t + loss_t2a)


# ---------------------------------------------------------------------------------------------
# Optimizer and train step.


def top_level_actions(our_params: Any, rules) -> dict[str, float | str]:
  """`config.optimizer.rules` per top-level param name: `{name: multiplier | 'frozen'}`.

  Each rule's regex is matched (`re.search`, first match wins, default multiplier 1) against
  the '/'-joined paths of OUR param tree, as `larp_jax.training.optimizers` does; the torch
  modules share our top-level names (audio_encoder, text_encoder, audio_proj, text_proj, temp),
  so a torch parameter gets the action of its top-level name.

  Args:
    our_params: our param tree (arrays or ShapeDtypeStructs).
    rules: `config.optimizer.rules`, ordered `(regex, multiplier | 'frozen')` pairs.

  Raises:
    ValueError: a rule gives different actions to parameters under one top-level name (the
      torch side cannot split a module the way our tree is split).
  """
  import jax  # pylint: disable=g-import-not-at-top

  from larp_jax.training import optimizers  # pylint: disable=g-import-not-at-top

  rules = optimizers.parse_rules(rules)
  seen: dict[str, set] = {}
  for path, _ in jax.tree_util.tree_flatten_with_path(our_params)[0]:
    name = optimizers.path_name(path)
    action = next((a for pattern, a in rules if re.search(pattern, name)), 1.0)
    seen.setdefault(name.split('/')[0], set()).add(action)
  split = {top: sorted(map(str, actions)) for top, actions in seen.items() if len(actions) > 1}
  if split:
    raise ValueError(
        f'config.optimizer.rules={rules!r} give different actions inside one '
        f'top-level module {split}; the torch reference maps rules per top-level '
        'module only.'
    )
  return {top: actions.pop() for top, actions in seen.items()}


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


def make_torch_setup(
    config,
    model: nn.Module,
    our_params: Any,
    our_model_state: Any,
    groups: np.ndarray,
    total_steps: int,
    adam: str = 'fused',
) -> TorchSetup:
  """Momentum copy, Adam and memory for `model` (already holding the shared initial weights).

  Args:
    config: the LARP ConfigDict (`optimizer`: Adam's learning rate, warm-up + cosine schedule,
      b1/b2/eps, `rules`).
    model: from `make_torch_larp`.
    our_params: our initial param tree (for the `rules` paths).
    our_model_state: our initial model_state on the host (queues copied; tables start at 0).
    groups: int32 [N_train, G] track -> playlist ids (-1 padded).
    total_steps: length of the learning-rate schedule.
    adam: 'fused', 'foreach' or 'for-loop' (`torch.optim.Adam` implementation).
  """
  import jax  # pylint: disable=g-import-not-at-top

  from larp_jax.training import optimizers  # pylint: disable=g-import-not-at-top

  opt = config.optimizer
  if opt.get('name', 'adam') != 'adam' or float(opt.get('grad_clip_norm', 0.0) or 0.0):
    raise ValueError(
        'the torch reference runs plain Adam without clipping; got '
        f"config.optimizer.name={opt.get('name')!r}, "
        f"grad_clip_norm={opt.get('grad_clip_norm')}."
    )
  actions = top_level_actions(our_params, opt.get('rules', None))
  grouped: dict[float, list[Any]] = {}
  for name, param in model.named_parameters():
    top = name.split('.')[0]
    if top not in actions:
      raise ValueError(f'torch parameter {name!r}: no top-level {top!r} in our params.')
    if actions[top] == optimizers.FROZEN:
      param.requires_grad_(False)
    else:
      grouped.setdefault(float(actions[top]), []).append(param)
  momentum_model = copy.deepcopy(model).eval().requires_grad_(False)
  kwargs = dict(
      lr=float(opt.learning_rate),
      betas=(opt.get('b1', 0.9), opt.get('b2', 0.999)),
      eps=opt.get('eps', 1e-8),
  )
  if adam == 'fused':
    kwargs['fused'] = True
  else:
    kwargs['foreach'] = adam == 'foreach'
  optimizer = torch.optim.Adam(
      [{'params': params, 'lr_multiplier': factor} for factor, params in grouped.items()], **kwargs
  )
  schedule = optimizers.make_schedule(opt, total_steps)
  learning_rates = np.asarray(jax.vmap(schedule)(np.arange(total_steps + 1)))
  queues = {k: torch.from_numpy(np.array(v)) for k, v in our_model_state['queues'].items()}
  table = torch.zeros(tuple(np.shape(our_model_state['audio_table'])), dtype=torch.float32)
  return TorchSetup(
      model=model,
      momentum_model=momentum_model,
      optimizer=optimizer,
      learning_rates=learning_rates,
      queues=queues,
      queue_ptr=0,
      audio_table=table,
      text_table=table.clone(),
      groups=torch.from_numpy(np.asarray(groups, np.int32)),
  )


def torch_batch(batch: dict[str, Any]) -> dict[str, Any]:
  """numpy batch -> torch tensors (int64 ids/masks, as HF expects), same nesting."""

  def convert(x):
    x = np.asarray(x)
    return torch.from_numpy(x.astype(np.int64) if x.dtype.kind in 'iu' else x)

  return {k: torch_batch(v) if isinstance(v, dict) else convert(v) for k, v in batch.items()}


def torch_train_step(setup: TorchSetup, batch: dict[str, Any], stage: int, loss_config) -> float:
  """One eager train step (same order as `larp_steps.make_train_step`); returns the loss.

  Args:
    setup: from `make_torch_setup` (updated in place).
    batch: `torch_batch` of a stage-1 track batch or a stage-2 pair batch.
    stage: 1 (WTC) or 2 (WTC + TTC).
    loss_config: `momentum`, `wtc_id_positives`, `ttc_positives`.
  """
  model, momentum_model = setup.model, setup.momentum_model
  tracks = (
      batch if stage == 1 else {k: torch.cat([batch['a'][k], batch['b'][k]]) for k in batch['a']}
  )
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
  loss = torch_wtc_loss(
      audio,
      text,
      audio_m,
      text_m,
      queues['audio'],
      queues['text'],
      temp,
      ids=ids if use_ids else None,
      queue_ids=queues['ids'] if use_ids else None,
  )
  if stage == 2:
    b = batch['playlist_index'].shape[0]
    partner = torch.cat([torch.arange(b) + b, torch.arange(b)])
    cooccurrence = loss_config.ttc_positives == 'cooccurrence'
    loss = loss + torch_ttc_loss(
        audio,
        text,
        audio_m,
        text_m,
        queues['audio'],
        queues['text'],
        temp,
        partner,
        groups if cooccurrence else None,
        queues['groups'] if cooccurrence else None,
    )
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
    torch._foreach_lerp_(
        list(momentum_model.parameters()), list(model.parameters()), 1.0 - momentum
    )
    size = queues['audio'].shape[0]
    rows = (setup.queue_ptr + torch.arange(ids.shape[0])) % size
    for name, value in (('audio', audio_m), ('text', text_m), ('ids', ids), ('groups', groups)):
      queues[name][rows] = value.to(queues[name].dtype)
    setup.queue_ptr = (setup.queue_ptr + ids.shape[0]) % size
    setup.audio_table[ids] = audio.detach()
    setup.text_table[ids] = text.detach()
  return float(loss.detach())
