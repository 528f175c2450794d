"""Deterministic demo catalogue in the REAL MPD format (+ LFM-style logs) with synthetic audio.

Writes to `out_dir`:
  data/mpd.slice.<a>-<b>.json  MPD slices (`info` + `playlists[]`, <= slice_size playlists each):
                               pid, name, num_tracks, tracks[] {pos, artist_name, track_uri
                               (spotify:track:<22 chars>), artist_uri, track_name, album_uri,
                               duration_ms, album_name} and the other MPD playlist fields.
  audio/<track_id>.wav         mono 16-bit PCM clips synthesised from each track's latent attributes
                               (skipped with audio=False).
  listening_counts.tsv         (lfm=True) `user_id, track_id, count`: one user per playlist.
  tracks.tsv                   (lfm=True) `track_id, track_name, artist_name, album_name`.
  ground_truth.json            the latent structure (styles, moods, artists, albums, per-track audio
                               attributes, playlist kinds) for debugging and tests.

Latent model (one seeded numpy Generator for metadata and playlists; per-track generators
`default_rng([seed, 1, track])` for audio, so audio can be made in any order or in parallel):
  * styles carry a harmonic profile (timbre), register, tempo, brightness, noise level, a 16-step
    rhythm pattern and a major-mode bias; moods shift tempo, brightness, noise and mode.
  * artists = one style + one mood, attributes near the style's (noise); albums near their artist;
    tracks near their album, with their own key (0-11) and mode, and a theme: with probability
    `theme_title_probability` the track title contains the theme word (e.g. "Love"), independent of
    style. Names come from word lists; titles never contain theme words otherwise.
  * playlist kinds (weights `kind_weights`), each plus `noise_fraction` random tracks:
      style_mood   tracks of one style, favouring one mood  -> revealed by AUDIO
      artist       tracks of 1-6 artists of any style       -> revealed by TEXT (artist/album names)
      theme        tracks whose title has one theme word,   -> revealed by TEXT only (the paper's
                   across all styles                           "Love" example); audio is no help
    Track choice is weighted by a log-normal popularity.

Everything is seeded: the same config gives byte-identical JSON/TSV/WAV files.

CLI: `python -m data_pipelines.demo.catalogue --out DIR [--num_tracks 600 --num_playlists 400
      --seed 0 --sample_rate 16000 --clip_seconds 6 --no_audio --lfm --workers 1]`
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import multiprocessing
import os
import pathlib
import string
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import soundfile

STYLE_NAMES = ('jazz', 'metal', 'techno', 'folk', 'ambient', 'funk', 'classical', 'hip hop',
               'reggae', 'blues', 'disco', 'punk', 'soul', 'house', 'country', 'trance')
MOOD_NAMES = ('happy', 'sad', 'calm', 'energetic', 'dreamy', 'angry', 'romantic', 'dark')
THEME_WORDS = ('Love', 'Night', 'Summer', 'Rain', 'Fire', 'Heart', 'Dream', 'Road', 'Ocean',
               'City', 'Gold', 'Ghost', 'River', 'Star', 'Home', 'Storm', 'Midnight', 'Shadow',
               'Winter', 'Angel')
_ADJECTIVES = ('Blue', 'Golden', 'Broken', 'Silent', 'Electric', 'Velvet', 'Crimson', 'Lonely',
               'Hidden', 'Bright', 'Wild', 'Frozen', 'Burning', 'Gentle', 'Hollow', 'Endless',
               'Neon', 'Quiet', 'Restless', 'Sweet', 'Bitter', 'Faded', 'Cosmic', 'Lucky', 'Secret',
               'Paper', 'Iron', 'Crystal', 'Distant', 'Little', 'Strange', 'Sacred', 'Rusty',
               'Purple', 'Modern', 'Ancient', 'Careless', 'Glass', 'Northern', 'Tender')
_NOUNS = ('Mirror', 'Garden', 'Window', 'Machine', 'Letter', 'Desert', 'Mountain', 'Engine',
          'Island', 'Forest', 'Bridge', 'Echo', 'Signal', 'Circle', 'Harbor', 'Lantern', 'Canyon',
          'Feather', 'Thunder', 'Horizon', 'Station', 'Voice', 'Memory', 'Silence', 'Highway',
          'Valley', 'Castle', 'Orchard', 'Compass', 'Ribbon', 'Meadow', 'Anchor', 'Temple',
          'Arrow', 'Carnival', 'Satellite', 'Diamond', 'Tower', 'Window Seat', 'Pocket')
_PLURALS = ('Wolves', 'Lions', 'Pilots', 'Sailors', 'Strangers', 'Kings', 'Echoes', 'Machines',
            'Monkeys', 'Rebels', 'Owls', 'Foxes', 'Comets', 'Saints', 'Robots', 'Tigers',
            'Drifters', 'Giants', 'Ravens', 'Bandits', 'Twins', 'Sparrows', 'Poets', 'Dancers')
_FIRST = ('Ada', 'Ben', 'Clara', 'Dan', 'Eva', 'Felix', 'Grace', 'Hugo', 'Iris', 'Jonas', 'Kira',
          'Leo', 'Maya', 'Nils', 'Olga', 'Paul', 'Rosa', 'Sami', 'Tara', 'Umar', 'Vera', 'Walt',
          'Yara', 'Zeno', 'Mila', 'Otto', 'Lena', 'Ravi', 'Nora', 'Igor')
_LAST = ('Moreau', 'Okafor', 'Lindqvist', 'Tanaka', 'Silva', 'Novak', 'Brennan', 'Haddad',
         'Kowalski', 'Ferreira', 'Ivanova', 'Mendez', 'Larsen', 'Dubois', 'Costa', 'Nakamura',
         'Quinn', 'Rossi', 'Schmidt', 'Varga', 'Weber', 'Young', 'Zhou', 'Abara', 'Petrov',
         'Castillo', 'Hale', 'Moss', 'Reyes', 'Stone')
_TITLE_WITH_THEME = ('{t}', '{a} {t}', '{t} {n}', '{n} of {t}', 'My {t}', '{t} Again',
                     'Lost in the {t}', '{a} {t} {n}', 'No More {t}', '{t} Tonight')
_TITLE_PLAIN = ('{a} {n}', '{n}', 'The {n}', '{n} {n2}', '{a} {n} Song', 'Under the {n}',
                '{a} and {a2}', 'Back to the {n}')
_ALBUM_PATTERNS = ('{a} {n}', '{n}', 'The {a} {n}', '{n} {n2}', '{a} {n}s', 'Songs from the {n}',
                   '{n} Sessions', '{a} Days')
_ARTIST_PATTERNS = ('{f} {l}', 'The {a} {p}', '{a} {p}', '{f} and the {p}', '{l}', '{n} {p}')
# Split settings that suit the default demo catalogue (600 tracks, 400 playlists): pass them with a
# name, sample_rate and clip_seconds to `data_pipelines.mpd.build_dataset`. Train tracks are half of
# the catalogue and the rest is cut into validation and test pools, so that 50 + 50 evaluation
# playlists keep more than 10 (the paper's minimum) held-out tracks each.
DEMO_SPLIT_SETTINGS = {'train_tracks': 0.5, 'valid_tracks': 0.25, 'num_valid_playlists': 50,
                       'num_test_playlists': 50, 'min_playlist_length': 10,
                       'max_playlist_length': 101, 'pairs_per_track': 5}
_BASE62 = string.digits + string.ascii_letters
NUM_HARMONICS = 8
RHYTHM_STEPS = 16
_KINDS = ('style_mood', 'artist', 'theme')


@dataclasses.dataclass(frozen=True)
class CatalogueConfig:
  """Size and shape of the demo catalogue (defaults: a few seconds to generate).

  Attributes:
    num_tracks: tracks N.
    num_playlists: playlists.
    num_styles / num_moods / num_themes: latent classes (<= 16 / 8 / 20).
    tracks_per_artist: mean tracks per artist.
    album_size: (min, max) tracks per album.
    playlist_length: (min, max) target tracks per playlist before noise (artist/theme playlists can
      be shorter when their pool is small).
    kind_weights: probabilities of the playlist kinds (style_mood, artist, theme).
    noise_fraction: extra random tracks per playlist, as a fraction of its length.
    theme_title_probability: chance a title contains its track's theme word.
    sample_rate: audio sample rate (Hz).
    clip_seconds: audio clip length per track.
    slice_size: playlists per MPD slice file (real MPD: 1000).
    seed: master seed.
  """
  num_tracks: int = 600
  num_playlists: int = 400
  num_styles: int = 8
  num_moods: int = 4
  num_themes: int = 12
  tracks_per_artist: float = 12.0
  album_size: tuple[int, int] = (4, 10)
  playlist_length: tuple[int, int] = (20, 80)
  kind_weights: tuple[float, float, float] = (0.4, 0.3, 0.3)
  noise_fraction: float = 0.1
  theme_title_probability: float = 0.6
  sample_rate: int = 16000
  clip_seconds: float = 6.0
  slice_size: int = 1000
  seed: int = 0

  def __post_init__(self):
    checks = {
        'num_tracks': self.num_tracks >= 10,
        'num_playlists': self.num_playlists >= 1,
        'num_styles': 1 <= self.num_styles <= len(STYLE_NAMES),
        'num_moods': 1 <= self.num_moods <= len(MOOD_NAMES),
        'num_themes': 1 <= self.num_themes <= len(THEME_WORDS),
        'tracks_per_artist': self.tracks_per_artist >= 1,
        'album_size': 1 <= self.album_size[0] <= self.album_size[1],
        'playlist_length': 1 <= self.playlist_length[0] <= self.playlist_length[1],
        'kind_weights': len(self.kind_weights) == 3 and min(self.kind_weights) >= 0
                        and sum(self.kind_weights) > 0,
        'noise_fraction': 0 <= self.noise_fraction < 1,
        'theme_title_probability': 0 <= self.theme_title_probability <= 1,
        'sample_rate': self.sample_rate >= 4000,
        'clip_seconds': self.clip_seconds > 0,
        'slice_size': self.slice_size >= 1,
    }
    bad = [name for name, ok in checks.items() if not ok]
    if bad:
      raise ValueError(f'invalid CatalogueConfig fields {bad}: {self}')


@dataclasses.dataclass
class Catalogue:
  """The latent structure and metadata of all tracks (columns of length N, numpy where numeric).

  Track attributes: style, mood, artist, album, theme (int32 [N]); has_theme_word (bool [N]);
  tempo (bpm), brightness (0..1), noise_level, popularity (float32 [N]); key (0-11), major (bool),
  register (MIDI note of the tonic's octave) [N]; harmonics float32 [N, 8]; rhythm bool [N, 16];
  duration_ms int64 [N]; track_ids / track_names (lists of str).
  """
  config: CatalogueConfig
  styles: list[dict[str, Any]]
  moods: list[dict[str, Any]]
  artists: list[dict[str, Any]]
  albums: list[dict[str, Any]]
  track_ids: list[str]
  track_names: list[str]
  attrs: dict[str, np.ndarray]

  @property
  def num_tracks(self) -> int:
    return len(self.track_ids)

  def track_uri(self, i: int) -> str:
    return f'spotify:track:{self.track_ids[i]}'

  def artist_of(self, i: int) -> dict[str, Any]:
    return self.artists[int(self.attrs['artist'][i])]

  def album_of(self, i: int) -> dict[str, Any]:
    return self.albums[int(self.attrs['album'][i])]

  @functools.cached_property
  def mpd_track_items(self) -> list[dict[str, Any]]:
    """Per track, its MPD playlist item without 'pos' (field order as in the real slices)."""
    items = []
    for t in range(self.num_tracks):
      artist, album = self.artist_of(t), self.album_of(t)
      items.append({'artist_name': artist['name'], 'track_uri': self.track_uri(t),
                    'artist_uri': artist['uri'], 'track_name': self.track_names[t],
                    'album_uri': album['uri'],
                    'duration_ms': int(self.attrs['duration_ms'][t]),
                    'album_name': album['name']})
    return items


class _Draws:
  """Uniform draws served one at a time from blocks (fast scalar picks, still fully seeded)."""

  def __init__(self, rng: np.random.Generator, block: int = 8192):
    self._rng, self._block = rng, block
    self._buffer, self._next = rng.random(block), 0

  def uniform(self) -> float:
    if self._next == self._block:
      self._buffer, self._next = self._rng.random(self._block), 0
    self._next += 1
    return float(self._buffer[self._next - 1])

  def pick(self, words: Sequence[str]) -> str:
    return words[int(self.uniform() * len(words))]


def _spotify_ids(rng: np.random.Generator, count: int) -> list[str]:
  """count distinct 22-character base62 ids (the shape of Spotify ids)."""
  alphabet = np.frombuffer(_BASE62.encode('ascii'), dtype='S1')
  ids: list[str] = []
  seen: set[str] = set()
  while len(ids) < count:
    block = alphabet[rng.integers(0, 62, (count - len(ids), 22))].view('S22').ravel()
    for raw in block.tolist():
      tid = raw.decode('ascii')
      if tid not in seen:
        seen.add(tid)
        ids.append(tid)
  return ids


@functools.lru_cache(maxsize=None)
def _fields(pattern: str) -> tuple[str, ...]:
  return tuple(name for _, name, _, _ in string.Formatter().parse(pattern) if name)


_WORD_LISTS = {'a': _ADJECTIVES, 'a2': _ADJECTIVES, 'n': _NOUNS, 'n2': _NOUNS, 'p': _PLURALS,
               'f': _FIRST, 'l': _LAST}


def _fill(draws: _Draws, pattern: str, theme: str = '') -> str:
  values = {name: theme if name == 't' else draws.pick(_WORD_LISTS[name])
            for name in _fields(pattern)}
  return pattern.format(**values)


def _unique_name(draws: _Draws, patterns: Sequence[str], taken: set[str]) -> str:
  for _ in range(8):
    name = _fill(draws, draws.pick(patterns))
    if name not in taken:
      break
  else:
    name = f'{name} {len(taken)}'
  taken.add(name)
  return name


def _make_styles(rng: np.random.Generator, num_styles: int) -> list[dict[str, Any]]:
  styles = []
  registers = np.array([36, 43, 48, 55, 60, 67])
  for s in range(num_styles):
    h = np.arange(1, NUM_HARMONICS + 1)
    decay = rng.uniform(0.4, 2.5)
    odd_gain = rng.uniform(0.2, 3.0)
    harmonics = h ** -decay * np.where(h % 2 == 1, odd_gain, 1.0) * rng.uniform(0.5, 1.5, h.size)
    pattern = rng.random(RHYTHM_STEPS) < rng.uniform(0.15, 0.6)
    pattern[0] = True
    styles.append({
        'name': STYLE_NAMES[s],
        'harmonics': harmonics / harmonics.max(),
        'register': int(registers[rng.integers(len(registers))]),
        'tempo': float(rng.uniform(65.0, 175.0)),
        'brightness': float(rng.uniform(0.05, 0.95)),
        'noise_level': float(rng.uniform(0.0, 0.25)),
        'rhythm': pattern,
        'major_logit': float(rng.normal(0.0, 1.0)),
    })
  return styles


def _make_moods(rng: np.random.Generator, num_moods: int) -> list[dict[str, Any]]:
  return [{'name': MOOD_NAMES[m], 'tempo_factor': float(rng.uniform(0.8, 1.25)),
           'brightness_shift': float(rng.normal(0.0, 0.12)),
           'noise_shift': float(rng.normal(0.0, 0.03)),
           'major_shift': float(rng.normal(0.0, 1.5))} for m in range(num_moods)]


def build_catalogue(config: CatalogueConfig) -> Catalogue:
  """Draws styles, moods, artists, albums and tracks (metadata + latent audio attributes)."""
  rng = np.random.default_rng([config.seed, 0])
  draws = _Draws(np.random.default_rng([config.seed, 4]))
  styles = _make_styles(rng, config.num_styles)
  moods = _make_moods(rng, config.num_moods)
  n = config.num_tracks
  names_taken: set[str] = set()
  artists, albums = [], []
  track_artist, track_album = [], []
  while len(track_artist) < n:
    style, mood = int(rng.integers(config.num_styles)), int(rng.integers(config.num_moods))
    st, md = styles[style], moods[mood]
    rhythm = st['rhythm'] ^ (rng.random(RHYTHM_STEPS) < 0.1)
    rhythm[0] = True
    artist = {
        'index': len(artists), 'name': _unique_name(draws, _ARTIST_PATTERNS, names_taken),
        'style': style, 'mood': mood,
        'tempo': st['tempo'] * md['tempo_factor'] * float(np.exp(rng.normal(0, 0.05))),
        'brightness': min(1.0, max(0.0, st['brightness'] + md['brightness_shift']
                                   + float(rng.normal(0, 0.06)))),
        'noise_level': min(0.4, max(0.0, st['noise_level'] + md['noise_shift']
                                    + float(rng.normal(0, 0.02)))),
        'harmonics': st['harmonics'] * np.exp(rng.normal(0, 0.15, NUM_HARMONICS)),
        'rhythm': rhythm,
        'major_logit': st['major_logit'] + md['major_shift'] + float(rng.normal(0, 0.5)),
        'albums': [],
    }
    artists.append(artist)
    num_artist_tracks = max(1, int(rng.poisson(config.tracks_per_artist)))
    album_names: set[str] = set()
    made = 0
    while made < num_artist_tracks and len(track_artist) < n:
      size = int(rng.integers(config.album_size[0], config.album_size[1] + 1))
      size = min(size, num_artist_tracks - made, n - len(track_artist))
      album = {'index': len(albums), 'name': _unique_name(draws, _ALBUM_PATTERNS, album_names),
               'artist': artist['index'], 'tempo_factor': float(np.exp(rng.normal(0, 0.03))),
               'key': int(rng.integers(12))}
      albums.append(album)
      artist['albums'].append(album['index'])
      track_artist += [artist['index']] * size
      track_album += [album['index']] * size
      made += size
  for entity, uri_id in zip(artists + albums, _spotify_ids(rng, len(artists) + len(albums))):
    entity['uri'] = f'spotify:{"album" if "artist" in entity else "artist"}:{uri_id}'

  # Track attributes: their album's / artist's values plus per-track noise (vectorised).
  ta, tb = np.asarray(track_artist), np.asarray(track_album)
  column = lambda key: np.asarray([x[key] for x in artists])[ta]
  attrs = {'artist': ta, 'album': tb, 'style': column('style'), 'mood': column('mood')}
  album_tempo = np.asarray([x['tempo_factor'] for x in albums])[tb]
  attrs['tempo'] = column('tempo') * album_tempo * np.exp(rng.normal(0, 0.02, n))
  attrs['brightness'] = np.clip(column('brightness') + rng.normal(0, 0.03, n), 0, 1)
  attrs['noise_level'] = np.clip(column('noise_level') + rng.normal(0, 0.01, n), 0, 0.4)
  attrs['harmonics'] = column('harmonics') * np.exp(rng.normal(0, 0.08, (n, NUM_HARMONICS)))
  attrs['rhythm'] = column('rhythm')
  attrs['register'] = np.asarray([s['register'] for s in styles])[attrs['style']]
  attrs['major'] = rng.random(n) < 1.0 / (1.0 + np.exp(-column('major_logit')))
  album_keys = np.asarray([x['key'] for x in albums])[tb]
  attrs['key'] = np.where(rng.random(n) < 0.5, album_keys, rng.integers(0, 12, n))
  attrs['theme'] = rng.integers(0, config.num_themes, n)
  attrs['has_theme_word'] = rng.random(n) < config.theme_title_probability
  attrs['popularity'] = np.exp(rng.normal(0.0, 1.0, n))
  attrs['duration_ms'] = rng.integers(120_000, 360_000, n)
  for key in ('tempo', 'brightness', 'noise_level', 'harmonics', 'popularity'):
    attrs[key] = attrs[key].astype(np.float32)
  for key in ('style', 'mood', 'artist', 'album', 'theme', 'key', 'register'):
    attrs[key] = attrs[key].astype(np.int32)
  track_ids = _spotify_ids(rng, n)
  track_names = []
  for theme, has_word in zip(attrs['theme'].tolist(), attrs['has_theme_word'].tolist()):
    if has_word:
      track_names.append(_fill(draws, draws.pick(_TITLE_WITH_THEME), THEME_WORDS[theme]))
    else:
      track_names.append(_fill(draws, draws.pick(_TITLE_PLAIN)))
  return Catalogue(config, styles, moods, artists, albums, track_ids, track_names, attrs)


def _weighted_sample(rng: np.random.Generator, pool: np.ndarray, weights: np.ndarray,
                     k: int) -> np.ndarray:
  """k distinct items of pool, drawn by weight (Efraimidis-Spirakis keys); all if k >= len."""
  if k >= pool.size:
    return pool[rng.permutation(pool.size)]
  keys = np.log(rng.random(pool.size)) / weights
  top = np.argpartition(-keys, k - 1)[:k]
  return pool[top[np.argsort(-keys[top])]]


@dataclasses.dataclass(frozen=True)
class DemoPlaylist:
  """A generated playlist: track indices into the catalogue plus how it was made."""
  pid: int
  name: str
  tracks: np.ndarray  # int32 [len]
  kind: str
  info: dict[str, Any]


def generate_playlists(catalogue: Catalogue) -> Iterator[DemoPlaylist]:
  """Yields config.num_playlists playlists (deterministic; see the module docstring for kinds)."""
  config = catalogue.config
  rng = np.random.default_rng([config.seed, 2])
  attrs = catalogue.attrs
  n = catalogue.num_tracks
  popularity = attrs['popularity'].astype(np.float64)
  by_style = [np.flatnonzero(attrs['style'] == s).astype(np.int32)
              for s in range(config.num_styles)]
  styles_present = [s for s in range(config.num_styles) if by_style[s].size]
  by_theme = [np.flatnonzero((attrs['theme'] == t) & attrs['has_theme_word']).astype(np.int32)
              for t in range(config.num_themes)]
  tracks_of_artist = [np.flatnonzero(attrs['artist'] == a).astype(np.int32)
                      for a in range(len(catalogue.artists))]
  kind_p = np.asarray(config.kind_weights, np.float64) / sum(config.kind_weights)
  for pid in range(config.num_playlists):
    kind = _KINDS[int(rng.choice(3, p=kind_p))]
    length = int(rng.integers(config.playlist_length[0], config.playlist_length[1] + 1))
    if kind == 'theme' and max(p.size for p in by_theme) == 0:
      kind = 'style_mood'
    if kind == 'style_mood':
      style = styles_present[int(rng.integers(len(styles_present)))]
      mood = int(rng.integers(config.num_moods))
      pool = by_style[style]
      weights = popularity[pool] * np.where(attrs['mood'][pool] == mood, 4.0, 1.0)
      chosen = _weighted_sample(rng, pool, weights, length)
      name = f'{catalogue.moods[mood]["name"]} {catalogue.styles[style]["name"]}'
      info = {'style': style, 'mood': mood}
    elif kind == 'artist':
      order = rng.permutation(len(catalogue.artists))
      picked, pool_parts, size = [], [], 0
      for a in order[:6]:
        picked.append(int(a))
        pool_parts.append(tracks_of_artist[a])
        size += tracks_of_artist[a].size
        if size >= length:
          break
      pool = np.concatenate(pool_parts)
      chosen = _weighted_sample(rng, pool, popularity[pool], length)
      lead = catalogue.artists[picked[0]]['name']
      names = (f'{lead} and more', f'best of {lead}', f'{lead} radio', f'{lead} mix')
      name = names[int(rng.integers(len(names)))]
      info = {'artists': picked}
    else:
      nonempty = [t for t in range(config.num_themes) if by_theme[t].size]
      theme = nonempty[int(rng.integers(len(nonempty)))]
      pool = by_theme[theme]
      chosen = _weighted_sample(rng, pool, popularity[pool], length)
      word = THEME_WORDS[theme]
      names = (word.lower(), f'{word} songs', f'all about {word.lower()}',
               f'{word.lower()} playlist')
      name = names[int(rng.integers(len(names)))]
      info = {'theme': theme}
    num_noise = int(round(config.noise_fraction * chosen.size))
    noise = np.zeros((0,), np.int32)
    if num_noise:
      candidates = rng.integers(0, n, 4 * num_noise + 4)
      in_playlist = set(chosen.tolist())
      noise = np.asarray([t for t in dict.fromkeys(candidates.tolist())
                          if t not in in_playlist][:num_noise], np.int32)
    tracks = np.concatenate([chosen, noise]).astype(np.int32)
    tracks = tracks[rng.permutation(tracks.size)]
    info['noise_tracks'] = [catalogue.track_ids[t] for t in noise]
    yield DemoPlaylist(pid, name, tracks, kind, info)


def mpd_playlist_json(catalogue: Catalogue, playlist: DemoPlaylist) -> dict[str, Any]:
  """One playlist in the MPD JSON schema (field order as in the real slices)."""
  items = catalogue.mpd_track_items
  tracks = [{'pos': pos, **items[t]} for pos, t in enumerate(playlist.tracks.tolist())]
  t = playlist.tracks
  return {
      'name': playlist.name,
      'collaborative': 'false',
      'pid': playlist.pid,
      'modified_at': 1_500_000_000 + 3_600 * playlist.pid,
      'num_tracks': len(tracks),
      'num_albums': int(np.unique(catalogue.attrs['album'][t]).size),
      'num_followers': 1 + playlist.pid % 7,
      'tracks': tracks,
      'num_edits': 1 + playlist.pid % 5,
      'duration_ms': int(catalogue.attrs['duration_ms'][t].sum()),
      'num_artists': int(np.unique(catalogue.attrs['artist'][t]).size),
  }


# --------------------------------------------------------------------------------------- audio


def synthesize_track(catalogue: Catalogue, track: int, *, sample_rate: int | None = None,
                     clip_seconds: float | None = None) -> np.ndarray:
  """Renders one track's clip from its latent attributes. float32 [round(sr * seconds)].

  Chords (I-V-vi-IV major / i-VI-III-VII minor, one per bar) in the track's key and style register,
  voiced with its harmonic profile (wavetable, spectral tilt from brightness) and a plucked
  envelope per beat, a bass line, percussion on the rhythm pattern's 16th steps, a kick every two
  beats and a broadband noise floor. The beat is rounded to whole samples so every envelope is a
  tiled period (fast). Per-track generator: default_rng([seed, 1, track]).
  """
  config = catalogue.config
  sr = sample_rate or config.sample_rate
  seconds = clip_seconds or config.clip_seconds
  a = catalogue.attrs
  rng = np.random.default_rng([config.seed, 1, int(track)])
  num = int(round(sr * seconds))
  step_len = max(1, int(round(sr * 15.0 / float(a['tempo'][track]))))  # a 16th note, samples.
  beat_len, bar_len = 4 * step_len, 16 * step_len

  def tiled(period: np.ndarray) -> np.ndarray:
    return np.tile(period.astype(np.float32), num // period.size + 1)[:num]

  major = bool(a['major'][track])
  scale = (0, 2, 4, 5, 7, 9, 11) if major else (0, 2, 3, 5, 7, 8, 10)
  degrees = (0, 4, 5, 3) if major else (0, 5, 2, 6)
  root_midi = int(a['register'][track]) + int(a['key'][track])
  bar_index = np.repeat(np.arange(num // bar_len + 1) % len(degrees), bar_len)[:num]

  def scale_midi(step: int) -> int:
    octave, idx = divmod(step, 7)
    return root_midi + 12 * octave + scale[idx]

  brightness = float(a['brightness'][track])
  h = np.arange(1, NUM_HARMONICS + 1)
  amps = a['harmonics'][track].astype(np.float64) * np.exp(-(h - 1) * (1.0 - brightness) * 0.9)
  table_size = 2048
  phase_grid = np.arange(table_size) / table_size
  table = (amps[:, None] * np.sin(2 * np.pi * h[:, None] * phase_grid[None, :])).sum(0)
  table = (table / (np.abs(table).max() + 1e-9)).astype(np.float32)
  sine = np.sin(2 * np.pi * phase_grid).astype(np.float32)

  def render(wavetable: np.ndarray, midi_per_bar: Sequence[float]) -> np.ndarray:
    freq = 440.0 * 2.0 ** ((np.asarray(midi_per_bar, np.float64) - 69.0) / 12.0)
    step = (freq * table_size / sr)[bar_index]
    index = (np.cumsum(step) + rng.random() * table_size).astype(np.int64) % table_size
    return wavetable[index]

  wave = np.zeros(num, np.float32)
  for voice in range(3):
    wave += render(table, [scale_midi(d + 2 * voice) for d in degrees]) * (1.0 - 0.2 * voice)
  beat_pos = np.arange(beat_len) / beat_len
  wave *= tiled(np.exp(-beat_pos * (3.0 + 4.0 * (1.0 - brightness))))
  wave += 0.6 * render(sine, [scale_midi(d) - 12 for d in degrees]) * tiled(np.exp(-2.0 * beat_pos))

  noise = rng.standard_normal(2 * num + 1, dtype=np.float32)
  clicks = noise[1:num + 1] - brightness * noise[:num]  # Brighter: more high frequencies.
  decay = np.exp(-np.arange(step_len) / (0.03 * sr))
  bar_env = (a['rhythm'][track][:, None] * decay[None, :]).reshape(-1)
  wave += 0.5 * clicks * tiled(bar_env)
  kick_t = np.arange(2 * beat_len) / sr
  kick = np.sin(2 * np.pi * (55.0 * kick_t + 6.0 * (1.0 - np.exp(-kick_t / 0.03))))
  wave += 0.9 * tiled(kick * np.exp(-kick_t / 0.12))
  floor = noise[num + 1:]
  if brightness < 0.5:  # Darker styles get a smoothed (low-passed) noise floor.
    floor = 0.5 * (floor + np.concatenate([floor[1:], floor[:1]])) * 1.4
  wave += float(a['noise_level'][track]) * 4.0 * floor
  wave *= 0.9 / (np.abs(wave).max() + 1e-9)
  return wave.astype(np.float32)


def _write_audio_range(args: tuple[CatalogueConfig, str, int, int]) -> int:
  """Worker: rebuilds the catalogue (deterministic) and writes tracks [start, stop)."""
  config, audio_dir, start, stop = args
  catalogue = build_catalogue(config)
  return _write_audio(catalogue, pathlib.Path(audio_dir), range(start, stop))


def _write_audio(catalogue: Catalogue, audio_dir: pathlib.Path, tracks: Sequence[int]) -> int:
  for i in tracks:
    soundfile.write(str(audio_dir / f'{catalogue.track_ids[i]}.wav'),
                    synthesize_track(catalogue, i), catalogue.config.sample_rate,
                    subtype='PCM_16', format='WAV')
  return len(tracks)


def write_audio(catalogue: Catalogue, audio_dir: os.PathLike | str, *, workers: int = 1) -> None:
  """Writes audio/<track_id>.wav for every track (optionally in `workers` processes)."""
  audio_dir = pathlib.Path(audio_dir)
  audio_dir.mkdir(parents=True, exist_ok=True)
  n = catalogue.num_tracks
  if workers <= 1:
    _write_audio(catalogue, audio_dir, range(n))
    return
  bounds = np.linspace(0, n, 4 * workers + 1).astype(int)
  jobs = [(catalogue.config, str(audio_dir), int(lo), int(hi))
          for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]
  with multiprocessing.get_context('spawn').Pool(workers) as pool:
    pool.map(_write_audio_range, jobs)


# --------------------------------------------------------------------------------------- writing


def _ground_truth(catalogue: Catalogue, playlists_info: list[dict[str, Any]]) -> dict[str, Any]:
  a = catalogue.attrs
  tracks = []
  for i in range(catalogue.num_tracks):
    tracks.append({
        'track_id': catalogue.track_ids[i], 'track_name': catalogue.track_names[i],
        'style': int(a['style'][i]), 'mood': int(a['mood'][i]), 'artist': int(a['artist'][i]),
        'album': int(a['album'][i]), 'theme': int(a['theme'][i]),
        'has_theme_word': bool(a['has_theme_word'][i]),
        'tempo': round(float(a['tempo'][i]), 3), 'key': int(a['key'][i]),
        'mode': 'major' if a['major'][i] else 'minor', 'register': int(a['register'][i]),
        'brightness': round(float(a['brightness'][i]), 4),
        'noise_level': round(float(a['noise_level'][i]), 4),
        'harmonics': [round(float(x), 4) for x in a['harmonics'][i]],
        'rhythm': [int(x) for x in a['rhythm'][i]],
        'popularity': round(float(a['popularity'][i]), 4),
    })
  return {
      'config': dataclasses.asdict(catalogue.config),
      'styles': [{'name': s['name'], 'register': s['register'], 'tempo': round(s['tempo'], 3),
                  'brightness': round(s['brightness'], 4)} for s in catalogue.styles],
      'moods': [m['name'] for m in catalogue.moods],
      'themes': list(THEME_WORDS[:catalogue.config.num_themes]),
      'artists': [{'name': x['name'], 'uri': x['uri'], 'style': x['style'], 'mood': x['mood'],
                   'albums': x['albums']} for x in catalogue.artists],
      'albums': [{'name': x['name'], 'uri': x['uri'], 'artist': x['artist']}
                 for x in catalogue.albums],
      'tracks': tracks,
      'playlists': playlists_info,
  }


def write_catalogue(out_dir: os.PathLike | str, config: CatalogueConfig = CatalogueConfig(), *,
                    audio: bool = True, lfm: bool = False, workers: int = 1) -> dict[str, Any]:
  """Generates the catalogue and writes it (see module docstring for the layout).

  Playlists are streamed into slices of `config.slice_size`, so large catalogues (e.g. 100k
  tracks) do not hold all JSON in memory.

  Returns:
    A summary: {'out_dir', 'num_tracks', 'num_playlists', 'num_slices', 'seconds': {...}}.
  """
  out = pathlib.Path(out_dir)
  (out / 'data').mkdir(parents=True, exist_ok=True)
  timings = {}
  start = time.perf_counter()
  catalogue = build_catalogue(config)
  timings['catalogue'] = time.perf_counter() - start

  start = time.perf_counter()
  playlists_info = []
  num_slices = 0
  counts_file = open(out / 'listening_counts.tsv', 'w', encoding='utf-8') if lfm else None
  count_rng = np.random.default_rng([config.seed, 3])
  try:
    if counts_file:
      counts_file.write('user_id\ttrack_id\tcount\n')
    batch: list[dict[str, Any]] = []

    def flush(batch):
      first, last = batch[0]['pid'], batch[-1]['pid']
      payload = {'info': {'generated_on': '2017-12-03 08:41:42.057563',
                          'slice': f'{first}-{last}', 'version': 'v1'},
                 'playlists': batch}
      with open(out / 'data' / f'mpd.slice.{first}-{last}.json', 'w', encoding='utf-8') as f:
        f.write(json.dumps(payload, ensure_ascii=False))  # dumps without indent: C encoder.
        f.write('\n')

    for playlist in generate_playlists(catalogue):
      batch.append(mpd_playlist_json(catalogue, playlist))
      playlists_info.append({'pid': playlist.pid, 'name': playlist.name, 'kind': playlist.kind,
                             **playlist.info})
      if counts_file:
        counts = 1 + count_rng.geometric(0.3, playlist.tracks.size)
        counts_file.writelines(f'{playlist.pid}\t{catalogue.track_ids[t]}\t{c}\n'
                               for t, c in zip(playlist.tracks.tolist(), counts.tolist()))
      if len(batch) == config.slice_size:
        flush(batch)
        num_slices += 1
        batch = []
    if batch:
      flush(batch)
      num_slices += 1
  finally:
    if counts_file:
      counts_file.close()
  if lfm:
    with open(out / 'tracks.tsv', 'w', encoding='utf-8') as f:
      f.write('track_id\ttrack_name\tartist_name\talbum_name\n')
      for i in range(catalogue.num_tracks):
        f.write(f'{catalogue.track_ids[i]}\t{catalogue.track_names[i]}\t'
                f'{catalogue.artist_of(i)["name"]}\t{catalogue.album_of(i)["name"]}\n')
  with open(out / 'ground_truth.json', 'w', encoding='utf-8') as f:
    f.write(json.dumps(_ground_truth(catalogue, playlists_info)))
    f.write('\n')
  timings['playlists_and_json'] = time.perf_counter() - start

  if audio:
    start = time.perf_counter()
    write_audio(catalogue, out / 'audio', workers=workers)
    timings['audio'] = time.perf_counter() - start
  return {'out_dir': str(out), 'num_tracks': catalogue.num_tracks,
          'num_playlists': config.num_playlists, 'num_slices': num_slices, 'seconds': timings}


def main(argv: Sequence[str] | None = None) -> None:
  """CLI entry point (see module docstring)."""
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  defaults = CatalogueConfig()
  parser.add_argument('--out', required=True, help='output directory')
  parser.add_argument('--num_tracks', type=int, default=defaults.num_tracks)
  parser.add_argument('--num_playlists', type=int, default=defaults.num_playlists)
  parser.add_argument('--num_styles', type=int, default=defaults.num_styles)
  parser.add_argument('--num_moods', type=int, default=defaults.num_moods)
  parser.add_argument('--num_themes', type=int, default=defaults.num_themes)
  parser.add_argument('--min_playlist_length', type=int, default=defaults.playlist_length[0])
  parser.add_argument('--max_playlist_length', type=int, default=defaults.playlist_length[1])
  parser.add_argument('--noise_fraction', type=float, default=defaults.noise_fraction)
  parser.add_argument('--sample_rate', type=int, default=defaults.sample_rate)
  parser.add_argument('--clip_seconds', type=float, default=defaults.clip_seconds)
  parser.add_argument('--slice_size', type=int, default=defaults.slice_size)
  parser.add_argument('--seed', type=int, default=defaults.seed)
  parser.add_argument('--no_audio', action='store_true', help='write metadata only')
  parser.add_argument('--lfm', action='store_true', help='also write LFM-style TSV files')
  parser.add_argument('--workers', type=int, default=1, help='processes for audio synthesis')
  args = parser.parse_args(argv)
  config = CatalogueConfig(
      num_tracks=args.num_tracks, num_playlists=args.num_playlists, num_styles=args.num_styles,
      num_moods=args.num_moods, num_themes=args.num_themes,
      playlist_length=(args.min_playlist_length, args.max_playlist_length),
      noise_fraction=args.noise_fraction, sample_rate=args.sample_rate,
      clip_seconds=args.clip_seconds, slice_size=args.slice_size, seed=args.seed)
  summary = write_catalogue(args.out, config, audio=not args.no_audio, lfm=args.lfm,
                            workers=args.workers)
  print(json.dumps(summary, indent=2))


if __name__ == '__main__':
  main()
