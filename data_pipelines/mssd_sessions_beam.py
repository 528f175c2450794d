"""The MSSD build (`data_pipelines.mssd_sessions.build`) as an Apache Beam pipeline.

Same inputs, same `out_dir` layout and bytes: `<split>/<log file>.array_record` (one shard per log
file and split), `tracks.npz`, `metadata.json` (written last, atomically: the completion marker).
Every log file is one task running `mssd_shards.shard_sets` -- the code the in-process build runs
file after file -- so the records, their order, the splits (a seeded hash of user or session id)
and the counts are the in-process build's; tests/test_beam_builds.py compares the files byte by
byte. Counts come back as Beam counters (namespace `NAMESPACE`, named as metadata['counts'] keys)
plus the driver's own (the track table's `tracks/*`, `imputed/*`).

Why plain Beam and not a TFDS builder: the MOSTRA job reads this layout and record format
(`mssd_sessions.iter_records`: `encode_record` bytes in `<split>/*.array_record`), not TFDS's
(tf.train.Example protos, dataset_info.json); a TFDS build would be a second copy to convert.

  driver      track_features/tf_*.csv -> `read_tracks` (3.7M tracks in MSSD) -> a pickle the
              workers load once (`_TracksDoFn.setup`); every log header checked up front (a
              missing column is the in-process error, naming the file, before any work).
  DISCOVERY   only with user_id + artist_id (not in MSSD): a user's flags depend on all the
              user's earlier sessions, across files. Log files -SessionArtists-> (user, (file,
              session index, artists)) + user_history.csv -ReadHistory-> (user, artists)
              -CoGroupByKey-> DiscoveryFlags (sessions in reading order) -> (file, (index, flags)).
  write       (file, its flags) -WriteLogShard-> the file's three split shards (temporary files
              renamed into place).
  driver      train mean / std: the train shards re-read in file order and added set by set
              (`mssd_shards.TrainStats`: float sums depend on the order, and this is the order the
              in-process build adds in); sets per split from the shards' record counts.

What a Beam build of MSSD needs at the scale issue 10 names (10⁸ log rows in 20 log files of
5·10⁶ rows; sessions of 10-20 tracks, ~15 candidates a set: ~6.7·10⁶ sets), from the storage
format and costs measured on this machine (`mssd_sessions.build` on 100k rows, 2 shared cores):
  * output: a set is 12 B + n·(4F + 4J + 4) B + its key (F = 29 features, J = 1 objective in
    MSSD): ~1.9 KB at n = 15, so ~12.5 GB (~10 GB train), in 60 shard files.
  * CPU: 7 µs a log row -> 700 s for 10⁸ rows in one process; one task per log file, so 20
    workers (more give nothing: cut the logs into more files) at ~35 s of parsing each.
  * shuffle: none without DISCOVERY (only file names and counters move). With it (user_id +
    artist_id, not in MSSD): ~190 B out per session (user id, 3 ints, 8 B an artist) and ~70 B of
    flags back: ~6.7·10⁶ x 260 B ~ 1.7 GB, and every log file is parsed twice.
  * per worker: the track table (3.7M tracks x (29 x 4 B + ~150 B of id and dict entry) ~ 1 GB)
    plus one session's rows (the file is streamed), as in-process.
  * driver (serial): the track table (3.7M rows, ~10 s at the same per-row cost) and the train
    statistics pass, 22 µs a train set: ~5.3·10⁶ sets -> ~2 min reading ~10 GB.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions
from array_record.python import array_record_module

from data_pipelines import mssd_sessions
from data_pipelines import mssd_shards
from data_pipelines import user_features_beam

NAMESPACE = 'mssd_sessions_beam'
STAGING = '.beam_staging'  # under out_dir; removed when the build is done


def _count(counts: mssd_shards.Counts) -> None:
  for name, value in counts.items():
    if value:
      Metrics.counter(NAMESPACE, name).inc(value)


class _TracksDoFn(beam.DoFn):
  """Loads the staged track table (`read_tracks`' dict) once per worker."""

  def __init__(self, tracks_path: str, settings: dict[str, Any]):
    self.tracks_path, self.settings = tracks_path, dict(settings)

  def setup(self):
    with open(self.tracks_path, 'rb') as f:
      self.tracks = pickle.load(f)

  def _sessions(self, path: str, counts: mssd_shards.Counts):
    return mssd_shards.iter_sessions(
        path,
        self.tracks,
        has_user=self.settings['has_user'],
        context_types=self.settings['context_types'],
        counts=counts,
    )


class SessionArtists(_TracksDoFn):
  """(file index, log path) -> (user, (file index, session index, artists int64 bytes)) per
  session; counts nothing (WriteLogShard counts the same rows)."""

  def process(self, element):
    file_index, path = element
    scratch = mssd_shards.Counts()
    for index, (_, user, rows) in enumerate(self._sessions(path, scratch)):
      track_rows, _ = mssd_shards.session_candidates(rows, scratch)
      artists = self.tracks['artist'][track_rows].astype(np.int64)
      yield user, (file_index, index, artists.tobytes())


class ReadHistory(_TracksDoFn):
  """manual_dir -> (user, artists tuple) of user_history.csv (`read_history`)."""

  def process(self, manual_dir):
    counts = mssd_shards.Counts()
    seen = mssd_sessions.read_history(manual_dir, self.tracks, counts)
    _count(counts)
    for user, artists in seen.items():
      yield user, tuple(sorted(artists))


def user_discovery_flags(element):
  """(user, {'sessions', 'history'}) -> (file index, (session index, DISCOVERY float32 bytes))
  per session, the sessions taken in reading order (files by name, sessions in file order)."""
  _, grouped = element
  known = set()
  for artists in grouped['history']:
    known.update(artists)
  for file_index, index, artists in sorted(grouped['sessions']):
    flags = mssd_shards.discovery_flags(np.frombuffer(artists, np.int64), known)
    yield file_index, (index, flags.tobytes())


class WriteLogShard(_TracksDoFn):
  """(file index, {'path': [log path], 'flags': [(session index, flags)]}) -> the file's three
  split shards in out_dir (written beside, then renamed); counters; yields the shard name."""

  def process(self, element):
    _, grouped = element
    (path,) = grouped['path']
    flags = {index: np.frombuffer(data, np.float32) for index, data in grouped['flags']}
    out_dir, name = self.settings['out_dir'], mssd_sessions.shard_name(path)
    counts = mssd_shards.Counts()
    finals, temps, writers = [], [], []
    for split in mssd_sessions.SPLITS:
      directory = os.path.join(out_dir, split)
      os.makedirs(directory, exist_ok=True)
      fd, tmp = tempfile.mkstemp(prefix=f'.{name}.', suffix='.tmp', dir=directory)
      os.close(fd)
      finals.append(os.path.join(directory, f'{name}.array_record'))
      temps.append(tmp)
      writers.append(array_record_module.ArrayRecordWriter(tmp, 'group_size:1'))
    s = self.settings
    for split, record, _ in mssd_shards.shard_sets(
        path,
        self.tracks,
        objectives=s['objectives'],
        has_user=s['has_user'],
        context_types=s['context_types'],
        split_fractions=s['split_fractions'],
        seed=s['seed'],
        max_set_size=s['max_set_size'],
        counts=counts,
        discovery=lambda index, user, artists: flags[index],
    ):
      writers[split].write(record)
    for writer, tmp, final in zip(writers, temps, finals):
      writer.close()
      os.replace(tmp, final)
    _count(counts)
    yield name


def _check_log_headers(log_paths: Sequence[str]) -> None:
  """The in-process build's header error (naming the file) for any log, before the pipeline."""
  for path in log_paths:
    with contextlib.closing(mssd_shards.csv_rows(path, mssd_shards.LOG_REQUIRED)) as rows:
      next(rows, None)


def _read_back(out_dir: str, log_paths: Sequence[str], num_features: int):
  """(sets per split, TrainStats) from the written shards, train sets added in reading order."""
  stats, sets = mssd_shards.TrainStats(num_features), [0, 0, 0]
  for path in log_paths:
    for k, split in enumerate(mssd_sessions.SPLITS):
      name = f'{mssd_sessions.shard_name(path)}.array_record'
      reader = array_record_module.ArrayRecordReader(os.path.join(out_dir, split, name))
      try:
        n = reader.num_records()
        sets[k] += n
        for lo in range(0, n if k == 0 else 0, 4096):
          for data in reader.read(list(range(lo, min(lo + 4096, n)))):
            stats.add(mssd_shards.decode_record(data)['features'])
      finally:
        reader.close()
  return sets, stats


def build(
    manual_dir: str,
    out_dir: str,
    *,
    max_set_size: int = 20,
    context_types: Sequence[str] = (),
    split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    beam_runner: Any = 'DirectRunner',
    beam_options: Sequence[str] = (),
) -> dict[str, Any]:
  """`mssd_sessions.build` under Beam (module docstring): same arguments, plus the runner (a
  name or PipelineRunner) and pipeline option strings. With a cluster runner, manual_dir and
  out_dir must be on a file system every worker mounts. Returns the metadata."""
  mssd_sessions.check_build_args(max_set_size, split_fractions)
  start = time.perf_counter()
  counts = mssd_shards.Counts()
  tracks = mssd_sessions.read_tracks(
      mssd_sessions.find_files(manual_dir, 'track_features', 'tf'), counts
  )
  log_paths, has_user = mssd_sessions.log_files(manual_dir, context_types)
  _check_log_headers(log_paths)
  objectives, unavailable = mssd_sessions.available_objectives(tracks, has_user)
  staging = os.path.join(out_dir, STAGING)
  os.makedirs(staging, exist_ok=True)
  tracks_path = os.path.join(staging, 'tracks.pkl')
  with open(tracks_path, 'wb') as f:
    pickle.dump(tracks, f, protocol=pickle.HIGHEST_PROTOCOL)
  settings = dict(
      out_dir=out_dir,
      objectives=tuple(objectives),
      has_user=has_user,
      context_types=tuple(context_types),
      split_fractions=tuple(split_fractions),
      seed=seed,
      max_set_size=max_set_size,
  )
  pipeline = beam.Pipeline(runner=beam_runner, options=PipelineOptions(list(beam_options)))
  files = pipeline | 'LogFiles' >> beam.Create(list(enumerate(log_paths)))
  if 'DISCOVERY' in objectives:
    sessions = (
        files
        | 'SpreadArtists' >> beam.Reshuffle()
        | 'SessionArtists' >> beam.ParDo(SessionArtists(tracks_path, settings))
    )
    history = (
        pipeline
        | 'ManualDir' >> beam.Create([manual_dir])
        | 'ReadHistory' >> beam.ParDo(ReadHistory(tracks_path, settings))
    )
    flags = (
        {'sessions': sessions, 'history': history}
        | 'ByUser' >> beam.CoGroupByKey()
        | 'DiscoveryFlags' >> beam.FlatMap(user_discovery_flags)
    )
  else:
    flags = pipeline | 'NoFlags' >> beam.Create([])
  _ = (
      {'path': files, 'flags': flags}
      | 'WithFlags' >> beam.CoGroupByKey()
      | 'SpreadFiles' >> beam.Reshuffle()
      | 'WriteShards' >> beam.ParDo(WriteLogShard(tracks_path, settings))
  )
  result = pipeline.run()
  result.wait_until_finish()
  for name, value in user_features_beam.counters(result, NAMESPACE).items():
    counts.add(name, value)
  sets, stats = _read_back(out_dir, log_paths, tracks['features'].shape[1])
  shutil.rmtree(staging)
  metadata = mssd_sessions.build_metadata(
      tracks=tracks,
      objectives=objectives,
      unavailable=unavailable,
      stats=stats,
      max_set_size=max_set_size,
      context_types=context_types,
      has_user=has_user,
      seed=seed,
      split_fractions=split_fractions,
      sets=sets,
      counts=counts,
      manual_dir=manual_dir,
      log_paths=log_paths,
      seconds=time.perf_counter() - start,
  )
  mssd_sessions.write_outputs(out_dir, tracks, metadata)
  return metadata
