"""Seeded names and ids of the demo catalogue (used by `latent_catalogue.build_catalogue`).

Artist, album and track names are filled in from word lists: patterns such as '{a} {n}' with
{a}/{a2} adjectives, {n}/{n2} nouns, {p} plurals, {f}/{l} first/last names and {t} a theme word.
Titles contain a theme word only when `track_title` is given one. Words are picked with uniform
draws from a `Draws` (blocks of one numpy Generator), ids come from `spotify_ids`; everything is
deterministic given the generators.
"""

from __future__ import annotations

import functools
import string
from collections.abc import Sequence

import numpy as np

_ADJECTIVES = (
    'Blue',
    'Golden',
    'Broken',
    'Silent',
    'Electric',
    'Velvet',
    'Crimson',
    'Lonely',
    'Hidden',
    'Bright',
    'Wild',
    'Frozen',
    'Burning',
    'Gentle',
    'Hollow',
    'Endless',
    'Neon',
    'Quiet',
    'Restless',
    'Sweet',
    'Bitter',
    'Faded',
    'Cosmic',
    'Lucky',
    'Secret',
    'Paper',
    'Iron',
    'Crystal',
    'Distant',
    'Little',
    'Strange',
    'Sacred',
    'Rusty',
    'Purple',
    'Modern',
    'Ancient',
    'Careless',
    'Glass',
    'Northern',
    'Tender',
)
_NOUNS = (
    'Mirror',
    'Garden',
    'Window',
    'Machine',
    'Letter',
    'Desert',
    'Mountain',
    'Engine',
    'Island',
    'Forest',
    'Bridge',
    'Echo',
    'Signal',
    'Circle',
    'Harbor',
    'Lantern',
    'Canyon',
    'Feather',
    'Thunder',
    'Horizon',
    'Station',
    'Voice',
    'Memory',
    'Silence',
    'Highway',
    'Valley',
    'Castle',
    'Orchard',
    'Compass',
    'Ribbon',
    'Meadow',
    'Anchor',
    'Temple',
    'Arrow',
    'Carnival',
    'Satellite',
    'Diamond',
    'Tower',
    'Window Seat',
    'Pocket',
)
_PLURALS = (
    'Wolves',
    'Lions',
    'Pilots',
    'Sailors',
    'Strangers',
    'Kings',
    'Echoes',
    'Machines',
    'Monkeys',
    'Rebels',
    'Owls',
    'Foxes',
    'Comets',
    'Saints',
    'Robots',
    'Tigers',
    'Drifters',
    'Giants',
    'Ravens',
    'Bandits',
    'Twins',
    'Sparrows',
    'Poets',
    'Dancers',
)
_FIRST = (
    'Ada',
    'Ben',
    'Clara',
    'Dan',
    'Eva',
    'Felix',
    'Grace',
    'Hugo',
    'Iris',
    'Jonas',
    'Kira',
    'Leo',
    'Maya',
    'Nils',
    'Olga',
    'Paul',
    'Rosa',
    'Sami',
    'Tara',
    'Umar',
    'Vera',
    'Walt',
    'Yara',
    'Zeno',
    'Mila',
    'Otto',
    'Lena',
    'Ravi',
    'Nora',
    'Igor',
)
_LAST = (
    'Moreau',
    'Okafor',
    'Lindqvist',
    'Tanaka',
    'Silva',
    'Novak',
    'Brennan',
    'Haddad',
    'Kowalski',
    'Ferreira',
    'Ivanova',
    'Mendez',
    'Larsen',
    'Dubois',
    'Costa',
    'Nakamura',
    'Quinn',
    'Rossi',
    'Schmidt',
    'Varga',
    'Weber',
    'Young',
    'Zhou',
    'Abara',
    'Petrov',
    'Castillo',
    'Hale',
    'Moss',
    'Reyes',
    'Stone',
)
_TITLE_WITH_THEME = (
    '{t}',
    '{a} {t}',
    '{t} {n}',
    '{n} of {t}',
    'My {t}',
    '{t} Again',
    'Lost in the {t}',
    '{a} {t} {n}',
    'No More {t}',
    '{t} Tonight',
)
_TITLE_PLAIN = (
    '{a} {n}',
    '{n}',
    'The {n}',
    '{n} {n2}',
    '{a} {n} Song',
    'Under the {n}',
    '{a} and {a2}',
    'Back to the {n}',
)
_ALBUM_PATTERNS = (
    '{a} {n}',
    '{n}',
    'The {a} {n}',
    '{n} {n2}',
    '{a} {n}s',
    'Songs from the {n}',
    '{n} Sessions',
    '{a} Days',
)
_ARTIST_PATTERNS = ('{f} {l}', 'The {a} {p}', '{a} {p}', '{f} and the {p}', '{l}', '{n} {p}')
_BASE62 = string.digits + string.ascii_letters


class Draws:
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


def spotify_ids(rng: np.random.Generator, count: int) -> list[str]:
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


_WORD_LISTS = {
    'a': _ADJECTIVES,
    'a2': _ADJECTIVES,
    'n': _NOUNS,
    'n2': _NOUNS,
    'p': _PLURALS,
    'f': _FIRST,
    'l': _LAST,
}


def _fill(draws: Draws, pattern: str, theme: str = '') -> str:
  values = {
      name: theme if name == 't' else draws.pick(_WORD_LISTS[name]) for name in _fields(pattern)
  }
  return pattern.format(**values)


def _unique_name(draws: Draws, patterns: Sequence[str], taken: set[str]) -> str:
  for _ in range(8):
    name = _fill(draws, draws.pick(patterns))
    if name not in taken:
      break
  else:
    name = f'{name} {len(taken)}'
  taken.add(name)
  return name


def artist_name(draws: Draws, taken: set[str]) -> str:
  """A new artist name, not in `taken` (added to it)."""
  return _unique_name(draws, _ARTIST_PATTERNS, taken)


def album_name(draws: Draws, taken: set[str]) -> str:
  """A new album name, not in `taken` (added to it)."""
  return _unique_name(draws, _ALBUM_PATTERNS, taken)


def track_title(draws: Draws, theme_word: str | None = None) -> str:
  """A track title containing `theme_word`, or (None) one with no theme word."""
  if theme_word is None:
    return _fill(draws, draws.pick(_TITLE_PLAIN))
  return _fill(draws, draws.pick(_TITLE_WITH_THEME), theme_word)
