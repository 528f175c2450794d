"""Readers of the MAP-2T real formats: Goodreads JSON lines (gz), per-episode metadata.tsv, plays."""

import gzip
import json

import numpy as np

from data_pipelines import audiobooks
from data_pipelines import lfm_tables


def _write_books(path):
  rows = [
      {
          "book_id": "1",
          "title": "Why We Sleep",
          "authors": [{"author_id": "7", "role": ""}],
          "description": "Sleep  science.",
          "format": "Audible Audio",
          "language_code": "eng",
      },
      {
          "book_id": "2",
          "title": "Atomic Habits",
          "authors": [{"author_id": "8", "role": ""}],
          "description": "",
          "format": "Paperback",
          "language_code": "eng",
      },
      {
          "book_id": "3",
          "title": "It Ends With Us",
          "authors": [{"author_id": "9", "role": ""}],
          "description": "Love.",
          "format": "audio cd",
          "language_code": "eng",
      },
  ]
  lines = [json.dumps(r) for r in rows]
  lines.insert(1, "{not json")  # line 2
  lines.append(json.dumps({"book_id": "", "title": "x", "format": "Audiobook"}))  # line 5
  lines.append(json.dumps({**rows[0], "title": "dup"}))  # line 6: duplicate id
  with gzip.open(path, "wt") as f:
    f.write("\n".join(lines) + "\n")
  with open(path.parent / "goodreads_book_authors.json", "w") as f:
    for a, name in (("7", "Matthew Walker"), ("9", "Colleen Hoover")):
      f.write(json.dumps({"author_id": a, "name": name}) + "\n")


def test_real_format_files_are_read_with_bad_rows_counted(tmp_path):
  _write_books(tmp_path / "goodreads_books.json.gz")
  header = [
      "show_uri",
      "show_name",
      "show_description",
      "publisher",
      "language",
      "rss_link",
      "episode_uri",
      "episode_name",
      "episode_description",
      "duration",
      "show_filename_prefix",
      "episode_filename_prefix",
  ]
  episodes = {h: [] for h in header}
  for show, n in (("spotify:show:a", 3), ("spotify:show:b", 1)):
    for e in range(n):
      for h in header:
        episodes[h].append(
            {"show_uri": show, "show_name": f"Show {show[-1]}", "episode_uri": f"{show}:{e}"}.get(
                h, "x"
            )
        )
  lfm_tables.write_tsv(tmp_path / "metadata.tsv", header, episodes)
  lfm_tables.write_tsv(
      tmp_path / "podcast-plays.tsv",
      ["user_id", "show_uri", "timestamp", "ms_played"],
      {
          "user_id": ["1", "2", "2"],
          "show_uri": ["spotify:show:a", "spotify:show:zz", "spotify:show:b"],
          "timestamp": ["2024-01-02 10:00:00", "2024-01-02 10:00:00", "1704189600"],
          "ms_played": ["100", "5", "7"],
      },
  )
  with open(tmp_path / "audiobook-engagements.tsv", "w") as f:
    f.write("user_id\tbook_id\ttimestamp\tms_played\n")
    f.write("1\t1\t2024-03-01 00:00:00\t600000\n")
    f.write("1\t2\t2024-03-01 00:00:00\t600000\n")  # line 3: print edition -> unknown item
    f.write("2\t3\tnot-a-time\t10\n")  # line 4: bad time
    f.write("2\t3\t2024-03-02 00:00:00\t-5\n")  # line 5: negative ms
    f.write("2\t3\t2024-03-02 00:00:00\n")  # line 6: short row
    f.write("3\t3\t2024-03-03 00:00:00\t9000\n")
  data = audiobooks.load_audio_data(tmp_path)
  np.testing.assert_array_equal(data.books.book_id, ["1", "3"])
  np.testing.assert_array_equal(data.books.authors, ["Matthew Walker", "Colleen Hoover"])
  assert data.books.description[0] == "Sleep science."
  np.testing.assert_array_equal(data.shows.show_uri, ["spotify:show:a", "spotify:show:b"])
  np.testing.assert_array_equal(data.shows.num_episodes, [3, 1])
  np.testing.assert_array_equal(data.plays.item_id, ["spotify:show:a", "spotify:show:b"])
  assert data.plays.timestamp[1] == 1704189600
  np.testing.assert_array_equal(data.engagements.user_id, ["1", "3"])
  counts = data.report.counts()
  assert counts["goodreads_books.json.gz/malformed_json"] == 1
  assert counts["goodreads_books.json.gz/missing_book_id_or_title"] == 1
  assert counts["goodreads_books.json.gz/duplicate_book_id"] == 1
  assert counts["audiobook-engagements.tsv/unknown_item"] == 1
  assert counts["audiobook-engagements.tsv/negative_ms_played"] == 1
  assert counts["podcast-plays.tsv/unknown_item"] == 1
  assert data.report.examples("goodreads_books.json.gz", "malformed_json")[0].startswith(
      "goodreads_books.json.gz:2"
  )
  assert data.report.examples("audiobook-engagements.tsv", "unknown_item")[0].startswith(
      "audiobook-engagements.tsv:3"
  )
  assert sum(v for k, v in counts.items() if k.startswith("audiobook-engagements")) == 4


def test_audio_formats_are_listed_once_and_case_insensitive():
  assert len(set(f.casefold() for f in audiobooks.AUDIO_FORMATS)) <= len(audiobooks.AUDIO_FORMATS)
  for value in ("Audiobook", "AUDIBLE AUDIO", " mp3 cd ", "Audio CD"):
    assert audiobooks.is_audio_format(value)
  for value in ("Paperback", "Kindle Edition", "", None):
    assert not audiobooks.is_audio_format(value)
