"""Padded batched inference: the one helper every encoder, scorer and report runs a split with.

Every batch has the same leading size (the last one padded by repeating its final row, and the
padding dropped from the outputs), so a jitted function compiles once per shape. Host work on the
next batch overlaps the device work on the current one: outputs are fetched one batch late.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import jax
import numpy as np
import tqdm

Batch = Mapping[str, np.ndarray]


def pad_batches(arrays: Batch, batch_size: int) -> Iterator[tuple[dict[str, np.ndarray], int]]:
  """Fixed-size chunks of equally long arrays, and the number of real rows in each.

  Args:
    arrays: ``{name: array [N, ...]}``, all with the same ``N``.
    batch_size: rows per chunk (> 0).

  Yields:
    ``({name: array [batch_size, ...]}, num_real)``; padding rows repeat the chunk's last row
    (so padded inputs stay valid inputs: no empty masks, no NaNs).
  """
  if batch_size < 1:
    raise ValueError(f"batch_size must be positive, got {batch_size}")
  sizes = {name: len(value) for name, value in arrays.items()}
  if len(set(sizes.values())) > 1:
    raise ValueError(f"pad_batches: arrays differ in length: {sizes}")
  total = next(iter(sizes.values()), 0)
  for start in range(0, total, batch_size):
    chunk = {name: np.asarray(value[start : start + batch_size]) for name, value in arrays.items()}
    real = min(batch_size, total - start)
    if real < batch_size:
      chunk = {
          name: np.concatenate([v, np.repeat(v[-1:], batch_size - real, axis=0)])
          for name, v in chunk.items()
      }
    yield chunk, real


def _fetch(outputs: Any, real: int) -> Any:
  return jax.tree.map(lambda x: np.asarray(x)[:real], outputs)


def run_batches(
    fn: Callable[[dict[str, np.ndarray]], Any],
    batches: Iterable[tuple[dict[str, np.ndarray], int]],
    *,
    total: int | None = None,
    progress: bool = False,
    desc: str = "inference",
) -> Any:
  """Applies ``fn`` to padded batches and concatenates the real rows of its outputs.

  Args:
    fn: ``batch -> array [B, ...]`` or a pytree (dict) of such arrays; usually jitted.
    batches: ``(batch, num_real)`` pairs, e.g. from ``pad_batches``.
    total: number of real rows, for the progress bar.
    progress: show a tqdm bar.
    desc: the bar's label.

  Returns:
    ``fn``'s output structure with numpy arrays of ``sum(num_real)`` rows (``None`` when there
    was no batch).
  """
  pieces: list[Any] = []
  pending: tuple[Any, int] | None = None
  with tqdm.tqdm(total=total, unit="row", desc=desc, disable=not progress) as bar:
    for batch, real in batches:
      result = fn(batch)  # dispatched asynchronously; fetch the previous one meanwhile
      if pending is not None:
        pieces.append(_fetch(*pending))
        bar.update(pending[1])
      pending = (result, real)
    if pending is not None:
      pieces.append(_fetch(*pending))
      bar.update(pending[1])
  if not pieces:
    return None
  return jax.tree.map(lambda *xs: np.concatenate(xs), *pieces)


def batched_apply(
    fn: Callable[[dict[str, np.ndarray]], Any],
    arrays: Batch,
    batch_size: int,
    *,
    progress: bool = False,
    desc: str = "inference",
) -> Any:
  """``run_batches(fn, pad_batches(arrays, batch_size))``: ``fn`` over a whole split.

  Args:
    fn: ``{name: array [batch_size, ...]} -> array [batch_size, ...]`` (or a dict of them).
    arrays: ``{name: array [N, ...]}``.
    batch_size: fixed batch size.

  Returns:
    ``fn``'s outputs for all ``N`` rows, in order, as numpy arrays.
  """
  total = len(next(iter(arrays.values()))) if arrays else 0
  return run_batches(fn, pad_batches(arrays, batch_size), total=total, progress=progress, desc=desc)
