"""Paper 001's user features as an Apache Beam batch pipeline (issue 11, Build item 4).

The lead's per-user function (`user_features.user_features`, which `features_matrix` runs
in-process) under Beam, the route to 10⁸ users: listening-events.tsv -ReadFromText-> line batches
-ParseEvents-> (user_id, (tracks, times) chunk); users / devices / onboarding tables -Parse*->
rows by user_id; snapshots .npz -> (user_id, (user index, time)); -CoGroupByKey-> UserFeatures
(track spaces loaded once per worker in setup) -GroupByKey(shard)-> one array_record file per shard.

Parsing is `load_listening`'s: its file names, header aliases, LFM-1b headerless fallback, required
columns and kinds, values converted by `lfm_tables.convert` on line batches. Events of users not in
users.tsv or of unknown tracks are dropped; skipped lines are Beam counters (namespace
`user_features_beam`) named as `Listening.report.counts()` keys, '<file>/<reason>', plus the total
'bad_event_lines'. Events are sorted by (time, track) as `Listening` sorts them, so both paths give
bit-identical features. One difference: text IO has no line numbers, so of several valid rows of a
user in users.tsv / onboarding.tsv the smallest / earliest is used ('<file>/duplicate_user_id'),
where `load_listening` keeps the first. Output: `{prefix}-{shard:05d}-of-{n:05d}.array_record`
(all shards), shard = blake2b(user id) % n, records (`RECORD`: int64 user, int64 time, int32 d,
float32 [d]) sorted by (user, time).

Measured on this shared 2-core machine (load average 6-16, so ranges; `python
tests/test_user_features_beam.py` reruns the DoFn timings): ParseEvents 1-4 µs per clean line (5-9
µs in a batch holding an unparsable timestamp: `lfm_tables.convert` then goes value by value);
UserFeatures 0.2-0.4 ms per snapshot of a 70-event user, 18-39 ms (1.0-2.3 µs per event) for a
17k-event user inside the 182-day window at 80 + 80 dims; shuffle 12 B per event if the file is
grouped by user, 24 B in random order over 120k users. End to end, DirectRunner, the fixture's
events x300 (446k lines, ~20k per user, 80 + 80 dims): 5.1-5.2 µs CPU per event (the rest is
Beam's text IO, batching and CoGroupByKey encoding) after ~1.5 s start-up.

Full LFM-2b (120k users, 2·10⁹ events, ~17k per user, ~45-byte lines ≈ 90 GB):
  * CPU 2·10⁹ × 5 µs ≈ 2.8 CPU-hours, plus decompressing the single .bz2, which Beam cannot split
    (Python's bz2 ran at 12-65 MB/s here: 25 min to 2 h) -- decompress and split it first, so the
    read runs in parallel: ~1.5 h on 2 idle cores, ~10 min on 20 Dataflow / Flink workers.
  * shuffle 2·10⁹ × 12-24 B ≈ 24-48 GB. DirectRunner shuffles in memory (23 GB RAM here): the full
    run needs a disk-backed shuffle (Flink / Spark portable runners, Dataflow).
  * per worker: one user's events (12 B each: 200 KB at 17k, 12 MB at 10⁶) plus the lead's float64
    gathers of the window's plays (1.3 KB per play at 80 + 80) -- dominated by the side inputs: the
    track vocabulary (5·10⁷ tracks ≈ 2 GB as sorted numpy str) and spaces (5·10⁷ × 160 float32 =
    32 GB). At full scale restrict both to tracks played in the 182 days before the last snapshot,
    or join the vectors by track in a second shuffle.
  * output 120k × (20 + 4d) B ≈ 0.5 GB at d ≈ 1,000; WriteShard holds one shard: ~256 MB a shard.
"""

from __future__ import annotations

import collections
import glob
import hashlib
import itertools
import os
import struct
import sys
import tempfile
import time
import zipfile
from collections.abc import Mapping, Sequence

