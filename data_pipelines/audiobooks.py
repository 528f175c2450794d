"""Audiobook and podcast data in their real formats (paper 002, MAP-2T), read streaming.

Files (in one directory; plain, .gz or .bz2 by suffix):
  goodreads_books.json[.gz]   Goodreads / UCSD Book Graph books, one JSON object per line
                              (book_id, title, authors [{author_id, role}] or names, description,
                              format, language_code, ...); only AUDIO_FORMATS rows are audiobooks.
  goodreads_book_authors.json[.gz]  optional (author_id, name) to turn author ids into names.
  metadata.tsv                the Spotify Podcast Dataset's per-EPISODE metadata (show_uri,
                              show_name, show_description, publisher, language, ..., episode_uri);
                              shows are deduplicated by show_uri (first row wins).
  podcast-plays.tsv           user_id, show_uri, timestamp, ms_played
  audiobook-engagements.tsv   user_id, book_id, timestamp, ms_played
Music histories are the user-representation issue's LFM-2b files (``data_pipelines.listening``).

Bad rows never pass silently: a malformed JSON line, a book without id/title, a duplicate book id,
a play with an unknown show or book, or an unparsable field is skipped and counted in a
``lfm_tables.SkipReport`` by file and line.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

import numpy as np

from data_pipelines import lfm_tables

# The Goodreads `format` values that are audio editions (the one list; compared case-folded).
AUDIO_FORMATS = (
    "Audiobook",
    "Audible Audio",
    "Audio CD",
    "MP3 CD",
    "Audio Cassette",
    "Audio",
    "audio cd",
    "Audio Book",
    "CD-ROM audiobook",
)
_AUDIO = {f.casefold() for f in AUDIO_FORMATS}
BOOK_FILES = ("goodreads_books.json", "goodreads_books.jsonl")
AUTHOR_FILES = ("goodreads_book_authors.json",)
SHOW_FILES = ("metadata.tsv",)
PLAY_FILES = ("podcast-plays.tsv", "podcast_plays.tsv")
ENGAGEMENT_FILES = ("audiobook-engagements.tsv", "audiobook_engagements.tsv")


def is_audio_format(value: str) -> bool:
  return str(value or "").strip().casefold() in _AUDIO


@dataclasses.dataclass(frozen=True)
class Books:
  """Audiobooks: str arrays [N] book_id, title, authors (names joined by ', '), description,
  format, language_code."""

  book_id: np.ndarray
  title: np.ndarray
  authors: np.ndarray
  description: np.ndarray
  format: np.ndarray
  language_code: np.ndarray

  def __len__(self) -> int:
    return len(self.book_id)


@dataclasses.dataclass(frozen=True)
class Shows:
  """Podcast shows (deduplicated): str arrays [S] show_uri, show_name, show_description,
  publisher, language; int64 [S] num_episodes."""

  show_uri: np.ndarray
  show_name: np.ndarray
  show_description: np.ndarray
  publisher: np.ndarray
  language: np.ndarray
  num_episodes: np.ndarray

  def __len__(self) -> int:
    return len(self.show_uri)


@dataclasses.dataclass(frozen=True)
class Engagements:
  """Plays of one kind: str [E] user_id, item_id; int64 [E] timestamp (unix s), ms_played,
  line (1-based line in the file read, for reports)."""

  user_id: np.ndarray
  item_id: np.ndarray
  timestamp: np.ndarray
  ms_played: np.ndarray
  line: np.ndarray

  def __len__(self) -> int:
    return len(self.user_id)


def _author_names(authors: Any, names: dict[str, str]) -> str:
  if isinstance(authors, str):
    return authors
  out = []
  for a in authors or ():
    if isinstance(a, dict):
      name = a.get("name") or names.get(str(a.get("author_id", "")), "")
      out.append(str(name or a.get("author_id", "")))
    else:
      out.append(str(a))
  return ", ".join(x for x in out if x)


def _json_lines(path: pathlib.Path, report: lfm_tables.SkipReport):
  """Yields (line number, dict) of a JSON-lines file; malformed lines are counted."""
  with lfm_tables.open_text(path) as f:
    for line_no, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        obj = json.loads(line)
      except json.JSONDecodeError as error:
        report.add(path, "malformed_json", line_no, str(error)[:80])
        continue
      if not isinstance(obj, dict):
        report.add(path, "not_an_object", line_no)
        continue
      yield line_no, obj


def read_books(
    path: str | pathlib.Path,
    report: lfm_tables.SkipReport,
    *,
    authors_path: str | pathlib.Path | None = None,
    audio_only: bool = True,
) -> Books:
  """Goodreads-books JSON lines -> the audiobooks (``format`` in AUDIO_FORMATS when audio_only)."""
  path = pathlib.Path(path)
  names: dict[str, str] = {}
  if authors_path:
    for _, obj in _json_lines(pathlib.Path(authors_path), report):
      names[str(obj.get("author_id", ""))] = str(obj.get("name", ""))
  cols: dict[str, list[str]] = {f.name: [] for f in dataclasses.fields(Books)}
  seen: set[str] = set()
  for line_no, obj in _json_lines(path, report):
    book_id, title = str(obj.get("book_id", "") or "").strip(), str(obj.get("title", "") or "")
    if not book_id or not title.strip():
      report.add(path, "missing_book_id_or_title", line_no)
      continue
    if audio_only and not is_audio_format(obj.get("format", "")):
      continue  # not an audio edition: not a catalogue item (not an error)
    if book_id in seen:
      report.add(path, "duplicate_book_id", line_no, book_id)
      continue
    seen.add(book_id)
    cols["book_id"].append(book_id)
    cols["title"].append(title.strip())
    cols["authors"].append(_author_names(obj.get("authors"), names))
    cols["description"].append(" ".join(str(obj.get("description", "") or "").split()))
    cols["format"].append(str(obj.get("format", "") or ""))
    cols["language_code"].append(str(obj.get("language_code", "") or ""))
  return Books(**{k: np.asarray(v, dtype=str) for k, v in cols.items()})


_SHOW_COLUMNS = {
    "show_uri": ("show_uri",),
    "show_name": ("show_name",),
    "show_description": ("show_description",),
    "publisher": ("publisher",),
    "language": ("language",),
    "episode_uri": ("episode_uri",),
}


def read_shows(path: str | pathlib.Path, report: lfm_tables.SkipReport) -> Shows:
  """The podcast dataset's per-episode ``metadata.tsv`` -> one row per show_uri."""
  kinds = {k: "str" for k in _SHOW_COLUMNS}
  table = lfm_tables.concat_chunks(
      lfm_tables.read_table(
          path, _SHOW_COLUMNS, required=("show_uri", "show_name"), kinds=kinds, report=report
      ),
      kinds,
  )
  uri = table["show_uri"]
  first = lfm_tables.first_unique(uri)
  _, inverse = np.unique(uri, return_inverse=True)
  episodes = np.bincount(inverse)
  order = np.flatnonzero(first)
  get = lambda k: table[k][order] if k in table else np.full(len(order), "", "<U1")  # noqa: E731
  return Shows(
      show_uri=uri[order],
      show_name=get("show_name"),
      show_description=get("show_description"),
      publisher=get("publisher"),
      language=get("language"),
      num_episodes=episodes[inverse[order]].astype(np.int64),
  )


