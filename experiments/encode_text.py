"""Encodes a text file (one text per line) with a pretrained BERT into a float32 [N, H] .npy.

    python -m experiments.encode_text --model_dir DIR --input texts.txt --output emb.npy \
        [--pooling mean|cls] [--normalize] [--max_length 128] [--batch_size 64] [--skip_empty]

Lines are split on '\\n' (a trailing '\\r' is dropped; a final newline does not make an extra
line) and numbered from 1. Row i of the output is line i. A line that is empty or only whitespace
is an error naming the line numbers; with --skip_empty such lines are dropped with a warning and
the 1-based numbers of the kept lines are written to `<output>.lines.txt` (one per line), so
row i of the output is line `lines[i]`. Texts longer than --max_length tokens are truncated and
their count is printed.
"""

from __future__ import annotations

import os
import sys

from absl import app
from absl import flags
from absl import logging
import numpy as np

from data_pipelines import text as text_lib
from larp_jax.evaluation import text_embeddings
from larp_jax.models import bert_convert

_MODEL_DIR = None
_INPUT = None
_OUTPUT = None
_POOLING = None
_NORMALIZE = None
_MAX_LENGTH = None
_BATCH_SIZE = None
_SKIP_EMPTY = None


def define_flags() -> None:
  """Defines the CLI flags (only when run as a program, so importing never clashes)."""
  global _MODEL_DIR, _INPUT, _OUTPUT, _POOLING, _NORMALIZE, _MAX_LENGTH, _BATCH_SIZE, _SKIP_EMPTY
  _MODEL_DIR = flags.DEFINE_string(
      'model_dir', None, 'HF BERT directory (config.json, ' 'model.safetensors, tokenizer files).'
  )
  _INPUT = flags.DEFINE_string('input', None, 'UTF-8 text file, one text per line.')
  _OUTPUT = flags.DEFINE_string('output', None, 'Output .npy path (float32 [N, H]).')
  _POOLING = flags.DEFINE_enum(
      'pooling',
      'mean',
      ['mean', 'cls'],
      'Pooling of the last hidden ' 'state: masked mean or the [CLS] position.',
  )
  _NORMALIZE = flags.DEFINE_bool('normalize', False, 'L2-normalise the embeddings.')
  _MAX_LENGTH = flags.DEFINE_integer(
      'max_length', 128, 'Tokens per text (longer ones are ' 'truncated). LARP uses 30.'
  )
  _BATCH_SIZE = flags.DEFINE_integer('batch_size', 64, 'Texts per jitted batch.')
  _SKIP_EMPTY = flags.DEFINE_bool(
      'skip_empty',
      False,
      'Drop empty lines (with a warning and a '
      '<output>.lines.txt of kept line numbers) instead of failing.',
  )


def read_lines(path: str) -> list[str]:
  """Returns the lines of a UTF-8 file (without line terminators)."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f'input file {path!r} does not exist')
  try:
    with open(path, encoding='utf-8', newline='') as f:
      content = f.read()
  except UnicodeDecodeError as e:
    raise ValueError(f'input file {path!r} is not valid UTF-8: {e}') from e
  lines = content.split('\n')
  if lines and lines[-1] == '':
    lines.pop()  # final newline
  return [line[:-1] if line.endswith('\r') else line for line in lines]


def encode_file(
    model_dir: str,
    input_path: str,
    output_path: str,
    *,
    pooling: str = 'mean',
    normalize: bool = False,
    max_length: int = 128,
    batch_size: int = 64,
    skip_empty: bool = False,
    progress: bool = True,
) -> np.ndarray:
  """Encodes every line of input_path, saves float32 [N, H] to output_path and returns it."""
  if not output_path.endswith('.npy'):
    raise ValueError(f'output path {output_path!r} must end in .npy')
  if not os.path.isdir(model_dir):
    raise FileNotFoundError(f'model directory {model_dir!r} does not exist')
  lines = read_lines(input_path)
  empty = [i + 1 for i, line in enumerate(lines) if not line.strip()]
  kept = [i + 1 for i, line in enumerate(lines) if line.strip()]
  if empty and not skip_empty:
    shown = ', '.join(map(str, empty[:20])) + (', ...' if len(empty) > 20 else '')
    raise ValueError(
        f'{input_path}: {len(empty)} empty line(s) at line number(s) {shown}; '
        'remove them or pass --skip_empty'
    )
  if not kept:
    raise ValueError(f'{input_path} has no non-empty lines')
  if empty:
    logging.warning(
        'skipping %d empty line(s) of %s; kept line numbers go to %s.lines.txt',
        len(empty),
        input_path,
        output_path,
    )
  config, params = bert_convert.load_pretrained(model_dir)
  tokenizer = text_lib.load_tokenizer(model_dir)
  embeddings, num_truncated = text_embeddings.encode_texts(
      config,
      params,
      tokenizer,
      [lines[i - 1] for i in kept],
      pooling=pooling,
      normalize=normalize,
      max_length=max_length,
      batch_size=batch_size,
      progress=progress,
      return_num_truncated=True,
  )
  print(
      f'{num_truncated} of {len(kept)} text(s) were longer than max_length={max_length} '
      'tokens and were truncated'
  )
  if os.path.dirname(output_path):
    os.makedirs(os.path.dirname(output_path), exist_ok=True)
  np.save(output_path, embeddings)
  if skip_empty:
    with open(output_path + '.lines.txt', 'w') as f:
      f.writelines(f'{n}\n' for n in kept)
  print(f'wrote {embeddings.shape} {embeddings.dtype} to {output_path}')
  return embeddings


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  try:
    encode_file(
        _MODEL_DIR.value,
        _INPUT.value,
        _OUTPUT.value,
        pooling=_POOLING.value,
        normalize=_NORMALIZE.value,
        max_length=_MAX_LENGTH.value,
        batch_size=_BATCH_SIZE.value,
        skip_empty=_SKIP_EMPTY.value,
    )
  except (FileNotFoundError, ValueError) as e:
    sys.exit(f'encode_text: error: {e}')


if __name__ == '__main__':
  define_flags()
  flags.mark_flags_as_required(['model_dir', 'input', 'output'])
  app.run(main)
