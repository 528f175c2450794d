"""Shared base of the LARP playlist-audio TFDS builders (array_record): config, schema, writing.

`data_pipelines/mpd.py` (MPD slices) and `data_pipelines/lfm.py` (LFM listening logs) each subclass
`PlaylistAudioBuilder` with a reader that turns their raw files into a `SourceData`;
`data_pipelines.playlist_datasets.build_dataset(kind, ...)` picks the builder and builds
`data_dir/larp_<kind>/<config.name>/1.0.0/` once. `data_pipelines.grain_pipelines` reads it.
With a DownloadConfig naming a Beam runner or options, `_download_and_prepare` takes the Beam route
of `data_pipelines.playlist_beam` (same `prepare`, same records); otherwise TFDS's in-process one.

Every manual dir has `audio/<audio_key>.<wav|flac|ogg|opus|mp3>`, one file per track (see
`index_audio_dir`); tracks without a readable file are dropped before (missing) or after (corrupt,
short or truncated; padding short audio is opt-in, `pad_short_audio`) the cold-start split of
`data_pipelines/splits.py`.

Storage: each clip is decoded once, at the model's rate, into a scratch chunk of
`scratch_chunk_clips` clips next to the dataset; a chunk is deleted as soon as its records are
written, so the clips exist once on disk (plus one chunk) at any time. The disk a build needs
(`larp_clips.storage_estimate`) is checked against the free space before any clip is decoded.

Splits (one union schema; fields a split does not use hold -1, '' or an empty array):
  tracks_train / tracks_valid / tracks_test, record i = track index i of that split:
    track_index int32, track_uri str, caption str,
    audio int16 or float32 [clip_samples] (int16: x * 32767; see audio.from_int16),
    input_ids / attention_mask int32 [max_text_length] (empty when no tokenizer_dir is configured)
  pairs_train, record i = pair i: track_a, track_b int32 (train track indices),
    playlist_index int32 (record index in playlists_train; the playlist holds both tracks)
  playlists_train, record i = playlist i: playlist_index, pid int64, length int32,
    playlist_tracks int32 [max_playlist_length] train track indices padded with pad id N_train
  playlists_valid / playlists_test: as above in the split's own track index space (pad N_split),
    plus seeds / ground_truth int32 [max_playlist_length] (padded the same way), num_seeds,
    num_ground_truth: seeded shuffle of the playlist, first round(n / 2) are seeds.
Records are written in index order (`disable_shuffling`), so `source[i]` is record i.

`larp_metadata.json` next to the data (and `skip_report.json`, the skip report alone) holds the config, counts, pad ids, track uris per split (uri
<-> index), playlist pids per split and a report of everything skipped: missing or corrupt audio,
short or truncated audio (by file), playlist items naming unknown tracks, malformed and empty
playlists, playlists left without audio, training playlists too short to keep, evaluation
playlists that became too short. Skipped items never stop a build; they are counted, the first examples are kept, and the
report is printed.
"""

from __future__ import annotations

import abc
import collections
import dataclasses
import json
import logging
import os
import pathlib
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from data_pipelines import audio as audio_lib
from data_pipelines import larp_clips
from data_pipelines import playlist_records
from data_pipelines import splits as splits_lib
from data_pipelines import text as text_lib

METADATA_FILE = 'larp_metadata.json'
SKIP_REPORT_FILE = 'skip_report.json'
TRACK_SPLITS = playlist_records.TRACK_SPLITS
SPLIT_NAMES = playlist_records.SPLIT_NAMES


