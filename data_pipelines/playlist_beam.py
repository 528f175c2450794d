"""The Beam route of LARP's TFDS builders (MPD, LFM): the same dataset, built by Apache Beam.

`playlist_datasets.build_dataset(..., beam_runner=..., beam_options=...)` gives the builder a
`tfds.download.DownloadConfig(beam_runner=..., beam_options=...)`; `PlaylistAudioBuilder.
_download_and_prepare` then calls `download_and_prepare` here instead of TFDS's generator path.
Same builder class, same `_info` (features), same `prepare` (source read, cold-start split, plan,
`larp_metadata.json`, `skip_report.json`), the same `playlist_records.split_records` and
`larp_clips.decode_clip`, TFDS's own example encoding, serializer and array_record writer, TFDS's
`incomplete.*` directory renamed into place at the end: the directory the job reads through
`tfds.builder_from_directory(...).as_data_source` holds the records of the in-process build, in
the same order (only the cut into shard files differs); tests/test_beam_builds.py checks it.

Two pipelines, both on the DownloadConfig's runner and options (DirectRunner by default):
  1. check: every needed track's clip is decoded (`larp_clips.decode_clip`, batches of
     `scratch_chunk_clips`); the outcomes that are not clean (corrupt, short or truncated, padded;
     messages name the file) come back as a side output (`outcomes.pkl` in the scratch dir) and
     enter the skip report in the in-process order, so the split drops the same tracks.
  2. write: one task per shard: `split_records` of an index range -> `features.encode_example` ->
     `ExampleSerializer` -> `ExampleWriter` (array_record), the shard's clips decoded again in the
     task. Shards are index ranges of about one scratch chunk of bytes (`scratch_chunk_clips`
     clips, or the same bytes of playlists / pairs), in TFDS's file names.
The plan (uris, captions, token ids, padded playlists, pairs, audio paths) reaches the workers as
pickles in the build's scratch directory (next to the dataset): with a cluster runner, the data
dir, the scratch dir and manual_dir/audio must be on a file system every worker mounts.

Why not a GeneratorBasedBuilder whose `_generate_examples` returns a PTransform: TFDS writes such a
split with its BeamWriter, which GroupByKeys every serialized example into its shard -- the shuffle
then holds a second copy of every clip (the whole dataset: ~0.2 TB for the mpd preset, in RAM on
DirectRunner, on worker disks on Flink/Spark), the "clips written twice" this builder stopped.
TFDS's shard-based generation (`SplitBuilder.submit_shard_based_generation`, `ShardBasedBuilder`)
writes shards without a shuffle but runs the pipeline once per split, re-running the earlier
splits each time. So the write pipeline here is TFDS's shard writing, one pipeline for all seven
splits. The price: each kept clip is decoded twice (check, then write) instead of being stored
in scratch chunks; the disk holds the records only.

What a Beam build of the full MPD with the `mpd` preset needs (1M playlists, 2.26M tracks; 100k
train tracks plus the tracks of 1,000 + 1,000 evaluation playlists; clips 10 s at 48 kHz int16),
from the storage format (`larp_clips.storage_estimate`, and a serialized track record measured at
960,703 B) and costs measured on this machine (2 shared cores, load 5-6):
  * records: 0.96 MB a stored track. With ~200k tracks stored (100k train + ~50k per evaluation
    split, which the cold-start split decides; the build prints the exact count and checks the
    disk before decoding) that is 193 GB of records; playlists (1M x 1.3 KB = 1.3 GB) and pairs
    (0.5M x 76 B) are small. No scratch copy and no shuffle: the pipelines move index ranges and
    the outcome list (one line per unusable file), so DirectRunner memory stays flat too.
  * CPU: a clip (a 10 s window of a 30 s 44.1 kHz preview, resampled) decodes in 7 ms (MP3) to
    10 ms (OGG), encoding + serializing its record takes 1.2 ms: 2 x 200k x ~10 ms + 200k x 1.2 ms
    ~ 1.2 CPU hours, I/O aside. Shards of 1,024 clips (~1 GB each): ~200 write tasks and ~200
    check tasks, so 50-200 workers; beyond ~200 the shards must shrink (scratch_chunk_clips).
  * driver (serial): `mpd.read_mpd_slices` at 81 MB/s of slice JSON (0.36 s a 1,000-playlist
    slice): ~33 GB -> ~7 min; it holds the playlists (66M interned 8-byte references + 2.26M
    TrackInfo, ~2 GB), then splits and plans (the plan pickles: ~0.5 GB).
  * per worker: one shard streamed to disk (~1 GB) plus its part of the plan (train: 1M x 101 int32
    padded playlists = 0.4 GB; the track parts are small).
"""

from __future__ import annotations

import os
import pathlib
import pickle
from collections.abc import Mapping, Sequence
from typing import Any

