"""grain input pipelines for the three LARP stages and numpy loaders for evaluation.

All training pipelines read a dataset directory built by
`data_pipelines.playlist_datasets.build_dataset` and return a `grain.MapDataset` of batches (fixed
shapes, `drop_remainder=True`):

  source -> trim to a multiple of process_count -> per-host slice [process_index::process_count]
         -> shuffle(seed) -> map (decode; random_map for TPC) -> batch(global_batch_size //
            process_count) -> repeat(num_epochs)

Every host gets the same number of batches per epoch, and hosts read disjoint records. `repeat`
reseeds the shuffle each epoch. With `num_epochs=1`, `len(ds)` is the number of steps per epoch.
`make_iterator(ds)` gives a grain `DatasetIterator` whose `get_state()` / `set_state()` the trainer
checkpoints (resuming yields exactly the batches that would have come next).

Batch layouts (b = per-host batch, S = clip samples, L = max_text_length, J = num_truncate):
  wtc_dataset:  {'audio' float32 [b, S], 'input_ids' int32 [b, L], 'attention_mask' int32 [b, L],
                 'track_index' int32 [b]}   (training tracks)
  ttc_dataset:  {'a': track dict as above, 'b': track dict, 'playlist_index' int32 [b]}
  tpc_dataset:  ttc_dataset batch + 'playlist': {'track_indices' int32 [b, J] (training track
                 indices, pad id = num_train_tracks), 'mask' bool [b, J]}: the pair's playlist,
                 minus track a (the paper's J = p_k \\ s_i), randomly permuted, truncated to J.
Audio stored as int16 is returned as float32 x / 32767.
"""

from __future__ import annotations

import os
import pathlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import grain
import numpy as np
import tensorflow_datasets as tfds

from data_pipelines import audio as audio_lib
from data_pipelines import playlist_audio
from data_pipelines import text as text_lib

_TRACK_KEYS = ('audio', 'input_ids', 'attention_mask', 'track_index')


def dataset_metadata(dataset_dir: os.PathLike | str) -> dict[str, Any]:
  """The dataset's `larp_metadata.json` (counts, pad ids, uris per split, skip report)."""
  return playlist_audio.load_metadata(dataset_dir)


def open_split(dataset_dir: os.PathLike | str, split: str):
  """Random-access data source (tfds ArrayRecordDataSource) of one split of a built dataset.

  Raises:
    ValueError: unknown split name or not a built dataset directory.
  """
  if split not in playlist_audio.SPLIT_NAMES:
    raise ValueError(f'unknown split {split!r}; splits: {playlist_audio.SPLIT_NAMES}')
  playlist_audio.load_metadata(dataset_dir)
  return tfds.builder_from_directory(str(dataset_dir)).as_data_source(split=split)


def host_shard(
    process_index: int | None = None, process_count: int | None = None
) -> tuple[int, int]:
  """(process_index, process_count), from JAX unless given."""
  if process_index is None or process_count is None:
    import jax  # pylint: disable=g-import-not-at-top

    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
  if not 0 <= process_index < process_count:
    raise ValueError(f'process_index {process_index} not in [0, {process_count})')
  return process_index, process_count


def _per_host_batch(global_batch_size: int, process_count: int) -> int:
  if global_batch_size < 1 or global_batch_size % process_count:
    raise ValueError(
        f'global_batch_size {global_batch_size} must be a positive multiple of '
        f'process_count {process_count}'
    )
  return global_batch_size // process_count


