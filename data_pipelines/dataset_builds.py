"""The builds `experiments/build_dataset.py` runs: the route a config names, built once.

`config.data.builder` picks the route: 'inprocess' (the builders as the jobs call them) or
'beam' (`data_pipelines.playlist_beam` for LARP's MPD / LFM, `data_pipelines.mssd_sessions_beam`
for MSSD), with a Beam runner and pipeline options (DirectRunner by default; any runner by flag).
Both routes write the same data to the same place, so a job run later on the same workdir /
data_dir reuses it. On many hosts process 0 builds and the others wait for the build's completion
marker (`data_pipelines.build_once`), up to a timeout; rebuilding a finished build is a no-op.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from data_pipelines import build_once
from data_pipelines import mssd_sessions
from data_pipelines import playlist_audio
from data_pipelines import playlist_datasets

ROUTES = ('inprocess', 'beam')


def check_route(builder: str) -> None:
  """ValueError naming `config.data.builder` unless it is one of ROUTES."""
  if builder not in ROUTES:
    raise ValueError(f'config.data.builder={builder!r}: use one of {ROUTES}')


def build_larp(
    kind: str,
    manual_dir: str,
    data_dir: str,
    build: Mapping[str, Any],
    *,
    builder: str,
    beam_runner: Any = 'DirectRunner',
    beam_options: Sequence[str] = (),
    process_index: int = 0,
    timeout_s: float = 86_400.0,
) -> str:
  """LARP's MPD / LFM dataset (`playlist_datasets.build_dataset` arguments) by `builder`'s route;
  process 0 builds, the others wait for its dataset_info.json. Returns the dataset directory."""
  check_route(builder)
  beam = dict(beam_runner=beam_runner, beam_options=tuple(beam_options))
  if process_index == 0:
    return playlist_datasets.build_dataset(
        kind, manual_dir, data_dir, build, **(beam if builder == 'beam' else {})
    )
  return playlist_datasets.build_dataset(
      kind, manual_dir, data_dir, build, reuse_only=True, wait_s=timeout_s
  )


def mssd_settings(data: Any) -> dict[str, Any]:
  """`mssd_sessions.build` keyword arguments of a configs/mostra.py `config.data`."""
  return dict(
      max_set_size=int(data.max_set_size),
      context_types=tuple(data.context_types),
      split_fractions=tuple(float(f) for f in data.split_fractions),
      seed=int(data.split_seed),
  )


def _same_mssd_settings(metadata: Mapping[str, Any], settings: Mapping[str, Any]) -> bool:
  built = dict(
      max_set_size=metadata['max_set_size'],
      context_types=tuple(metadata['context_types']),
      split_fractions=tuple(metadata['split']['fractions']),
      seed=metadata['split']['seed'],
  )
  return built == dict(settings)


def build_mssd(
    manual_dir: str,
    out_dir: str,
    settings: Mapping[str, Any],
    *,
    builder: str,
    beam_runner: Any = 'DirectRunner',
    beam_options: Sequence[str] = (),
    process_index: int = 0,
    timeout_s: float = 86_400.0,
) -> dict[str, Any]:
  """The MSSD build (`mssd_settings`) of manual_dir into out_dir by `builder`'s route, once:
  a build whose metadata.json exists is reused (an error if made with other settings); process
  0 builds, the others wait for metadata.json. Returns the metadata."""
  check_route(builder)
  marker = os.path.join(out_dir, mssd_sessions.METADATA_FILE)

  def build() -> None:
    if os.path.exists(marker):
      return
    if builder == 'inprocess':
      mssd_sessions.build(manual_dir, out_dir, **settings)
    else:
      from data_pipelines import mssd_sessions_beam  # pylint: disable=g-import-not-at-top

      mssd_sessions_beam.build(
          manual_dir, out_dir, **settings, beam_runner=beam_runner, beam_options=beam_options
      )

  build_once.build_on_one_process(
      build, marker, process_index=process_index, timeout_s=timeout_s, what=f'MSSD {out_dir!r}'
  )
  metadata = mssd_sessions.load_metadata(out_dir)
  if not _same_mssd_settings(metadata, settings):
    raise ValueError(
        f'{out_dir!r} was built with other settings than {dict(settings)}; use another workdir '
        'or delete it'
    )
  return metadata


def report_mssd(metadata: Mapping[str, Any], out_dir: str, workdir: str, process_index: int) -> str:
  """Prints the MSSD build's counts (every skipped, imputed, merged or split item by rule) and
  writes them to workdir/skip_report.json (process 0); returns the printed text."""
  lines = [
      f'dataset: {out_dir}',
      f'objectives: {metadata["objectives"]} (unavailable: {metadata["unavailable_objectives"]})',
      f'sets: {metadata["sets"]}',
      'skip report:',
  ]
  lines += [f'  {k}: {v}' for k, v in metadata['counts'].items()] or ['  nothing skipped']
  if process_index == 0:
    os.makedirs(workdir, exist_ok=True)
    build_once.write_json_atomic(
        os.path.join(workdir, playlist_audio.SKIP_REPORT_FILE), metadata['counts']
    )
  text = '\n'.join(lines)
  print(text)
  return text
