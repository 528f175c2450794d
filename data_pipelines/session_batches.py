"""grain batch pipeline over the MOSTRA session arrays built by `data_pipelines/sessions.py`.

`session_batches(arrays, batch_size=...)` turns one split of `sessions.load_sessions(data_dir)`
(features float32 [S, N, F], mask bool [S, N], labels float32 [S, N, 4], cosine float32 [S, N],
track_ids int32 [S, N], user_ids int32 [S], session_ids int32 [S]) into fixed-shape batches: the
same arrays with [batch_size] in place of [S], plus `session_valid bool [batch_size]`.
"""

from __future__ import annotations

import grain
import numpy as np

from data_pipelines import sessions as sessions_lib


class _SessionRecords:
  """Random access to one session per index; index -1 is an all-padding session."""

  def __init__(self, arrays: dict[str, np.ndarray]):
    self._arrays = {n: arrays[n] for n in sessions_lib.ARRAY_NAMES}

  def __call__(self, index: int) -> dict[str, np.ndarray]:
    if index < 0:
      record = {n: np.zeros_like(a[0]) for n, a in self._arrays.items()}
      record['track_ids'] = np.full_like(self._arrays['track_ids'][0], -1)
      record['user_ids'] = np.int32(-1)
      record['session_ids'] = np.int32(-1)
      record['session_valid'] = np.False_
      return record
    record = {n: a[index] for n, a in self._arrays.items()}
    record['session_valid'] = np.True_
    return record


def session_batches(
    arrays: dict[str, np.ndarray],
    *,
    batch_size: int,
    seed: int = 0,
    shuffle: bool = True,
    num_epochs: int | None = 1,
    drop_remainder: bool = True,
    shard_index: int = 0,
    shard_count: int = 1,
) -> grain.MapDataset:
  """Fixed-shape batches of one split as a grain MapDataset (iterate with `iter(...)`).

  Each epoch is a fresh seeded permutation of the (host-local) sessions; batches never cross an
  epoch. `drop_remainder=True` drops each epoch's last partial batch; False pads it with empty
  sessions (mask all False, `session_valid` False) so every session is seen exactly once per
  epoch. `num_epochs=None` repeats forever. Hosts take disjoint, equal-sized slices
  (`shard_index::shard_count`). A batch is the dict of `sessions.ARRAY_NAMES` with a leading
  [batch_size] axis plus `session_valid bool [batch_size]`. Resume with the iterator's
  `get_state()` / `set_state(state)` (grain), e.g. through orbax's grain checkpoint handler.
  """
  if batch_size <= 0:
    raise ValueError(f'batch_size must be positive, got {batch_size}')
  if not 0 <= shard_index < shard_count:
    raise ValueError(f'shard_index {shard_index} not in [0, {shard_count})')
  num_local = len(arrays['user_ids']) // shard_count
  order = grain.MapDataset.range(len(arrays['user_ids']))[shard_index::shard_count][:num_local]
  if shuffle:
    order = order.shuffle(seed=seed)
  per_epoch = (
      num_local // batch_size if drop_remainder else -(-num_local // batch_size)
  ) * batch_size
  if per_epoch == 0:
    raise ValueError(f'{num_local} sessions per shard give no batch of {batch_size}')
  order = order.repeat(num_epochs)
  length = per_epoch * num_epochs if num_epochs is not None else per_epoch * (2**62 // per_epoch)

  def session_index(j: int) -> int:
    epoch, k = divmod(j, per_epoch)
    return -1 if k >= num_local else int(order[epoch * num_local + k])

  records = _SessionRecords(arrays)
  return (
      grain.MapDataset.range(length)
      .map(session_index)
      .map(records)
      .batch(batch_size, drop_remainder=True)
  )
