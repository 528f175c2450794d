"""Deterministic demo listening logs in the LFM-2b format + the platform tables of paper 001.

Users of the LARP demo catalogue (`latent_catalogue.build_catalogue`) play its tracks; the files
are exactly what `data_pipelines.listening.load_listening` reads:
  users.tsv (user_id, country, age, gender, creation_time), listening-events.tsv (user_id, track_id,
  album_id, timestamp), tracks.tsv (track_id, artist_name, track_name: artists joined by name as in
  LFM-2b), albums.tsv, artists.tsv, spotify-uris.tsv (track_id -> spotify:track:<catalogue id>, so a
  LARP export keyed by those uris gives every track its audio vector), onboarding.tsv, devices.tsv,
  follows.tsv, artist-countries.tsv; times 'YYYY-mm-dd HH:MM:SS' UTC as in LFM-2b; ids 1-based ints.

Latent model (`build_population` draws the users, `write_listening_files` their behaviour; one
seeded numpy Generator each, same config -> byte-identical files), and the paper tendency each part
produces:
  * taste over the catalogue's (style, mood) cells: a stable long-term Dirichlet taste plus a
    drifting recent taste (a new concentrated Dirichlet "phase" every 14-45 days), mixed with weight
    `drift_weight` -> the 7-day horizon carries information the 182-day one does not (Sec. 3.3.2
    multi-horizon features). The long-term prior is tilted by age -> demographics inform cold start.
  * every play is drawn with probability ∝ popularity^β · (taste(cell) + ε)^κ · country boost ·
    favourite-artist boost, so TASTE DOMINATES POPULARITY in what a user plays next while track play
    counts stay heavy-tailed (log-normal popularity) -> future-listening prediction (Table 1) likes
    the user's own taste over popularity heuristics and average embeddings carry signal.
  * every artist has a home country (artist-countries.tsv) and users favour their country's artists
    (boost) -> "same country of most-listened artists" clusters (Table 4), the value of the static
    country feature (ablation "without static features").
  * activity is log-normal across users; plays come in sessions (minutes apart inside, hours to days
    between) -> activity features, session co-occurrence for the collaborative encoder.
  * devices: 1-3 per user from DEVICES with first-seen times -> device multi-hot features.
  * registration: established users register from `established_registration_days` (over a year
    before the timeline) to early in it; new users register through the last `new_user_days` days,
    i.e. also after the cut T = last day - 7 days, and play within minutes/hours -> the two cohorts
    and the 4-hour cold-start task (Table 2); registration spans > 6 months + 7 days.
  * onboarding (launched at `onboarding_launch_day`; earlier registrants have no row): a row at
    registration + 1-10 minutes picking 1-3 artists from a per-country menu of `menu_size` artists
    spanning styles, chosen by the user's taste, plus languages (the country's, sometimes 'en');
    `onboarding_skip_share` have no row, `onboarding_languages_only_share` pick none -> onboarding
    clusters (Table 4 "same onboarding"), completed vs not completed cohorts (Table 2) and the
    onboarding-average baseline.
  * follows arrive over the timeline, chosen by taste and country; `follow_unplayed_share` go to
    never-played artists -> the artist-preference task (Table 3) is not "follow = most played".
Measured on the defaults (tests/test_demo_listening.py): next-week hit rate@50 of established users
0.45 by their own 182-day (style, mood) histogram vs 0.25 by global popularity, 0.50 adding the last
7 days' histogram; the top 10% of tracks get ~30% of plays.
CLI: python -m data_pipelines.demo.listening_logs --out DIR [--compress bz2] [--seed 0 ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import time
from typing import Any

import numpy as np

from data_pipelines import lfm_tables
from data_pipelines.demo import latent_catalogue

COUNTRIES = ('US', 'GB', 'DE', 'BR', 'JP', 'SE', 'FR', 'MX')
COUNTRY_LANGUAGE = {
    'US': 'en',
    'GB': 'en',
    'DE': 'de',
    'BR': 'pt',
    'JP': 'ja',
    'SE': 'sv',
    'FR': 'fr',
    'MX': 'es',
}
DEVICES = ('ios', 'android', 'desktop', 'web', 'tv', 'speaker')
GENDERS = ('m', 'f', 'n')
DAY = 86400
_SHARE_FIELDS = (
    'onboarding_skip_share onboarding_languages_only_share english_share follow_unplayed_share '
    'drift_weight missing_age_share missing_gender_share missing_country_share'
).split()


@dataclasses.dataclass(frozen=True)
class DemoListeningConfig:
  """Knobs of the demo listening logs (defaults: ~5 s to generate + write, ~2.5 s to load).

  Attributes:
    num_established / num_new: users registered before or early in the timeline / in its last
      `new_user_days` days.
    countries / country_weights: codes (each in COUNTRY_LANGUAGE) / relative numbers of users.
    start / num_days: the timeline (UTC 'YYYY-mm-dd'); events lie in [start, start + num_days d).
    established_registration_days: (lo, hi) registration of established users, days from start.
    new_user_days: new users register uniformly in the last this-many days (up to 6 h before end).
    onboarding_launch_day: onboarding exists for registrations from this day (after start) on.
    onboarding_skip_share: share of eligible users without an onboarding row.
    onboarding_languages_only_share: share of onboarding rows choosing languages but no artist.
    onboarding_artists: (min, max) artists picked by those who pick.
    menu_size: artists offered per country (home artists one per style first, then popular ones).
    english_share: chance an onboarding row adds 'en' to the country's language.
    mean_plays: mean plays of an established user active for the whole timeline.
    activity_sigma: log-normal sigma of user activity.
    new_user_plays_per_day: mean plays per active day of a new user (times its activity).
    first_hours_sessions: (min, max) sessions of a new user within its first 4 hours.
    session_mean: mean plays per session (geometric).
    taste_concentration: Dirichlet alpha of the long-term taste over (style, mood) cells.
    age_taste_strength: std of the per-style age slopes tilting the taste prior by age.
    drift_concentration: Dirichlet alpha of each recent-taste phase.
    drift_weight: weight of the recent phase in the current taste (1 - of the long-term taste).
    drift_phase_days: (min, max) days a recent-taste phase lasts.
    popularity_exponent: beta in popularity^beta.
    taste_exponent: kappa in (taste + eps)^kappa.
    country_boost: weight factor of artists from the user's country.
    num_favourite_artists / favourite_boost: per-user favourite artists and their weight factor.
    follows_mean / follows_mean_new: Poisson mean of follows of established / new users.
    follow_unplayed_share: share of follows to artists the user never played.
    missing_age_share / missing_gender_share / missing_country_share: demographics left empty.
    seed: master seed.
  """

  num_established: int = 2500
  num_new: int = 600
  countries: tuple[str, ...] = COUNTRIES
  country_weights: tuple[float, ...] = (0.3, 0.15, 0.12, 0.12, 0.1, 0.07, 0.07, 0.07)
  start: str = '2024-01-01'
  num_days: int = 240
  established_registration_days: tuple[float, float] = (-420.0, 30.0)
  new_user_days: float = 30.0
  onboarding_launch_day: float = 150.0
  onboarding_skip_share: float = 0.35
  onboarding_languages_only_share: float = 0.1
  onboarding_artists: tuple[int, int] = (1, 3)
  menu_size: int = 8
  english_share: float = 0.3
  mean_plays: float = 200.0
  activity_sigma: float = 0.7
  new_user_plays_per_day: float = 6.0
  first_hours_sessions: tuple[int, int] = (1, 3)
  session_mean: float = 5.0
  taste_concentration: float = 0.3
  age_taste_strength: float = 0.5
  drift_concentration: float = 0.2
  drift_weight: float = 0.5
  drift_phase_days: tuple[float, float] = (14.0, 45.0)
  popularity_exponent: float = 0.8
  taste_exponent: float = 2.0
  country_boost: float = 3.0
  num_favourite_artists: int = 3
  favourite_boost: float = 3.0
  follows_mean: float = 4.0
  follows_mean_new: float = 1.0
  follow_unplayed_share: float = 0.25
  missing_age_share: float = 0.1
  missing_gender_share: float = 0.05
  missing_country_share: float = 0.0
  seed: int = 0

  def __post_init__(self):
    checks = {
        'num_established': self.num_established >= 1,
        'num_new': self.num_new >= 0,
        'countries': len(self.countries) >= 1
        and all(c in COUNTRY_LANGUAGE for c in self.countries)
        and len(self.country_weights) == len(self.countries),
        'num_days': self.num_days >= 14,
        'new_user_days': 0 < self.new_user_days < self.num_days,
        'shares': all(0 <= getattr(self, f) <= 1 for f in _SHARE_FIELDS),
        'onboarding_artists': 1 <= self.onboarding_artists[0] <= self.onboarding_artists[1],
        'menu_size': self.menu_size >= self.onboarding_artists[1],
        'session_mean': self.session_mean >= 1,
        'drift_phase_days': 0 < self.drift_phase_days[0] <= self.drift_phase_days[1],
    }
    bad = [name for name, ok in checks.items() if not ok]
    if bad:
      raise ValueError(f'invalid DemoListeningConfig fields {bad}: {self}')

  @property
  def start_time(self) -> int:
    """Unix seconds of the timeline start (UTC)."""
    return int(np.datetime64(self.start, 's').astype(np.int64))

  @property
  def end_time(self) -> int:
    return self.start_time + self.num_days * DAY


@dataclasses.dataclass(frozen=True)
class Population:
  """The latent users (U = established then new) and artist-side latents (A artists, C cells).

  user_ids: str [U] ('1'..); is_new: bool [U]; country: int32 [U] into config.countries (-1 none);
  age: int32 [U] (-1 missing); gender: str [U] ('' missing); created: int64 [U] unix s;
  activity: float64 [U] log-normal multiplier; taste_long: float64 [U, C] (rows sum to 1, zero on
  empty cells; cell = style * num_moods + mood); phase_start: int64 [U, P] unix s (0 first, later
  ones may lie past the end); phase_taste: float64 [U, P, C]; favourites: int32 [U, F] artists;
  artist_country: int32 [A]; menus: int32 [num_countries, menu_size] artists.
  """

  config: DemoListeningConfig
  user_ids: np.ndarray
  is_new: np.ndarray
  country: np.ndarray
  age: np.ndarray
  gender: np.ndarray
  created: np.ndarray
  activity: np.ndarray
  taste_long: np.ndarray
  phase_start: np.ndarray
  phase_taste: np.ndarray
  favourites: np.ndarray
  artist_country: np.ndarray
  menus: np.ndarray

  @property
  def num_users(self) -> int:
    return len(self.user_ids)

  def taste_at(self, u: int, t: int) -> np.ndarray:
    """Current taste of user u at time t: float64 [C] (long-term mixed with the active phase)."""
    p = int(np.searchsorted(self.phase_start[u], t, side='right')) - 1
    w = self.config.drift_weight
    return (1 - w) * self.taste_long[u] + w * self.phase_taste[u, max(p, 0)]


def track_cells(catalogue: latent_catalogue.Catalogue) -> np.ndarray:
  """int32 [N] (style, mood) cell of every track: style * num_moods + mood."""
  return (catalogue.attrs['style'] * catalogue.config.num_moods + catalogue.attrs['mood']).astype(
      np.int32
  )


def build_population(
    config: DemoListeningConfig, catalogue: latent_catalogue.Catalogue
) -> Population:
  """Draws the latent users and the artists' home countries / onboarding menus (deterministic)."""
  rng = np.random.default_rng([config.seed, 11])
  n_est, n_new = config.num_established, config.num_new
  num_users = n_est + n_new
  num_countries = len(config.countries)
  cells = track_cells(catalogue)
  moods = catalogue.config.num_moods
  num_cells = catalogue.config.num_styles * moods
  present = np.bincount(cells, minlength=num_cells) > 0
  num_artists = len(catalogue.artists)
  artist_style = np.asarray([a['style'] for a in catalogue.artists])
  artist_pop = np.bincount(
      catalogue.attrs['artist'], catalogue.attrs['popularity'].astype(np.float64), num_artists
  )
  # Home countries: a balanced random assignment, so every country has artists of several styles.
  artist_country = (rng.permutation(num_artists) % num_countries).astype(np.int32)
  menu_size = min(config.menu_size, num_artists)  # a tiny catalogue has fewer artists
  menus = np.zeros((num_countries, menu_size), np.int32)
  for c in range(num_countries):
    home = np.flatnonzero(artist_country == c)
    home = home[np.argsort(-artist_pop[home], kind='stable')]
    first_of_style = home[np.unique(artist_style[home], return_index=True)[1]]
    first_of_style = first_of_style[np.argsort(-artist_pop[first_of_style], kind='stable')]
    others = np.argsort(-artist_pop, kind='stable')
    menu = list(dict.fromkeys([*first_of_style.tolist(), *home.tolist(), *others.tolist()]))
    menus[c] = menu[:menu_size]

  weights = np.asarray(config.country_weights, np.float64)
  country = rng.choice(num_countries, num_users, p=weights / weights.sum()).astype(np.int32)
  country[rng.random(num_users) < config.missing_country_share] = -1
  age = np.clip(np.round(rng.gamma(6.0, 4.5, num_users) + 12), 13, 80).astype(np.int32)
  age[rng.random(num_users) < config.missing_age_share] = -1
  gender = np.asarray(GENDERS)[rng.choice(3, num_users, p=(0.48, 0.48, 0.04))]
  gender[rng.random(num_users) < config.missing_gender_share] = ''
  start, end = config.start_time, config.end_time
  lo, hi = config.established_registration_days
  created = np.empty(num_users, np.int64)
  created[:n_est] = start + (rng.uniform(lo, hi, n_est) * DAY).astype(np.int64)
  created[n_est:] = end - (rng.uniform(0.25, config.new_user_days, n_new) * DAY).astype(np.int64)
  activity = np.exp(rng.normal(-0.5 * config.activity_sigma**2, config.activity_sigma, num_users))

  def dirichlet(alpha, size: int) -> np.ndarray:  # alpha: float or [size, num present cells]
    x = np.zeros((size, num_cells))
    x[:, present] = rng.gamma(alpha, 1.0, (size, int(present.sum()))) + 1e-12
    return x / x.sum(-1, keepdims=True)

  # Age tilts the long-term taste prior: each style has an age slope (older vs younger listeners).
  slope = rng.normal(0, config.age_taste_strength, catalogue.config.num_styles)
  tilt = np.where(age >= 0, (age - 35) / 15, 0)[:, None] * slope[np.flatnonzero(present) // moods]
  base = np.exp(tilt) / np.exp(tilt).sum(-1, keepdims=True)
  taste_long = dirichlet(config.taste_concentration * present.sum() * base, num_users)
  min_days, max_days = config.drift_phase_days
  num_phases = int(np.ceil(config.num_days / min_days)) + 1
  lengths = rng.uniform(min_days, max_days, (num_users, num_phases)) * DAY
  phase_start = start - rng.uniform(0, max_days * DAY, (num_users, 1)) + np.cumsum(lengths, 1)
  phase_start = np.concatenate([np.zeros((num_users, 1)), phase_start[:, :-1]], 1).astype(np.int64)
  phase_taste = dirichlet(config.drift_concentration, num_users * num_phases).reshape(
      num_users, num_phases, num_cells
  )
  # Favourite artists by long-term taste and country.
  artist_cell = artist_style * catalogue.config.num_moods + np.asarray(
      [a['mood'] for a in catalogue.artists]
  )
  favourites = np.zeros((num_users, config.num_favourite_artists), np.int32)
  for u in range(num_users):
    w = taste_long[u, artist_cell] * np.sqrt(artist_pop)
    w = w * np.where(artist_country == country[u], config.country_boost, 1.0)
    favourites[u] = _weighted_sample(rng, w, config.num_favourite_artists)
  user_ids = np.asarray([str(i + 1) for i in range(num_users)])
  is_new = np.arange(num_users) >= n_est
  return Population(
      config,
      user_ids,
      is_new,
      country,
      age,
      gender,
      created,
      activity,
      taste_long,
      phase_start,
      phase_taste,
      favourites,
      artist_country,
      menus,
  )


def _weighted_sample(rng: np.random.Generator, weights: np.ndarray, k: int) -> np.ndarray:
  """k distinct indices drawn ∝ weights without replacement (Efraimidis-Spirakis keys)."""
  weights = np.asarray(weights, np.float64)
  k = min(k, int((weights > 0).sum()))
  keys = np.where(
      weights > 0, np.log(rng.random(weights.size)) / np.maximum(weights, 1e-300), -np.inf
  )
  return np.argsort(-keys, kind='stable')[:k].astype(np.int32)


def _session_times(rng, config, count, lo, hi):
  """(starts float [S], sizes int [S]) of geometric sessions holding `count` plays in [lo, hi)."""
  sizes = rng.geometric(1.0 / config.session_mean, int(2 * count / config.session_mean) + 8)
  while sizes.sum() < count:  # rare: draw more sessions
    sizes = np.concatenate([sizes, rng.geometric(1.0 / config.session_mean, sizes.size)])
  sizes = sizes[: int(np.searchsorted(np.cumsum(sizes), count)) + 1]
  sizes[-1] -= sizes.sum() - count
  return np.sort(rng.uniform(lo, hi, sizes.size)), sizes


def _user_plays(rng, population, catalogue, cells, base_weight, artist, u):
  """(tracks int32 [n], times int64 [n]) of user u over its active span."""
  config = population.config
  end = config.end_time
  created = int(population.created[u])
  durations = catalogue.attrs['duration_ms'].astype(np.int64) // 1000
  country = population.country[u]
  boost = np.where(population.artist_country[artist] == country, config.country_boost, 1.0)
  boost = boost * np.where(np.isin(artist, population.favourites[u]), config.favourite_boost, 1.0)
  weight_u = base_weight * boost
  if population.is_new[u]:
    first = created + 60 * (2 + rng.exponential(10.0))
    n_first = int(rng.integers(config.first_hours_sessions[0], config.first_hours_sessions[1] + 1))
    starts = np.sort(np.concatenate([[first], created + rng.uniform(0.5, 4, n_first - 1) * 3600]))
    sizes = rng.geometric(1.0 / config.session_mean, n_first)
    days = max(0.0, (end - created) / DAY - 4 / 24)
    count = int(rng.poisson(config.new_user_plays_per_day * population.activity[u] * days))
    if count:
      more = _session_times(rng, config, count, created + 4 * 3600, end)
      starts, sizes = np.concatenate([starts, more[0]]), np.concatenate([sizes, more[1]])
  else:
    lo = max(config.start_time, created + 600)
    share = (end - lo) / (end - config.start_time)
    count = max(1, int(rng.poisson(config.mean_plays * population.activity[u] * share)))
    starts, sizes = _session_times(rng, config, count, lo, end)
  # Each session's plays follow the taste of the phase it starts in (one cdf per phase).
  phase = np.maximum(np.searchsorted(population.phase_start[u], starts, side='right') - 1, 0)
  play_phase = np.repeat(phase, sizes)
  tracks = np.zeros(play_phase.size, np.int64)
  w = config.drift_weight
  for p in np.unique(phase).tolist():
    taste = (1 - w) * population.taste_long[u] + w * population.phase_taste[u, p]
    cdf = np.cumsum(weight_u * (taste[cells] + 1e-3) ** config.taste_exponent)
    mask = play_phase == p
    tracks[mask] = np.searchsorted(cdf, rng.random(int(mask.sum())) * cdf[-1])
  tracks = np.minimum(tracks, cells.size - 1)
  gaps = durations[tracks] + rng.integers(0, 90, tracks.size)
  before = np.cumsum(gaps) - gaps  # exclusive cumsum, reset at each session's first play
  first_play = np.concatenate([[0], np.cumsum(sizes)[:-1]])
  session = np.repeat(np.arange(sizes.size), sizes)
  times = (starts[session]).astype(np.int64) + before - before[first_play][session]
  keep = times < end
  return tracks[keep].astype(np.int32), times[keep]


def write_listening_files(
    out_dir: pathlib.Path | str,
    population: Population,
    catalogue: latent_catalogue.Catalogue,
    *,
    compress: str | None = None,
) -> dict[str, Any]:
  """Draws plays, devices, onboarding and follows of the population and writes all tables.

  Returns {'files': {table: path}, 'counts': {table: rows}}.
  """
  config = population.config
  rng = np.random.default_rng([config.seed, 12])
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  cells = track_cells(catalogue)
  artist = catalogue.attrs['artist'].astype(np.int32)
  num_artists = len(catalogue.artists)
  base_weight = catalogue.attrs['popularity'].astype(np.float64) ** config.popularity_exponent
  end = config.end_time
  num_users = population.num_users
  ev_user, ev_track, ev_time = [], [], []
  dev_rows, fol_rows, onb_rows = [], [], []
  country_names = np.asarray([*config.countries, ''])
  device_p = np.asarray((0.3, 0.3, 0.2, 0.1, 0.05, 0.05))
  artist_cell = np.asarray(
      [a['style'] * catalogue.config.num_moods + a['mood'] for a in catalogue.artists]
  )
  for u in range(num_users):
    tracks, times = _user_plays(rng, population, catalogue, cells, base_weight, artist, u)
    order = np.lexsort((tracks, times))
    tracks, times = tracks[order], times[order]
    ev_user.append(np.full(tracks.size, u, np.int32))
    ev_track.append(tracks)
    ev_time.append(times)
    first = int(times[0]) if times.size else int(population.created[u])
    # Devices: the first one at the first play, the others appear later.
    num_dev = int(rng.choice(3, p=(0.5, 0.35, 0.15))) + 1
    chosen = _weighted_sample(rng, device_p, num_dev)
    seen = [first] + sorted(rng.integers(first, end, num_dev - 1).tolist())
    dev_rows += [(u, t, DEVICES[d]) for d, t in zip(chosen.tolist(), seen)]
    # Onboarding.
    created = int(population.created[u])
    launch = config.start_time + config.onboarding_launch_day * DAY
    c = int(population.country[u])
    if created >= launch and rng.random() >= config.onboarding_skip_share:
      stamp = created + int(rng.integers(60, 600))
      picked: list[int] = []
      if rng.random() >= config.onboarding_languages_only_share and c >= 0:
        k = int(rng.integers(config.onboarding_artists[0], config.onboarding_artists[1] + 1))
        menu = population.menus[c]
        w = population.taste_long[u][artist_cell[menu]]
        picked = menu[_weighted_sample(rng, w + 1e-3, k)].tolist()
      langs = [COUNTRY_LANGUAGE[config.countries[c]]] if c >= 0 else []
      if rng.random() < config.english_share and 'en' not in langs:
        langs.append('en')
      onb_rows.append((u, stamp, ','.join(str(a + 1) for a in picked), ','.join(langs)))
    # Follows: by taste and country; a share to artists never played.
    mean = config.follows_mean_new if population.is_new[u] else config.follows_mean
    num_follows = int(rng.poisson(mean * np.sqrt(population.activity[u])))
    if num_follows:
      played = np.zeros(num_artists, bool)
      played[artist[tracks]] = True
      first_play = np.full(num_artists, end, np.int64)
      np.minimum.at(first_play, artist[tracks], times)
      taste_w = np.bincount(
          artist, base_weight * (population.taste_long[u][cells] + 1e-3), num_artists
      )
      taste_w *= np.where(population.artist_country == c, config.country_boost, 1.0)
      followed: list[int] = []
      for _ in range(num_follows):
        unplayed = rng.random() < config.follow_unplayed_share
        pool = (~played if unplayed else played).copy()
        if not pool.any():
          pool = played | ~played
        pool[followed] = False
        if not pool.any():
          break
        a = int(_weighted_sample(rng, np.where(pool, taste_w, 0.0), 1)[0])
        followed.append(a)
        lo = max(first_play[a] if played[a] else first, first)
        fol_rows.append((u, int(rng.integers(lo, max(lo + 1, end))), a))
  ev_user, ev_track, ev_time = (np.concatenate(x) for x in (ev_user, ev_track, ev_time))

  files, counts = {}, {}

  def put(name, **cols):  # header = keyword order; key 'events' for listening-events.tsv
    table = {'listening-events': 'events'}.get(name[:-4], name[:-4].replace('-', '_'))
    files[table] = str(lfm_tables.write_tsv(out / name, tuple(cols), cols, compress))
    counts[table] = len(next(iter(cols.values())))

  uid, utc = population.user_ids, lfm_tables.format_utc
  country, age, gender = country_names[population.country], population.age, population.gender
  put(
      'users.tsv',
      user_id=uid,
      country=country,
      age=age,
      gender=gender,
      creation_time=utc(population.created),
  )
  artist_ids = np.arange(1, num_artists + 1).astype(str)
  artist_names = np.asarray([a['name'] for a in catalogue.artists])
  put('artists.tsv', artist_id=artist_ids, artist_name=artist_names)
  album_ids = np.arange(1, len(catalogue.albums) + 1).astype(str)
  album_names = np.asarray([a['name'] for a in catalogue.albums])
  album_artist = artist_names[np.asarray([a['artist'] for a in catalogue.albums])]
  put('albums.tsv', album_id=album_ids, album_name=album_names, artist_name=album_artist)
  track_ids = np.arange(1, catalogue.num_tracks + 1).astype(str)
  track_names = np.asarray(catalogue.track_names)
  put('tracks.tsv', track_id=track_ids, artist_name=artist_names[artist], track_name=track_names)
  uris = np.asarray([catalogue.track_uri(i) for i in range(catalogue.num_tracks)])
  put('spotify-uris.tsv', track_id=track_ids, uri=uris)
  album = catalogue.attrs['album'].astype(np.int64) + 1
  put(
      'listening-events.tsv',
      user_id=uid[ev_user],
      track_id=track_ids[ev_track],
      album_id=album[ev_track],
      timestamp=utc(ev_time),
  )
  onb = [np.asarray(x) for x in zip(*onb_rows)] if onb_rows else [np.zeros(0, int)] * 2 + [[]] * 2
  put(
      'onboarding.tsv',
      user_id=uid[onb[0]],
      timestamp=utc(onb[1]),
      artist_ids=np.asarray(onb[2], str),
      languages=np.asarray(onb[3], str),
  )
  dev = [np.asarray(x) for x in zip(*dev_rows)]
  put('devices.tsv', user_id=uid[dev[0]], timestamp=utc(dev[1]), device=dev[2])
  fol = [np.asarray(x) for x in zip(*fol_rows)] if fol_rows else [np.zeros(0, int)] * 3
  put('follows.tsv', user_id=uid[fol[0]], artist_id=artist_ids[fol[2]], timestamp=utc(fol[1]))
  home = np.asarray(config.countries)[population.artist_country]
  put('artist-countries.tsv', artist_id=artist_ids, country=home)
  return {'files': files, 'counts': counts}


def generate(
    out_dir: pathlib.Path | str,
    config: DemoListeningConfig = DemoListeningConfig(),
    catalogue_config: latent_catalogue.CatalogueConfig | None = None,
    compress: str | None = None,
) -> dict[str, Any]:
  """Builds the catalogue (default: the LARP demo's) and population, writes the files.

  Returns write_listening_files' dict plus 'population' and 'catalogue'.
  """
  catalogue = latent_catalogue.build_catalogue(
      catalogue_config or latent_catalogue.CatalogueConfig()
  )
  population = build_population(config, catalogue)
  result = write_listening_files(out_dir, population, catalogue, compress=compress)
  return {**result, 'population': population, 'catalogue': catalogue}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--out', required=True)
  parser.add_argument('--compress', choices=('bz2', 'gz'), default=None)
  kinds = {'int': int, 'float': float, 'str': str}
  fields = [f for f in dataclasses.fields(DemoListeningConfig) if f.type in kinds]
  for f in fields:
    parser.add_argument(f'--{f.name}', type=kinds[f.type], default=f.default)
  args = parser.parse_args()
  config = DemoListeningConfig(**{f.name: getattr(args, f.name) for f in fields})
  started = time.time()
  result = generate(args.out, config, compress=args.compress)
  print(f'wrote {result["counts"]} to {args.out} in {time.time() - started:.1f} s')


if __name__ == '__main__':
  main()
