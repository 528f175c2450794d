r"""Converts a PyTorch HTS-AT checkpoint (official HTS-AT, CLAP or LARP) into an orbax checkpoint.

  python -m experiments.convert_checkpoint --input=HTSAT-fullset-imagenet-tiny-map=0.467.ckpt \
      --variant=tiny --output=/tmp/htsat_tiny

writes `OUTPUT/variables` (orbax StandardCheckpointer: {'params', 'batch_stats'} for
`larp_jax.models.htsat.HTSAT`) and `OUTPUT/conversion_report.json` (matched / ignored / unmatched /
missing / foreign keys). The official LARP code silently dropped its pretrained audio weights
through a key-prefix mismatch, so this tool REFUSES (exit status 1, nothing written but the report)
when any weight key under the detected prefix is unmatched or any model variable is missing,
unless --allow_unmatched is given (missing variables then keep a fresh init).

The LARP job reads OUTPUT (or the torch checkpoint itself, converted on the fly with the same
strict matching) through `--config.model.audio_checkpoint=OUTPUT`: it initialises the online and
momentum audio towers and bn0's statistics of stage 1, and the report's audio-only row.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from absl import app
from absl import flags

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
VARIABLES_NAME = htsat_convert.VARIABLES_NAME
load_state_dict = htsat_convert.load_state_dict  # torch/safetensors file -> {name: numpy array}


class ConversionRefused(ValueError):
  """Raised when a checkpoint has unmatched keys or missing variables and that is not allowed."""


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
