"""A dataset build runs once: one process builds, the others wait for its completion marker.

The marker is a file that appears only when the build is whole: a TFDS build's
`dataset_info.json` (TFDS writes the dataset into an `incomplete.*` directory and renames it when
done), an MSSD build's `metadata.json` (written last, by `write_json_atomic`). A half-written
build has no marker, so it is never read as complete; a finished build keeps it, so building
again is a no-op for the builders that check it (`playlist_datasets.build_dataset`,
`dataset_builds.build_mssd`).

Used by `data_pipelines.dataset_builds` (the `experiments/build_dataset.py` routes) and
`data_pipelines.playlist_datasets.build_dataset(reuse_only=True, wait_s=...)`.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar('T')


def write_json_atomic(path: os.PathLike | str, payload: Any, *, indent: int | None = 1) -> None:
  """Writes `json.dump(payload, indent=indent)` to a temporary file beside `path`, then renames
  it onto `path`: a reader sees the old file, or the whole new one, never a part."""
  path = os.fspath(path)
  fd, tmp = tempfile.mkstemp(
      prefix=os.path.basename(path) + '.', suffix='.tmp', dir=os.path.dirname(path) or '.'
  )
  try:
    with os.fdopen(fd, 'w') as f:
      json.dump(payload, f, indent=indent)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def wait_for(
    marker: os.PathLike | str, timeout_s: float, *, what: str, poll_s: float = 5.0
) -> None:
  """Returns once `marker` exists; polls after 0.05 s, then twice as long each time, at most
  every `poll_s` seconds.

  Raises:
    TimeoutError naming the marker, `what` and the timeout when it has not appeared after
    `timeout_s` seconds (the building process failed, is still running or never started).
  """
  marker = os.fspath(marker)
  deadline = time.monotonic() + max(float(timeout_s), 0.0)
  pause = 0.05
  while not os.path.exists(marker):
    left = deadline - time.monotonic()
    if left <= 0:
      raise TimeoutError(
          f'{what}: no completion marker {marker!r} after waiting {timeout_s:g} s. Process 0 '
          'builds it and writes the marker last; it failed, is still running or never started '
          '(see its log). Wait longer (--build_timeout_s) or build first.'
      )
    time.sleep(min(pause, poll_s, left))
    pause *= 2


def build_on_one_process(
    build: Callable[[], T],
    marker: os.PathLike | str,
    *,
    process_index: int,
    timeout_s: float,
    what: str,
    poll_s: float = 5.0,
) -> T | None:
  """Process 0 runs `build()` (which must write `marker` last, and be a no-op when the build is
  already complete) and returns its result; every other process waits for `marker` (`wait_for`)
  and returns None."""
  if process_index == 0:
    return build()
  wait_for(marker, timeout_s, what=what, poll_s=poll_s)
  return None
