"""Generated data for the smoke job: arithmetic token sequences, x_t = (a + b*t) mod V.

Each example is a pure function of (seed, index), so the pipeline is exactly
reproducible and its grain iterator state (a position) is all a resume needs.
"""

from __future__ import annotations

import grain
import jax
import numpy as np


def make_example(index: int, *, seed: int, vocab_size: int, seq_len: int) -> dict[str, np.ndarray]:
  """One sequence ``tokens int32 [seq_len]`` from the example index."""
  rng = np.random.default_rng([seed, index])
  start, stride = rng.integers(0, vocab_size), rng.integers(1, 8)
  tokens = (start + stride * np.arange(seq_len)) % vocab_size
  return {"tokens": tokens.astype(np.int32)}


def toy_dataset(
    *,
    seed: int,
    num_examples: int,
    vocab_size: int,
    seq_len: int,
    batch_size: int,
    shuffle: bool = True,
    repeat: bool = True,
) -> grain.MapDataset:
  """Batches of ``{'tokens': int32 [batch_size, seq_len]}`` for this process.

  ``batch_size`` is the per-process batch; examples are split across processes
  by index (process i takes indices i, i + P, ...).
  """
  ds = grain.MapDataset.range(num_examples)
  ds = ds[jax.process_index() :: jax.process_count()]
  if shuffle:
    ds = ds.shuffle(seed=seed)
  if repeat:
    ds = ds.repeat()
  ds = ds.map(lambda i: make_example(int(i), seed=seed, vocab_size=vocab_size, seq_len=seq_len))
  return ds.batch(batch_size, drop_remainder=True)
