"""Audio synthesis of the demo catalogue: one clip per track from its latent attributes.

`synthesize_track` renders a clip (chords in the track's key and style register, voiced with its
harmonic profile, a bass line, rhythm-pattern percussion, a kick and a noise floor); `write_audio`
writes audio/<track_id>.wav (mono 16-bit PCM) for every track, optionally in worker processes.
Each track has its own generator `default_rng([seed, 1, track])`, so tracks can be rendered in any
order or in parallel with byte-identical results.
"""

from __future__ import annotations

import multiprocessing
import os
import pathlib
from collections.abc import Sequence

import numpy as np
import soundfile

from data_pipelines.demo import latent_catalogue


def synthesize_track(
    catalogue: latent_catalogue.Catalogue,
    track: int,
    *,
    sample_rate: int | None = None,
    clip_seconds: float | None = None,
) -> np.ndarray:
  """Renders one track's clip from its latent attributes. float32 [round(sr * seconds)].

  Chords (I-V-vi-IV major / i-VI-III-VII minor, one per bar) in the track's key and style register,
  voiced with its harmonic profile (wavetable, spectral tilt from brightness) and a plucked
  envelope per beat, a bass line, percussion on the rhythm pattern's 16th steps, a kick every two
  beats and a broadband noise floor. The beat is rounded to whole samples so every envelope is a
  tiled period (fast). Per-track generator: default_rng([seed, 1, track]).
  """
  config = catalogue.config
  sr = sample_rate or config.sample_rate
  seconds = clip_seconds or config.clip_seconds
  a = catalogue.attrs
  rng = np.random.default_rng([config.seed, 1, int(track)])
  num = int(round(sr * seconds))
  step_len = max(1, int(round(sr * 15.0 / float(a['tempo'][track]))))  # a 16th note, samples.
  beat_len, bar_len = 4 * step_len, 16 * step_len

  def tiled(period: np.ndarray) -> np.ndarray:
    return np.tile(period.astype(np.float32), num // period.size + 1)[:num]

  major = bool(a['major'][track])
  scale = (0, 2, 4, 5, 7, 9, 11) if major else (0, 2, 3, 5, 7, 8, 10)
  degrees = (0, 4, 5, 3) if major else (0, 5, 2, 6)
  root_midi = int(a['register'][track]) + int(a['key'][track])
  bar_index = np.repeat(np.arange(num // bar_len + 1) % len(degrees), bar_len)[:num]

  def scale_midi(step: int) -> int:
    octave, idx = divmod(step, 7)
    return root_midi + 12 * octave + scale[idx]

  brightness = float(a['brightness'][track])
  h = np.arange(1, latent_catalogue.NUM_HARMONICS + 1)
  amps = a['harmonics'][track].astype(np.float64) * np.exp(-(h - 1) * (1.0 - brightness) * 0.9)
  table_size = 2048
  phase_grid = np.arange(table_size) / table_size
  table = (amps[:, None] * np.sin(2 * np.pi * h[:, None] * phase_grid[None, :])).sum(0)
  table = (table / (np.abs(table).max() + 1e-9)).astype(np.float32)
  sine = np.sin(2 * np.pi * phase_grid).astype(np.float32)

  def render(wavetable: np.ndarray, midi_per_bar: Sequence[float]) -> np.ndarray:
    freq = 440.0 * 2.0 ** ((np.asarray(midi_per_bar, np.float64) - 69.0) / 12.0)
    step = (freq * table_size / sr)[bar_index]
    index = (np.cumsum(step) + rng.random() * table_size).astype(np.int64) % table_size
    return wavetable[index]

  wave = np.zeros(num, np.float32)
  for voice in range(3):
    wave += render(table, [scale_midi(d + 2 * voice) for d in degrees]) * (1.0 - 0.2 * voice)
  beat_pos = np.arange(beat_len) / beat_len
  wave *= tiled(np.exp(-beat_pos * (3.0 + 4.0 * (1.0 - brightness))))
  wave += 0.6 * render(sine, [scale_midi(d) - 12 for d in degrees]) * tiled(np.exp(-2.0 * beat_pos))

  noise = rng.standard_normal(2 * num + 1, dtype=np.float32)
  clicks = noise[1 : num + 1] - brightness * noise[:num]  # Brighter: more high frequencies.
  decay = np.exp(-np.arange(step_len) / (0.03 * sr))
  bar_env = (a['rhythm'][track][:, None] * decay[None, :]).reshape(-1)
  wave += 0.5 * clicks * tiled(bar_env)
  kick_t = np.arange(2 * beat_len) / sr
  kick = np.sin(2 * np.pi * (55.0 * kick_t + 6.0 * (1.0 - np.exp(-kick_t / 0.03))))
  wave += 0.9 * tiled(kick * np.exp(-kick_t / 0.12))
  floor = noise[num + 1 :]
  if brightness < 0.5:  # Darker styles get a smoothed (low-passed) noise floor.
    floor = 0.5 * (floor + np.concatenate([floor[1:], floor[:1]])) * 1.4
  wave += float(a['noise_level'][track]) * 4.0 * floor
  wave *= 0.9 / (np.abs(wave).max() + 1e-9)
  return wave.astype(np.float32)


def _write_audio_range(args: tuple[latent_catalogue.CatalogueConfig, str, int, int]) -> int:
  """Worker: rebuilds the catalogue (deterministic) and writes tracks [start, stop)."""
  config, audio_dir, start, stop = args
  catalogue = latent_catalogue.build_catalogue(config)
  return _write_audio(catalogue, pathlib.Path(audio_dir), range(start, stop))


def _write_audio(
    catalogue: latent_catalogue.Catalogue, audio_dir: pathlib.Path, tracks: Sequence[int]
) -> int:
  for i in tracks:
    soundfile.write(
        str(audio_dir / f'{catalogue.track_ids[i]}.wav'),
        synthesize_track(catalogue, i),
        catalogue.config.sample_rate,
        subtype='PCM_16',
        format='WAV',
    )
  return len(tracks)


def write_audio(
    catalogue: latent_catalogue.Catalogue, audio_dir: os.PathLike | str, *, workers: int = 1
) -> None:
  """Writes <audio_dir>/<track_id>.wav for every track (optionally in `workers` processes).

  Each file is mono 16-bit PCM at config.sample_rate, round(sample_rate * clip_seconds) frames
  (`synthesize_track` scaled to int16); the files do not depend on `workers`.
  """
  audio_dir = pathlib.Path(audio_dir)
  audio_dir.mkdir(parents=True, exist_ok=True)
  n = catalogue.num_tracks
  if workers <= 1:
    _write_audio(catalogue, audio_dir, range(n))
    return
  bounds = np.linspace(0, n, 4 * workers + 1).astype(int)
  jobs = [
      (catalogue.config, str(audio_dir), int(lo), int(hi))
      for lo, hi in zip(bounds[:-1], bounds[1:])
      if hi > lo
  ]
  with multiprocessing.get_context('spawn').Pool(workers) as pool:
    pool.map(_write_audio_range, jobs)
