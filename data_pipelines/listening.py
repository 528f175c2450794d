"""LFM-2b (or LFM-1b) listening logs + platform tables -> one columnar `Listening` object.

Files in one directory, each plain, .bz2 or .gz (found by `lfm_tables.find_table`), columns mapped
by header (aliases in the *_COLUMNS dicts below):
  users.tsv               user_id, country, age, gender, creation_time       (LFM-1b_users.txt:
                          ..., registered_unixtime)                           required
  listening-events.tsv    user_id, track_id, album_id, timestamp (album unused) required
      (LFM-1b_LEs.txt, no header: user-id, artist-id, album-id, track-id, timestamp)
  tracks.tsv              track_id, artist_name, track_name; or with artist_id (LFM-1b_tracks.txt)
                                                                              required
  artists.tsv             artist_id, artist_name  (LFM-1b_artists.txt)        optional
  albums.tsv              not needed here (album_id is not kept)
  spotify-uris.tsv        track_id, uri                                       optional
  onboarding.tsv          user_id, timestamp, artist_ids, languages (lists comma-separated; a user
                          who skipped onboarding has no row)                  optional
  devices.tsv             user_id, timestamp, device                          optional
  follows.tsv             user_id, artist_id, timestamp                       optional
  artist-countries.tsv    artist_id, country                                  optional
Timestamps are datetime strings or unix seconds, read as UTC. Tracks reach artists by id when
tracks.tsv has artist_id, else by name through artists.tsv (a name of several ids: first id used,
counted 'ambiguous_artist_name' per track row; a name absent from artists.tsv: a new artist with
id 'name:<name>', counted 'new_artist_from_name'). Rows naming an unknown user / track / artist are
skipped and counted by file and line in `Listening.report`; an absent optional table leaves its
fields None and adds a line to `Listening.messages`.

Memory and scale. Events are streamed chunk by chunk (`lfm_tables.read_table`, 2^20 rows), mapped to
dense indices per chunk (searchsorted on sorted id tables) and kept as int32 user + int32 track +
int64 time = 16 bytes per event; concatenating the chunks briefly doubles that and the final
np.lexsort adds an int64 order plus sorted copies: ~40 bytes per event at peak, 16 kept, plus the
chunk being parsed (~600 B per row as Python lists, ~0.6 GB for 2^20 rows). The full LFM-2b
(2·10⁹ events) would need ~32 GB resident and ~80 GB at peak; one core parses ~3·10⁵ events/s
here (the demo's 5.7·10⁵ events: ~2 s CPU with the csv module), i.e. ~2-3 hours plus bz2
decompression. This loader is for the demo, tests and LFM-2b samples; the full-scale route is the
Beam pipeline of the user-features stage (group events by user, one user's events in memory at a
time).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Mapping, Sequence

import numpy as np

from data_pipelines import lfm_tables

USERS_FILES = ('users.tsv', 'users_corrected.tsv', 'LFM-1b_users.txt')
EVENTS_FILES = ('listening-events.tsv', 'LFM-1b_LEs.txt')
TRACKS_FILES = ('tracks.tsv', 'LFM-1b_tracks.txt')
ARTISTS_FILES = ('artists.tsv', 'LFM-1b_artists.txt')
URIS_FILES = ('spotify-uris.tsv',)
ONBOARDING_FILES = ('onboarding.tsv',)
DEVICES_FILES = ('devices.tsv',)
FOLLOWS_FILES = ('follows.tsv',)
ARTIST_COUNTRIES_FILES = ('artist-countries.tsv',)

USER_COLUMNS = {
    'user_id': ('userid', 'user'),
    'country': ('country_code',),
    'age': (),
    'gender': ('sex',),
    'creation_time': ('registered_unixtime', 'registered', 'registration_time', 'created'),
}
EVENT_COLUMNS = {
    'user_id': ('userid', 'user'),
    'track_id': ('trackid', 'track'),
    'timestamp': ('time', 'unixtime', 'played_at'),
}
TRACK_COLUMNS = {
    'track_id': ('trackid', 'id'),
    'artist_id': ('artistid',),
    'artist_name': ('artist',),
}  # track_name is not read (not needed here; it would dominate the tracks table's memory)
ARTIST_COLUMNS = {'artist_id': ('artistid', 'id'), 'artist_name': ('name', 'artist')}
URI_COLUMNS = {'track_id': ('trackid', 'id'), 'uri': ('spotify_uri', 'track_uri')}
ONBOARDING_COLUMNS = {
    'user_id': ('userid', 'user'),
    'timestamp': ('time', 'onboarding_time'),
    'artist_ids': ('artists', 'artist_id'),
    'languages': ('language_codes', 'language'),
}
DEVICE_COLUMNS = {
    'user_id': ('userid', 'user'),
    'timestamp': ('time', 'first_seen'),
    'device': ('device_type',),
}
FOLLOW_COLUMNS = {
    'user_id': ('userid', 'user'),
    'artist_id': ('artistid', 'artist'),
    'timestamp': ('time',),
}
ARTIST_COUNTRY_COLUMNS = {'artist_id': ('artistid', 'id'), 'country': ('country_code',)}
# Headerless LFM-1b files: column names in their documented order.
LFM1B_EVENTS_HEADER = ('user-id', 'artist-id', 'album-id', 'track-id', 'timestamp')
LFM1B_TRACKS_HEADER = ('track-id', 'track-name', 'artist-id')
LFM1B_ARTISTS_HEADER = ('artist-id', 'artist-name')
TABLES = ('onboarding', 'devices', 'follows', 'artist_countries')
# (file names, columns, required, value column, message when absent) of the user-event tables.
_DEVICES = (
    DEVICES_FILES,
    DEVICE_COLUMNS,
    ('user_id', 'device'),
    'device',
    'devices.tsv absent: device features and tasks off',
)
_FOLLOWS = (
    FOLLOWS_FILES,
    FOLLOW_COLUMNS,
    ('user_id', 'artist_id', 'timestamp'),
    'artist_id',
    'follows.tsv absent: artist-follow task off',
)


@dataclasses.dataclass(frozen=True)
class Listening:
  """Users, tracks, artists, events and platform signals; all indices dense int32, numpy arrays.

  U users (order of first appearance in users.tsv), M tracks, A artists, E events sorted by
  (user, time, track). Optional tables absent -> their fields are None (`has(table)` False).
  """

  user_ids: np.ndarray  # [U] str
  user_country: np.ndarray  # [U] int32 into countries, -1 missing
  user_age: np.ndarray  # [U] int32 years, -1 missing
  user_gender: np.ndarray  # [U] int32 into genders, -1 missing
  user_created: np.ndarray  # [U] int64 unix s UTC, -1 missing
  countries: tuple[str, ...]
  genders: tuple[str, ...]
  track_ids: np.ndarray  # [M] str
  track_artist: np.ndarray  # [M] int32 into artists, -1 unknown
  track_uri: np.ndarray  # [M] str, '' unknown
  artist_ids: np.ndarray  # [A] str
  artist_names: np.ndarray  # [A] str
  artist_country: np.ndarray | None  # [A] int32 into countries, -1 unknown
  event_user: np.ndarray  # [E] int32
  event_track: np.ndarray  # [E] int32
  event_time: np.ndarray  # [E] int64
  user_offsets: np.ndarray  # [U+1] int64
  onboarding_time: np.ndarray | None  # [U] int64, -1 = no row
  onboarding_artist_offsets: np.ndarray | None  # [U+1] int64
  onboarding_artists: np.ndarray | None  # [K] int32 into artists
  onboarding_language_offsets: np.ndarray | None  # [U+1] int64
  onboarding_languages: np.ndarray | None  # [L] int32 into languages
  languages: tuple[str, ...]
  device_user: np.ndarray | None  # [D] int32, sorted by (user, time)
  device_index: np.ndarray | None  # [D] int32 into devices
  device_time: np.ndarray | None  # [D] int64 (-1 missing)
  devices: tuple[str, ...]
  follow_user: np.ndarray | None  # [F] int32, sorted by (user, time)
  follow_artist: np.ndarray | None  # [F] int32
  follow_time: np.ndarray | None  # [F] int64
  report: lfm_tables.SkipReport
  messages: tuple[str, ...]
  files: Mapping[str, str] = dataclasses.field(default_factory=dict)  # table -> path read

  def user_events(self, u: int) -> tuple[np.ndarray, np.ndarray]:
    """(tracks int32 [n], times int64 [n]) of user u, sorted by time."""
    lo, hi = self.user_offsets[u], self.user_offsets[u + 1]
    return self.event_track[lo:hi], self.event_time[lo:hi]

  @property
  def num_users(self) -> int:
    return len(self.user_ids)

  @property
  def num_tracks(self) -> int:
    return len(self.track_ids)

  @property
  def num_artists(self) -> int:
    return len(self.artist_ids)

  @property
  def num_events(self) -> int:
    return len(self.event_user)

  def has(self, table: str) -> bool:
    """Whether an optional table was read: one of TABLES (onboarding, devices, follows, ...)."""
    field = {
        'onboarding': self.onboarding_time,
        'devices': self.device_user,
        'follows': self.follow_user,
        'artist_countries': self.artist_country,
    }
    if table not in field:
      raise ValueError(f'unknown table {table!r}; known: {TABLES}')
    return field[table] is not None


def _header(path: pathlib.Path, columns: Mapping[str, Sequence[str]], required, default):
  """Header of an LFM-1b file: True when its first line names any known column, else `default`."""
  if default is None or not path.name.startswith('LFM-1b'):
    return True
  with lfm_tables.open_text(path) as f:
    first = f.readline().rstrip('\r\n').split('\t')
  return True if lfm_tables.resolve_columns(first, columns) else tuple(default)


def _read(path, columns, required, kinds, report, default_header=None, progress=False):
  header = _header(path, columns, required, default_header)
  return lfm_tables.read_table(
      path,
      columns,
      required=required,
      kinds=kinds,
      report=report,
      header=header,
      progress=progress,
  )


def _table(path, columns, required, kinds, report, default_header=None) -> dict[str, np.ndarray]:
  kinds = {c: kinds.get(c, 'str') for c in columns}
  return lfm_tables.concat_chunks(
      _read(path, columns, required, kinds, report, default_header), kinds
  )


def _dedupe(table: dict[str, np.ndarray], key: str, name: str, report) -> dict[str, np.ndarray]:
  keep = lfm_tables.first_unique(table[key])
  if not keep.all():
    dup = ~keep
    report.add_values(name, 'duplicate_' + key, table[lfm_tables.LINE][dup], key, table[key][dup])
    table = {k: v[keep] for k, v in table.items()}
  return table


def _drop_unknown(
    table, index, name, reason, key, report
) -> tuple[dict[str, np.ndarray], np.ndarray]:
  bad = index < 0
  if bad.any():
    report.add_values(name, reason, table[lfm_tables.LINE][bad], key, table[key][bad])
    table = {k: v[~bad] for k, v in table.items()}
  return table, index[~bad]


def _require(directory: pathlib.Path, names: Sequence[str]) -> pathlib.Path:
  path = lfm_tables.find_table(directory, names)
  if path is None:
    raise ValueError(
        f'{str(directory)!r} has none of {list(names)} (plain, .bz2 or .gz): a required table'
    )
  return path


def load_listening(directory: os.PathLike | str, *, progress: bool = True) -> Listening:
  """Reads the tables of `directory` (see the module docstring) into a Listening.

  Prints the messages about absent optional tables and, if any rows were skipped, the skip
  summary; `progress` shows a tqdm bar over the events file's bytes.

  Raises:
    ValueError: a required table or column is missing, or a file is unreadable as TSV.
  """
  directory = pathlib.Path(directory)
  report = lfm_tables.SkipReport()
  messages: list[str] = []
  files: dict[str, str] = {}

  # Users.
  path = _require(directory, USERS_FILES)
  files['users'] = str(path)
  users = _table(path, USER_COLUMNS, ('user_id',), {'age': 'int', 'creation_time': 'time'}, report)
  users = _dedupe(users, 'user_id', path.name, report)
  user_ids = users['user_id']
  num_users = len(user_ids)
  user_index = lfm_tables.IdIndex(user_ids)
  empty_u = np.zeros((num_users,), '<U1')
  age = users.get('age', np.full(num_users, -1, np.int64))
  user_age = np.where(age < 0, -1, age).astype(np.int32)
  genders, user_gender = lfm_tables.vocabulary(users.get('gender', empty_u))
  user_created = users.get('creation_time', np.full(num_users, -1, np.int64)).astype(np.int64)

  # Artists.
  path = lfm_tables.find_table(directory, ARTISTS_FILES)
  if path is not None:
    files['artists'] = str(path)
    artists = _table(
        path, ARTIST_COLUMNS, ('artist_id',), {}, report, default_header=LFM1B_ARTISTS_HEADER
    )
    artists = _dedupe(artists, 'artist_id', path.name, report)
    artist_ids = artists['artist_id']
    artist_names = artists.get('artist_name', np.zeros((len(artist_ids),), '<U1'))
  else:
    artist_ids = artist_names = np.zeros((0,), '<U1')

  # Tracks, joined to artists by id or by name.
  path = _require(directory, TRACKS_FILES)
  files['tracks'] = str(path)
  tracks = _table(path, TRACK_COLUMNS, ('track_id',), {}, report, LFM1B_TRACKS_HEADER)
  tracks = _dedupe(tracks, 'track_id', path.name, report)
  track_ids = tracks['track_id']
  if 'artist_id' in tracks:
    track_artist = lfm_tables.IdIndex(artist_ids).lookup(tracks['artist_id'])
    unknown = (track_artist < 0) & (tracks['artist_id'] != '')
    report.add_values(
        path.name,
        'unknown_artist_id_set_missing',
        tracks[lfm_tables.LINE][unknown],
        'artist_id',
        tracks['artist_id'][unknown],
    )
  elif 'artist_name' in tracks:
    if lfm_tables.find_table(directory, ARTISTS_FILES) is None:
      messages.append('artists.tsv absent: artists made from the artist names of tracks.tsv')
    track_artist, artist_ids, artist_names = _join_by_name(
        tracks, artist_ids, artist_names, path.name, report
    )
  else:
    track_artist = np.full(len(track_ids), -1, np.int32)
    messages.append(f'{path.name} has neither artist_id nor artist_name: track artists unknown')
  num_artists = len(artist_ids)
  track_index = lfm_tables.IdIndex(track_ids)
  artist_index = lfm_tables.IdIndex(artist_ids)

  # Spotify uris.
  path = lfm_tables.find_table(directory, URIS_FILES)
  if path is None:
    messages.append('spotify-uris.tsv absent: track_uri empty, no LARP audio vectors can be joined')
    track_uri = np.zeros((len(track_ids),), '<U1')
  else:
    files['spotify_uris'] = str(path)
    uris = _table(path, URI_COLUMNS, ('track_id', 'uri'), {}, report)
    uris = _dedupe(uris, 'track_id', path.name, report)
    uris, index = _drop_unknown(
        uris, track_index.lookup(uris['track_id']), path.name, 'unknown_track', 'track_id', report
    )
    track_uri = np.zeros((len(track_ids),), uris['uri'].dtype)
    track_uri[index] = uris['uri']

  # Artist countries (countries vocabulary = users' and artists').
  country_values = [users.get('country', empty_u)]
  path = lfm_tables.find_table(directory, ARTIST_COUNTRIES_FILES)
  artist_country_raw = None
  if path is None:
    messages.append(
        'artist-countries.tsv absent: artist_country None, the same-country-of-most-listened-'
        'artists evaluation off'
    )
  else:
    files['artist_countries'] = str(path)
    table = _table(path, ARTIST_COUNTRY_COLUMNS, ('artist_id', 'country'), {}, report)
    table = _dedupe(table, 'artist_id', path.name, report)
    table, index = _drop_unknown(
        table,
        artist_index.lookup(table['artist_id']),
        path.name,
        'unknown_artist',
        'artist_id',
        report,
    )
    artist_country_raw = np.zeros((num_artists,), table['country'].dtype)
    artist_country_raw[index] = table['country']
    country_values.append(artist_country_raw)
  countries = tuple(np.unique(np.concatenate([v[v != ''] for v in country_values])).tolist())
  user_country = _codes(country_values[0], countries)
  artist_country = None if artist_country_raw is None else _codes(artist_country_raw, countries)

  # Events (streamed).
  path = _require(directory, EVENTS_FILES)
  files['events'] = str(path)
  parts_u, parts_t, parts_s = [], [], []
  for chunk in _read(
      path,
      EVENT_COLUMNS,
      ('user_id', 'track_id', 'timestamp'),
      {'user_id': 'str', 'track_id': 'str', 'timestamp': 'time'},
      report,
      LFM1B_EVENTS_HEADER,
      progress=progress,
  ):
    u = user_index.lookup(chunk['user_id'])
    t = track_index.lookup(chunk['track_id'])
    for reason, bad, key in (
        ('unknown_user', u < 0, 'user_id'),
        ('unknown_track', (t < 0) & (u >= 0), 'track_id'),
    ):
      if bad.any():
        report.add_values(path.name, reason, chunk[lfm_tables.LINE][bad], key, chunk[key][bad])
    ok = (u >= 0) & (t >= 0)
    parts_u.append(u[ok])
    parts_t.append(t[ok])
    parts_s.append(chunk['timestamp'][ok])
  event_user = np.concatenate(parts_u or [np.zeros(0, np.int32)])
  event_track = np.concatenate(parts_t or [np.zeros(0, np.int32)])
  event_time = np.concatenate(parts_s or [np.zeros(0, np.int64)])
  del parts_u, parts_t, parts_s
  order = np.lexsort((event_track, event_time, event_user))
  event_user, event_track, event_time = event_user[order], event_track[order], event_time[order]
  del order
  user_offsets = np.zeros(num_users + 1, np.int64)
  np.cumsum(np.bincount(event_user, minlength=num_users), out=user_offsets[1:])

  # Platform tables.
  onboarding = _load_onboarding(
      directory, user_index, artist_index, num_users, report, messages, files
  )
  tables = (directory, user_index)
  devices = _load_events_table(*tables, None, report, messages, files, spec=_DEVICES)
  follows = _load_events_table(*tables, artist_index, report, messages, files, spec=_FOLLOWS)
  listening = Listening(
      user_ids=user_ids,
      user_country=user_country,
      user_age=user_age,
      user_gender=user_gender,
      user_created=user_created,
      countries=countries,
      genders=genders,
      track_ids=track_ids,
      track_artist=track_artist.astype(np.int32),
      track_uri=track_uri,
      artist_ids=artist_ids,
      artist_names=artist_names,
      artist_country=artist_country,
      event_user=event_user.astype(np.int32),
      event_track=event_track.astype(np.int32),
      event_time=event_time.astype(np.int64),
      user_offsets=user_offsets,
      **onboarding,
      device_user=devices[0],
      device_index=devices[1],
      device_time=devices[2],
      devices=devices[3],
      follow_user=follows[0],
      follow_artist=follows[1],
      follow_time=follows[2],
      report=report,
      messages=tuple(messages),
      files=files,
  )
  for message in messages:
    print(message)
  if report.total:
    print(report.summary())
  return listening


def _codes(values: np.ndarray, vocab: tuple[str, ...]) -> np.ndarray:
  """int32 codes of values in a sorted vocab (-1 for '' or absent)."""
  if not vocab:
    return np.full(len(values), -1, np.int32)
  return lfm_tables.IdIndex(np.asarray(vocab)).lookup(values)


def _join_by_name(tracks, artist_ids, artist_names, name, report):
  """Track -> artist index by name (first id of a name; new artists for unknown names)."""
  line = tracks[lfm_tables.LINE]
  names = tracks['artist_name']
  unique_names, first, counts = np.unique(artist_names, return_index=True, return_counts=True)
  by_name = lfm_tables.IdIndex(unique_names)
  hit = by_name.lookup(names)
  track_artist = np.where(hit >= 0, first[np.maximum(hit, 0)], -1).astype(np.int32)
  ambiguous = (hit >= 0) & (counts[np.maximum(hit, 0)] > 1)
  note = ' has several artist ids; first used'
  report.add_values(
      name, 'ambiguous_artist_name', line[ambiguous], 'artist_name', names[ambiguous], note
  )
  new = (hit < 0) & (names != '')
  if new.any():
    new_names, first_row, inverse = np.unique(names[new], return_index=True, return_inverse=True)
    order = np.argsort(first_row, kind='stable')  # new artists in order of first appearance
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    track_artist[new] = len(artist_ids) + rank[inverse]
    report.add_values(
        name,
        'new_artist_from_name',
        line[new][first_row[order]],
        'artist_name',
        new_names[order],
        ' not in artists.tsv',
    )
    artist_names = np.concatenate([artist_names, new_names[order]])
    artist_ids = np.concatenate([artist_ids, np.char.add('name:', new_names[order])])
  return track_artist, artist_ids, artist_names


def _load_onboarding(directory, user_index, artist_index, num_users, report, messages, files):
  absent = dict(
      onboarding_time=None,
      onboarding_artist_offsets=None,
      onboarding_artists=None,
      onboarding_language_offsets=None,
      onboarding_languages=None,
      languages=(),
  )
  path = lfm_tables.find_table(directory, ONBOARDING_FILES)
  if path is None:
    messages.append('onboarding.tsv absent: onboarding features and onboarding cohorts off')
    return absent
  files['onboarding'] = str(path)
  table = _table(
      path,
      ONBOARDING_COLUMNS,
      ('user_id', 'timestamp'),
      {'timestamp': 'time', 'artist_ids': 'list', 'languages': 'list'},
      report,
  )
  table = _dedupe(table, 'user_id', path.name, report)
  table, users = _drop_unknown(
      table, user_index.lookup(table['user_id']), path.name, 'unknown_user', 'user_id', report
  )
  onboarding_time = np.full(num_users, -1, np.int64)
  onboarding_time[users] = table['timestamp']
  n = len(users)
  artist_lists = table.get('artist_ids', np.zeros((n,), '<U1')).tolist()
  language_lists = table.get('languages', np.zeros((n,), '<U1')).tolist()
  split = lambda s: [x.strip() for x in s.split(',') if x.strip()]
  a_user, a_ids, a_line, l_user, l_codes = [], [], [], [], []
  for u, line, artists, langs in zip(
      users.tolist(), table[lfm_tables.LINE].tolist(), artist_lists, language_lists
  ):
    for a in split(artists):
      a_user.append(u)
      a_ids.append(a)
      a_line.append(line)
    for code in dict.fromkeys(x.lower() for x in split(langs)):
      l_user.append(u)
      l_codes.append(code)
  a_index = artist_index.lookup(np.asarray(a_ids, str)) if a_ids else np.zeros(0, np.int32)
  bad = a_index < 0
  lines, ids = np.asarray(a_line, np.int64)[bad], np.asarray(a_ids, str)[bad]
  report.add_values(path.name, 'unknown_onboarding_artist_dropped', lines, 'artist_id', ids)
  a_user = np.asarray(a_user, np.int32)[~bad]
  artist_offsets, artists = lfm_tables.csr(a_user, a_index[~bad], num_users)
  languages, codes = lfm_tables.vocabulary(
      np.asarray(l_codes, str) if l_codes else np.zeros(0, '<U1')
  )
  language_offsets, langs = lfm_tables.csr(np.asarray(l_user, np.int32), codes, num_users)
  return dict(
      onboarding_time=onboarding_time,
      onboarding_artist_offsets=artist_offsets,
      onboarding_artists=artists,
      onboarding_language_offsets=language_offsets,
      onboarding_languages=langs,
      languages=languages,
  )


def _load_events_table(directory, user_index, artist_index, report, messages, files, spec):
  """devices / follows: (user int32 [n], value int32 [n], time int64 [n], vocab) by (user, time)."""
  names, columns, required, value, absent_message = spec
  path = lfm_tables.find_table(directory, names)
  if path is None:
    messages.append(absent_message)
    return None, None, None, ()
  files[names[0].split('.')[0]] = str(path)
  table = _table(path, columns, required, {'timestamp': 'time'}, report)
  table, users = _drop_unknown(
      table, user_index.lookup(table['user_id']), path.name, 'unknown_user', 'user_id', report
  )
  if artist_index is None:
    vocab, codes = lfm_tables.vocabulary(table[value])
  else:
    vocab = ()
    keep_users = {k: v for k, v in table.items()}
    keep_users['_user'] = users
    keep_users, codes = _drop_unknown(
        keep_users, artist_index.lookup(table[value]), path.name, 'unknown_artist', value, report
    )
    table, users = keep_users, keep_users['_user']
  times = table.get('timestamp', np.full(len(users), -1, np.int64))
  order = np.lexsort((codes, times, users))
  return (
      users[order].astype(np.int32),
      codes[order].astype(np.int32),
      times[order].astype(np.int64),
      vocab,
  )


# Shared with the demo writer and tests (lives in lfm_tables).
write_tsv = lfm_tables.write_tsv
