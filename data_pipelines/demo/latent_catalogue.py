"""Latent model of the demo catalogue: styles, moods, artists, albums, tracks and playlists.

`build_catalogue(config)` draws the metadata and every track's latent audio attributes;
`generate_playlists(catalogue)` draws the playlists. `data_pipelines/demo/audio_synthesis.py`
renders audio from the attributes and `data_pipelines/demo/catalogue.py` writes it all to disk in
the MPD / LFM formats.

Latent model (one seeded numpy Generator for metadata and playlists; per-track generators
`default_rng([seed, 1, track])` for audio, so audio can be made in any order or in parallel):
  * styles carry a harmonic profile (timbre), register, tempo, brightness, noise level, a 16-step
    rhythm pattern and a major-mode bias; moods shift tempo, brightness, noise and mode.
  * artists = one style + one mood, attributes near the style's (noise); albums near their artist;
    tracks near their album, with their own key (0-11) and mode, and a theme: with probability
    `theme_title_probability` the track title contains the theme word (e.g. "Love"), independent of
    style. Names come from word lists (`catalogue_names.py`); titles never contain theme words
    otherwise.
  * playlist kinds (weights `kind_weights`), each plus `noise_fraction` random tracks:
      style_mood   tracks of one style, favouring one mood  -> revealed by AUDIO
      artist       tracks of 1-6 artists of any style       -> revealed by TEXT (artist/album names)
      theme        tracks whose title has one theme word,   -> revealed by TEXT only (the paper's
                   across all styles                           "Love" example); audio is no help
    Track choice is weighted by a log-normal popularity.

Everything is seeded: the same config gives the same catalogue and playlists.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator
from typing import Any

import numpy as np

from data_pipelines.demo import catalogue_names

STYLE_NAMES = (
    'jazz',
    'metal',
    'techno',
    'folk',
    'ambient',
    'funk',
    'classical',
    'hip hop',
    'reggae',
    'blues',
    'disco',
    'punk',
    'soul',
    'house',
    'country',
    'trance',
)
MOOD_NAMES = ('happy', 'sad', 'calm', 'energetic', 'dreamy', 'angry', 'romantic', 'dark')
THEME_WORDS = (
    'Love',
    'Night',
    'Summer',
    'Rain',
    'Fire',
    'Heart',
    'Dream',
    'Road',
    'Ocean',
    'City',
    'Gold',
    'Ghost',
    'River',
    'Star',
    'Home',
    'Storm',
    'Midnight',
    'Shadow',
    'Winter',
    'Angel',
)
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
        'kind_weights': len(self.kind_weights) == 3
        and min(self.kind_weights) >= 0
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
      items.append(
          {
              'artist_name': artist['name'],
              'track_uri': self.track_uri(t),
              'artist_uri': artist['uri'],
              'track_name': self.track_names[t],
              'album_uri': album['uri'],
              'duration_ms': int(self.attrs['duration_ms'][t]),
              'album_name': album['name'],
          }
      )
    return items


def _make_styles(rng: np.random.Generator, num_styles: int) -> list[dict[str, Any]]:
  styles = []
  registers = np.array([36, 43, 48, 55, 60, 67])
  for s in range(num_styles):
    h = np.arange(1, NUM_HARMONICS + 1)
    decay = rng.uniform(0.4, 2.5)
    odd_gain = rng.uniform(0.2, 3.0)
    harmonics = h**-decay * np.where(h % 2 == 1, odd_gain, 1.0) * rng.uniform(0.5, 1.5, h.size)
    pattern = rng.random(RHYTHM_STEPS) < rng.uniform(0.15, 0.6)
    pattern[0] = True
    styles.append(
        {
            'name': STYLE_NAMES[s],
            'harmonics': harmonics / harmonics.max(),
            'register': int(registers[rng.integers(len(registers))]),
            'tempo': float(rng.uniform(65.0, 175.0)),
            'brightness': float(rng.uniform(0.05, 0.95)),
            'noise_level': float(rng.uniform(0.0, 0.25)),
            'rhythm': pattern,
            'major_logit': float(rng.normal(0.0, 1.0)),
        }
    )
  return styles


def _make_moods(rng: np.random.Generator, num_moods: int) -> list[dict[str, Any]]:
  return [
      {
          'name': MOOD_NAMES[m],
          'tempo_factor': float(rng.uniform(0.8, 1.25)),
          'brightness_shift': float(rng.normal(0.0, 0.12)),
          'noise_shift': float(rng.normal(0.0, 0.03)),
          'major_shift': float(rng.normal(0.0, 1.5)),
      }
      for m in range(num_moods)
  ]


def build_catalogue(config: CatalogueConfig) -> Catalogue:
  """Draws styles, moods, artists, albums and tracks (metadata + latent audio attributes)."""
  rng = np.random.default_rng([config.seed, 0])
  draws = catalogue_names.Draws(np.random.default_rng([config.seed, 4]))
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
        'index': len(artists),
        'name': catalogue_names.artist_name(draws, names_taken),
        'style': style,
        'mood': mood,
        'tempo': st['tempo'] * md['tempo_factor'] * float(np.exp(rng.normal(0, 0.05))),
        'brightness': min(
            1.0, max(0.0, st['brightness'] + md['brightness_shift'] + float(rng.normal(0, 0.06)))
        ),
        'noise_level': min(
            0.4, max(0.0, st['noise_level'] + md['noise_shift'] + float(rng.normal(0, 0.02)))
        ),
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
      album = {
          'index': len(albums),
          'name': catalogue_names.album_name(draws, album_names),
          'artist': artist['index'],
          'tempo_factor': float(np.exp(rng.normal(0, 0.03))),
          'key': int(rng.integers(12)),
      }
      albums.append(album)
      artist['albums'].append(album['index'])
      track_artist += [artist['index']] * size
      track_album += [album['index']] * size
      made += size
  for entity, uri_id in zip(
      artists + albums, catalogue_names.spotify_ids(rng, len(artists) + len(albums))
  ):
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
  track_ids = catalogue_names.spotify_ids(rng, n)
  track_names = []
  for theme, has_word in zip(attrs['theme'].tolist(), attrs['has_theme_word'].tolist()):
    track_names.append(catalogue_names.track_title(draws, THEME_WORDS[theme] if has_word else None))
  return Catalogue(config, styles, moods, artists, albums, track_ids, track_names, attrs)


def _weighted_sample(
    rng: np.random.Generator, pool: np.ndarray, weights: np.ndarray, k: int
) -> np.ndarray:
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
  by_style = [
      np.flatnonzero(attrs['style'] == s).astype(np.int32) for s in range(config.num_styles)
  ]
  styles_present = [s for s in range(config.num_styles) if by_style[s].size]
  by_theme = [
      np.flatnonzero((attrs['theme'] == t) & attrs['has_theme_word']).astype(np.int32)
      for t in range(config.num_themes)
  ]
  tracks_of_artist = [
      np.flatnonzero(attrs['artist'] == a).astype(np.int32) for a in range(len(catalogue.artists))
  ]
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
      names = (
          word.lower(),
          f'{word} songs',
          f'all about {word.lower()}',
          f'{word.lower()} playlist',
      )
      name = names[int(rng.integers(len(names)))]
      info = {'theme': theme}
    num_noise = int(round(config.noise_fraction * chosen.size))
    noise = np.zeros((0,), np.int32)
    if num_noise:
      candidates = rng.integers(0, n, 4 * num_noise + 4)
      in_playlist = set(chosen.tolist())
      noise = np.asarray(
          [t for t in dict.fromkeys(candidates.tolist()) if t not in in_playlist][:num_noise],
          np.int32,
      )
    tracks = np.concatenate([chosen, noise]).astype(np.int32)
    tracks = tracks[rng.permutation(tracks.size)]
    info['noise_tracks'] = [catalogue.track_ids[t] for t in noise]
    yield DemoPlaylist(pid, name, tracks, kind, info)
