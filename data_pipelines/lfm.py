"""TFDS builder for LARP data from LFM-style listening logs (a user's collection = a "playlist").

Manual dir layout:
  listening_counts.tsv   tab-separated with a header naming at least `user_id` and `track_id`;
                         optional `count` (rows with count < 1 are ignored) and `timestamp` (a
                         user's tracks are then ordered by time; otherwise by first appearance).
                         LFM-2b's `listening-counts.tsv` / `listening-events.tsv` have this shape.
  tracks.tsv             header with `track_id`, `track_name`, `artist_name`, `album_name`.
  audio/<track_id>.<ext> one audio file per track.
LARP (Sec. 4.1) treats each user as a playlist of every track they listened to; the cold-start
split, pairs and sequences are then exactly as for MPD (same splits and features; the builder base
is `data_pipelines/playlist_audio.py`, `data_pipelines.playlist_datasets.build_dataset('lfm', ...)`
builds it).
Log rows naming a track missing from tracks.tsv are skipped as 'unknown_track'; rows that do not
parse are skipped as 'malformed_log_row'; both are counted and reported in the metadata.
"""

from __future__ import annotations

import collections
import csv
import os
import pathlib
from typing import Any

import tqdm

from data_pipelines import playlist_audio
from data_pipelines import splits as splits_lib

LOGS_FILE = 'listening_counts.tsv'
TRACKS_FILE = 'tracks.tsv'
_TRACK_COLUMNS = ('track_id', 'track_name', 'artist_name', 'album_name')


def _open_tsv(path: pathlib.Path, required: tuple[str, ...]) -> tuple[Any, Any, dict[str, int]]:
  """Opens a TSV and maps header names to column positions. Returns (file, reader, columns)."""
  if not path.is_file():
    raise ValueError(f'missing LFM file {str(path)!r}')
  f = open(path, encoding='utf-8', newline='')
  reader = csv.reader(f, delimiter='\t', quoting=csv.QUOTE_NONE)
  header = next(reader, None)
  columns = {name.strip(): i for i, name in enumerate(header or [])}
  missing = [c for c in required if c not in columns]
  if missing:
    f.close()
    raise ValueError(f'{str(path)!r} header {header} lacks columns {missing}')
  return f, reader, columns


def _sort_key(value: str) -> tuple[int, float | str]:
  try:
    return (0, float(value))
  except ValueError:
    return (1, value)


def read_lfm(
    manual_dir: os.PathLike | str, report: playlist_audio.SkipReport
) -> playlist_audio.SourceData:
  """Reads listening logs + track table into user "playlists" and per-track metadata.

  Args:
    manual_dir: holds LOGS_FILE and TRACKS_FILE (see the module docstring).
    report: collects the skipped rows.

  Returns:
    SourceData: one playlist per user (pid = the user id if all ids are integers, else the user's
    order of first appearance; tracks deduplicated, by timestamp if given) and a TrackInfo per
    track id (audio_key = track id).

  Raises:
    ValueError: a file is missing or lacks a required column, or no usable user is left.
  """
  manual_dir = pathlib.Path(manual_dir)
  tracks: dict[str, playlist_audio.TrackInfo] = {}
  f, reader, cols = _open_tsv(manual_dir / TRACKS_FILE, _TRACK_COLUMNS)
  with f:
    for line_no, row in enumerate(reader, start=2):
      try:
        track_id, name, artist, album = (row[cols[c]].strip() for c in _TRACK_COLUMNS)
      except IndexError:
        report.add('malformed_track_row', f'{TRACKS_FILE}:{line_no}')
        continue
      if not (track_id and name and artist):
        report.add('malformed_track_row', f'{TRACKS_FILE}:{line_no}: {row!r}')
        continue
      tracks.setdefault(track_id, playlist_audio.TrackInfo(name, artist, album, audio_key=track_id))

  users: dict[str, list[tuple[Any, int, str]]] = collections.defaultdict(list)
  f, reader, cols = _open_tsv(manual_dir / LOGS_FILE, ('user_id', 'track_id'))
  count_col, time_col = cols.get('count'), cols.get('timestamp')
  with f:
    for line_no, row in enumerate(
        tqdm.tqdm(reader, desc='reading LFM logs', unit=' rows', mininterval=2.0), start=2
    ):
      try:
        user, track = row[cols['user_id']].strip(), row[cols['track_id']].strip()
        count = int(row[count_col]) if count_col is not None else 1
        stamp = _sort_key(row[time_col]) if time_col is not None else (0, 0.0)
      except (IndexError, ValueError):
        report.add('malformed_log_row', f'{LOGS_FILE}:{line_no}: {row!r}')
        continue
      if not user or not track:
        report.add('malformed_log_row', f'{LOGS_FILE}:{line_no}: {row!r}')
        continue
      if track not in tracks:
        report.add('unknown_track', f'user {user}: track {track!r} not in {TRACKS_FILE}')
        continue
      if count >= 1:
        users[user].append((stamp, line_no, track))

  numeric = all(u.lstrip('-').isdigit() for u in users)
  playlists = []
  for i, (user, events) in enumerate(users.items()):
    if time_col is not None:
      events = sorted(events)
    pid = int(user) if numeric else i
    playlists.append(
        splits_lib.Playlist(pid, f'user {user}', splits_lib.dedupe(t for _, _, t in events))
    )
  if not playlists:
    raise ValueError(f'no usable listening rows in {str(manual_dir / LOGS_FILE)!r}')
  return playlist_audio.SourceData(playlists, tracks)


class LarpLfm(playlist_audio.PlaylistAudioBuilder):
  """LARP data from LFM-style listening logs + a track table + an audio folder."""

  KIND = 'lfm'
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Put `listening_counts.tsv` (user_id, track_id[, count][, timestamp]), `tracks.tsv` (track_id,
  track_name, artist_name, album_name) and `audio/<track_id>.<ext>` in manual_dir.
  `python -m data_pipelines.demo.catalogue --out DIR --lfm` writes a demo.
  """

  def _read_source(
      self, manual_dir: pathlib.Path, report: playlist_audio.SkipReport
  ) -> playlist_audio.SourceData:
    return read_lfm(manual_dir, report)
