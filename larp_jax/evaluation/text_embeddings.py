"""Texts -> BERT sentence embeddings: tokenise (`data_pipelines.text`) + batched inference.

The encoder is `larp_jax.models.bert.make_encode_fn` (jitted, cached per config); the batching is
`larp_jax.evaluation.batched` (fixed-size batches, the last one padded by repeating its final row,
outputs fetched one batch late). Each batch is tokenised only when it is needed, so tokenising the
next batch overlaps the device work on the current one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from data_pipelines import text as text_lib
from larp_jax.evaluation import batched
from larp_jax.models import bert


def encode_texts(
    config: bert.BertConfig,
    params: bert.Params,
    tokenizer: Any,
    texts: Iterable[str],
    *,
    pooling: str = 'mean',
    normalize: bool = False,
    max_length: int = 128,
    batch_size: int = 64,
    progress: bool = True,
    return_num_truncated: bool = False,
) -> np.ndarray | tuple[np.ndarray, int]:
  """Encodes texts to float32 [N, H] embeddings, in input order.

  Every batch has the fixed shape [batch_size, max_length] (the last one is padded by repeating
  its final row, and the extra rows dropped), so the encoder compiles once. Texts longer than
  max_length tokens are truncated.

  Args:
    config: the BERT config of `params` (H = `config.hidden_size`).
    params: `bert.BertEncoder` parameters (e.g. from `bert_convert.load_pretrained`).
    tokenizer: the matching HF tokenizer (`data_pipelines.text.load_tokenizer`).
    texts: N strings.
    pooling: 'mean' (masked mean, sentence-transformers) or 'cls'.
    normalize: L2-normalise each embedding.
    max_length: tokens per text, in [2, config.max_position_embeddings].
    batch_size: texts per jitted batch (> 0).
    progress: show a progress bar.
    return_num_truncated: also return how many texts were longer than max_length tokens.

  Returns:
    float32 [N, H]; with `return_num_truncated`, also the number of truncated texts.

  Raises:
    ValueError: a text is not a string (the indices are named), batch_size < 1, max_length out
      of range, or an unknown pooling.
  """
  texts = list(texts)
  bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
  if bad:
    raise ValueError(f'texts must be strings; items at indices {bad[:20]} are not')
  if batch_size < 1:
    raise ValueError(f'batch_size must be positive, got {batch_size}')
  if not 2 <= max_length <= config.max_position_embeddings:
    raise ValueError(
        f'max_length must be in [2, {config.max_position_embeddings}], ' f'got {max_length}'
    )
  encode = bert.make_encode_fn(config, pooling=pooling, normalize=normalize)
  num_truncated = 0

  def token_batches() -> Iterator[tuple[dict[str, np.ndarray], int]]:
    nonlocal num_truncated
    for start in range(0, len(texts), batch_size):
      chunk = texts[start : start + batch_size]
      num_truncated += int(np.sum(text_lib.token_lengths(tokenizer, chunk) > max_length))
      yield from batched.pad_batches(text_lib.tokenize(tokenizer, chunk, max_length), batch_size)

  outputs = batched.run_batches(
      lambda batch: encode(params, batch['input_ids'], batch['attention_mask']),
      token_batches(),
      total=len(texts),
      progress=progress,
      desc='encoding',
  )
  embeddings = (
      np.zeros((0, config.hidden_size), np.float32)
      if outputs is None
      else outputs.astype(np.float32)
  )
  return (embeddings, num_truncated) if return_num_truncated else embeddings