import apache_beam as beam
import numpy as np
from absl import flags
from array_record.python import array_record_module
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from data_pipelines import lfm_tables
from data_pipelines import listening as L
from data_pipelines import user_features as uf

NAMESPACE = 'user_features_beam'
VOCAB_KEYS = ('users', 'tracks', 'artists', 'countries', 'genders', 'devices', 'languages')
RECORD = struct.Struct('<qqi')  # user index, time, dim; then dim float32 little-endian
_MISSING = {'str': '', 'list': '', 'int': -1, 'time': -1, 'float': np.nan}
_DTYPES = {'int': np.int64, 'time': np.int64, 'float': np.float64}  # others: str


def vocab_from_listening(listening) -> dict[str, tuple[str, ...]]:
  """The vocabularies (`VOCAB_KEYS` -> tuple of str, index order) of a `Listening`."""
  fields = dict(users='user_ids', tracks='track_ids', artists='artist_ids')
  return {k: tuple(np.asarray(getattr(listening, fields.get(k, k))).tolist()) for k in VOCAB_KEYS}


def save_vocab(path: str, vocab: Mapping[str, Sequence[str]]) -> None:
  """Writes the vocabularies as one .npz of str arrays (the CLI's --vocab)."""
  np.savez(path, **{k: np.asarray(list(vocab[k]), dtype=str) for k in VOCAB_KEYS})


def load_vocab(path: str) -> dict[str, tuple[str, ...]]:
  """Reads what `save_vocab` wrote (any Beam filesystem)."""
  with FileSystems.open(path) as f, np.load(f) as data:
    return {k: tuple(data[k].tolist()) for k in VOCAB_KEYS}


def save_snapshot_times(path: str, users: np.ndarray, times: np.ndarray, user_ids=None) -> None:
  """Writes the requested snapshots: users int64 [n] (indices into vocab['users']), times int64 [n]
  unix s, optional user_ids str [n]. A user may appear several times (at T, at registration)."""
  ids = {} if user_ids is None else {'user_ids': np.asarray(user_ids, dtype=str)}
  np.savez(path, users=np.asarray(users, np.int64), times=np.asarray(times, np.int64), **ids)


def shard_of(user_id: str, num_shards: int) -> int:
  """Stable shard of a user id (blake2b, not Python's salted hash)."""
  digest = hashlib.blake2b(str(user_id).encode('utf-8'), digest_size=8).digest()
  return int.from_bytes(digest, 'little') % num_shards


def shard_path(output_prefix: str, shard: int, num_shards: int) -> str:
  return f'{output_prefix}-{shard:05d}-of-{num_shards:05d}.array_record'


def encode_record(user: int, t: int, features: np.ndarray) -> bytes:
  """`RECORD` header + float32 [d] little-endian."""
  features = np.ascontiguousarray(features, '<f4')
  return RECORD.pack(int(user), int(t), features.size) + features.tobytes()


def decode_record(data: bytes) -> tuple[int, int, np.ndarray]:
  """(user index, time, float32 [d]) of one record."""
  user, t, dim = RECORD.unpack_from(data)
  return user, t, np.frombuffer(data, '<f4', count=dim, offset=RECORD.size)


