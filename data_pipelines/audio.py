"""Decode, downmix, resample and crop audio files into fixed-length model clips.

LARP (Sec. 4.1) cuts each track into a 10 s clip "sampled randomly from the track (excluding the
first and last 20 seconds)" and resamples it to the audio tower's rate. `load_clip` does exactly
that for files long enough to have such a window; shorter files fall back as documented there.

A decoded window shorter than the clip (a file shorter than `clip_seconds`, or a truncated file
whose header promises more audio than it holds) raises `ShortAudioError`, naming the file and both
lengths, unless the caller opts into zero-padding (`pad_short=True`; `load_clip_checked` then also
returns the reason, so builders can report padded files).

Decoding goes through soundfile (libsndfile 1.2: wav, flac, ogg/vorbis, opus, mp3). If soundfile
cannot open a file and `audioread` is installed, audioread is tried as a fallback. Every failure
is raised as `AudioDecodeError`, which names the file, so that dataset builders can count, report
and skip bad files instead of crashing half-way through a build.
"""

from __future__ import annotations

import os
import pathlib
import zlib

import numpy as np
import soundfile
import soxr

# Extensions searched (in this order) by `find_audio_file`.
AUDIO_EXTENSIONS: tuple[str, ...] = ('.wav', '.flac', '.ogg', '.opus', '.mp3')


class AudioDecodeError(RuntimeError):
  """An audio file could not be read or decoded; `path` names the file."""

  def __init__(self, path: os.PathLike | str, reason: str):
    self.path = str(path)
    self.reason = reason
    super().__init__(f'cannot decode audio file {self.path!r}: {reason}')


class ShortAudioError(AudioDecodeError):
  """The decoded audio is shorter than the clip (short or truncated file); `path` names the file.

  `str(error)` is the full message: 'short audio file ...' or 'truncated audio file ...'.
  """

  def __init__(self, path: os.PathLike | str, message: str):
    super().__init__(path, message)
    self.args = (message,)

  def __str__(self) -> str:
    return self.args[0]


def find_audio_file(audio_dir: os.PathLike | str, track_id: str) -> pathlib.Path | None:
  """Returns `audio_dir/<track_id>.<ext>` for the first existing extension, else None."""
  base = pathlib.Path(audio_dir)
  for ext in AUDIO_EXTENSIONS:
    path = base / f'{track_id}{ext}'
    if path.is_file():
      return path
  return None


def _to_mono(frames: np.ndarray) -> np.ndarray:
  """[n, channels] or [n] -> float32 [n] (channel mean)."""
  if frames.ndim == 2:
    frames = frames.mean(axis=1)
  return np.ascontiguousarray(frames, dtype=np.float32)