class _TrackDecoder:
  """Turns a tracks_* record into float32 audio + fixed-length token ids (tokenizing if needed)."""

  def __init__(
      self,
      dataset_dir: os.PathLike | str,
      tokenizer_dir: os.PathLike | str | None,
      max_text_length: int | None,
  ):
    meta = playlist_audio.load_metadata(dataset_dir)
    self.max_text_length = max_text_length or meta['config']['max_text_length']
    self.stored_ids = meta['has_token_ids'] and (
        max_text_length is None or max_text_length == meta['config']['max_text_length']
    )
    self.tokenizer = None
    self.lock = threading.Lock()  # HF fast tokenizers are not safe to call from threads at once.
    if not self.stored_ids:
      if tokenizer_dir is None:
        raise ValueError(
            f'{str(dataset_dir)!r} stores no token ids of length '
            f'{self.max_text_length}; pass tokenizer_dir to tokenize captions'
        )
      self.tokenizer = text_lib.load_tokenizer(tokenizer_dir)

  def __call__(self, record: dict[str, Any]) -> dict[str, np.ndarray]:
    wave = record['audio']
    wave = audio_lib.from_int16(wave) if wave.dtype == np.int16 else wave.astype(np.float32)
    if self.stored_ids:
      ids, mask = record['input_ids'], record['attention_mask']
    else:
      caption = record['caption']
      caption = caption.decode('utf-8') if isinstance(caption, bytes) else str(caption)
      with self.lock:
        tokens = text_lib.tokenize(self.tokenizer, [caption], self.max_text_length)
      ids, mask = tokens['input_ids'][0], tokens['attention_mask'][0]
    return {
        'audio': wave,
        'input_ids': np.asarray(ids, np.int32),
        'attention_mask': np.asarray(mask, np.int32),
        'track_index': np.int32(record['track_index']),
    }


def _open_tracks(dataset_dir: os.PathLike | str, part: str):
  source = open_split(dataset_dir, f'tracks_{part}')
  n = len(source)
  for i in {0, n - 1}:
    if n and int(source[i]['track_index']) != i:
      raise ValueError(
          f'tracks_{part} of {str(dataset_dir)!r} is not stored in index order '
          f'(record {i} holds track {source[i]["track_index"]})'
      )
  return source


def _sharded(
    source,
    *,
    global_batch_size: int,
    seed: int,
    shuffle: bool,
    process_index: int | None,
    process_count: int | None,
) -> tuple[grain.MapDataset, int]:
  index, count = host_shard(process_index, process_count)
  batch = _per_host_batch(global_batch_size, count)
  ds = grain.MapDataset.source(source)
  usable = len(ds) - len(ds) % count
  ds = ds[:usable][index::count]
  if len(ds) < batch:
    raise ValueError(f'{len(ds)} records per host are fewer than one batch of {batch}')
  if shuffle:
    ds = ds.shuffle(seed=seed)
  return ds, batch


def _finish(ds: grain.MapDataset, batch: int, num_epochs: int | None) -> grain.MapDataset:
  return ds.batch(batch, drop_remainder=True).repeat(num_epochs)


def wtc_dataset(
    dataset_dir: os.PathLike | str,
    *,
    global_batch_size: int,
    seed: int = 0,
    num_epochs: int | None = None,
    shuffle: bool = True,
    tokenizer_dir: os.PathLike | str | None = None,
    max_text_length: int | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
) -> grain.MapDataset:
  """Stage 1 (WTC) batches of training tracks (layout in the module docstring).

  Args:
    dataset_dir: a built dataset directory.
    global_batch_size: batch over all hosts (must divide by process_count).
    seed: shuffle seed.
    num_epochs: None repeats forever.
    shuffle: shuffle records (reseeded each epoch).
    tokenizer_dir: needed only if the dataset stores no token ids (or max_text_length differs).
    max_text_length: token length; default: the length stored at build time.
    process_index / process_count: host shard; default jax.process_index() / process_count().
  """
  decode = _TrackDecoder(dataset_dir, tokenizer_dir, max_text_length)
  ds, batch = _sharded(
      _open_tracks(dataset_dir, 'train'),
      global_batch_size=global_batch_size,
      seed=seed,
      shuffle=shuffle,
      process_index=process_index,
      process_count=process_count,
  )
  return _finish(ds.map(decode), batch, num_epochs)


def _pair_mapper(dataset_dir, tokenizer_dir, max_text_length) -> Callable[[dict], dict]:
  decode = _TrackDecoder(dataset_dir, tokenizer_dir, max_text_length)
  tracks = _open_tracks(dataset_dir, 'train')

  def fetch(record: dict[str, Any]) -> dict[str, Any]:
    a, b = tracks.__getitems__([int(record['track_a']), int(record['track_b'])])
    return {'a': decode(a), 'b': decode(b), 'playlist_index': np.int32(record['playlist_index'])}

  return fetch


