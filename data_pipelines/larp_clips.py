"""The clips of a LARP dataset build, decoded once and stored once, and the disk a build needs.

`ClipStore.decode` decodes one clip per track, at the model's rate, into scratch chunks of
`config.scratch_chunk_clips` rows (disk-backed int16 or float32 [rows, clip_samples] .npy files)
under the build's scratch directory. While the TFDS builder writes the track records, `pop` hands
out each clip and deletes a chunk as soon as its last kept clip has been handed out. So a clip lives
in one place at a time (its chunk, then its record): the build needs the dataset's size plus one
chunk, not two copies of every clip (`storage_estimate`).

Used by `data_pipelines.playlist_audio.PlaylistAudioBuilder`; the config is its LarpDataConfig
(fields sample_rate, clip_samples, edge_seconds, crop, audio_dtype, pad_short_audio, seed,
num_workers, scratch_chunk_clips, tokenizer_dir, max_text_length, max_playlist_length).
"""

from __future__ import annotations

import concurrent.futures
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tqdm

from data_pipelines import audio as audio_lib

NUM_RECORD_FILES = 7  # array_record files of a build (tracks x 3, pairs, playlists x 3)


def _storage_dtype(config: Any) -> type:
  return np.int16 if config.audio_dtype == 'int16' else np.float32


def decode_clip(
    uri: str, path: pathlib.Path | str, config: Any
) -> tuple[np.ndarray | None, tuple[str, str] | None]:
  """Decodes one track's clip as it is stored (`ClipStore.decode` and the Beam route call it).

  Args:
    uri: the track (seeds its crop: `audio.track_rng(config.seed, uri)`).
    path: its audio file.
    config: the LarpDataConfig (sample_rate, clip_samples, edge_seconds, crop, pad_short_audio,
      audio_dtype).

  Returns:
    (clip, outcome): clip int16 (x * 32767) or float32 [clip_samples], None when unusable;
    outcome None, or (reason, message naming the file) with reason 'corrupt_audio',
    'short_audio' (short or truncated, clip None) or 'padded_short_audio' (clip padded).
  """
  try:
    clip, padded = audio_lib.load_clip_checked(
        path,
        sample_rate=config.sample_rate,
        clip_samples=config.clip_samples,
        edge_seconds=config.edge_seconds,
        crop=config.crop,
        rng=audio_lib.track_rng(config.seed, uri),
        pad_short=config.pad_short_audio,
    )
  except audio_lib.ShortAudioError as e:
    return None, ('short_audio', str(e))
  except audio_lib.AudioDecodeError as e:
    return None, ('corrupt_audio', str(e))
  except Exception as e:  # pylint: disable=broad-except  Never stop a build for one file.
    return None, ('corrupt_audio', f'cannot decode audio file {str(path)!r}: {e!r}')
  dtype = _storage_dtype(config)
  stored = audio_lib.to_int16(clip) if dtype == np.int16 else np.asarray(clip, np.float32)
  return stored, (('padded_short_audio', padded) if padded else None)