def read_features(output_prefix: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Every (local) shard of `output_prefix`: users int64 [n], times int64 [n], features float32
  [n, d], sorted by (user, time)."""
  paths = sorted(glob.glob(f'{glob.escape(output_prefix)}-[0-9]*-of-[0-9]*.array_record'))
  if not paths:
    raise FileNotFoundError(f'no shards {output_prefix}-*-of-*.array_record')
  records = []
  for path in paths:
    reader = array_record_module.ArrayRecordReader(path)
    try:
      records.extend(decode_record(r) for r in (reader.read_all() if reader.num_records() else []))
    finally:
      reader.close()
  users = np.asarray([r[0] for r in records], np.int64)
  times = np.asarray([r[1] for r in records], np.int64)
  order = np.lexsort((times, users))
  rows = [records[i][2] for i in order]
  features = np.stack(rows).astype(np.float32) if rows else np.zeros((0, 0), np.float32)
  return users[order], times[order], features


class _Index:
  """str vocabulary -> dense indices, vectorised (sorted copy + searchsorted); -1 when unknown."""

  def __init__(self, ids: Sequence[str]):
    ids = np.asarray(list(ids), dtype=str)
    self.order = np.argsort(ids, kind='stable')
    self.sorted = ids[self.order]

  def lookup(self, queries) -> np.ndarray:
    """int32 [len(queries)]."""
    queries = np.asarray(queries, dtype=str)
    if not self.sorted.size or not queries.size:
      return np.full(len(queries), -1, np.int32)
    pos = np.minimum(np.searchsorted(self.sorted, queries), self.sorted.size - 1)
    return np.where(self.sorted[pos] == queries, self.order[pos], -1).astype(np.int32)


def parse_lines(
    lines: Sequence[str],
    positions: Mapping[str, int],
    width: int,
    required: Sequence[str],
    kinds: Mapping[str, str],
) -> tuple[dict[str, np.ndarray], collections.Counter]:
  """Parses TSV lines (no newline) as `lfm_tables.read_table` parses rows (its `_chunk` rules):
  positions = canonical column -> field (`resolve_columns` of the header), width = the header's.

  Returns (canonical column -> array [n_kept] (str, int64, float64, int64 unix s), Counter of the
  skipped or repaired lines by reason).
  """
  reasons: collections.Counter = collections.Counter()
  good = [line.count('\t') == width - 1 for line in lines]  # C-speed field counts
  kept = list(lines) if all(good) else list(itertools.compress(lines, good))
  if len(kept) < len(lines):
    reasons['wrong_field_count'] += len(lines) - len(kept)
  if not kept:
    return {c: np.zeros(0, _DTYPES.get(kinds.get(c), '<U1')) for c in positions}, reasons
  joined = '\t'.join(kept)
  if '\r' in joined:  # CRLF files: a line's last field ends in '\r'
    joined = '\t'.join(line.rstrip('\r') for line in kept)
  flat = joined.split('\t')  # len(kept) * width fields, row-major
  keep = np.ones(len(kept), bool)
  out = {}
  for canonical, position in positions.items():
    kind = kinds.get(canonical, 'str')
    raw = np.asarray(flat[position::width], dtype=str)
    empty = raw == ''
    dtype = _DTYPES.get(kind, raw.dtype)
    values = np.full(raw.shape, _MISSING[kind], dtype)
    parsed, ok = lfm_tables.convert(raw[~empty], kind)
    values[~empty] = parsed
    bad = np.zeros(raw.shape, bool)
    bad[~empty] = ~ok
    if canonical in required:
      for reason, mask in (('empty_' + canonical, empty), (f'bad_{kind}_' + canonical, bad)):
        mask = mask & keep
        if mask.any():
          reasons[reason] += int(mask.sum())
          keep &= ~mask
    elif bad.any():
      values[bad] = _MISSING[kind]
      reasons[canonical + '_unparsable_set_missing'] += int(bad.sum())
    out[canonical] = values
  return {k: v[keep] for k, v in out.items()}, reasons


class _Counting(beam.DoFn):
  """Counters of `NAMESPACE`, created on first use."""

  def _count(self, name: str, n: int = 1) -> None:
    counters = self.__dict__.setdefault('_counters', {})
    if n > 0:  # no zero counters: the reported names are the reasons that occurred
      counters.setdefault(name, Metrics.counter(NAMESPACE, name)).inc(n)


class _ParseDoFn(_Counting):
  """Parses a batch of lines of one table, counting skipped lines as '<file>/<reason>'.

  Per table: TAG (CoGroupByKey tag), FILES / COLUMNS (`listening`'s names / aliases), REQUIRED /
  KINDS (as `load_listening` reads it), HEADERLESS (LFM-1b names if the first line is no header),
  OPTIONAL, VOCABS (used), TOTAL (a counter of all skipped lines). vocab: a `save_vocab` path (read
  once per worker in setup: big vocabularies stay out of the graph) or a mapping with VOCABS.
  """

  TAG, FILES, COLUMNS, REQUIRED, KINDS = '', (), {}, (), {}
  HEADERLESS, OPTIONAL, VOCABS, TOTAL = None, True, (), None

  def __init__(self, file: str, positions: Mapping[str, int], width: int, vocab):
    self.file, self.positions, self.width = file, dict(positions), width
    self.vocab = vocab if isinstance(vocab, str) else {k: tuple(vocab[k]) for k in self.VOCABS}

  def setup(self):
    vocab = load_vocab(self.vocab) if isinstance(self.vocab, str) else self.vocab
    self.index = {k: _Index(vocab[k]) for k in self.VOCABS}

  def _parse(self, lines) -> dict[str, np.ndarray]:
    columns, reasons = parse_lines(lines, self.positions, self.width, self.REQUIRED, self.KINDS)
    for reason, count in reasons.items():
      self._count(f'{self.file}/{reason}', count)
      if self.TOTAL and not reason.endswith('_set_missing'):
        self._count(self.TOTAL, count)
    return columns

  def _ints(self, c: dict[str, np.ndarray], column: str, vocab: str | None = None) -> np.ndarray:
    """int [n] of a column: vocabulary indices (-1 for '' / unknown) or ints; -1 when absent."""
    if column not in c:
      return np.full(len(c['user_id']), -1, np.int64)
    if vocab is None:
      return c[column]
    return np.where(c[column] == '', -1, self.index[vocab].lookup(c[column]))


class ParseEvents(_ParseDoFn):
  """Event lines -> (user_id, (tracks int32 bytes, times int64 bytes)) once per user of a batch;
  unknown tracks stay -1, dropped and counted after the join ('unknown_track' only for users of
  users.tsv, as `load_listening` counts)."""

  TAG, FILES, COLUMNS = 'events', L.EVENTS_FILES, L.EVENT_COLUMNS
  OPTIONAL, HEADERLESS = False, L.LFM1B_EVENTS_HEADER
  REQUIRED, KINDS = ('user_id', 'track_id', 'timestamp'), {'timestamp': 'time'}
  VOCABS, TOTAL = ('tracks',), 'bad_event_lines'

  def process(self, lines):
    c = self._parse(lines)
    if not c['user_id'].size:
      return
    keys, inverse = np.unique(c['user_id'], return_inverse=True)
    order = np.argsort(inverse, kind='stable')
    bounds = np.r_[0, np.cumsum(np.bincount(inverse, minlength=len(keys)))].tolist()
    tracks = self._ints(c, 'track_id', 'tracks').astype(np.int32)[order]
    times = c['timestamp'].astype(np.int64)[order]
    for key, lo, hi in zip(keys.tolist(), bounds[:-1], bounds[1:]):
      yield key, (tracks[lo:hi].tobytes(), times[lo:hi].tobytes())


class ParseUsers(_ParseDoFn):
  """users.tsv lines -> (user_id, (country, age, gender, created)) ints, -1 = missing."""

  TAG, FILES, COLUMNS, OPTIONAL = 'users', L.USERS_FILES, L.USER_COLUMNS, False
  REQUIRED, KINDS = ('user_id',), {'age': 'int', 'creation_time': 'time'}
  VOCABS = ('countries', 'genders')

  def process(self, lines):
    c = self._parse(lines)
    age = self._ints(c, 'age')
    columns = (
        self._ints(c, 'country', 'countries'),
        np.where(age < 0, -1, age),
        self._ints(c, 'gender', 'genders'),
        self._ints(c, 'creation_time'),
    )
    for user, *values in zip(c['user_id'].tolist(), *(v.tolist() for v in columns)):
      yield user, tuple(int(v) for v in values)


class ParseDevices(_ParseDoFn):
  """devices.tsv lines -> (user_id, (device index, first-seen time, -1 = missing))."""

  TAG, FILES, COLUMNS = 'devices', L.DEVICES_FILES, L.DEVICE_COLUMNS
  REQUIRED, KINDS, VOCABS = ('user_id', 'device'), {'timestamp': 'time'}, ('devices',)

  def process(self, lines):
    c = self._parse(lines)
    devices, times = self._ints(c, 'device', 'devices'), self._ints(c, 'timestamp')
    for user, device, t in zip(c['user_id'].tolist(), devices.tolist(), times.tolist()):
      yield user, (int(device), int(t))


class ParseOnboarding(_ParseDoFn):
  """onboarding.tsv lines -> (user_id, (time, artist indices tuple, language indices tuple)); as
  `load_listening`: unknown artists dropped (counted), languages lower-cased, de-duplicated."""

  TAG, FILES, COLUMNS = 'onboarding', L.ONBOARDING_FILES, L.ONBOARDING_COLUMNS
  REQUIRED, VOCABS = ('user_id', 'timestamp'), ('artists', 'languages')
  KINDS = {'timestamp': 'time', 'artist_ids': 'list', 'languages': 'list'}

  def process(self, lines):
    c = self._parse(lines)
    empty = [''] * len(c['user_id'])
    artist_lists = c['artist_ids'].tolist() if 'artist_ids' in c else empty
    language_lists = c['languages'].tolist() if 'languages' in c else empty
    for user, t, artists, langs in zip(
        c['user_id'].tolist(), c['timestamp'].tolist(), artist_lists, language_lists
    ):
      a = self.index['artists'].lookup([x.strip() for x in artists.split(',') if x.strip()])
      self._count(f'{self.file}/unknown_onboarding_artist_dropped', int((a < 0).sum()))
      codes = list(dict.fromkeys(x.strip().lower() for x in langs.split(',') if x.strip()))
      lang = self.index['languages'].lookup(codes)
      yield user, (int(t), tuple(a[a >= 0].tolist()), tuple(lang[lang >= 0].tolist()))


PARSERS = (ParseEvents, ParseUsers, ParseDevices, ParseOnboarding)


class UserFeatures(_Counting):
  """(user_id, CoGroupByKey dict) -> (shard, (user index, time, record bytes)) per snapshot: the
  lead's `user_features`, with the track spaces (float32 [M, D] rows aligned with vocab['tracks'])
  loaded once per worker in `setup`. files: tag -> file name read (counter names)."""

  def __init__(self, spaces_path: str, spec: uf.FeatureSpec, num_shards: int, files: Mapping):
    self.spaces_path, self.spec, self.num_shards = spaces_path, spec, num_shards
    self.files = {'onboarding': 'onboarding.tsv', **files}

  def setup(self):
    with FileSystems.open(self.spaces_path) as f:  # seekable: np.load reads the members it needs
      self.spaces = uf.load_track_spaces(f)
    widths = (self.spaces.audio.shape[1], self.spaces.collab.shape[1])
    if widths != (self.spec.audio_dim, self.spec.collab_dim):
      raise ValueError(f'{self.spaces_path}: audio/collab widths {widths} do not match the spec')

  def process(self, element):
    user_id, grouped = element
    chunks = list(grouped.get('events', ()))
    users, snapshots = sorted(grouped.get('users', ())), sorted(grouped.get('snapshots', ()))
    tracks = np.frombuffer(b''.join(a for a, _ in chunks), np.int32)
    times = np.frombuffer(b''.join(b for _, b in chunks), np.int64)
    unknown = np.ones(len(tracks), bool) if not users else tracks < 0
    reason = 'unknown_track' if users else 'unknown_user'  # load_listening's reasons
    self._count(f'{self.files["events"]}/{reason}', int(unknown.sum()))
    self._count('bad_event_lines', int(unknown.sum()))
    if not users:
      self._count('snapshot_user_not_in_users_table', len(snapshots))
    if not users or not snapshots:
      return
    self._count(f'{self.files["users"]}/duplicate_user_id', len(users) - 1)
    tracks, times = tracks[~unknown], times[~unknown]
    order = np.lexsort((tracks, times))  # (time, track), as Listening sorts a user's events
    devices = sorted(grouped.get('devices', ()))
    onboarding = sorted(grouped.get('onboarding', ()))
    self._count(f'{self.files["onboarding"]}/duplicate_user_id', len(onboarding) - 1)
    o_time, o_artists, o_langs = onboarding[0] if onboarding else (-1, (), ())
    record = uf.UserRecord(
        *(tracks[order], times[order], *users[0]),  # tracks, times, country, age, gender, created
        np.asarray([d for d, _ in devices], np.int32),  # device_index
        np.asarray([t for _, t in devices], np.int64),  # device_time
        *(o_time, np.asarray(o_artists, np.int32), np.asarray(o_langs, np.int32)),  # onboarding
    )
    shard = shard_of(user_id, self.num_shards)
    for user_index, t in snapshots:
      features = uf.user_features(record, int(t), self.spaces, self.spec)
      self._count('snapshots_written')
      yield shard, (int(user_index), int(t), encode_record(user_index, t, features))


class WriteShard(beam.DoFn):
  """(shard, records) -> the shard's array_record file, records sorted by (user, time): written to
  a local temporary file, then moved (local output) or copied (any Beam filesystem) into place."""

  def __init__(self, output_prefix: str, num_shards: int):
    self.output_prefix, self.num_shards = output_prefix, num_shards

  def process(self, element):
    shard, records = element
    final = shard_path(self.output_prefix, shard, self.num_shards)
    local = '://' not in final
    directory = (os.path.dirname(final) or '.') if local else None
    if directory:
      os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix='.tmp', dir=directory)
    os.close(fd)
    writer = array_record_module.ArrayRecordWriter(tmp, 'group_size:1')
    for _, _, data in sorted(r for r in records if r is not None):
      writer.write(data)
    writer.close()
    if local:
      os.replace(tmp, final)
    else:
      with open(tmp, 'rb') as src, FileSystems.create(final) as dst:
        dst.write(src.read())
      os.remove(tmp)
    yield final


def _find(manual_dir: str, names: Sequence[str]) -> str | None:
  """First existing `manual_dir/name + suffix` (plain / .bz2 / .gz), any Beam filesystem."""
  for name, suffix in itertools.product(names, lfm_tables.SUFFIXES):
    path = FileSystems.join(manual_dir, name + suffix)
    if FileSystems.exists(path):
      return path
  return None


def _header(path: str, columns, required, default=None) -> tuple[dict[str, int], int, int]:
  """(positions, width, header lines to skip) of a table, decided as `listening._header` does."""
  with FileSystems.open(path) as f:
    first = f.readline().decode('utf-8').rstrip('\r\n').split('\t')
  found = lfm_tables.resolve_columns(first, columns)
  if default is not None and not all(c in found for c in required):
    return lfm_tables.resolve_columns(default, columns), len(default), 0
  missing = [c for c in required if c not in found]
  if missing:
    raise ValueError(f'{path!r}: required column {missing[0]!r} not in its header {first}')
  return found, len(first), 1


def _snapshot_rows(path: str, vocab):
  """npz -> (user_id, (user index, time)) per requested snapshot; ids from vocab['users'] when the
  file has none."""
  with FileSystems.open(path) as f, np.load(f) as npz:
    data = dict(npz)
  users, times = data['users'].astype(np.int64), data['times'].astype(np.int64)
  ids = data.get('user_ids')
  if ids is None:
    ids = np.asarray((load_vocab(vocab) if isinstance(vocab, str) else vocab)['users'])[users]
  for uid, u, t in zip(ids.astype(str).tolist(), users.tolist(), times.tolist()):
    yield uid, (u, t)


def build_pipeline(
    pipeline: beam.Pipeline,
    *,
    manual_dir: str,
    spaces_path: str,
    spec: uf.FeatureSpec,
    vocab: Mapping[str, Sequence[str]] | str,
    snapshot_times_path: str,
    output_prefix: str,
    num_shards: int = 16,
    batch_lines: int = 4096,
):
  """Adds the user-features pipeline to `pipeline`; returns the PCollection of shard paths written.

  Args:
    manual_dir: the LFM-2b-format tables (any Beam filesystem; plain / .bz2 / .gz): users.tsv and
      listening-events.tsv required, devices.tsv / onboarding.tsv optional.
    spaces_path: `user_features.save_track_spaces` .npz, rows aligned with vocab['tracks'].
    spec: the FeatureSpec (its vocabulary sizes must match `vocab`).
    vocab: `VOCAB_KEYS` -> tuple of str in index order (`vocab_from_listening`), or a `save_vocab`
      .npz path (read by the workers: the route for big vocabularies).
    snapshot_times_path: `save_snapshot_times` .npz (users int64 [n], times int64 [n], optional
      user_ids str [n]; a user may have several times).
    output_prefix / num_shards: `{output_prefix}-{shard:05d}-of-{num_shards:05d}.array_record`.
    batch_lines: most text lines parsed per DoFn call.
  """
  sizes = load_vocab(vocab) if isinstance(vocab, str) else vocab
  names = ('countries', 'genders', 'devices', 'languages')
  wrong = {k: (getattr(spec, f'num_{k}'), len(sizes[k])) for k in names}
  if any(k not in sizes for k in VOCAB_KEYS) or any(a != b for a, b in wrong.values()):
    raise ValueError(f'vocab needs {VOCAB_KEYS}; (spec, vocab) sizes: {wrong}')
  files, tagged = {}, {}
  for parse in PARSERS:
    path, tag = _find(manual_dir, parse.FILES), parse.TAG
    if path is None:
      if parse.OPTIONAL:
        continue
      raise ValueError(f'{manual_dir!r} has none of {list(parse.FILES)} (plain, .bz2 or .gz)')
    files[tag] = os.path.basename(path)
    positions, width, skip = _header(path, parse.COLUMNS, parse.REQUIRED, parse.HEADERLESS)
    batch = beam.BatchElements(min_batch_size=min(256, batch_lines), max_batch_size=batch_lines)
    tagged[tag] = (
        pipeline
        | f'Read_{tag}' >> beam.io.ReadFromText(path, skip_header_lines=skip)
        | f'Batch_{tag}' >> batch
        | f'Parse_{tag}' >> beam.ParDo(parse(files[tag], positions, width, vocab))
    )
  with FileSystems.open(snapshot_times_path) as f, np.load(f) as npz:  # the zip directory only
    has_ids = 'user_ids' in npz.files  # else the workers map indices to ids by vocab['users']
  users = None if has_ids else vocab if isinstance(vocab, str) else {'users': tuple(vocab['users'])}
  tagged['snapshots'] = (
      pipeline
      | 'SnapshotsPath' >> beam.Create([snapshot_times_path])
      | 'Snapshots' >> beam.FlatMap(_snapshot_rows, users)
  )
  records = (
      tagged
      | 'GroupByUser' >> beam.CoGroupByKey()
      | 'Features' >> beam.ParDo(UserFeatures(spaces_path, spec, num_shards, files))
  )
  every_shard = pipeline | 'Shards' >> beam.Create([(s, None) for s in range(num_shards)])
  return (
      (records, every_shard)
      | 'AllShards' >> beam.Flatten()
      | 'GroupByShard' >> beam.GroupByKey()
      | 'Write' >> beam.ParDo(WriteShard(output_prefix, num_shards))
  )


def counters(result, namespace: str = NAMESPACE) -> dict[str, int]:
  """The counters of `namespace` of a finished PipelineResult (committed, else attempted)."""
  out = collections.Counter()
  for c in result.metrics().query()['counters']:
    if c.key.metric.namespace == namespace:
      out[c.key.metric.name] += int(c.committed if c.committed is not None else c.attempted)
  return dict(sorted(out.items()))


_FLAGS = flags.FlagValues()  # private: no clash with other modules' absl flags
for _name, _help in (
    ('manual_dir', 'directory of the LFM-2b-format tables'),
    ('spaces', 'user_features.save_track_spaces .npz'),
    ('snapshots', 'save_snapshot_times .npz (users, times[, user_ids])'),
    ('output', 'output prefix of the array_record shards'),
    ('vocab', 'save_vocab .npz (default: the vocabularies of load_listening(manual_dir))'),
):
  flags.DEFINE_string(_name, None, _help, flag_values=_FLAGS)
flags.DEFINE_integer('num_shards', 16, 'output shards', flag_values=_FLAGS)
flags.DEFINE_list('horizons', ['7', '30', '182'], 'horizons in days', flag_values=_FLAGS)
flags.DEFINE_integer('onboarding_days', 90, 'onboarding used while younger', flag_values=_FLAGS)
flags.DEFINE_list('drop', [], 'block groups to drop (ablations)', flag_values=_FLAGS)
flags.mark_flags_as_required(['manual_dir', 'spaces', 'snapshots', 'output'], flag_values=_FLAGS)


def _npz_width(path: str, key: str) -> int:
  """Second dimension of one array of an .npz, read from its header only."""
  with FileSystems.open(path) as f, zipfile.ZipFile(f) as z, z.open(key + '.npy') as member:
    major, _ = np.lib.format.read_magic(member)
    read = getattr(np.lib.format, f'read_array_header_{major}_0')
    return int(read(member)[0][1])


def run(argv: Sequence[str]):
  """Parses the flags (the rest of argv -> PipelineOptions; DirectRunner unless --runner), runs the
  pipeline to the end, prints the counters; returns the PipelineResult."""
  rest = _FLAGS(list(argv), known_only=True)
  f = _FLAGS
  load = lambda: vocab_from_listening(L.load_listening(f.manual_dir, progress=False))
  vocab = load_vocab(f.vocab) if f.vocab else load()
  spec = uf.FeatureSpec(
      **{f'num_{k}': len(vocab[k]) for k in ('countries', 'genders', 'devices', 'languages')},
      audio_dim=_npz_width(f.spaces, 'audio'),
      collab_dim=_npz_width(f.spaces, 'collab'),
      horizons=tuple(int(h) for h in f.horizons),
      onboarding_days=f.onboarding_days,
      drop=tuple(f.drop),
  )
  options = PipelineOptions(rest[1:])
  if not options.view_as(StandardOptions).runner:
    options.view_as(StandardOptions).runner = 'DirectRunner'
  started = time.time()
  pipeline = beam.Pipeline(options=options)
  build_pipeline(
      pipeline,
      manual_dir=f.manual_dir,
      spaces_path=f.spaces,
      spec=spec,
      vocab=f.vocab or vocab,  # a path: the workers read it
      snapshot_times_path=f.snapshots,
      output_prefix=f.output,
      num_shards=f.num_shards,
  )
  result = pipeline.run()
  result.wait_until_finish()
  elapsed = time.time() - started
  print(f'user features (d={spec.dim}) -> {f.output}-*-of-{f.num_shards:05d} in {elapsed:.1f} s')
  for name, value in counters(result).items():
    print(f'  {name}: {value}')
  return result


def main() -> None:
  """Calls the imported module's `run`, not __main__'s, so the DoFns pickle by reference."""
  __import__('data_pipelines.user_features_beam', fromlist=['run']).run(sys.argv)


if __name__ == '__main__':
  main()
