"""Streaming reading of LFM-1b / LFM-2b style tab-separated tables (plain, .bz2 or .gz).

Shared by every LFM reader (`data_pipelines/listening.py`, the LARP LFM builder). A table is read
chunk by chunk: the csv module splits at most `chunk_rows` lines into lists, the chunk is transposed
(`zip(*rows)`) and every wanted column becomes one numpy array, converted vectorised
(`astype`, `datetime64[s]`); only the rare values that fail the vectorised path are parsed
one by one. No Python object per row outlives its chunk.

Columns are found by header name: each canonical name lists accepted aliases, compared after
lower-casing and mapping '-' and ' ' to '_' (so 'user-id', 'User ID' and 'user_id' all match).
Headerless files (LFM-1b's `LFM-1b_LEs.txt`) pass their column names instead.

Value kinds ('str', 'int', 'float', 'time', 'list'); an empty field of an optional column gives the
missing value (-1 for int and time, NaN for float, '' for str and list). Times are int64 unix
seconds UTC, read from unix seconds or 'YYYY-mm-dd HH:MM:SS' / ISO-8601 strings (naive = UTC;
offsets are honoured). Bad input never passes silently:
  * a required column missing from the header -> ValueError naming the file, column and header;
  * a row with the wrong field count, or an empty / unparsable required value -> skipped and counted
    in a SkipReport by (file, reason) with its 1-based line number;
  * an unparsable optional value -> set missing and counted as '<column>_unparsable_set_missing'.
"""

from __future__ import annotations

import bz2
import collections
import csv
import datetime
import gzip
import io
import itertools
import operator
import os
import pathlib
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import tqdm

SUFFIXES = ('', '.bz2', '.gz')
KINDS = ('str', 'int', 'float', 'time', 'list')
LINE = '_line'  # extra key of every chunk: int64 1-based line numbers of the kept rows
_MAX_EXAMPLES = 5
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


def find_table(directory: os.PathLike | str, names: Sequence[str]) -> pathlib.Path | None:
  """First existing `directory/name + suffix` over names (in order) and SUFFIXES, else None."""
  directory = pathlib.Path(directory)
  for name in names:
    for suffix in SUFFIXES:
      path = directory / (name + suffix)
      if path.is_file():
        return path
  return None


def _open_binary(path: pathlib.Path) -> tuple[Any, Any]:
  """(raw file whose tell() counts bytes read from disk, decompressed binary stream)."""
  raw = open(path, 'rb')
  if path.suffix == '.bz2':
    return raw, bz2.BZ2File(raw)
  if path.suffix == '.gz':
    return raw, gzip.GzipFile(fileobj=raw)
  return raw, raw


def open_text(path: os.PathLike | str) -> io.TextIOBase:
  """Opens a plain / .bz2 / .gz file (by suffix) as utf-8 text with newline='' (for csv)."""
  path = pathlib.Path(path)
  _, stream = _open_binary(path)
  return io.TextIOWrapper(stream, encoding='utf-8', newline='')


