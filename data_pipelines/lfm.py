"""LARP data from LFM-1b / LFM-2b as distributed (a user's listening = a "playlist", Sec. 4.1).

Tables in manual_dir, each plain, .bz2 or .gz (`lfm_tables.find_table`), read streaming in column
chunks by `lfm_tables.read_table` (no Python object per listening event); columns by header name:
  events   listening-events.tsv (LFM-2b: user_id, track_id, album_id, timestamp), else
           listening-counts.tsv (LFM-2b: user_id, track_id, count), else LFM-1b_LEs.txt (no header:
           user-id, artist-id, album-id, track-id, timestamp), or the demo's listening_counts.tsv.
           Rows with count < 1 are ignored; timestamps, when given, order a user's tracks.
  tracks   tracks.tsv (LFM-2b: track_id, artist_name, track_name [, album_name]) or
           LFM-1b_tracks.txt (no header: track-id, track-name, artist-id).       required
  artists  artists.tsv / LFM-1b_artists.txt (artist_id, artist_name): names for artist ids.
  albums   albums.tsv / LFM-1b_albums.txt (album_id, album_name[, ...]): names for the album ids
           of the events. The album is optional: a track without one gets a caption without it.
  uris     spotify-uris.tsv (track_id, uri): audio named by Spotify track id; otherwise audio is
           audio/<LFM track id>.<ext>.
Every bad row (unknown track, unparsable value, wrong field count) is skipped and counted by file,
reason and line in the build's skip report.

Memory: events are reduced per chunk to distinct (user, track) pairs with their first time and
first line (int64 keys, `np.unique`), so the reader holds 24 bytes per distinct pair plus one
chunk; the per-user track tuples the cold-start split works on hold distinct tracks, not events.
The paper's LFM rules (Sec. 4.1, Table 1) are split settings of the `lfm` preset: evaluation
playlists are a contiguous run (by time) of more than 30 and fewer than 100 held-out tracks
(min_playlist_length=30, max_playlist_length=99), training users are capped (max_train_playlists).
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from data_pipelines import lfm_tables
from data_pipelines import playlist_audio
from data_pipelines import splits as splits_lib

EVENTS_FILES = (  # events first: their times order a user's tracks (the paper's contiguous runs)
    'listening-events.tsv',
    'listening-counts.tsv',
    'LFM-1b_LEs.txt',
    'listening_counts.tsv',
)
TRACKS_FILES = ('tracks.tsv', 'LFM-1b_tracks.txt')
ARTISTS_FILES = ('artists.tsv', 'LFM-1b_artists.txt')
ALBUMS_FILES = ('albums.tsv', 'LFM-1b_albums.txt')
URIS_FILES = ('spotify-uris.tsv',)
EVENT_COLUMNS = {
    'user_id': ('userid', 'user'),
    'track_id': ('trackid', 'track'),
    'count': ('playcount', 'listening_count', 'count_listens'),
    'timestamp': ('time', 'unixtime', 'played_at'),
    'album_id': ('albumid',),
}
TRACK_COLUMNS = {
    'track_id': ('trackid', 'id'),
    'track_name': ('name', 'track', 'title'),
    'artist_name': ('artist',),
    'artist_id': ('artistid',),
    'album_name': ('album',),
}
ARTIST_COLUMNS = {'artist_id': ('artistid', 'id'), 'artist_name': ('name', 'artist')}
ALBUM_COLUMNS = {'album_id': ('albumid', 'id'), 'album_name': ('name', 'album', 'title')}
URI_COLUMNS = {'track_id': ('trackid', 'id'), 'uri': ('spotify_uri', 'track_uri')}
LFM1B_HEADERS = {
    'LFM-1b_LEs.txt': ('user-id', 'artist-id', 'album-id', 'track-id', 'timestamp'),
    'LFM-1b_tracks.txt': ('track-id', 'track-name', 'artist-id'),
    'LFM-1b_artists.txt': ('artist-id', 'artist-name'),
    'LFM-1b_albums.txt': ('album-id', 'album-name', 'artist-id'),
}


def _header(path: pathlib.Path, columns) -> bool | tuple[str, ...]:
  """True (the file names its columns), or the documented names of a headerless LFM-1b file."""
  base = path.name.removesuffix('.bz2').removesuffix('.gz')
  if base not in LFM1B_HEADERS:
    return True
  with lfm_tables.open_text(path) as f:
    first = f.readline().rstrip('\r\n').split('\t')
  return True if 'track_id' in lfm_tables.resolve_columns(first, columns) else LFM1B_HEADERS[base]


def _table(manual_dir, names, columns, required, kinds, report, optional=False):
  path = lfm_tables.find_table(manual_dir, names)
  if path is None:
    if optional:
      return None, []
    raise ValueError(
        f'missing LFM file: none of {list(names)} (plain, .bz2 or .gz) in {str(manual_dir)!r}'
    )
  chunks = lfm_tables.read_table(
      path, columns, required=required, kinds=kinds, report=report, header=_header(path, columns)
  )
  return path, chunks


def _names(manual_dir, files, columns, key, value, report) -> dict[str, str]:
  path, chunks = _table(manual_dir, files, columns, (key, value), {}, report, optional=True)
  out: dict[str, str] = {}
  for chunk in chunks:
    for k, v in zip(chunk[key].tolist(), chunk[value].tolist()):
      out.setdefault(k, v)
  return out


def _merge(keys, times, lines):
  """Distinct keys with their smallest time and line (sorted by key)."""
  unique, inverse = np.unique(keys, return_inverse=True)
  first_time = np.full(unique.shape, np.iinfo(np.int64).max, np.int64)
  first_line = np.full(unique.shape, np.iinfo(np.int64).max, np.int64)
  np.minimum.at(first_time, inverse, times)
  np.minimum.at(first_line, inverse, lines)
  return unique, first_time, first_line


def read_lfm(
    manual_dir: os.PathLike | str, report: playlist_audio.SkipReport
) -> playlist_audio.SourceData:
  """Reads LFM-1b / LFM-2b tables into user "playlists" and per-track metadata.

  Args:
    manual_dir: holds the tables of the module docstring.
    report: collects the skipped rows ('<file>/<reason>' with file:line examples).

  Returns:
    SourceData: one playlist per user (pid = the user id when all ids are integers, else the
    user's order of first appearance; distinct tracks ordered by first listening time when the
    events have times, else by first appearance) and a TrackInfo per LFM track id (audio_key =
    the Spotify id of spotify-uris.tsv when given, else the track id).

  Raises:
    ValueError: the events or tracks table is missing or lacks a required column, or no usable
      user is left.
  """
  manual_dir = pathlib.Path(manual_dir)
  rows = lfm_tables.SkipReport()
  _, chunks = _table(manual_dir, TRACKS_FILES, TRACK_COLUMNS, ('track_id', 'track_name'), {}, rows)
  cols: dict[str, list[np.ndarray]] = {}
  for chunk in chunks:
    for name in TRACK_COLUMNS:
      if name in chunk:
        cols.setdefault(name, []).append(chunk[name])
  track_ids = np.concatenate(cols['track_id']) if cols.get('track_id') else np.zeros(0, '<U1')
  keep = lfm_tables.first_unique(track_ids)
  column = lambda n: np.concatenate(cols[n])[keep] if n in cols else None  # noqa: E731
  track_ids, names, artist_names = track_ids[keep], column('track_name'), column('artist_name')
  album_names, artist_ids = column('album_name'), column('artist_id')
  if artist_names is None and artist_ids is not None:
    artists = _names(manual_dir, ARTISTS_FILES, ARTIST_COLUMNS, 'artist_id', 'artist_name', rows)
    artist_names = np.asarray([artists.get(a, '') for a in artist_ids.tolist()], dtype=object)
  index = lfm_tables.IdIndex(track_ids)

  path, chunks = _table(
      manual_dir,
      EVENTS_FILES,
      EVENT_COLUMNS,
      ('user_id', 'track_id'),
      {'count': 'int', 'timestamp': 'time'},
      rows,
  )
  users: dict[str, int] = {}
  parts, has_time, albums_of = [], False, {}
  for chunk in chunks:
    lines = chunk[lfm_tables.LINE]
    track = index.lookup(chunk['track_id'])
    unknown = track < 0
    rows.add_values(path, 'unknown_track', lines[unknown], 'track_id', chunk['track_id'][unknown])
    ok = ~unknown
    if 'count' in chunk:
      ok &= chunk['count'] >= 1
    user_vocab, first, user_codes = np.unique(
        chunk['user_id'][ok], return_index=True, return_inverse=True
    )
    for u in user_vocab[np.argsort(first)].tolist():  # ids in order of first appearance
      users.setdefault(u, len(users))
    ids = np.asarray([users[u] for u in user_vocab.tolist()], np.int64)
    keys = ids[user_codes] * len(track_ids) + track[ok]
    times = chunk['timestamp'][ok] if 'timestamp' in chunk else np.zeros(keys.shape, np.int64)
    has_time |= 'timestamp' in chunk
    if 'album_id' in chunk:  # first album id seen per track (one dict entry per distinct track)
      album = chunk['album_id'][ok]
      given = (album != '') & (album != '-1')
      seen, first = np.unique(track[ok][given], return_index=True)
      for t, a in zip(seen.tolist(), album[given][first].tolist()):
        albums_of.setdefault(t, a)
    parts.append(_merge(keys, times, lines[ok]))
    if len(parts) > 8:  # bound the memory: fold the chunk results
      parts = [_merge(*(np.concatenate(p) for p in zip(*parts)))]
  for key, entry in rows.to_json().items():  # 'file/reason' -> reason; examples say file:line
    report.add_count(key.split('/', 1)[1], entry['count'], entry['examples'])
  if not parts or not users:
    raise ValueError(f'no usable listening rows in {str(path)!r}')
  keys, times, lines = _merge(*(np.concatenate(p) for p in zip(*parts)))

  user, track = keys // len(track_ids), keys % len(track_ids)
  order = np.lexsort((lines, times if has_time else lines, user))
  user, track = user[order], track[order]
  starts = np.searchsorted(user, np.arange(len(users) + 1))
  user_names = list(users)
  numeric = all(u.lstrip('-').isdigit() for u in user_names)
  playlists = [
      splits_lib.Playlist(
          int(name) if numeric else u,
          f'user {name}',
          tuple(track_ids[track[starts[u] : starts[u + 1]]].tolist()),
      )
      for u, name in enumerate(user_names)
      if starts[u + 1] > starts[u]
  ]
  album_table = (
      _names(manual_dir, ALBUMS_FILES, ALBUM_COLUMNS, 'album_id', 'album_name', rows)
      if albums_of
      else {}
  )
  uris = _names(manual_dir, URIS_FILES, URI_COLUMNS, 'track_id', 'uri', lfm_tables.SkipReport())
  used = np.unique(track)
  tracks = {}
  for t in used.tolist():
    album = album_names[t] if album_names is not None else album_table.get(albums_of.get(t), '')
    tid = str(track_ids[t])
    tracks[tid] = playlist_audio.TrackInfo(
        str(names[t]),
        str(artist_names[t]) if artist_names is not None else '',
        str(album or ''),
        audio_key=str(uris[tid]).rsplit(':', 1)[-1] if tid in uris else tid,
    )
  return playlist_audio.SourceData(playlists, tracks)


class LarpLfm(playlist_audio.PlaylistAudioBuilder):
  """LARP data from LFM-1b / LFM-2b listening logs + their track tables + an audio folder."""

  KIND = 'lfm'
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Put the LFM-2b (or LFM-1b) files as distributed in manual_dir (listening-counts.tsv.bz2 or
  listening-events.tsv.bz2, tracks.tsv.bz2, optionally albums.tsv.bz2, artists.tsv.bz2,
  spotify-uris.tsv.bz2) and one audio file per track in `audio/<track_id or spotify id>.<ext>`.
  `python -m data_pipelines.demo.catalogue --out DIR --lfm` writes a demo.
  """

  def _read_source(
      self, manual_dir: pathlib.Path, report: playlist_audio.SkipReport
  ) -> playlist_audio.SourceData:
    return read_lfm(manual_dir, report)
