"""PyTorch HTS-AT state dicts -> flax variables for `larp_jax.models.htsat.HTSAT`.

Accepted layouts: the official HTS-AT Lightning checkpoints (`sed_model.` keys), CLAP
(`audio_branch.`), LARP (`audio_encoder.`) and bare `HTSAT_Swin_Transformer` keys, each optionally
behind DDP `module.` prefixes. A torch key maps to the flax path of the same name
(`layers.0.blocks.1.attn.qkv.weight` -> `params/layers_0/blocks_1/attn/qkv/kernel`): Linear weights
[out, in] are transposed to [in, out], Conv2d weights [out, in, kh, kw] to [kh, kw, in, out], and
bn0's running statistics go to `batch_stats`. Frozen frontend tensors (STFT kernels, mel matrix)
are not loaded but checked against the config's frontend.

`conversion_report` classifies every key without converting; `convert_torch_state_dict` converts
(strict by default). `load_state_dict` reads a torch (.ckpt/.pt/.pth/.bin) or safetensors file into
`{name: numpy array}`, and `load_audio_variables` gives the variables of a checkpoint in any of the
accepted forms: a converted orbax checkpoint (`experiments/convert_checkpoint.py` output) or an
official torch checkpoint converted on the fly (strict).
"""

from __future__ import annotations

import functools
import os
import re
from typing import Any, Mapping

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from larp_jax.models import audio_frontend, htsat

KNOWN_PREFIXES = ('sed_model.', 'audio_branch.', 'audio_encoder.', '')
_ANCHOR_KEY = 'patch_embed.proj.weight'
# Buffers and frozen tensors that carry no trainable state (or are recomputed here).
_IGNORED_PATTERNS = (
    r'spectrogram_extractor\.stft\.conv_(real|imag)\.weight',
    r'logmel_extractor\.melW',
    r'bn0\.num_batches_tracked',
    r'layers\.\d+\.blocks\.\d+\.attn\.relative_position_index',
    r'layers\.\d+\.blocks\.\d+\.attn_mask',
    r'head\.(weight|bias)',  # HTS-AT's Linear(classes, classes) head is never used in forward.
)


def _strip_ddp(key: str) -> str:
  while key.startswith('module.'):
    key = key[len('module.') :]
  return key


def _strip_ddp_keys(state_dict: Mapping[str, Any]) -> dict[str, str]:
  """{key without `module.` prefixes: original key}; two keys colliding is an error."""
  stripped: dict[str, str] = {}
  for original in state_dict:
    key = _strip_ddp(str(original))
    if key in stripped:
      raise ValueError(
          f'state dict keys {stripped[key]!r} and {original!r} collide once the DDP '
          "'module.' prefix is stripped"
      )
    stripped[key] = original
  return stripped


def _detect_prefix(keys: list[str]) -> str:
  found = [p for p in KNOWN_PREFIXES if p + _ANCHOR_KEY in keys]
  if not found:
    raise ValueError(
        f'no HTS-AT weights found: no key named <prefix>{_ANCHOR_KEY} with prefix in '
        f'{KNOWN_PREFIXES}; first keys: {keys[:5]}'
    )
  if len(found) > 1:
    raise ValueError(f'ambiguous HTS-AT prefix: {found} all hold weights; pass prefix=')
  return found[0]


def _flax_path(bare_key: str, targets: Mapping[tuple[str, ...], Any]):
  """Maps a bare torch key to (flax path, layout) or None. Layout: 'linear', 'conv', 'copy'."""
  parts = re.sub(r'(layers|blocks)\.(\d+)', r'\1_\2', bare_key).split('.')
  *module, leaf = parts
  candidates = {
      'weight': [(('params', *module, 'kernel'), None), (('params', *module, 'scale'), 'copy')],
      'bias': [(('params', *module, 'bias'), 'copy')],
      'running_mean': [(('batch_stats', *module, 'mean'), 'copy')],
      'running_var': [(('batch_stats', *module, 'var'), 'copy')],
      'relative_position_bias_table': [(('params', *module, leaf), 'copy')],
  }.get(leaf, [])
  for path, layout in candidates:
    if path in targets:
      if layout is None:
        layout = 'conv' if len(targets[path].shape) == 4 else 'linear'
      return path, layout
  return None


def _to_flax_layout(value: np.ndarray, layout: str) -> np.ndarray:
  if layout == 'linear':  # torch Linear [out, in] -> [in, out]
    return value.T
  if layout == 'conv':  # torch Conv2d [out, in, kh, kw] -> [kh, kw, in, out]
    return value.transpose(2, 3, 1, 0)
  return value


@functools.lru_cache(maxsize=4)
def _abstract_variables(config: htsat.HTSATConfig) -> dict:
  """Shapes/dtypes of `htsat.HTSAT(config)`'s variables (unboxed ShapeDtypeStructs; read-only)."""
  model = htsat.HTSAT(config)
  waveform = jax.ShapeDtypeStruct((1, config.clip_samples), jnp.float32)
  return nn.meta.unbox(
      jax.eval_shape(functools.partial(model.init, train=False), jax.random.PRNGKey(0), waveform)
  )