class SkipReport:
  """Counts skipped (or repaired) rows per (file basename, reason); keeps the first 5 examples.

  Examples read 'file:line: detail'. `counts()` keys are 'file/reason'.
  """

  def __init__(self):
    self._counts: collections.Counter[tuple[str, str]] = collections.Counter()
    self._examples: dict[tuple[str, str], list[str]] = collections.defaultdict(list)

  def add(self, file: str, reason: str, line: int | None, detail: str = '') -> None:
    """Counts one row of `file` (any path; its basename is used) skipped for `reason`."""
    key = (os.path.basename(str(file)), reason)
    self._counts[key] += 1
    if len(self._examples[key]) < _MAX_EXAMPLES:
      where = f'{key[0]}:{line}' if line is not None else key[0]
      self._examples[key].append(f'{where}: {detail}' if detail else where)

  def add_many(
      self, file: str, reason: str, lines: np.ndarray, details: Sequence[str] | np.ndarray
  ) -> None:
    """Counts len(lines) rows at once (vectorised callers); details aligned with lines."""
    n = len(lines)
    if not n:
      return
    key = (os.path.basename(str(file)), reason)
    room = _MAX_EXAMPLES - len(self._examples[key])
    for i in range(max(0, min(room, n))):
      self.add(file, reason, int(lines[i]), str(details[i]))
    self._counts[key] += n - max(0, min(room, n))

  def add_values(
      self, file: str, reason: str, lines: np.ndarray, column: str, values: np.ndarray, note=''
  ) -> None:
    """add_many with details "column='value'<note>" taken from the counted rows' values."""
    details = [f'{column}={v!r}{note}' for v in np.asarray(values)[:_MAX_EXAMPLES].tolist()]
    self.add_many(file, reason, lines, details)

  def merge(self, other: SkipReport) -> None:
    for key, count in other._counts.items():
      self._counts[key] += count
      room = _MAX_EXAMPLES - len(self._examples[key])
      self._examples[key].extend(other._examples[key][: max(room, 0)])

  def counts(self) -> dict[str, int]:
    return {f'{f}/{r}': c for (f, r), c in sorted(self._counts.items())}

  def examples(self, file: str, reason: str) -> list[str]:
    return list(self._examples.get((os.path.basename(file), reason), []))

  def to_json(self) -> dict[str, dict[str, Any]]:
    return {
        f'{f}/{r}': {'count': c, 'examples': list(self._examples[(f, r)])}
        for (f, r), c in sorted(self._counts.items())
    }

  @property
  def total(self) -> int:
    return sum(self._counts.values())

  def summary(self) -> str:
    if not self._counts:
      return 'no rows skipped'
    lines = [f'skipped or repaired {self.total} rows:']
    for (f, r), c in sorted(self._counts.items()):
      lines.append(f'  {f}: {r}: {c} (e.g. {"; ".join(self._examples[(f, r)][:3])})')
    return '\n'.join(lines)


def normalise_name(name: str) -> str:
  """Header name as compared: stripped, lower case, '-' and ' ' -> '_' (BOM removed)."""
  return name.strip().lstrip('\ufeff').lower().replace('-', '_').replace(' ', '_')


def resolve_columns(names: Sequence[str], columns: Mapping[str, Sequence[str]]) -> dict[str, int]:
  """Canonical name -> position in `names` for every canonical column found (first alias wins)."""
  where = {}
  for i, name in enumerate(names):
    where.setdefault(normalise_name(name), i)
  found = {}
  for canonical, aliases in columns.items():
    for alias in (canonical, *aliases):
      if normalise_name(alias) in where:
        found[canonical] = where[normalise_name(alias)]
        break
  return found


def parse_time(value: str) -> int:
  """One time string -> unix seconds UTC (int). Raises ValueError when it is not a time."""
  value = value.strip()
  try:
    return int(value)
  except ValueError:
    pass
  try:
    return int(np.floor(float(value)))
  except ValueError:
    pass
  if value.endswith(('Z', 'z')):
    value = value[:-1] + '+00:00'
  stamp = datetime.datetime.fromisoformat(value)
  if stamp.tzinfo is None:
    stamp = stamp.replace(tzinfo=datetime.timezone.utc)
  return int(np.floor(stamp.timestamp()))


def _one_by_one(values: np.ndarray, parse, dtype) -> tuple[np.ndarray, np.ndarray]:
  out = np.zeros(values.shape, dtype)
  ok = np.ones(values.shape, bool)
  for i, value in enumerate(values.tolist()):
    try:
      out[i] = parse(value)
    except (ValueError, OverflowError):
      ok[i] = False
  return out, ok