@dataclasses.dataclass(eq=False)
class LarpDataConfig(tfds.core.BuilderConfig):
  """Builder settings (`name` names the build: data_dir/larp_<kind>/<name>/<version>).

  Attributes:
    sample_rate: model audio rate (HTS-AT: 48000).
    clip_seconds: clip length (paper: 10).
    edge_seconds: excluded at both ends of long files (paper: 20); see audio.load_clip.
    crop: 'random' (paper, seeded per track) or 'center'.
    audio_dtype: 'int16' (half the size) or 'float32' storage.
    caption_template: 'paper', 'official' or a custom {track}/{artist}/{album} format string.
    tokenizer_dir: local HF tokenizer directory; if set, token ids are stored at build time.
    max_text_length: token length (LARP: 30).
    train_tracks: training-track count (int; 0 = use train_fraction). A whole float >= 1 is read
      as a count and a float in (0, 1) as a fraction (older configs).
    train_fraction: training tracks as a fraction of all tracks (0 = use train_tracks).
    valid_tracks, valid_fraction: size of a validation track pool cut up front (count or
      fraction; both 0/None = the official sequential procedure, see splits.SplitConfig).
    num_valid_playlists, num_test_playlists, min_playlist_length, max_playlist_length,
      min_train_playlist_length, max_train_playlists: see splits.SplitConfig.
    pad_short_audio: zero-pad audio shorter than the clip (reported as 'padded_short_audio')
      instead of dropping the track (reported as 'short_audio').
    scratch_chunk_clips: clips per scratch chunk (the disk a build needs beyond its records).
    check_disk: compare `larp_clips.storage_estimate` with the free disk before decoding.
    pairs_per_track: TTC pairs per training track (official: 5).
    include_self_pairs: let a track be its own pair partner (official code: yes).
    seed: split, pair, seed/ground-truth and crop seed (official: 45).
    num_workers: threads decoding audio.
    max_report_examples: examples kept per skip reason.
  """

  sample_rate: int = 48000
  clip_seconds: float = 10.0
  edge_seconds: float = 20.0
  crop: str = 'random'
  audio_dtype: str = 'int16'
  caption_template: str = 'paper'
  tokenizer_dir: str | None = None
  max_text_length: int = 30
  train_tracks: float | int = 100_000
  train_fraction: float = 0.0
  valid_tracks: float | int | None = None
  valid_fraction: float = 0.0
  num_valid_playlists: int = 1000
  num_test_playlists: int = 1000
  min_playlist_length: int = 10
  max_playlist_length: int = 101
  min_train_playlist_length: int = 2
  max_train_playlists: int = 0
  pairs_per_track: int = 5
  include_self_pairs: bool = False
  pad_short_audio: bool = False
  seed: int = 45
  num_workers: int = 4
  max_report_examples: int = 10
  scratch_chunk_clips: int = 1024
  check_disk: bool = True

  def __post_init__(self):
    if self.tokenizer_dir is not None:
      self.tokenizer_dir = os.fspath(self.tokenizer_dir)
    if self.audio_dtype not in ('int16', 'float32'):
      raise ValueError(f"audio_dtype must be 'int16' or 'float32', got {self.audio_dtype!r}")
    if self.crop not in ('random', 'center'):
      raise ValueError(f"crop must be 'random' or 'center', got {self.crop!r}")
    if self.scratch_chunk_clips < 1:
      raise ValueError(f'scratch_chunk_clips must be >= 1, got {self.scratch_chunk_clips}')
    if self.sample_rate <= 0 or self.clip_seconds <= 0:
      raise ValueError(
          f'sample_rate and clip_seconds must be positive, got '
          f'{self.sample_rate}, {self.clip_seconds}'
      )
    text_lib.resolve_caption_template(self.caption_template)
    self.split_config()  # Validates the split fields.

  @property
  def clip_samples(self) -> int:
    return int(round(self.sample_rate * self.clip_seconds))

  def split_config(self) -> splits_lib.SplitConfig:
    """The SplitConfig of these settings (the count/fraction keys resolved).

    Raises:
      ValueError naming the keys: both or neither of train_tracks / train_fraction set, both
      valid_tracks and valid_fraction set, or a value of the wrong kind.
    """
    train, valid = self.train_tracks, self.valid_tracks
    if self.train_fraction:
      if train:
        raise ValueError(
            f'train_tracks={train!r} and train_fraction={self.train_fraction!r}: set one '
            '(the other to 0)'
        )
      if not 0.0 < float(self.train_fraction) < 1.0:
        raise ValueError(f'train_fraction={self.train_fraction!r} must be in (0, 1)')
      train = float(self.train_fraction)
    elif not train:
      raise ValueError('train_tracks=0 and train_fraction=0: set one of them')
    if self.valid_fraction:
      if valid:
        raise ValueError(
            f'valid_tracks={valid!r} and valid_fraction={self.valid_fraction!r}: set one '
            '(the other to 0)'
        )
      if not 0.0 < float(self.valid_fraction) < 1.0:
        raise ValueError(f'valid_fraction={self.valid_fraction!r} must be in (0, 1)')
      valid = float(self.valid_fraction)
    elif not valid:
      valid = None
    return splits_lib.SplitConfig(
        train_tracks=train,
        valid_tracks=valid,
        num_valid_playlists=self.num_valid_playlists,
        num_test_playlists=self.num_test_playlists,
        min_playlist_length=self.min_playlist_length,
        max_playlist_length=self.max_playlist_length,
        min_train_playlist_length=self.min_train_playlist_length,
        max_train_playlists=self.max_train_playlists,
        seed=self.seed,
    )

  def data_fields(self) -> dict[str, Any]:
    """The fields that determine the built data (for metadata and staleness checks)."""
    skip = {f.name for f in dataclasses.fields(tfds.core.BuilderConfig)} | {
        'num_workers',
        'max_report_examples',
        'scratch_chunk_clips',
        'check_disk',
    }
    return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip}