def _check_frontend_constant(
    bare_key: str, value: np.ndarray, config: htsat.HTSATConfig
) -> str | None:
  """Returns a message if a frozen frontend tensor disagrees with `config`'s frontend."""
  fe = config.frontend
  if bare_key == 'logmel_extractor.melW':
    expected = audio_frontend.slaney_mel_filterbank(
        fe.sample_rate, fe.n_fft, fe.n_mels, float(fe.fmin), float(fe.fmax)
    )
  elif bare_key.startswith('spectrogram_extractor.stft.conv_'):
    matrix = audio_frontend.stft_matrix(fe.n_fft, fe.n_fft)
    real, imag = np.split(matrix, 2, axis=1)
    expected = (real if 'conv_real' in bare_key else imag).T[:, None, :]
  else:
    return None
  if value.shape != expected.shape:
    return f'{bare_key}: shape {value.shape} != {expected.shape} implied by the config frontend'
  if not np.allclose(value, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max()):
    return f'{bare_key}: values differ from the config frontend (sample rate, n_fft, mel range?)'
  return None


def conversion_report(
    state_dict: Mapping[str, Any], config: htsat.HTSATConfig, prefix: str | None = None
) -> dict[str, Any]:
  """Classifies every key of a PyTorch HTS-AT state dict without converting anything.

  Returns a dict with `prefix` (the layout found: 'sed_model.', 'audio_branch.', 'audio_encoder.'
  or '' for bare keys; `module.` DDP prefixes are stripped first) and lists of original key names:
  `matched` (converted weights), `ignored` (known constants/unused tensors, see _IGNORED_PATTERNS),
  `unmatched` (keys under the prefix with no place in the model), `missing` (model variables,
  as flax paths 'params/…', that no key provides), `foreign` (keys outside the prefix, e.g. a
  CLAP text tower), `mismatched` (shape or frontend-constant disagreements).
  """
  stripped = _strip_ddp_keys(state_dict)
  if prefix is None:
    prefix = _detect_prefix(list(stripped))
  targets = flax.traverse_util.flatten_dict(_abstract_variables(config))
  report: dict[str, Any] = {
      'prefix': prefix,
      'matched': [],
      'ignored': [],
      'unmatched': [],
      'missing': [],
      'foreign': [],
      'mismatched': [],
  }
  filled = set()
  for key, original in stripped.items():
    if not key.startswith(prefix):
      report['foreign'].append(original)
      continue
    bare = key[len(prefix) :]
    if any(re.fullmatch(p, bare) for p in _IGNORED_PATTERNS):
      report['ignored'].append(original)
      problem = _check_frontend_constant(bare, np.asarray(state_dict[original]), config)
      if problem:
        report['mismatched'].append(problem)
      continue
    match = _flax_path(bare, targets)
    if match is None:
      report['unmatched'].append(original)
      continue
    path, layout = match
    shape = _to_flax_layout(np.asarray(state_dict[original]), layout).shape
    if tuple(shape) != tuple(targets[path].shape):
      report['mismatched'].append(
          f'{original}: shape {tuple(shape)} (as {layout}) != '
          f'{tuple(targets[path].shape)} at {"/".join(path)}'
      )
      continue
    report['matched'].append(original)
    filled.add(path)
  report['missing'] = sorted('/'.join(p) for p in targets if p not in filled)
  return report


def convert_torch_state_dict(
    state_dict: Mapping[str, Any],
    config: htsat.HTSATConfig,
    *,
    prefix: str | None = None,
    strict: bool = True,
    return_report: bool = False,
    init_rng: jax.Array | None = None,
):
  """Converts a PyTorch HTS-AT state dict into flax variables for `htsat.HTSAT(config)`.

  Args:
    state_dict: {name: array-like} (numpy arrays or CPU torch tensors) from the official HTS-AT
      Lightning checkpoints (`sed_model.`), CLAP (`audio_branch.`), LARP (`audio_encoder.`) or bare
      HTSAT_Swin_Transformer keys, optionally behind `module.` DDP prefixes.
    config: the variant the weights belong to.
    prefix: force a prefix instead of detecting it.
    strict: raise ValueError when any key under the prefix is unmatched or any model variable is
      missing. With strict=False, missing variables keep a fresh init (from `init_rng`).
    return_report: also return `conversion_report(...)`.
    init_rng: PRNG key for variables left missing when strict=False (default PRNGKey(0)).

  Returns:
    variables {'params': ..., 'batch_stats': ...} of unboxed float32 jnp arrays (plus the report
    when `return_report`). Shape or frontend-constant mismatches always raise ValueError.
  """
  report = conversion_report(state_dict, config, prefix)
  if report['mismatched']:
    raise ValueError('HTS-AT weights do not fit the config: ' + '; '.join(report['mismatched']))
  if strict and (report['unmatched'] or report['missing']):
    raise ValueError(
        f'HTS-AT conversion: unmatched keys {report["unmatched"]}, '
        f'missing variables {report["missing"]} (prefix {report["prefix"]!r})'
    )
  targets = flax.traverse_util.flatten_dict(_abstract_variables(config))
  flat = {}
  for original in report['matched']:
    bare = _strip_ddp(original)[len(report['prefix']) :]
    path, layout = _flax_path(bare, targets)
    value = _to_flax_layout(np.asarray(state_dict[original], dtype=np.float32), layout)
    flat[path] = jnp.asarray(value, dtype=targets[path].dtype)
  if report['missing']:
    rng = jax.random.PRNGKey(0) if init_rng is None else init_rng
    init = jax.jit(functools.partial(htsat.HTSAT(config).init, train=False))
    fresh = flax.traverse_util.flatten_dict(
        nn.meta.unbox(init(rng, jnp.zeros((1, config.clip_samples), jnp.float32)))
    )
    for path in targets:
      flat.setdefault(path, fresh[path])
  variables = flax.traverse_util.unflatten_dict(flat)
  return (variables, report) if return_report else variables