def convert(values: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
  """Converts a str array ([n], no empty entries) to `kind`. Returns (values [n], parsed bool [n]).

  'int' -> int64, 'float' -> float64, 'time' -> int64 unix seconds UTC, 'str'/'list' -> as is.
  """
  if kind in ('str', 'list'):
    return values, np.ones(values.shape, bool)
  if kind == 'int':
    try:
      return values.astype(np.int64), np.ones(values.shape, bool)
    except (ValueError, OverflowError):
      return _one_by_one(values, lambda v: int(v.strip()), np.int64)
  if kind == 'float':
    try:
      return values.astype(np.float64), np.ones(values.shape, bool)
    except (ValueError, OverflowError):
      return _one_by_one(values, float, np.float64)
  if kind != 'time':
    raise ValueError(f'unknown column kind {kind!r} (known: {KINDS})')
  digits = np.char.isdigit(values)
  out = np.zeros(values.shape, np.int64)
  ok = np.ones(values.shape, bool)
  if digits.any():
    out[digits] = values[digits].astype(np.int64)
  # 'YYYY-mm-dd HH:MM:SS' / 'YYYY-mm-ddTHH:MM:SS' / 'YYYY-mm-dd' vectorised (naive = UTC); the rest
  # (offsets, 'Z', fractions, negative numbers) one by one.
  lengths = np.char.str_len(values)
  plain = ~digits & ((lengths == 19) | (lengths == 10))
  if plain.any():
    try:
      stamps = values[plain].astype('datetime64[s]')
      out[plain] = stamps.astype(np.int64)
      ok[plain] = ~np.isnat(stamps)
    except (ValueError, OverflowError, TypeError):
      plain[:] = False
  rest = ~digits & ~plain
  if rest.any():
    out[rest], ok[rest] = _one_by_one(values[rest], parse_time, np.int64)
  return out, ok


_MISSING = {'str': '', 'list': '', 'int': -1, 'time': -1, 'float': np.nan}


def read_table(
    path: os.PathLike | str,
    columns: Mapping[str, Sequence[str]],
    *,
    required: Sequence[str],
    kinds: Mapping[str, str],
    report: SkipReport,
    header: bool | Sequence[str] = True,
    chunk_rows: int = 1 << 20,
    progress: bool = False,
) -> Iterator[dict[str, np.ndarray]]:
  """Streams a TSV as column chunks.

  Args:
    path: the file (plain / .bz2 / .gz by suffix).
    columns: canonical name -> accepted header aliases; columns absent from an optional position
      are simply not in the chunks (callers test `name in chunk`).
    required: canonical names that must be in the header and non-empty in a kept row.
    kinds: canonical name -> one of KINDS ('str' when not given).
    report: receives the skipped rows (by file basename, reason, line).
    header: True = the first line names the columns; a sequence = names of a headerless file.
    chunk_rows: rows per yielded chunk.
    progress: show a tqdm bar over the bytes read from disk.

  Yields:
    dicts canonical name -> array [n] (str arrays '<U..', int64, float64, int64 times) plus
    LINE -> int64 [n] 1-based line numbers in the file.

  Raises:
    ValueError: a required column is not in the header (message names file, column and header),
      or the file is not utf-8 text / a valid .bz2 / .gz (message names the file and line).
  """
  path = pathlib.Path(path)
  name = path.name
  raw, stream = _open_binary(path)
  text = io.TextIOWrapper(stream, encoding='utf-8', newline='')
  bar = None
  try:
    reader = csv.reader(text, delimiter='\t', quoting=csv.QUOTE_NONE)
    line = 0
    if header is True:
      try:
        names = next(reader, None)
      except (csv.Error, UnicodeDecodeError, EOFError, OSError) as e:
        raise ValueError(f'{str(path)!r}: unreadable header: {e}') from e
      line = 1
      if names is None:
        names = []
    else:
      names = list(header)
    positions = resolve_columns(names, columns)
    missing = [c for c in required if c not in positions]
    if missing:
      raise ValueError(
          f'{str(path)!r}: required column {missing[0]!r} (accepted names '
          f'{[missing[0], *columns.get(missing[0], ())]}) not in its header {names}'
      )
    width = len(names)
    if progress:
      bar = tqdm.tqdm(
          total=os.path.getsize(path), unit='B', unit_scale=True, desc=name, mininterval=1.0
      )
    while True:  # QUOTE_NONE: one row per line, so line numbers follow from row counts
      try:
        rows = list(itertools.islice(reader, chunk_rows))
      except (csv.Error, UnicodeDecodeError, EOFError, OSError) as e:
        raise ValueError(f'{str(path)!r} unreadable after line {line}: {e}') from e
      if not rows:
        break
      lines = np.arange(line + 1, line + 1 + len(rows), dtype=np.int64)
      line += len(rows)
      lengths = np.fromiter(map(len, rows), np.int64, len(rows))
      wrong = lengths != width
      if wrong.any():
        details = [f'{n} fields, expected {width}' for n in lengths[wrong][:_MAX_EXAMPLES]]
        report.add_many(name, 'wrong_field_count', lines[wrong], details)
        rows = list(itertools.compress(rows, (~wrong).tolist()))
        lines = lines[~wrong]
      if rows:
        yield _chunk(name, rows, lines, positions, required, kinds, report)
      if bar is not None:
        bar.update(raw.tell() - bar.n)
    if bar is not None:
      bar.update(os.path.getsize(path) - bar.n)
  finally:
    if bar is not None:
      bar.close()
    text.close()
    raw.close()


def _chunk(name, rows, lines, positions, required, kinds, report) -> dict[str, np.ndarray]:
  """Takes the wanted columns of the rows, converts them, drops rows with bad required values."""
  keep = np.ones(len(rows), bool)
  out: dict[str, np.ndarray] = {}
  for canonical, position in positions.items():
    kind = kinds.get(canonical, 'str')
    raw_values = np.asarray(list(map(operator.itemgetter(position), rows)), dtype=str)
    empty = raw_values == ''
    values = np.full(raw_values.shape, _MISSING[kind], _dtype(kind, raw_values))
    parsed, ok = convert(raw_values[~empty], kind)
    values[~empty] = parsed
    bad = np.zeros(raw_values.shape, bool)
    bad[~empty] = ~ok
    if canonical in required:
      for reason, mask in (('empty_' + canonical, empty), (f'bad_{kind}_' + canonical, bad)):
        mask = mask & keep
        if mask.any():
          report.add_values(name, reason, lines[mask], canonical, raw_values[mask])
          keep &= ~mask
    elif bad.any():
      values[bad] = _MISSING[kind]
      reason = canonical + '_unparsable_set_missing'
      report.add_values(name, reason, lines[bad], canonical, raw_values[bad])
    out[canonical] = values
  if not keep.all():
    out = {k: v[keep] for k, v in out.items()}
    lines = lines[keep]
  out[LINE] = lines
  return out


def _dtype(kind: str, raw_values: np.ndarray):
  if kind in ('str', 'list'):
    return raw_values.dtype if raw_values.size else np.dtype('<U1')
  return {'int': np.int64, 'time': np.int64, 'float': np.float64}[kind]


def concat_chunks(
    chunks: Iterator[dict[str, np.ndarray]], kinds: Mapping[str, str]
) -> dict[str, np.ndarray]:
  """Concatenates chunks column-wise (small tables); an empty table gives empty `kinds` arrays."""
  parts: dict[str, list[np.ndarray]] = collections.defaultdict(list)
  for chunk in chunks:
    for key, value in chunk.items():
      parts[key].append(value)
  out = {k: np.concatenate(v) for k, v in parts.items()}
  if LINE not in out:  # an empty table: columns unknown, give empty ones
    out = {n: np.zeros((0,), _dtype(k, np.zeros((0,), '<U1'))) for n, k in kinds.items()}
    out[LINE] = np.zeros((0,), np.int64)
  return out


class IdIndex:
  """External str ids [n] -> dense indices, vectorised (sorted copy + searchsorted)."""

  def __init__(self, ids: np.ndarray):
    self.order = np.argsort(ids, kind='stable')
    self.sorted = ids[self.order]

  def lookup(self, queries: np.ndarray) -> np.ndarray:
    """int32 [len(queries)] indices, -1 where unknown."""
    if not self.sorted.size:
      return np.full(len(queries), -1, np.int32)
    pos = np.minimum(np.searchsorted(self.sorted, queries), self.sorted.size - 1)
    return np.where(self.sorted[pos] == queries, self.order[pos], -1).astype(np.int32)


def first_unique(ids: np.ndarray) -> np.ndarray:
  """bool [n]: True at the first occurrence of each value."""
  keep = np.zeros(len(ids), bool)
  keep[np.unique(ids, return_index=True)[1]] = True
  return keep


def vocabulary(values: np.ndarray) -> tuple[tuple[str, ...], np.ndarray]:
  """Sorted vocabulary of the non-empty values and int32 codes (-1 for '')."""
  vocab = np.unique(values[values != ''])
  codes = (
      np.searchsorted(vocab, values).astype(np.int32)
      if vocab.size
      else np.zeros(len(values), np.int32)
  )
  return tuple(vocab.tolist()), np.where(values == '', -1, codes).astype(np.int32)


def csr(user: np.ndarray, values: np.ndarray, num_users: int) -> tuple[np.ndarray, np.ndarray]:
  """CSR of values grouped by user: (offsets int64 [num_users+1], values int32 [n] by user)."""
  order = np.argsort(user, kind='stable')
  offsets = np.zeros(num_users + 1, np.int64)
  np.cumsum(np.bincount(user, minlength=num_users), out=offsets[1:])
  return offsets, values[order].astype(np.int32)


def format_utc(seconds: np.ndarray) -> np.ndarray:
  """int64 unix seconds [n] -> str [n] 'YYYY-mm-dd HH:MM:SS' (UTC, as LFM-2b writes times)."""
  text = np.datetime_as_string(np.asarray(seconds, np.int64).astype('datetime64[s]'), unit='s')
  text = np.ascontiguousarray(text, dtype='<U19')
  text.view(np.uint32).reshape(-1, 19)[:, 10] = ord(' ')  # 'T' -> ' ' without a Python loop
  return text


def write_tsv(
    path: os.PathLike | str,
    header: Sequence[str],
    rows_columns: Mapping[str, Any],
    compress: str | None = None,
) -> pathlib.Path:
  """Writes columns (array-likes of equal length, keyed by header names) as a TSV with a header.

  compress: None (plain), 'bz2' (bz2 module) or 'gz' (gzip, mtime 0: byte-identical reruns); the
  suffix is appended to `path`. Values are written with str(); tabs/line breaks inside are an error.
  The file is assembled in memory (demo and test sizes).
  Returns the path written.
  """
  path = pathlib.Path(path)
  columns = [np.asarray(rows_columns[h]) for h in header]
  lengths = {len(c) for c in columns}
  if len(lengths) > 1:
    raise ValueError(f'{path}: columns of different lengths {dict(zip(header, map(len, columns)))}')
  as_str = [c.astype(str) if c.dtype.kind != 'U' else c for c in columns]
  lines = ['\t'.join(header)]
  lines.extend('\t'.join(row) for row in zip(*(c.tolist() for c in as_str)))
  text = '\n'.join(lines) + '\n'
  rows = len(lines)
  if text.count('\n') != rows or text.count('\t') != rows * (len(header) - 1) or '\r' in text:
    for h, c in zip(['header', *header], [np.asarray(header), *as_str]):
      if any(x in v for v in c.tolist() for x in '\t\n\r'):
        raise ValueError(f'{path}: {h!r} holds a tab or line break: not writable as TSV')
  data = text.encode('utf-8')
  if compress == 'bz2':
    path = path.with_name(path.name + '.bz2')
    data = bz2.compress(data, 9)
  elif compress in ('gz', 'gzip'):
    path = path.with_name(path.name + '.gz')
    data = gzip.compress(data, 6, mtime=0)
  elif compress is not None:
    raise ValueError(f'unknown compression {compress!r} (None, "bz2" or "gz")')
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(data)
  return path
