"""Log-mel frontend vs torchlibrosa (as HTS-AT configures it) and librosa's Slaney filterbank."""

import dataclasses

import chex
import jax
import librosa
import numpy as np
import pytest
import torch
from torchlibrosa.stft import LogmelFilterBank, Spectrogram

from larp_jax.models import audio_frontend

HTSAT_48K = audio_frontend.LogMelConfig()  # 48 kHz, n_fft 1024, hop 480, 64 mels, 50-14000 Hz.
SMALL_16K = audio_frontend.LogMelConfig(
    sample_rate=16000, n_fft=512, hop_length=160, n_mels=32, fmin=50.0, fmax=8000.0
)


def _torchlibrosa_log_mel(waveform: np.ndarray, cfg: audio_frontend.LogMelConfig) -> np.ndarray:
  spectrogram = Spectrogram(
      n_fft=cfg.n_fft,
      hop_length=cfg.hop_length,
      win_length=cfg.n_fft,
      window='hann',
      center=True,
      pad_mode='reflect',
      freeze_parameters=True,
  )
  log_mel = LogmelFilterBank(
      sr=cfg.sample_rate,
      n_fft=cfg.n_fft,
      n_mels=cfg.n_mels,
      fmin=cfg.fmin,
      fmax=cfg.fmax,
      ref=1.0,
      amin=1e-10,
      top_db=None,
      freeze_parameters=True,
  )
  with torch.no_grad():
    return log_mel(spectrogram(torch.from_numpy(waveform)))[:, 0].numpy()


@pytest.mark.parametrize('stft', ['fft', 'matmul'])
@pytest.mark.parametrize('cfg,seconds', [(HTSAT_48K, 10.0), (SMALL_16K, 2.5)])
def test_log_mel_matches_torchlibrosa(cfg, seconds, stft):
  cfg = dataclasses.replace(cfg, stft=stft)
  rng = np.random.default_rng(0)
  waveform = rng.uniform(-1.0, 1.0, (2, int(seconds * cfg.sample_rate))).astype(np.float32)
  waveform[1] *= 1e-3  # a quiet clip: log-mel values far below 0 dB
  ours = np.asarray(jax.jit(audio_frontend.log_mel_spectrogram, static_argnums=1)(waveform, cfg))
  reference = _torchlibrosa_log_mel(waveform, cfg)
  assert ours.shape == reference.shape == (2, 1 + waveform.shape[1] // cfg.hop_length, cfg.n_mels)
  chex.assert_type(ours, np.float32)
  # Tolerance: 1e-4 relative to the dB range, and 1e-4 relative elementwise (+1e-4 dB absolute
  # for values near 0 dB, where a relative error is meaningless).
  assert np.abs(ours - reference).max() <= 1e-4 * np.abs(reference).max()
  np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('stft', ['fft', 'matmul'])
def test_power_spectrogram_matches_torchlibrosa_stft(stft):
  waveform = np.random.default_rng(1).normal(size=(1, 48000)).astype(np.float32)
  spectrogram = Spectrogram(
      n_fft=1024,
      hop_length=480,
      win_length=1024,
      window='hann',
      center=True,
      pad_mode='reflect',
      freeze_parameters=True,
  )
  with torch.no_grad():
    reference = spectrogram(torch.from_numpy(waveform))[:, 0].numpy()
  cfg = dataclasses.replace(HTSAT_48K, stft=stft)
  ours = np.asarray(audio_frontend.power_spectrogram(waveform, cfg))
  assert np.abs(ours - reference).max() <= 1e-5 * reference.max()


@pytest.mark.parametrize(
    'sr,n_fft,n_mels,fmin,fmax',
    [
        (48000, 1024, 64, 50.0, 14000.0),
        (16000, 512, 32, 50.0, 8000.0),
        (22050, 2048, 128, 0.0, 11025.0),
    ],
)
def test_slaney_filterbank_matches_librosa(sr, n_fft, n_mels, fmin, fmax):
  ours = audio_frontend.slaney_mel_filterbank(sr, n_fft, n_mels, fmin, fmax)
  reference = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax).T
  assert ours.shape == (n_fft // 2 + 1, n_mels)
  np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-7 * reference.max())


def test_stft_window_is_periodic_hann():
  np.testing.assert_allclose(
      audio_frontend.periodic_hann_window(1024, 1024),
      librosa.filters.get_window('hann', 1024, fftbins=True),
      atol=1e-12,
  )


def test_top_db_clips_each_example_below_its_peak():
  cfg = audio_frontend.LogMelConfig(
      sample_rate=16000, n_fft=512, hop_length=160, n_mels=32, fmax=8000.0, top_db=30.0
  )
  waveform = np.random.default_rng(2).normal(size=(2, 8000)).astype(np.float32)
  waveform[1, :4000] = 0.0  # silence would go to -100 dB without clipping
  out = np.asarray(audio_frontend.log_mel_spectrogram(waveform, cfg))
  peaks = out.max(axis=(1, 2))
  assert np.all(out.min(axis=(1, 2)) >= peaks - 30.0 - 1e-4)
  assert np.isclose(out[1].min(), peaks[1] - 30.0, atol=1e-4)


def test_bad_inputs_raise():
  with pytest.raises(ValueError, match='batch, samples'):
    audio_frontend.log_mel_spectrogram(np.zeros((16000,), np.float32), SMALL_16K)
  with pytest.raises(ValueError, match='pad_mode'):
    audio_frontend.LogMelConfig(pad_mode='edge')
  with pytest.raises(ValueError, match='fmax'):
    audio_frontend.LogMelConfig(sample_rate=16000, fmax=14000.0)
  with pytest.raises(ValueError, match='reflect padding'):
    audio_frontend.log_mel_spectrogram(np.zeros((1, 100), np.float32), SMALL_16K)
  with pytest.raises(ValueError, match='stft'):
    audio_frontend.LogMelConfig(stft='dct')


def test_auto_stft_is_fft_off_tpu():
  assert jax.default_backend() != 'tpu'
  assert audio_frontend.stft_method(HTSAT_48K) == 'fft'
  assert audio_frontend.stft_method(dataclasses.replace(HTSAT_48K, stft='matmul')) == 'matmul'
