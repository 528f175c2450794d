"""A stand-in for a LARP audio export over the demo catalogue (tests and a LARP-less demo).

The user-representation system reads track audio vectors from a LARP export (``ids`` = Spotify
track uris, an ``audio`` array). Without a trained LARP, this writes an export in exactly that
format whose vectors are a fixed random non-linear map of each track's latent *audio* attributes
(harmonics, rhythm, tempo, brightness, noise, register, mode: what the synthesised audio is made
of; never its style, mood or artist labels directly) plus noise -- so nearby vectors mean
similar-sounding tracks, as in a trained audio tower. Its manifest says ``stand_in: true``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from data_pipelines.demo import latent_catalogue
from larp_jax import export as export_lib


def stand_in_audio(catalogue: latent_catalogue.Catalogue, dim: int = 256, seed: int = 0):
  """float32 [N, dim] audio vectors of the catalogue's tracks (see module docstring)."""
  a = catalogue.attrs
  parts = [
      a["harmonics"],
      a["rhythm"].astype(np.float32),
      a["tempo"][:, None],
      a["brightness"][:, None],
      a["noise_level"][:, None],
      a["register"][:, None].astype(np.float32),
      a["major"][:, None].astype(np.float32),
  ]
  raw = np.concatenate([np.asarray(p, np.float64) for p in parts], axis=1)
  raw = (raw - raw.mean(0)) / (raw.std(0) + 1e-6)
  rng = np.random.default_rng([seed, 77])
  hidden = np.tanh(raw @ rng.normal(size=(raw.shape[1], dim)) / np.sqrt(raw.shape[1]))
  noisy = hidden + 0.1 * rng.normal(size=hidden.shape)
  return noisy.astype(np.float32)


def write_audio_stand_in(
    path: str, catalogue: latent_catalogue.Catalogue, *, dim: int = 256, seed: int = 0
) -> dict[str, Any]:
  """Writes ``path`` (.npz: ids = track uris, 'audio' [N, dim]) + manifest; returns the manifest."""
  vectors = stand_in_audio(catalogue, dim, seed)
  uris = [catalogue.track_uri(i) for i in range(catalogue.num_tracks)]
  bid = export_lib.batch_id("audio-stand-in", arrays={"audio": vectors})
  return export_lib.export_embeddings(
      path,
      uris,
      {"audio": vectors},
      checkpoint_path=path,
      config={"stand_in": True, "dim": dim, "seed": seed},
      extra={"stand_in": True, "batch_id": bid, "upstream": {}},
  )