def ttc_dataset(
    dataset_dir: os.PathLike | str,
    *,
    global_batch_size: int,
    seed: int = 0,
    num_epochs: int | None = None,
    shuffle: bool = True,
    tokenizer_dir: os.PathLike | str | None = None,
    max_text_length: int | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
) -> grain.MapDataset:
  """Stage 2 (TTC) batches of co-occurring pairs; arguments as `wtc_dataset`."""
  ds, batch = _sharded(
      open_split(dataset_dir, 'pairs_train'),
      global_batch_size=global_batch_size,
      seed=seed,
      shuffle=shuffle,
      process_index=process_index,
      process_count=process_count,
  )
  return _finish(
      ds.map(_pair_mapper(dataset_dir, tokenizer_dir, max_text_length)), batch, num_epochs
  )


def load_train_playlists(dataset_dir: os.PathLike | str) -> dict[str, Any]:
  """Training playlists as arrays.

  Returns:
    {'tracks': int32 [P, W] train track indices padded with pad_id, 'length': int32 [P],
     'pid': int64 [P], 'pad_id': int (= num_train_tracks)}.
  """
  source = open_split(dataset_dir, 'playlists_train')
  records = source.__getitems__(list(range(len(source))))
  if any(int(r['playlist_index']) != i for i, r in enumerate(records)):
    raise ValueError(f'playlists_train of {str(dataset_dir)!r} is not stored in index order')
  return {
      'tracks': np.stack([r['playlist_tracks'] for r in records]).astype(np.int32),
      'length': np.asarray([r['length'] for r in records], np.int32),
      'pid': np.asarray([r['pid'] for r in records], np.int64),
      'pad_id': int(playlist_audio.load_metadata(dataset_dir)['pad_id']['train']),
  }


def tpc_dataset(
    dataset_dir: os.PathLike | str,
    *,
    global_batch_size: int,
    seed: int = 0,
    num_truncate: int = 10,
    exclude_anchor: bool = True,
    num_epochs: int | None = None,
    shuffle: bool = True,
    tokenizer_dir: os.PathLike | str | None = None,
    max_text_length: int | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
) -> grain.MapDataset:
  """Stage 3 (TPC) batches: TTC pairs plus their playlist's track indices (module docstring).

  Args:
    num_truncate: J, tracks kept from the permuted playlist (paper/official: 10).
    exclude_anchor: drop track a from the playlist (paper: J = p_k minus s_i; the official code
      keeps it).
    Other arguments as `wtc_dataset`.
  """
  if num_truncate < 1:
    raise ValueError(f'num_truncate must be >= 1, got {num_truncate}')
  playlists = load_train_playlists(dataset_dir)
  pad_id = playlists['pad_id']
  fetch = _pair_mapper(dataset_dir, tokenizer_dir, max_text_length)

  def add_playlist(record: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    out = fetch(record)
    row = int(record['playlist_index'])
    members = playlists['tracks'][row, : playlists['length'][row]]
    if exclude_anchor:
      members = members[members != int(record['track_a'])]
    chosen = members[rng.permutation(members.size)[:num_truncate]]
    indices = np.full((num_truncate,), pad_id, np.int32)
    indices[: chosen.size] = chosen
    out['playlist'] = {'track_indices': indices, 'mask': indices != pad_id}
    return out

  ds, batch = _sharded(
      open_split(dataset_dir, 'pairs_train'),
      global_batch_size=global_batch_size,
      seed=seed,
      shuffle=shuffle,
      process_index=process_index,
      process_count=process_count,
  )
  return _finish(ds.random_map(add_playlist, seed=seed + 1), batch, num_epochs)


def make_iterator(
    ds: grain.MapDataset, *, num_threads: int = 4, prefetch_buffer_size: int = 4
) -> grain.DatasetIterator:
  """A checkpointable iterator (`get_state()` / `set_state(state)`) reading with threads.

  prefetch_buffer_size counts batches (each may be large: b x S float32 audio).
  """
  options = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch_buffer_size)
  return iter(ds.to_iter_dataset(options))


# ----------------------------------------------------------------------------------- evaluation


def _check_eval_part(split: str) -> str:
  if split not in ('valid', 'test', 'train'):
    raise ValueError(f"split must be 'valid', 'test' or 'train', got {split!r}")
  return split


