"""Imports laion_clap's PyTorch HTS-AT (`laion_clap/clap_module/htsat.py`) as a parity reference.

`import laion_clap` fails on this CPU-only machine: the package `__init__` chain reaches
`clap_module/utils.py`, which imports `torchvision.ops.misc` (no working torchvision here). HTS-AT
itself only needs torch, torchlibrosa and the sibling modules `utils` and `feature_fusion`, so we
import that one module with
  * empty stand-ins for the `laion_clap` and `laion_clap.clap_module` packages (their `__path__`
    points at the installed folders, so submodules resolve but no `__init__` runs), and
  * a stub `torchvision.ops.misc` providing the one name utils.py imports,
and remove every stub (and the laion_clap entries) from `sys.modules` afterwards: transformers
probes for torchvision and breaks on a stub without a spec.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
import types
from typing import Any

import numpy as np

_STUB_NAMES = ('torchvision', 'torchvision.ops', 'torchvision.ops.misc')


def _laion_clap_dir() -> str:
  spec = importlib.util.find_spec('laion_clap')
  if spec is None or not spec.submodule_search_locations:
    raise ImportError('laion_clap is not installed (pip install --no-deps laion-clap)')
  return list(spec.submodule_search_locations)[0]


def import_htsat_module() -> types.ModuleType:
  """Returns the `laion_clap.clap_module.htsat` module without running the package __init__s."""
  package_dir = _laion_clap_dir()
  saved = {name: sys.modules.get(name) for name in _STUB_NAMES}
  added = []

  def install(name: str, module: types.ModuleType) -> None:
    sys.modules[name] = module
    added.append(name)

  try:
    for name, path in (
        ('laion_clap', package_dir),
        ('laion_clap.clap_module', os.path.join(package_dir, 'clap_module')),
    ):
      if name not in sys.modules:
        package = types.ModuleType(name)
        package.__path__ = [path]
        install(name, package)
    for name in _STUB_NAMES:
      install(name, types.ModuleType(name))
    sys.modules['torchvision.ops.misc'].FrozenBatchNorm2d = type('FrozenBatchNorm2d', (), {})
    return importlib.import_module('laion_clap.clap_module.htsat')
  finally:
    for name in list(sys.modules):
      if name == 'laion_clap' or name.startswith('laion_clap.'):
        if name in added or name.startswith('laion_clap.clap_module.'):
          del sys.modules[name]
    for name in _STUB_NAMES:
      sys.modules.pop(name, None)
      if saved[name] is not None:
        sys.modules[name] = saved[name]


def clap_audio_cfg(model_name: str) -> types.SimpleNamespace:
  """The `audio_cfg` block of laion_clap's model_configs/HTSAT-<model_name>.json."""
  path = os.path.join(_laion_clap_dir(), 'clap_module', 'model_configs', f'HTSAT-{model_name}.json')
  with open(path) as f:
    return types.SimpleNamespace(**json.load(f)['audio_cfg'])


def create_reference_htsat(variant: str, config: Any | None = None):
  """Builds the torch HTS-AT for `variant` in eval mode.

  'tiny'/'base' go through laion_clap's `create_htsat_model` with the packaged audio cfg; other
  variants (e.g. 'small') build `HTSAT_Swin_Transformer` directly from a larp_jax HTSATConfig.
  """
  htsat = import_htsat_module()
  if variant in ('tiny', 'base') and config is None:
    model = htsat.create_htsat_model(clap_audio_cfg(variant))
  else:
    if config is None:
      raise ValueError(f'variant {variant!r} needs an HTSATConfig')
    audio_cfg = types.SimpleNamespace(
        sample_rate=config.sample_rate,
        window_size=config.n_fft,
        hop_size=config.hop_length,
        mel_bins=config.mel_bins,
        fmin=config.fmin,
        fmax=config.fmax,
        clip_samples=config.clip_samples,
        class_num=config.num_classes,
        model_name=variant,
    )
    model = htsat.HTSAT_Swin_Transformer(
        spec_size=config.spec_size,
        patch_size=config.patch_size,
        patch_stride=(config.patch_stride, config.patch_stride),
        num_classes=config.num_classes,
        embed_dim=config.embed_dim,
        depths=list(config.depths),
        num_heads=list(config.num_heads),
        window_size=config.window_size,
        mlp_ratio=config.mlp_ratio,
        drop_path_rate=config.drop_path_rate,
        config=audio_cfg,
    )
  return model.eval()


def randomize_state(model, seed: int = 0, scale: float = 0.05) -> None:
  """Perturbs every float parameter and bn0's running stats (so biases, LN affine parameters and
  the eval-mode BatchNorm path are all exercised by a parity test). Frozen frontend tensors stay."""
  import torch  # pylint: disable=g-import-not-at-top

  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, tensor in model.state_dict().items():
      if name.startswith(('spectrogram_extractor.', 'logmel_extractor.')):
        continue
      if not tensor.is_floating_point() or name.endswith(('attn_mask', 'relative_position_index')):
        continue
      if name == 'bn0.running_mean':
        tensor.copy_(-40.0 + 10.0 * torch.randn(tensor.shape, generator=gen))
      elif name == 'bn0.running_var':
        tensor.copy_(50.0 + 100.0 * torch.rand(tensor.shape, generator=gen))
      else:
        tensor.add_(scale * torch.randn(tensor.shape, generator=gen))


def numpy_state_dict(model) -> dict[str, np.ndarray]:
  """{key: numpy array} copy of a torch module's state dict."""
  return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def run_reference(model, waveform: np.ndarray) -> dict[str, np.ndarray]:
  """Eval forward on `{"waveform": x}` (no CLAP_Module helpers); float32 numpy outputs."""
  import torch  # pylint: disable=g-import-not-at-top

  with torch.no_grad():
    out = model({'waveform': torch.from_numpy(np.asarray(waveform, np.float32))})
  return {k: v.detach().cpu().numpy() for k, v in out.items()}