import apache_beam as beam
import tensorflow_datasets as tfds
from apache_beam.options.pipeline_options import PipelineOptions
from tensorflow_datasets.core import example_serializer
from tensorflow_datasets.core import writer as tfds_writer

from data_pipelines import larp_clips
from data_pipelines import playlist_records

OUTCOMES_FILE = 'outcomes.pkl'
SHARDS_FILE = 'shard_infos.pkl'
_PARTS = ('train', 'valid', 'test')


def _part_of(split_name: str) -> str:
  """The plan part a split reads ('train', 'valid', 'test' or 'pairs')."""
  return 'pairs' if split_name == 'pairs_train' else split_name.split('_')[1]


def _pickle(path: os.PathLike | str, value: Any) -> None:
  with open(path, 'wb') as f:
    pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)


def _unpickle(path: os.PathLike | str) -> Any:
  with open(path, 'rb') as f:
    return pickle.load(f)


def _ranges(total: int, size: int) -> list[tuple[int, int]]:
  return [(lo, min(lo + size, total)) for lo in range(0, total, max(size, 1))]


def _run(download_config, add_transforms) -> None:
  """Builds the pipeline `add_transforms(pipeline)` on the DownloadConfig's runner and options
  and runs it to the end."""
  options = download_config.beam_options or PipelineOptions()
  with beam.Pipeline(runner=download_config.beam_runner, options=options) as pipeline:
    add_transforms(pipeline)