# Wrappers around the state dict: Lightning / CLAP ('state_dict'), BLIP-style LARP ('model').
_WRAPPER_KEYS = ('state_dict', 'model', 'model_state_dict')
VARIABLES_NAME = 'variables'  # where experiments/convert_checkpoint.py writes the variables


def _to_numpy(value: Any) -> np.ndarray:
  if hasattr(value, 'detach'):  # torch.Tensor, without importing torch here.
    value = value.detach().cpu()
    if str(value.dtype) == 'torch.bfloat16':
      value = value.float()
    return value.numpy()
  return np.asarray(value)


def load_state_dict(path: str) -> dict[str, np.ndarray]:
  """Reads {name: numpy array} from a torch or safetensors checkpoint, unwrapping Lightning/CLAP
  `state_dict` and LARP `model` wrappers (non-tensor entries are dropped)."""
  if not os.path.exists(path):
    raise FileNotFoundError(f'checkpoint {path} does not exist')
  if path.endswith('.safetensors'):
    from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top

    return dict(load_file(path))
  import torch  # pylint: disable=g-import-not-at-top

  checkpoint = torch.load(path, map_location='cpu', weights_only=True)
  while isinstance(checkpoint, dict):
    wrapper = next((k for k in _WRAPPER_KEYS if isinstance(checkpoint.get(k), dict)), None)
    if wrapper is None:
      break
    checkpoint = checkpoint[wrapper]
  if not isinstance(checkpoint, dict):
    raise ValueError(f'{path} holds a {type(checkpoint).__name__}, not a state dict')
  tensors = {str(k): v for k, v in checkpoint.items() if hasattr(v, 'shape')}
  if not tensors:
    raise ValueError(
        f'{path} holds no tensors (top-level keys: {sorted(map(str, checkpoint))[:10]})'
    )
  return {k: _to_numpy(v) for k, v in tensors.items()}


def load_audio_variables(path: str, config: htsat.HTSATConfig) -> dict[str, Any]:
  """The HTS-AT variables {'params', 'batch_stats'} of a checkpoint, for `htsat.HTSAT(config)`.

  Args:
    path: a directory written by `experiments/convert_checkpoint.py` (holding `variables/`), an
      orbax checkpoint of the variables themselves, or an official HTS-AT (`sed_model.`), CLAP
      (`audio_branch.`) or LARP (`audio_encoder.`) torch/safetensors file, converted here with
      strict key matching.
    config: the HTS-AT variant the weights must fit.

  Returns:
    {'params': ..., 'batch_stats': ...} of float32 numpy/jax arrays.

  Raises:
    ValueError naming the path and the unmatched, missing or mis-shaped keys.
  """
  import flax.traverse_util as traverse  # pylint: disable=g-import-not-at-top

  if not os.path.exists(path):
    raise ValueError(f'audio checkpoint {path!r} does not exist')
  if os.path.isdir(path):
    import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

    target = os.path.join(path, VARIABLES_NAME)
    target = os.path.abspath(target if os.path.isdir(target) else path)
    checkpointer = ocp.StandardCheckpointer()
    try:
      variables = checkpointer.restore(target)
    finally:
      checkpointer.close()
    expected = traverse.flatten_dict(_abstract_variables(config))
    got = traverse.flatten_dict(variables)
    missing = sorted('/'.join(k) for k in expected if k not in got)
    extra = sorted('/'.join(k) for k in got if k not in expected)
    wrong = [
        f'{"/".join(k)}: {tuple(np.shape(got[k]))} != {tuple(expected[k].shape)}'
        for k in expected
        if k in got and tuple(np.shape(got[k])) != tuple(expected[k].shape)
    ]
    if missing or extra or wrong:
      raise ValueError(
          f'audio checkpoint {target!r} does not fit the configured HTS-AT: missing '
          f'{missing[:8]}, unexpected {extra[:8]}, shapes {wrong[:8]}'
      )
    return variables
  try:
    return convert_torch_state_dict(load_state_dict(path), config, strict=True)
  except ValueError as e:
    raise ValueError(f'audio checkpoint {path!r}: {e}') from e
