"""The records of a LARP playlist-audio dataset: split names, keys and order (both build routes).

The splits and the union schema are described in `data_pipelines/playlist_audio.py`;
`split_records` turns the builder's plan into the records of a split (or of an index range of it,
one Beam shard), in index order: record i of a split is item i (`source[i]` once built).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

TRACK_SPLITS = ('tracks_train', 'tracks_valid', 'tracks_test')
SPLIT_NAMES = TRACK_SPLITS + ('pairs_train', 'playlists_train', 'playlists_valid', 'playlists_test')
_KEY_SPACE = 2**127  # Record keys spread over this range keep order and fill tfds's buckets.


def record_key(index: int, count: int) -> int:
  """The TFDS key of record `index` of `count`: increasing with the index (disable_shuffling
  writes records in key order)."""
  return index * (_KEY_SPACE // max(count, 1))


def split_records(
    plan: Mapping[str, Any],
    split_name: str,
    empty: Mapping[str, Any],
    audio_of: Callable[[str], np.ndarray],
    start: int = 0,
    stop: int | None = None,
) -> Iterator[tuple[int, dict[str, Any]]]:
  """(key, record) of records [start, stop) of one split, in index order (module docstring).

  Args:
    plan: `playlist_audio.PlaylistAudioBuilder.plan`.
    split_name: one of SPLIT_NAMES.
    empty: the union schema's empty record (`PlaylistAudioBuilder._empty_record`).
    audio_of: uri -> stored clip int16 or float32 [clip_samples] (track splits only).
    start, stop: record range (stop None = to the end).
  """
  if split_name in TRACK_SPLITS:
    part = plan[split_name.split('_')[1]]
    uris = part['uris']
    for i in range(start, len(uris) if stop is None else stop):
      uri = uris[i]
      record = dict(
          empty,
          track_index=i,
          track_uri=uri,
          caption=part['captions'][i],
          audio=audio_of(uri),
      )
      if part['tokens'] is not None:
        record['input_ids'] = part['tokens']['input_ids'][i]
        record['attention_mask'] = part['tokens']['attention_mask'][i]
      yield record_key(i, len(uris)), record
  elif split_name == 'pairs_train':
    pairs = plan['pairs']
    for i in range(start, len(pairs) if stop is None else stop):
      a, b, p = pairs[i].tolist()
      yield record_key(i, len(pairs)), dict(empty, track_a=a, track_b=b, playlist_index=p)
  else:
    part = plan[split_name.split('_')[1]]
    for i in range(start, len(part['pids']) if stop is None else stop):
      record = dict(
          empty,
          playlist_index=i,
          pid=part['pids'][i],
          length=int(part['lengths'][i]),
          playlist_tracks=part['ids'][i],
      )
      if 'seeds' in part:
        seeds, num_seeds = part['seeds']
        truth, num_truth = part['ground_truth']
        record.update(
            seeds=seeds[i],
            num_seeds=int(num_seeds[i]),
            ground_truth=truth[i],
            num_ground_truth=int(num_truth[i]),
        )
      yield record_key(i, len(part['pids'])), record


def num_records(plan: Mapping[str, Any], split_name: str) -> int:
  """Records of one split of a plan."""
  if split_name == 'pairs_train':
    return len(plan['pairs'])
  part = plan[split_name.split('_')[1]]
  return len(part['uris'] if split_name in TRACK_SPLITS else part['pids'])