def read_engagements(
    path: str | pathlib.Path, item_column: str, report: lfm_tables.SkipReport
) -> Engagements:
  """``user_id, <item_column>, timestamp, ms_played`` TSV -> Engagements (streamed by chunks)."""
  columns = {
      "user_id": ("user_id", "user"),
      "item_id": (item_column,),
      "timestamp": ("timestamp", "time"),
      "ms_played": ("ms_played",),
  }
  kinds = {"user_id": "str", "item_id": "str", "timestamp": "time", "ms_played": "int"}
  parts: dict[str, list[np.ndarray]] = {k: [] for k in (*columns, "line")}
  for chunk in lfm_tables.read_table(
      path, columns, required=tuple(columns), kinds=kinds, report=report
  ):
    bad = chunk["ms_played"] < 0
    report.add_values(
        path,
        "negative_ms_played",
        chunk[lfm_tables.LINE][bad],
        "ms_played",
        chunk["ms_played"][bad],
    )
    chunk["line"] = chunk[lfm_tables.LINE]
    for k in parts:
      parts[k].append(chunk[k][~bad])
  out = {
      k: np.concatenate(v) if v else np.zeros(0, "<U1" if kinds.get(k) == "str" else np.int64)
      for k, v in parts.items()
  }
  return Engagements(**out)