class ClipStore:
  """Scratch clips of one build (see the module docstring)."""

  def __init__(self, scratch_dir: pathlib.Path, config: Any):
    self.scratch_dir = pathlib.Path(scratch_dir)
    self.config = config
    self.rows: dict[str, int] = {}
    self._open: dict[int, np.ndarray] = {}
    self._last_row: dict[int, int] = {}

  def _path(self, chunk: int) -> pathlib.Path:
    return self.scratch_dir / f'clips_{chunk:06d}.npy'

  def decode(self, uris: Sequence[str], files: Mapping[str, pathlib.Path], report: Any) -> set[str]:
    """Decodes the clip of every uri (file `files[uri]`) into the chunks.

    Args:
      uris: tracks in the order their records will be written.
      files: uri -> audio file.
      report: a SkipReport; gets 'corrupt_audio', 'short_audio' (short or truncated file, not
        padded) and 'padded_short_audio' entries naming the file.

    Returns:
      The uris without a usable clip (corrupt, short or truncated and not padded).
    """
    config = self.config
    dtype = _storage_dtype(config)
    per_chunk = config.scratch_chunk_clips
    self.rows = {uri: i for i, uri in enumerate(uris)}
    bad = set()
    for chunk, start in enumerate(range(0, max(len(uris), 1), per_chunk)):
      part = list(uris[start : start + per_chunk])
      clips = np.lib.format.open_memmap(
          self._path(chunk), mode='w+', dtype=dtype, shape=(max(len(part), 1), config.clip_samples)
      )

      def one(uri: str, clips=clips, start=start) -> tuple[str, str] | None:
        clip, outcome = decode_clip(uri, files[uri], config)
        if clip is not None:
          clips[self.rows[uri] - start] = clip
        return outcome

      with concurrent.futures.ThreadPoolExecutor(max(1, config.num_workers)) as pool:
        for uri, outcome in tqdm.tqdm(
            zip(part, pool.map(one, part)),
            total=len(part),
            desc=f'decoding audio ({start + len(part)}/{len(uris)})',
            unit=' clips',
            mininterval=2.0,
        ):
          if outcome is not None:
            report.add(*outcome)
            if outcome[0] != 'padded_short_audio':
              bad.add(uri)
      clips.flush()
      del clips
    return bad

  def keep_only(self, uris: Sequence[str]) -> None:
    """Declares the clips whose records will be written, in order; deletes unused chunks."""
    per_chunk = self.config.scratch_chunk_clips
    self._last_row = {}
    for uri in uris:
      row = self.rows[uri]
      self._last_row[row // per_chunk] = max(self._last_row.get(row // per_chunk, -1), row)
    for path in self.scratch_dir.glob('clips_*.npy'):
      if int(path.stem.split('_')[1]) not in self._last_row:
        path.unlink()

  def pop(self, uri: str) -> np.ndarray:
    """The clip of `uri` (a copy); its chunk is deleted after the chunk's last kept clip."""
    per_chunk = self.config.scratch_chunk_clips
    row = self.rows[uri]
    chunk = row // per_chunk
    if chunk not in self._open:
      self._open[chunk] = np.load(self._path(chunk), mmap_mode='r')
    clip = np.array(self._open[chunk][row - chunk * per_chunk])
    if row == self._last_row[chunk]:
      del self._open[chunk]
      self._path(chunk).unlink()
    return clip


def storage_estimate(
    config: Any, num_tracks: int, num_playlists: int, num_pairs: int
) -> dict[str, int]:
  """Bytes a build of this storage format needs: records are uncompressed numpy payloads plus
  about 64 bytes of framing each, and each of the 7 array_record files grows in 64 KiB chunks plus
  a 64 KiB footer (96 KiB on average); tests/test_mpd_build.py checks it against a build.

  Args:
    config: the build settings (LarpDataConfig: clip length, audio dtype, text/playlist widths).
    num_tracks: clips stored (train + valid + test tracks).
    num_playlists: playlists over all splits.
    num_pairs: TTC pairs.

  Returns:
    {'clip_bytes', 'record_bytes' (everything the dataset holds), 'scratch_bytes' (one chunk),
    'peak_bytes' (record_bytes + scratch_bytes, the free disk a build needs)}.
  """
  sample = 2 if config.audio_dtype == 'int16' else 4
  framing = 64
  clip_bytes = num_tracks * config.clip_samples * sample
  tokens = 2 * 4 * config.max_text_length if config.tokenizer_dir else 0
  track_bytes = clip_bytes + num_tracks * (tokens + 100 + framing)
  playlist_bytes = num_playlists * (3 * 4 * config.max_playlist_length + 40 + framing)
  pair_bytes = num_pairs * (12 + framing)
  record_bytes = track_bytes + playlist_bytes + pair_bytes + NUM_RECORD_FILES * 96 * 1024
  scratch = min(num_tracks, config.scratch_chunk_clips) * config.clip_samples * sample
  return {
      'clip_bytes': int(clip_bytes),
      'record_bytes': int(record_bytes),
      'scratch_bytes': int(scratch),
      'peak_bytes': int(record_bytes + scratch),
  }
