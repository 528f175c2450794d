r"""Converts a PyTorch HTS-AT checkpoint (official HTS-AT, CLAP or LARP) into an orbax checkpoint.

  python -m experiments.convert_checkpoint --input=HTSAT-fullset-imagenet-tiny-map=0.467.ckpt \
      --variant=tiny --output=/tmp/htsat_tiny

writes `OUTPUT/variables` (orbax StandardCheckpointer: {'params', 'batch_stats'} for
`larp_jax.models.htsat.HTSAT`) and `OUTPUT/conversion_report.json` (matched / ignored / unmatched /
missing / foreign keys). The official LARP code silently dropped its pretrained audio weights
through a key-prefix mismatch, so this tool REFUSES (exit status 1, nothing written but the report)
when any weight key under the detected prefix is unmatched or any model variable is missing,
unless --allow_unmatched is given (missing variables then keep a fresh init).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from absl import app
from absl import flags
import numpy as np

from larp_jax.models import htsat, htsat_convert

_INPUT = None
_VARIANT = None
_OUTPUT = None
_PREFIX = None
_ALLOW_UNMATCHED = None


def define_flags() -> None:
  """Defines the CLI flags (only when run as a program, so importing never clashes)."""
  global _INPUT, _VARIANT, _OUTPUT, _PREFIX, _ALLOW_UNMATCHED
  _INPUT = flags.DEFINE_string('input', None, 'Checkpoint: .ckpt/.pt/.pth (torch) or .safetensors.')
  _VARIANT = flags.DEFINE_enum('variant', 'tiny', ['tiny', 'base', 'small'], 'HTS-AT variant.')
  _OUTPUT = flags.DEFINE_string('output', None, 'Output directory.')
  _PREFIX = flags.DEFINE_string('prefix', None, "Force a key prefix (e.g. 'audio_branch.').")
  _ALLOW_UNMATCHED = flags.DEFINE_bool(
      'allow_unmatched', False, 'Write even if keys are unmatched or variables missing.'
  )


REPORT_NAME = 'conversion_report.json'
VARIABLES_NAME = 'variables'
# Wrappers around the state dict: Lightning / CLAP ('state_dict'), BLIP-style LARP ('model').
_WRAPPER_KEYS = ('state_dict', 'model', 'model_state_dict')


class ConversionRefused(ValueError):
  """Raised when a checkpoint has unmatched keys or missing variables and that is not allowed."""


def _to_numpy(value: Any) -> np.ndarray:
  if hasattr(value, 'detach'):  # torch.Tensor, without importing torch here.
    value = value.detach().cpu()
    if str(value.dtype) == 'torch.bfloat16':
      value = value.float()
    return value.numpy()
  return np.asarray(value)


def load_state_dict(path: str) -> dict[str, np.ndarray]:
  """Reads {name: numpy array} from a torch or safetensors checkpoint, unwrapping Lightning/CLAP
  `state_dict` and LARP `model` wrappers."""
  if not os.path.exists(path):
    raise FileNotFoundError(f'--input {path} does not exist')
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
  others = sorted(str(k) for k in checkpoint if str(k) not in tensors)
  if not tensors:
    raise ValueError(f'{path} holds no tensors (top-level keys: {others[:10]})')
  if others:
    print(f'skipping {len(others)} non-tensor entries: {others[:10]}')
  return {k: _to_numpy(v) for k, v in tensors.items()}


def _summary(report: dict[str, Any]) -> str:
  lines = [
      f"prefix {report['prefix']!r}: "
      + ', '.join(
          f'{len(report[k])} {k}'
          for k in ('matched', 'ignored', 'unmatched', 'missing', 'foreign', 'mismatched')
      )
  ]
  for kind in ('ignored', 'unmatched', 'missing', 'mismatched'):
    for key in report[kind]:
      lines.append(f'  {kind}: {key}')
  if report['foreign']:
    lines.append(
        f"  foreign (other towers, left alone): {report['foreign'][:5]}"
        + (' ...' if len(report['foreign']) > 5 else '')
    )
  return '\n'.join(lines)


def convert_file(
    input_path: str,
    variant: str,
    output_dir: str,
    *,
    allow_unmatched: bool = False,
    prefix: str | None = None,
) -> dict[str, Any]:
  """Converts `input_path` and writes the orbax checkpoint and JSON report under `output_dir`.

  Returns the report. Raises ConversionRefused (after writing the report) when keys are unmatched
  or variables missing and `allow_unmatched` is False; ValueError on shape mismatches.
  """
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

  config = htsat.htsat_config(variant)
  state_dict = load_state_dict(input_path)
  report = htsat_convert.conversion_report(state_dict, config, prefix)
  report.update(input=os.path.abspath(input_path), variant=variant)
  output_dir = os.path.abspath(output_dir)
  os.makedirs(output_dir, exist_ok=True)
  refused = bool(report['unmatched'] or report['missing']) and not allow_unmatched
  report['written'] = not refused and not report['mismatched']
  with open(os.path.join(output_dir, REPORT_NAME), 'w') as f:
    json.dump(report, f, indent=2)
  print(_summary(report))
  if report['mismatched']:
    raise ValueError(
        'checkpoint does not fit --variant=' + variant + ': ' + '; '.join(report['mismatched'])
    )
  if refused:
    raise ConversionRefused(
        f"refusing to convert {input_path}: unmatched keys {report['unmatched']}, missing "
        f"variables {report['missing']}. These weights would be silently lost (or left at random "
        'init); fix the checkpoint/variant or pass --allow_unmatched.'
    )
  variables = htsat_convert.convert_torch_state_dict(
      state_dict, config, prefix=report['prefix'], strict=False
  )
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(os.path.join(output_dir, VARIABLES_NAME), variables, force=True)
  checkpointer.wait_until_finished()
  print(f'wrote {os.path.join(output_dir, VARIABLES_NAME)} and {REPORT_NAME}')
  return report


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if not _INPUT.value or not _OUTPUT.value:
    raise app.UsageError('--input and --output are required')
  try:
    convert_file(
        _INPUT.value,
        _VARIANT.value,
        _OUTPUT.value,
        allow_unmatched=_ALLOW_UNMATCHED.value,
        prefix=_PREFIX.value,
    )
  except ValueError as e:  # ConversionRefused included.
    print(f'ERROR: {e}', file=sys.stderr)
    sys.exit(1)


if __name__ == '__main__':
  define_flags()
  app.run(main)