@dataclasses.dataclass(frozen=True)
class TrackInfo:
  """Metadata of one track; `audio_key` is the audio file stem (audio/<audio_key>.<ext>)."""

  name: str
  artist: str
  album: str
  audio_key: str


class SkipReport:
  """Counts skipped items per reason and keeps the first examples of each."""

  def __init__(self, max_examples: int = 10):
    self.max_examples = max_examples
    self.counts: collections.Counter[str] = collections.Counter()
    self.examples: dict[str, list[str]] = collections.defaultdict(list)

  def add(self, reason: str, example: str) -> None:
    self.counts[reason] += 1
    if len(self.examples[reason]) < self.max_examples:
      self.examples[reason].append(example)

  def add_count(self, reason: str, count: int, examples: Sequence[str]) -> None:
    """Adds `count` skipped items at once (e.g. rows counted by `lfm_tables.SkipReport`)."""
    self.counts[reason] += int(count)
    room = self.max_examples - len(self.examples[reason])
    self.examples[reason].extend(list(examples)[: max(room, 0)])

  def as_dict(self) -> dict[str, dict[str, Any]]:
    return {
        reason: {'count': count, 'examples': self.examples[reason]}
        for reason, count in sorted(self.counts.items())
    }

  def summary(self) -> str:
    if not self.counts:
      return 'nothing skipped'
    lines = []
    for reason, count in sorted(self.counts.items()):
      lines.append(f'  {reason}: {count} (e.g. {"; ".join(self.examples[reason][:3])})')
    return 'skipped:\n' + '\n'.join(lines)


@dataclasses.dataclass
class SourceData:
  """What a reader extracts from the raw files: playlists (uris) and per-uri metadata."""

  playlists: list[splits_lib.Playlist]
  tracks: dict[str, TrackInfo]


def load_metadata(dataset_dir: os.PathLike | str) -> dict[str, Any]:
  """Reads `larp_metadata.json` of a built dataset directory.

  Raises:
    ValueError: the directory holds no built LARP dataset.
  """
  path = pathlib.Path(dataset_dir) / METADATA_FILE
  if not path.is_file():
    raise ValueError(f'{str(dataset_dir)!r} is not a built LARP dataset (no {METADATA_FILE})')
  with open(path, encoding='utf-8') as f:
    return json.load(f)


class PlaylistAudioBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Shared builder: subclasses implement `_read_source(manual_dir, report)`."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'LARP cold-start splits, TTC pairs, TPC sequences, audio clips.'}
  BUILDER_CONFIG_CLASS = LarpDataConfig
  KIND = ''
  # Shadows tfds' `code_path` class property, whose package lookup needs the `importlib_resources`
  # backport (not installed); tfds only uses it to look for a checksums file next to the code.
  code_path = pathlib.Path(__file__)

  @abc.abstractmethod
  def _read_source(self, manual_dir: pathlib.Path, report: SkipReport) -> SourceData:
    """Parses the raw files; skipped items go to `report`."""

  @property
  def _config(self) -> LarpDataConfig:
    config = self.builder_config
    if not isinstance(config, LarpDataConfig):
      raise ValueError(f'{type(self).__name__} needs a LarpDataConfig, got {config!r}')
    return config

  def _info(self) -> tfds.core.DatasetInfo:
    config = self._config
    audio_dtype = np.int16 if config.audio_dtype == 'int16' else np.float32
    int_vector = lambda doc: tfds.features.Tensor(
        shape=(None,), dtype=np.int32, encoding='bytes', doc=doc
    )
    scalar = lambda dtype, doc: tfds.features.Scalar(dtype=dtype, doc=doc)
    features = tfds.features.FeaturesDict(
        {
            'track_index': scalar(np.int32, 'track index in its split (-1 elsewhere)'),
            'track_uri': tfds.features.Text(doc='track uri (MPD) or track id (LFM)'),
            'caption': tfds.features.Text(doc='metadata caption'),
            'audio': tfds.features.Tensor(
                shape=(None,), dtype=audio_dtype, encoding='bytes', doc='mono clip [clip_samples]'
            ),
            'input_ids': int_vector('caption token ids [max_text_length]'),
            'attention_mask': int_vector('caption attention mask [max_text_length]'),
            'track_a': scalar(np.int32, 'pair: anchor train track'),
            'track_b': scalar(np.int32, 'pair: co-occurring train track'),
            'playlist_index': scalar(np.int32, 'record index in the playlists split'),
            'pid': scalar(np.int64, 'original playlist / user id'),
            'length': scalar(np.int32, 'number of tracks in the playlist'),
            'playlist_tracks': int_vector('track indices padded with the split pad id'),
            'seeds': int_vector('seed half, padded'),
            'num_seeds': scalar(np.int32, 'number of seeds'),
            'ground_truth': int_vector('held-out half, padded'),
            'num_ground_truth': scalar(np.int32, 'number of held-out tracks'),
        }
    )
    return tfds.core.DatasetInfo(
        builder=self,
        features=features,
        disable_shuffling=True,
        description='LARP cold-start playlist continuation data (audio clips + captions).',
        homepage='https://arxiv.org/abs/2406.14333',
    )

  def _empty_record(self) -> dict[str, Any]:
    audio_dtype = np.int16 if self._config.audio_dtype == 'int16' else np.float32
    empty = np.zeros((0,), np.int32)
    return {
        'track_index': -1,
        'track_uri': '',
        'caption': '',
        'audio': np.zeros((0,), audio_dtype),
        'input_ids': empty,
        'attention_mask': empty,
        'track_a': -1,
        'track_b': -1,
        'playlist_index': -1,
        'pid': -1,
        'length': 0,
        'playlist_tracks': empty,
        'seeds': empty,
        'num_seeds': 0,
        'ground_truth': empty,
        'num_ground_truth': 0,
    }

  def _download_and_prepare(self, dl_manager, download_config):
    scratch_root = pathlib.Path(self.data_dir).parent
    scratch_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix='larp_clips_', dir=scratch_root) as scratch:
      self._scratch_dir = pathlib.Path(scratch)
      self._clips = None
      try:
        if download_config.beam_runner is None and download_config.beam_options is None:
          return super()._download_and_prepare(dl_manager, download_config)
        from data_pipelines import playlist_beam  # pylint: disable=g-import-not-at-top

        return playlist_beam.download_and_prepare(
            self, dl_manager, download_config, self._scratch_dir
        )
      finally:
        self._clips = None  # Releases the memmaps before the directory is removed.

  # ------------------------------------------------------------------ preparation

  def _check_disk(self, num_tracks: int, num_playlists: int, num_pairs: int) -> None:
    config = self._config
    need = larp_clips.storage_estimate(config, num_tracks, num_playlists, num_pairs)
    free = shutil.disk_usage(self._scratch_dir).free
    if need['peak_bytes'] > free:
      raise ValueError(
          f'{self.name}/{config.name}: the build needs about {need["peak_bytes"] / 2**30:.2f} GiB '
          f'({num_tracks} clips of {config.clip_samples} {config.audio_dtype} samples = '
          f'{need["clip_bytes"] / 2**30:.2f} GiB, plus one scratch chunk and playlists) but only '
          f'{free / 2**30:.2f} GiB are free under {str(self._scratch_dir.parent)!r}; free space, '
          'choose another data_dir, or set fewer tracks (train_tracks, num_*_playlists)'
      )

  def _split_generators(self, dl_manager):
    self.prepare(dl_manager, self._decode_in_process)
    self._clips.keep_only(
        [u for part in ('train', 'valid', 'test') for u in self._plan[part]['uris']]
    )
    return {name: self._generate_examples(name) for name in SPLIT_NAMES}

  def _decode_in_process(self, uris, files, report) -> set[str]:
    self._clips = larp_clips.ClipStore(self._scratch_dir, self._config)
    return self._clips.decode(uris, files, report)

  def prepare(self, dl_manager, decode_clips) -> None:
    """Everything before the records: reads the source, splits, decodes (`decode_clips(uris,
    {uri: audio path}, report) -> unusable uris`), plans the records (`self.plan`, the audio
    files of its tracks in `self.audio_files`) and writes `larp_metadata.json` and
    `skip_report.json` into the (incomplete) dataset directory."""
    config = self._config
    if dl_manager.manual_dir is None:
      raise ValueError(f'{self.name} needs a manual_dir (DownloadConfig(manual_dir=...))')
    manual_dir = pathlib.Path(dl_manager.manual_dir)
    if not manual_dir.is_dir():
      raise ValueError(f'manual_dir {str(manual_dir)!r} does not exist')
    report = SkipReport(config.max_report_examples)
    source = self._read_source(manual_dir, report)
    audio_dir = manual_dir / 'audio'
    if not audio_dir.is_dir():
      raise ValueError(f'no audio folder {str(audio_dir)!r} in manual_dir')
    files = index_audio_dir(audio_dir)

    # Tracks without an audio file are dropped before splitting.
    with_audio, missing = set(), set()
    for uri in splits_lib.union_uris(source.playlists):
      (with_audio if source.tracks[uri].audio_key in files else missing).add(uri)
    for uri in sorted(missing):
      report.add('missing_audio', f'{uri} (no {audio_dir}/{source.tracks[uri].audio_key}.*)')
    playlists = []
    for p in source.playlists:
      kept = tuple(u for u in p.track_uris if u in with_audio)
      if kept:
        playlists.append(splits_lib.Playlist(p.pid, p.name, kept))
      else:
        report.add('playlist_without_audio', f'pid {p.pid}: none of its tracks has audio')
    split_config = config.split_config()
    split = splits_lib.cold_start_split(playlists, split_config, on_skip=report.add)
    needed = list(split.train_uris) + list(split.valid_uris) + list(split.test_uris)
    num_playlists = len(split.train_playlists) + len(split.valid_playlists)
    num_playlists += len(split.test_playlists)
    if config.check_disk:
      self._check_disk(len(needed), num_playlists, len(split.train_uris) * config.pairs_per_track)
    self.audio_files = {u: files[source.tracks[u].audio_key] for u in needed}
    bad = decode_clips(needed, self.audio_files, report)
    split = splits_lib.remove_tracks(split, bad, split_config, on_skip=report.add)
    for pid in split.report.get('dropped_eval_playlists', []):
      report.add('eval_playlist_too_short_after_audio_errors', f'pid {pid}')

    self._plan = self._make_plan(split, source.tracks)
    metadata = self._metadata(split, report)
    with open(pathlib.Path(self.data_dir) / METADATA_FILE, 'w', encoding='utf-8') as f:
      json.dump(metadata, f, indent=1)
    with open(pathlib.Path(self.data_dir) / SKIP_REPORT_FILE, 'w', encoding='utf-8') as f:
      json.dump(metadata['skipped'], f, indent=1)
    message = f'{self.name}/{config.name}: {metadata["counts"]}\n{report.summary()}'
    print(message)
    logging.info(message)

  @property
  def plan(self) -> dict[str, Any]:
    """What `playlist_records.split_records` reads: per part ('train', 'valid', 'test') uris,
    captions, tokens, pids, padded ids / lengths (+ seeds, ground_truth); 'pairs' int32 [P, 3]."""
    return self._plan

  def _make_plan(
      self, split: splits_lib.ColdStartSplit, tracks: Mapping[str, TrackInfo]
  ) -> dict[str, Any]:
    """Indices, captions, token ids, pairs, padded sequences and seed halves for every split."""
    config = self._config
    tokenizer = text_lib.load_tokenizer(config.tokenizer_dir) if config.tokenizer_dir else None
    plan: dict[str, Any] = {}
    width = config.max_playlist_length
    for part, uris, playlists in (
        ('train', split.train_uris, split.train_playlists),
        ('valid', split.valid_uris, split.valid_playlists),
        ('test', split.test_uris, split.test_playlists),
    ):
      index = splits_lib.index_of(uris)
      captions = [
          text_lib.make_caption(
              tracks[u].name, tracks[u].artist, tracks[u].album, config.caption_template
          )
          for u in uris
      ]
      tokens = (
          text_lib.tokenize(tokenizer, captions, config.max_text_length)
          if tokenizer is not None
          else None
      )
      sequences = splits_lib.playlist_sequences(playlists, index)
      ids, lengths = splits_lib.pad_sequences(sequences, width, pad_id=len(uris))
      plan[part] = {
          'uris': list(uris),
          'captions': captions,
          'tokens': tokens,
          'pids': [p.pid for p in playlists],
          'ids': ids,
          'lengths': lengths,
          'sequences': sequences,
      }
      if part != 'train':
        halves = splits_lib.seed_ground_truth_halves(sequences, seed=config.seed)
        plan[part]['seeds'] = splits_lib.pad_sequences([h[0] for h in halves], width, len(uris))
        plan[part]['ground_truth'] = splits_lib.pad_sequences(
            [h[1] for h in halves], width, len(uris)
        )
    plan['pairs'] = splits_lib.mine_pairs(
        plan['train']['sequences'],
        len(split.train_uris),
        pairs_per_track=config.pairs_per_track,
        seed=config.seed,
        include_self=config.include_self_pairs,
    )
    if plan['pairs'].shape[0] == 0:
      raise ValueError(
          'no training track shares a training playlist with another track: '
          'no TTC pairs (use more training tracks or longer playlists)'
      )
    return plan

  def _metadata(self, split: splits_lib.ColdStartSplit, report: SkipReport) -> dict[str, Any]:
    config, plan = self._config, self._plan
    counts = {
        'num_train_tracks': len(plan['train']['uris']),
        'num_valid_tracks': len(plan['valid']['uris']),
        'num_test_tracks': len(plan['test']['uris']),
        'num_train_playlists': len(plan['train']['pids']),
        'num_valid_playlists': len(plan['valid']['pids']),
        'num_test_playlists': len(plan['test']['pids']),
        'num_pairs': int(plan['pairs'].shape[0]),
    }
    return {
        'format': 'larp_jax playlist-audio dataset v1',
        'kind': self.KIND,
        'config': config.data_fields(),
        'clip_samples': config.clip_samples,
        'has_token_ids': bool(config.tokenizer_dir),
        'counts': counts,
        'pad_id': {part: len(plan[part]['uris']) for part in ('train', 'valid', 'test')},
        'track_uris': {part: plan[part]['uris'] for part in ('train', 'valid', 'test')},
        'playlist_pids': {part: plan[part]['pids'] for part in ('train', 'valid', 'test')},
        'skipped': report.as_dict(),
        'split_report': split.report,
    }

  # ------------------------------------------------------------------ examples

  def _generate_examples(self, split_name: str) -> Iterator[tuple[int, dict[str, Any]]]:
    return playlist_records.split_records(
        self._plan, split_name, self._empty_record(), self._clips.pop
    )


def index_audio_dir(audio_dir: os.PathLike | str) -> dict[str, pathlib.Path]:
  """Maps file stem -> path for supported audio files (first extension in AUDIO_EXTENSIONS wins)."""
  rank = {ext: i for i, ext in enumerate(audio_lib.AUDIO_EXTENSIONS)}
  best: dict[str, tuple[int, pathlib.Path]] = {}
  with os.scandir(audio_dir) as entries:
    for entry in entries:
      stem, ext = os.path.splitext(entry.name)
      if ext.lower() in rank and entry.is_file():
        r = rank[ext.lower()]
        if stem not in best or r < best[stem][0]:
          best[stem] = (r, pathlib.Path(entry.path))
  return {stem: path for stem, (_, path) in best.items()}
