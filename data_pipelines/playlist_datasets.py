"""`build_dataset(kind, ...)`: builds (once) the MPD or LFM playlist-audio dataset of LARP.

The dispatch over the two builders lives here, apart from them: `mpd.LarpMpd` and `lfm.LarpLfm`
import only their shared base `data_pipelines.playlist_audio`, and this module imports all three.
`build_dataset` builds `data_dir/larp_<kind>/<config.name>/1.0.0/` once (re-running with the same
config is a no-op) and returns that directory, which `data_pipelines.grain_pipelines` reads; the
records and `larp_metadata.json` are described in `data_pipelines/playlist_audio.py`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
from collections.abc import Mapping, Sequence
from typing import Any

import tensorflow_datasets as tfds

from data_pipelines import build_once
from data_pipelines import lfm
from data_pipelines import mpd
from data_pipelines import playlist_audio

# kind -> builder class; the dataset goes to data_dir/larp_<kind>/<config.name>/<version>.
BUILDERS: dict[str, type[playlist_audio.PlaylistAudioBuilder]] = {
    'mpd': mpd.LarpMpd,
    'lfm': lfm.LarpLfm,
}


def _as_config(
    kind: str, config: playlist_audio.LarpDataConfig | Mapping[str, Any] | Any
) -> playlist_audio.LarpDataConfig:
  """A LarpDataConfig from one, or from a mapping / ConfigDict of its fields."""
  if isinstance(config, playlist_audio.LarpDataConfig):
    return config
  if hasattr(config, 'to_dict'):  # ml_collections.ConfigDict
    config = config.to_dict()
  if not isinstance(config, Mapping):
    raise ValueError(f'config must be a LarpDataConfig or a mapping, got {type(config).__name__}')
  fields = {f.name for f in dataclasses.fields(playlist_audio.LarpDataConfig)}
  unknown = sorted(set(config) - fields)
  if unknown:
    raise ValueError(f'unknown data config keys {unknown}; known: {sorted(fields)}')
  values = dict(config)
  values.setdefault('name', f'{kind}_default')
  for key in ('tags', 'supported_versions'):
    if key in values and values[key] is not None:
      values[key] = list(values[key])
  return playlist_audio.LarpDataConfig(**values)


def _same_settings(built: Mapping[str, Any], config: playlist_audio.LarpDataConfig) -> bool:
  """True when a build was made with `config`'s data fields; a field newer than the build counts
  as equal when it holds its default (older builds stay usable)."""
  current = json.loads(json.dumps(config.data_fields()))
  defaults = {
      f.name: json.loads(json.dumps(f.default))
      for f in dataclasses.fields(playlist_audio.LarpDataConfig)
      if f.default is not dataclasses.MISSING
  }
  return all(
      built[k] == v if k in built else k in defaults and defaults[k] == v
      for k, v in current.items()
  ) and set(built) <= set(current)


def build_dataset(
    kind: str,
    manual_dir: os.PathLike | str,
    data_dir: os.PathLike | str,
    config: playlist_audio.LarpDataConfig | Mapping[str, Any] | Any,
    *,
    overwrite: bool = False,
    reuse_only: bool = False,
    wait_s: float = 0.0,
    beam_runner: Any = None,
    beam_options: Sequence[str] | None = None,
) -> str:
  """Builds (or reuses) the array_record dataset and returns its directory.

  Args:
    kind: 'mpd' or 'lfm' (a key of BUILDERS).
    manual_dir: raw files (see the module docstrings of mpd.py / lfm.py).
    data_dir: TFDS data root; the dataset goes to data_dir/larp_<kind>/<config.name>/<version>.
    config: playlist_audio.LarpDataConfig, or a mapping / ml_collections.ConfigDict of its fields.
    overwrite: rebuild even if a dataset with that name exists.
    reuse_only: never build (hosts other than the one that builds): wait up to `wait_s` seconds
      for the build's completion marker (its dataset_info.json, which appears with the whole
      directory), then an error when no build with these settings exists.
    wait_s: see reuse_only (0: do not wait).
    beam_runner / beam_options: build under Apache Beam (`data_pipelines.playlist_beam`) with
      this runner (a name such as 'DirectRunner' or a PipelineRunner) and these pipeline option
      strings (e.g. ['--direct_num_workers=2']); both None: the in-process build. Same records.

  Returns:
    The dataset directory (pass it to grain_pipelines); its records are laid out as in the
    `data_pipelines.playlist_audio` docstring (e.g. tracks_* audio int16 or float32
    [clip_samples], playlists_* playlist_tracks int32 [max_playlist_length]).

  Raises:
    ValueError: unknown kind or config key, or an existing build of the same name was made with
      different settings (and overwrite is False).
  """
  if kind not in BUILDERS:
    raise ValueError(f'kind must be one of {sorted(BUILDERS)}, got {kind!r}')
  config = _as_config(kind, config)
  builder = BUILDERS[kind](config=config, data_dir=str(data_dir), file_format='array_record')
  dataset_dir = pathlib.Path(builder.data_dir)
  if reuse_only and wait_s > 0:
    build_once.wait_for(
        dataset_dir / 'dataset_info.json', wait_s, what=f'the {kind} dataset {config.name!r}'
    )
  if (dataset_dir / 'dataset_info.json').is_file():
    built = playlist_audio.load_metadata(dataset_dir)
    if _same_settings(built.get('config', {}), config) and not overwrite:
      return str(dataset_dir)
    if not overwrite:
      raise ValueError(
          f'{str(dataset_dir)!r} was built with different settings; choose another config name '
          'or pass overwrite=True'
      )
    shutil.rmtree(dataset_dir)
    builder = BUILDERS[kind](config=config, data_dir=str(data_dir), file_format='array_record')
  if reuse_only:
    raise ValueError(
        f'{str(dataset_dir)!r} holds no finished build (the building process failed or has not '
        'run); see its log'
    )
  beam = {}
  if beam_runner is not None or beam_options is not None:
    from apache_beam.options import pipeline_options  # pylint: disable=g-import-not-at-top

    options = pipeline_options.PipelineOptions(list(beam_options or ()))
    beam = dict(beam_runner=beam_runner, beam_options=options)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir), **beam),
      file_format='array_record',
  )
  return str(dataset_dir)