def eval_track_batches(
    dataset_dir: os.PathLike | str,
    split: str,
    batch_size: int,
    *,
    tokenizer_dir: os.PathLike | str | None = None,
    max_text_length: int | None = None,
) -> Iterator[dict[str, np.ndarray]]:
  """All tracks of a split in index order, in fixed-size batches (the last one padded).

  Yields:
    {'audio' float32 [B, S], 'input_ids' int32 [B, L], 'attention_mask' int32 [B, L],
     'track_index' int32 [B] (-1 on padding rows), 'valid' bool [B]}.
  """
  part = _check_eval_part(split)
  if batch_size < 1:
    raise ValueError(f'batch_size must be positive, got {batch_size}')
  decode = _TrackDecoder(dataset_dir, tokenizer_dir, max_text_length)
  source = _open_tracks(dataset_dir, part)
  for start in range(0, len(source), batch_size):
    rows = [
        decode(r)
        for r in source.__getitems__(list(range(start, min(start + batch_size, len(source)))))
    ]
    batch = {k: np.stack([r[k] for r in rows]) for k in _TRACK_KEYS}
    batch['valid'] = np.ones((len(rows),), bool)
    missing = batch_size - len(rows)
    if missing:
      for k, v in batch.items():
        fill = -1 if k == 'track_index' else 0
        batch[k] = np.concatenate([v, np.full((missing,) + v.shape[1:], fill, v.dtype)])
    yield batch


def load_eval_tracks(
    dataset_dir: os.PathLike | str,
    split: str,
    *,
    tokenizer_dir: os.PathLike | str | None = None,
    max_text_length: int | None = None,
) -> dict[str, Any]:
  """All tracks of a split as arrays (index order). Mind the memory: N x S float32 audio.

  Returns:
    {'audio' float32 [N, S], 'input_ids' int32 [N, L], 'attention_mask' int32 [N, L],
     'track_index' int32 [N], 'track_uri' list[str] (N)}.
  """
  part = _check_eval_part(split)
  meta = playlist_audio.load_metadata(dataset_dir)
  n = len(meta['track_uris'][part])
  batch = next(
      eval_track_batches(
          dataset_dir, part, max(n, 1), tokenizer_dir=tokenizer_dir, max_text_length=max_text_length
      )
  )
  out = {k: batch[k][:n] for k in _TRACK_KEYS}
  out['track_uri'] = list(meta['track_uris'][part])
  return out


def load_eval_playlists(dataset_dir: os.PathLike | str, split: str) -> dict[str, Any]:
  """Validation or test playlists with their seed / ground-truth halves.

  Returns (P playlists, W = max_playlist_length, indices into the split's tracks, padded with
  pad_id = number of tracks in the split):
    {'pid' int64 [P], 'tracks' int32 [P, W], 'length' int32 [P], 'seeds' int32 [P, W],
     'num_seeds' int32 [P], 'ground_truth' int32 [P, W], 'num_ground_truth' int32 [P],
     'pad_id' int, 'num_tracks' int}.
  """
  if split not in ('valid', 'test'):
    raise ValueError(f"split must be 'valid' or 'test', got {split!r}")
  source = open_split(dataset_dir, f'playlists_{split}')
  records = source.__getitems__(list(range(len(source))))
  pad_id = int(playlist_audio.load_metadata(dataset_dir)['pad_id'][split])
  stack = lambda key, dtype: np.asarray([r[key] for r in records], dtype)
  return {
      'pid': stack('pid', np.int64),
      'tracks': stack('playlist_tracks', np.int32),
      'length': stack('length', np.int32),
      'seeds': stack('seeds', np.int32),
      'num_seeds': stack('num_seeds', np.int32),
      'ground_truth': stack('ground_truth', np.int32),
      'num_ground_truth': stack('num_ground_truth', np.int32),
      'pad_id': pad_id,
      'num_tracks': pad_id,
  }


def steps_per_epoch(
    ds_factory: Callable[..., grain.MapDataset], dataset_dir: os.PathLike | str, **kwargs
) -> int:
  """Batches per epoch per host of a pipeline.

  Example: `steps_per_epoch(wtc_dataset, dataset_dir, global_batch_size=50)`.
  """
  kwargs['num_epochs'] = 1
  return len(ds_factory(pathlib.Path(dataset_dir), **kwargs))