def _read_with_audioread(path: pathlib.Path) -> tuple[np.ndarray, int]:
  """Decodes a whole file with audioread (fallback path). Returns (float32 [n], sample_rate)."""
  try:
    import audioread  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise AudioDecodeError(path, 'soundfile cannot read it and audioread is not installed') from e
  try:
    with audioread.audio_open(str(path)) as f:
      channels, sample_rate = f.channels, f.samplerate
      pcm = b''.join(f)
  except Exception as e:  # audioread raises backend-specific exception types.
    raise AudioDecodeError(path, f'audioread failed: {e!r}') from e
  samples = np.frombuffer(pcm, dtype='<i2').astype(np.float32) / 32768.0
  if channels > 1:
    samples = samples[: len(samples) // channels * channels].reshape(-1, channels)
  return _to_mono(samples), int(sample_rate)


def audio_info(path: os.PathLike | str) -> tuple[int, int]:
  """Returns (num_frames, sample_rate) of a file without decoding it (soundfile header)."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise AudioDecodeError(path, 'file does not exist')
  try:
    info = soundfile.info(str(path))
  except Exception as e:  # soundfile raises LibsndfileError/RuntimeError/TypeError.
    raise AudioDecodeError(path, f'soundfile cannot read the header: {e}') from e
  return int(info.frames), int(info.samplerate)


def read_audio(
    path: os.PathLike | str, *, start_frame: int = 0, num_frames: int = -1
) -> tuple[np.ndarray, int]:
  """Decodes (part of) an audio file to mono float32 in [-1, 1].

  Args:
    path: audio file.
    start_frame: first frame to read, at the file's own sample rate.
    num_frames: number of frames to read; -1 reads to the end.

  Returns:
    (wave float32 [n], sample_rate of the file).

  Raises:
    AudioDecodeError: the file is missing, unreadable, empty, or decodes to non-finite values.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise AudioDecodeError(path, 'file does not exist')
  try:
    frames, sample_rate = soundfile.read(
        str(path), start=start_frame, frames=num_frames, dtype='float32', always_2d=True
    )
    wave = _to_mono(frames)
  except Exception as soundfile_error:  # Unsupported container/codec: try the fallback decoder.
    try:
      wave, sample_rate = _read_with_audioread(path)
    except AudioDecodeError as e:
      raise AudioDecodeError(path, f'{soundfile_error}; {e.reason}') from soundfile_error
    stop = None if num_frames < 0 else start_frame + num_frames
    wave = wave[start_frame:stop]
  if wave.size == 0:
    raise AudioDecodeError(path, 'no audio samples decoded')
  if not np.all(np.isfinite(wave)):
    raise AudioDecodeError(path, 'decoded samples are not finite')
  return wave, int(sample_rate)


def resample(wave: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
  """Resamples float32 [n] from orig_rate to target_rate with soxr (high quality)."""
  if orig_rate <= 0 or target_rate <= 0:
    raise ValueError(f'sample rates must be positive, got {orig_rate} -> {target_rate}')
  if orig_rate == target_rate:
    return wave.astype(np.float32, copy=False)
  return soxr.resample(wave, orig_rate, target_rate, quality='HQ').astype(np.float32, copy=False)


def fix_length(wave: np.ndarray, num_samples: int) -> np.ndarray:
  """Crops the tail or zero-pads at the end to exactly num_samples. float32 [num_samples]."""
  if wave.shape[0] >= num_samples:
    return wave[:num_samples]
  return np.pad(wave, (0, num_samples - wave.shape[0]))


def choose_clip_start(
    duration_seconds: float,
    clip_seconds: float,
    *,
    edge_seconds: float = 20.0,
    crop: str = 'random',
    rng: np.random.Generator | None = None,
) -> float:
  """Start time (seconds) of the clip window inside a file.

  * The file has room for the clip between its first and last `edge_seconds` (LARP's rule):
    `crop='random'` draws the start uniformly in [edge, duration - edge - clip];
    `crop='center'` takes the middle of the file.
  * Fallback for short files (duration < clip + 2 * edge): the centred clip (start
    (duration - clip) / 2), or start 0 when the file is shorter than the clip (`load_clip` then
    raises ShortAudioError unless pad_short).
  """
  if crop not in ('random', 'center'):
    raise ValueError(f"crop must be 'random' or 'center', got {crop!r}")
  slack = duration_seconds - clip_seconds
  if slack <= 0.0:
    return 0.0
  if crop == 'random' and duration_seconds >= clip_seconds + 2.0 * edge_seconds:
    if rng is None:
      raise ValueError("crop='random' needs an rng")
    return float(rng.uniform(edge_seconds, duration_seconds - edge_seconds - clip_seconds))
  return slack / 2.0


def track_rng(seed: int, key: str) -> np.random.Generator:
  """A generator that depends only on (seed, key), e.g. a track uri: stable across runs/workers."""
  return np.random.default_rng([int(seed), zlib.crc32(key.encode('utf-8'))])


def _read_window(path: pathlib.Path, start_frame: int, num_frames: int) -> tuple[np.ndarray, int]:
  """Like `read_audio` but an empty window is returned (a truncated file), not raised."""
  try:
    return read_audio(path, start_frame=start_frame, num_frames=num_frames)
  except AudioDecodeError as e:
    if e.reason != 'no audio samples decoded':
      raise
    return np.zeros((0,), np.float32), audio_info(path)[1]


def load_clip_checked(
    path: os.PathLike | str,
    *,
    sample_rate: int,
    clip_samples: int,
    edge_seconds: float = 20.0,
    crop: str = 'random',
    rng: np.random.Generator | None = None,
    pad_short: bool = False,
) -> tuple[np.ndarray, str | None]:
  """`load_clip` that also returns why a clip was zero-padded (None when it was not).

  Returns:
    (clip float32 [clip_samples] in [-1, 1], None or a message naming the file and the decoded
    length when the audio was shorter than the clip and `pad_short` padded it).

  Raises:
    ShortAudioError: the decoded audio is shorter than the clip and `pad_short` is False.
    AudioDecodeError: any other failure, naming the file.
  """
  if clip_samples <= 0:
    raise ValueError(f'clip_samples must be positive, got {clip_samples}')
  path = pathlib.Path(path)
  clip_seconds = clip_samples / sample_rate
  try:
    header_frames, file_rate = audio_info(path)
  except AudioDecodeError:
    # Header unreadable by soundfile (e.g. a codec it lacks): decode fully via the fallback.
    wave, file_rate = read_audio(path)
    header_frames = None
    start = choose_clip_start(
        wave.shape[0] / file_rate, clip_seconds, edge_seconds=edge_seconds, crop=crop, rng=rng
    )
    first = int(round(start * file_rate))
    wave = wave[first : first + int(np.ceil(clip_samples * file_rate / sample_rate)) + 1]
  else:
    if header_frames <= 0:
      raise AudioDecodeError(path, 'file has no frames')
    start = choose_clip_start(
        header_frames / file_rate, clip_seconds, edge_seconds=edge_seconds, crop=crop, rng=rng
    )
    first = int(round(start * file_rate))
    wanted = int(np.ceil(clip_samples * file_rate / sample_rate)) + 1
    wave, file_rate = _read_window(path, first, wanted)
  # Frames the clip needs at the file's rate (the resampler may lose one or two at the edge).
  needed = int(np.floor(clip_samples * file_rate / sample_rate))
  short = None
  if wave.shape[0] < needed:
    got = (first + wave.shape[0]) / file_rate
    if header_frames is not None and header_frames - first >= needed:
      short = (
          f'truncated audio file {str(path)!r}: the header promises '
          f'{header_frames / file_rate:.2f} s but decoding stops at {got:.2f} s '
          f'(clip needs {clip_seconds:.2f} s from {first / file_rate:.2f} s)'
      )
    else:
      short = (
          f'short audio file {str(path)!r}: {wave.shape[0] / file_rate:.2f} s decoded, '
          f'the clip needs {clip_seconds:.2f} s'
      )
    if not pad_short:
      raise ShortAudioError(path, short)
  if wave.shape[0] == 0:
    return np.zeros((clip_samples,), np.float32), short
  return fix_length(resample(wave, file_rate, sample_rate), clip_samples), short


def load_clip(
    path: os.PathLike | str,
    *,
    sample_rate: int,
    clip_samples: int,
    edge_seconds: float = 20.0,
    crop: str = 'random',
    rng: np.random.Generator | None = None,
    pad_short: bool = False,
) -> np.ndarray:
  """Decodes one clip of a file: window choice (`choose_clip_start`), mono, resample, crop.

  Only the chosen window (plus a small margin for the resampler) is decoded, so long files are
  cheap.

  Args:
    path: audio file (any format soundfile or audioread can read).
    sample_rate: model sample rate (e.g. 48000 for HTS-AT).
    clip_samples: clip length in samples at `sample_rate`.
    edge_seconds: seconds excluded at both ends when the file is long enough (paper: 20).
    crop: 'random' (paper) or 'center'.
    rng: generator for crop='random'; use `track_rng(seed, uri)` for per-track determinism.
    pad_short: zero-pad audio shorter than the clip instead of raising ShortAudioError.

  Returns:
    float32 [clip_samples] in [-1, 1].

  Raises:
    ShortAudioError: decoded audio shorter than the clip (and not pad_short), naming the file.
    AudioDecodeError: naming the file.
  """
  return load_clip_checked(
      path,
      sample_rate=sample_rate,
      clip_samples=clip_samples,
      edge_seconds=edge_seconds,
      crop=crop,
      rng=rng,
      pad_short=pad_short,
  )[0]


def to_int16(wave: np.ndarray) -> np.ndarray:
  """float32 [-1, 1] -> int16 (x * 32767, clipped and rounded)."""
  return np.round(np.clip(wave, -1.0, 1.0) * 32767.0).astype(np.int16)


def from_int16(wave: np.ndarray) -> np.ndarray:
  """int16 -> float32 (x / 32767), the inverse of `to_int16` up to rounding."""
  return wave.astype(np.float32) / 32767.0
