"""Export a trained LARP run's track embeddings (library function for launchers and notebooks)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from etils import epath

from data_pipelines import playlist_audio
from larp_jax import export as export_lib
from larp_jax.evaluation import continuation
from larp_jax.jobs import larp_setup


def export_run(
    config: Any, workdir: str, run: str = "stage3", split: str = "test", output: str | None = None
) -> dict[str, Any]:
  """Embeds every track of ``split`` with ``workdir/run/best`` and writes .npz + manifest.

  Returns:
    The manifest (ids, arrays 'audio'/'text'/'fused' float32 [N, 256], checkpoint, config hash,
    embedding_space_id).
  """
  best_path = epath.Path(workdir) / run / "best"
  if not best_path.exists():
    raise FileNotFoundError(
        f"No best weights for run {run!r} at {best_path}; train it first "
        "(python -m experiments.train_larp ...)."
    )
  dataset_dir = larp_setup.prepare_dataset(config, workdir)
  audio, text = larp_setup.encode_with_best(config, str(best_path.parent), dataset_dir, split)
  output = output or os.path.join(workdir, "export", f"{split}_{run}.npz")
  return write_track_export(
      output, dataset_dir, split, audio, text, str(best_path), config, {"run": run, "split": split}
  )


def write_track_export(
    output: str,
    dataset_dir: str,
    split: str,
    audio: np.ndarray,
    text: np.ndarray,
    checkpoint_path: str,
    config: Any,
    extra: dict[str, Any],
) -> dict[str, Any]:
  """Writes a split's track uris with audio, text and fused (Eq. 11) embeddings [N, 256].

  ``split`` is one split name, or a tuple of them: then ``audio`` / ``text`` are those splits'
  rows concatenated in that order (the whole catalogue for ``('train', 'valid', 'test')``).
  """
  parts = (split,) if isinstance(split, str) else tuple(split)
  all_uris = playlist_audio.load_metadata(dataset_dir)["track_uris"]
  uris = [u for part in parts for u in all_uris[part]]
  if len(uris) != len(audio) or len(uris) != len(text):
    raise ValueError(
        f"splits {parts} hold {len(uris)} tracks but audio/text have {len(audio)}/{len(text)} rows."
    )
  return export_lib.export_embeddings(
      output,
      uris,
      {
          "audio": audio,
          "text": text,
          "fused": np.asarray(continuation.track_embeddings(audio, text)),
      },
      checkpoint_path=checkpoint_path,
      config=config,
      extra=extra,
  )