def records_per_shard(config: Any, split_name: str) -> int:
  """Records of a Beam shard: `scratch_chunk_clips` tracks, or as many playlists / pairs as
  hold the same bytes (per-record sizes from `larp_clips.storage_estimate`)."""
  size = lambda *counts: larp_clips.storage_estimate(config, *counts)['record_bytes']  # noqa: E731
  base = size(0, 0, 0)
  track, playlist, pair = size(1, 0, 0) - base, size(0, 1, 0) - base, size(0, 0, 1) - base
  budget = track * config.scratch_chunk_clips
  if split_name in playlist_records.TRACK_SPLITS:
    return config.scratch_chunk_clips
  return max(1, budget // (pair if split_name == 'pairs_train' else playlist))


class CheckClips(beam.DoFn):
  """(start, stop) of the staged track list -> (index, reason, message) of every track of the
  range whose clip is not clean (`larp_clips.decode_clip`)."""

  def __init__(self, tracks_path: str, config: Any):
    self.tracks_path, self.config = tracks_path, config

  def setup(self):
    self.tracks = _unpickle(self.tracks_path)  # [(uri, audio path)] in the build's order

  def process(self, element):
    start, stop = element
    for index in range(start, stop):
      uri, path = self.tracks[index]
      _, outcome = larp_clips.decode_clip(uri, path, self.config)
      if outcome is not None:
        yield (index, *outcome)


def check_clips(
    uris: Sequence[str],
    files: Mapping[str, pathlib.Path],
    report: Any,
    *,
    config: Any,
    scratch_dir: pathlib.Path,
    download_config,
) -> set[str]:
  """The check pipeline (`prepare`'s `decode_clips`): the report gets the outcomes in `uris`
  order, as `ClipStore.decode` adds them; returns the uris without a usable clip."""
  tracks_path = scratch_dir / 'check_tracks.pkl'
  _pickle(tracks_path, [(uri, str(files[uri])) for uri in uris])
  outcomes_path = scratch_dir / OUTCOMES_FILE

  def add(pipeline):
    _ = (
        pipeline
        | 'CheckRanges' >> beam.Create(_ranges(len(uris), config.scratch_chunk_clips))
        | 'SpreadChecks' >> beam.Reshuffle()
        | 'DecodeClips' >> beam.ParDo(CheckClips(str(tracks_path), config))
        | 'CollectOutcomes' >> beam.combiners.ToList()
        | 'SaveOutcomes' >> beam.Map(_pickle_to, str(outcomes_path))
    )

  _run(download_config, add)
  bad = set()
  for index, reason, message in sorted(_unpickle(outcomes_path)):
    report.add(reason, message)
    if reason != 'padded_short_audio':
      bad.add(uris[index])
  return bad


def _pickle_to(value: Any, path: str) -> None:
  _pickle(path, value)


class WriteShard(beam.DoFn):
  """(split, shard, num_shards, start, stop) -> the shard's array_record file in TFDS's layout
  (records [start, stop) of `split_records`, encoded and serialized by TFDS); yields (split,
  shard, examples, serialized bytes)."""

  def __init__(
      self,
      plan_dir: str,
      empty: Mapping[str, Any],
      config: Any,
      features: tfds.features.FeaturesDict,
      templates: Mapping[str, Any],
      example_writer: tfds_writer.ExampleWriter,
  ):
    self.plan_dir, self.empty, self.config = plan_dir, dict(empty), config
    self.features, self.templates, self.example_writer = features, dict(templates), example_writer

  def setup(self):
    self.serializer = example_serializer.ExampleSerializer(self.features.get_serialized_info())
    self.parts: dict[str, Any] = {}

  def _part(self, name: str) -> Any:
    if name not in self.parts:
      self.parts[name] = _unpickle(os.path.join(self.plan_dir, f'plan_{name}.pkl'))
    return self.parts[name]

  def _clip(self, files: Mapping[str, str], uri: str):
    clip, outcome = larp_clips.decode_clip(uri, files[uri], self.config)
    if clip is None:  # the check pipeline decoded it: the file changed, or the decoder differs
      raise RuntimeError(f'{uri}: its clip decoded in the check pass but not now: {outcome}')
    return clip

  def process(self, element):
    split_name, shard, num_shards, start, stop = element
    part = self._part(_part_of(split_name))
    files = part.get('audio_files', {}) if isinstance(part, dict) else {}
    plan = {_part_of(split_name): part}
    records = playlist_records.split_records(
        plan, split_name, self.empty, lambda uri: self._clip(files, uri), start, stop
    )
    count, size = 0, 0

    def serialized():
      nonlocal count, size
      for key, record in records:
        data = self.serializer.serialize_example(self.features.encode_example(record))
        count, size = count + 1, size + len(data)
        yield key, data

    path = self.templates[split_name].sharded_filepath(shard_index=shard, num_shards=num_shards)
    self.example_writer.write(path, serialized())
    yield split_name, shard, count, size


def write_splits(
    builder: Any, scratch_dir: pathlib.Path, download_config
) -> list[tfds.core.SplitInfo]:
  """The write pipeline: every split of `builder.plan` into `builder.data_dir`; returns the
  SplitInfos (shard lengths, serialized bytes as TFDS counts them) in SPLIT_NAMES order."""
  config, plan = builder.builder_config, builder.plan
  for name in _PARTS:
    part = {k: v for k, v in plan[name].items() if k != 'sequences'}
    part['audio_files'] = {u: str(builder.audio_files[u]) for u in part['uris']}
    _pickle(scratch_dir / f'plan_{name}.pkl', part)
  _pickle(scratch_dir / 'plan_pairs.pkl', plan['pairs'])
  templates = {name: builder._get_filename_template(name) for name in playlist_records.SPLIT_NAMES}
  shards = []
  for name in playlist_records.SPLIT_NAMES:
    total = playlist_records.num_records(plan, name)
    if not total:
      raise ValueError(f'{builder.name}/{config.name}: split {name} has no records')
    ranges = _ranges(total, records_per_shard(config, name))
    shards += [(name, i, len(ranges), lo, hi) for i, (lo, hi) in enumerate(ranges)]
  writer = WriteShard(
      str(scratch_dir),
      builder._empty_record(),  # pylint: disable=protected-access
      config,
      builder.info.features,
      templates,
      builder._example_writer(),  # pylint: disable=protected-access
  )
  infos_path = scratch_dir / SHARDS_FILE

  def add(pipeline):
    _ = (
        pipeline
        | 'Shards' >> beam.Create(shards)
        | 'SpreadShards' >> beam.Reshuffle()
        | 'WriteShards' >> beam.ParDo(writer)
        | 'CollectShards' >> beam.combiners.ToList()
        | 'SaveShards' >> beam.Map(_pickle_to, str(infos_path))
    )

  _run(download_config, add)
  written = {}
  for name, shard, count, size in _unpickle(infos_path):
    written.setdefault(name, {})[shard] = (count, size)
  infos = []
  for name in playlist_records.SPLIT_NAMES:
    per_shard = [written[name][i] for i in sorted(written[name])]
    infos.append(
        tfds.core.SplitInfo(
            name=name,
            shard_lengths=[count for count, _ in per_shard],
            num_bytes=sum(size for _, size in per_shard),
            filename_template=templates[name],
        )
    )
  return infos


def download_and_prepare(
    builder: Any,
    dl_manager,
    download_config,
    scratch_dir: pathlib.Path,
) -> None:
  """`PlaylistAudioBuilder._download_and_prepare` under Beam: `prepare` with the check pipeline,
  then the write pipeline; sets the builder's split infos (TFDS writes dataset_info.json and
  renames the incomplete directory when this returns)."""

  def decode_clips(uris, files, report):
    return check_clips(
        uris,
        files,
        report,
        config=builder.builder_config,
        scratch_dir=scratch_dir,
        download_config=download_config,
    )

  builder.prepare(dl_manager, decode_clips)
  infos = write_splits(builder, scratch_dir, download_config)
  builder.info.set_splits(tfds.core.SplitDict(infos))