def drop_unknown(
    engagements: Engagements, known: np.ndarray, path: str, report: lfm_tables.SkipReport
) -> Engagements:
  """Rows whose item id is not in ``known`` are counted ('unknown_item') and removed."""
  ok = lfm_tables.IdIndex(np.asarray(known)).lookup(engagements.item_id) >= 0
  report.add_many(path, "unknown_item", engagements.line[~ok], engagements.item_id[~ok])
  return Engagements(
      *(np.asarray(getattr(engagements, f.name))[ok] for f in dataclasses.fields(Engagements))
  )


@dataclasses.dataclass(frozen=True)
class AudioData:
  """Everything of one directory: books, shows, podcast plays, audiobook engagements, report."""

  books: Books
  shows: Shows
  plays: Engagements
  engagements: Engagements
  report: lfm_tables.SkipReport
  files: dict[str, str]


def load_audio_data(directory: str | pathlib.Path) -> AudioData:
  """Reads the module docstring's files from ``directory`` (podcast files optional)."""
  directory = pathlib.Path(directory)
  report = lfm_tables.SkipReport()
  books_path = lfm_tables.find_table(directory, BOOK_FILES)
  engagements_path = lfm_tables.find_table(directory, ENGAGEMENT_FILES)
  if books_path is None or engagements_path is None:
    raise FileNotFoundError(
        f"{directory}: need {BOOK_FILES[0]}[.gz] and {ENGAGEMENT_FILES[0]} (MAP-2T audiobook data)."
    )
  files = {"books": str(books_path), "engagements": str(engagements_path)}
  books = read_books(
      books_path, report, authors_path=lfm_tables.find_table(directory, AUTHOR_FILES)
  )
  engagements = drop_unknown(
      read_engagements(engagements_path, "book_id", report), books.book_id, engagements_path, report
  )
  shows_path = lfm_tables.find_table(directory, SHOW_FILES)
  plays_path = lfm_tables.find_table(directory, PLAY_FILES)
  if shows_path is not None and plays_path is not None:
    files.update(shows=str(shows_path), plays=str(plays_path))
    shows = read_shows(shows_path, report)
    plays = drop_unknown(
        read_engagements(plays_path, "show_uri", report), shows.show_uri, plays_path, report
    )
  else:
    empty = np.zeros(0, "<U1")
    shows = Shows(empty, empty, empty, empty, empty, np.zeros(0, np.int64))
    zero = np.zeros(0, np.int64)
    plays = Engagements(empty, empty, zero, zero, zero)
  return AudioData(books, shows, plays, engagements, report, files)


def write_books_json(
    path: str | pathlib.Path, rows: list[dict[str, Any]], compress: bool
) -> pathlib.Path:
  """Writes Goodreads-style JSON lines (gz when ``compress``; mtime 0 for identical reruns)."""
  import gzip  # pylint: disable=g-import-not-at-top

  path = pathlib.Path(path)
  text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
  if compress:
    path = path.with_name(path.name + ".gz")
    text = gzip.compress(text, 6, mtime=0)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(text)
  return path
