"""Metadata captions and caption tokenization.

Two caption templates exist for LARP:
  * 'paper' (default, Sec. 4.1): "The track <track name> by <artist name> on album <album name>";
  * 'official' (the released code's `metadata_caption`, also in its shipped pickles):
    "<track> is a song by the artist <artist> on the album <album>".
A custom template is any format string using the fields {track}, {artist} and {album}.

Tokenization uses a local Hugging Face tokenizer directory (`AutoTokenizer`, local files only) and
returns fixed-length int32 arrays (LARP: padding to max_length=30, truncation). This is the one
tokenizer path of the project: the training pipelines, `larp_jax.evaluation.text_embeddings` and
the benchmarks all tokenise through `load_tokenizer` / `tokenize` / `token_lengths`.
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Sequence
from typing import Any

import numpy as np

CAPTION_TEMPLATES: dict[str, str] = {
    'paper': 'The track {track} by {artist} on album {album}',
    'official': '{track} is a song by the artist {artist} on the album {album}',
}
_CAPTION_FIELDS = frozenset({'track', 'artist', 'album'})
_SPACES = re.compile(r'\s+')


def resolve_caption_template(template: str) -> str:
  """Returns the format string for a template name ('paper', 'official') or a custom template.

  Raises:
    ValueError: the template is neither a known name nor a format string whose fields are a
      non-empty subset of {track}, {artist}, {album}.
  """
  if template in CAPTION_TEMPLATES:
    return CAPTION_TEMPLATES[template]
  try:
    fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
  except ValueError as e:
    raise ValueError(f'caption template {template!r} is not a valid format string: {e}') from e
  if not fields or not fields <= _CAPTION_FIELDS:
    raise ValueError(
        f'caption template {template!r} must be one of {sorted(CAPTION_TEMPLATES)} or a format '
        f'string using only the fields {{track}}, {{artist}}, {{album}} (got {sorted(fields)})'
    )
  return template


def clean_name(name: Any) -> str:
  """Strips and collapses whitespace; None becomes ''."""
  if name is None:
    return ''
  return _SPACES.sub(' ', str(name)).strip()


def make_caption(
    track_name: str, artist_name: str, album_name: str, template: str = 'paper'
) -> str:
  """One track's caption, e.g. 'The track Toxic by Britney Spears on album In The Zone'."""
  return resolve_caption_template(template).format(
      track=clean_name(track_name), artist=clean_name(artist_name), album=clean_name(album_name)
  )


def load_tokenizer(model_dir: os.PathLike | str):
  """Loads the HF tokenizer saved in a local model directory (no network: local files only).

  Raises:
    ValueError: the directory does not exist.
  """
  if not os.path.isdir(model_dir):
    raise ValueError(f'tokenizer directory {str(model_dir)!r} does not exist')
  from transformers import AutoTokenizer  # pylint: disable=g-import-not-at-top

  return AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)


def tokenize(tokenizer, texts: Sequence[str], max_length: int = 30) -> dict[str, np.ndarray]:
  """Tokenizes captions to fixed length (pad to max_length, truncate).

  Args:
    tokenizer: a transformers tokenizer (see `load_tokenizer`).
    texts: N captions.
    max_length: token length L (LARP: 30, including [CLS]/[SEP]); at least 2.

  Returns:
    {'input_ids': int32 [N, L], 'attention_mask': int32 [N, L]} (1 = real token, 0 = padding).
  """
  if max_length < 2:
    raise ValueError(f'max_length must be >= 2 (room for [CLS] and [SEP]), got {max_length}')
  if not texts:
    return {
        'input_ids': np.zeros((0, max_length), np.int32),
        'attention_mask': np.zeros((0, max_length), np.int32),
    }
  encoded = tokenizer(
      list(texts),
      padding='max_length',
      truncation=True,
      max_length=max_length,
      return_tensors='np',
      return_token_type_ids=False,
  )
  return {
      'input_ids': np.asarray(encoded['input_ids'], dtype=np.int32),
      'attention_mask': np.asarray(encoded['attention_mask'], dtype=np.int32),
  }


def token_lengths(tokenizer, texts: Sequence[str]) -> np.ndarray:
  """Tokens per text, special tokens included, before any truncation.

  Args:
    tokenizer: a transformers tokenizer (see `load_tokenizer`).
    texts: N texts.

  Returns:
    int32 [N]; a text is truncated by `tokenize(..., max_length)` iff its length > max_length.
  """
  if len(texts) == 0:  # pylint: disable=g-explicit-length-test
    return np.zeros((0,), np.int32)
  encoded = tokenizer(
      list(texts),
      truncation=False,
      padding=False,
      return_attention_mask=False,
      return_token_type_ids=False,
      verbose=False,
  )
  return np.asarray([len(ids) for ids in encoded['input_ids']], np.int32)
