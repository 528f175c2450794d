"""Demo listening logs (data_pipelines/demo/listening_logs.py): determinism, format, tendencies.

Every tendency the generator promises (module docstring) is measured here from the files as loaded
by data_pipelines.listening, with the catalogue's latent (style, mood) cells as the only side input.
"""

import time

import numpy as np
import pytest

from data_pipelines import listening
from data_pipelines.demo import latent_catalogue
from data_pipelines.demo import listening_logs

DAY = 86400


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
  out = tmp_path_factory.mktemp('demo_listening')
  started = time.perf_counter()
  result = listening_logs.generate(out)
  generated = time.perf_counter() - started
  started = time.perf_counter()
  data = listening.load_listening(out, progress=False)
  loaded = time.perf_counter() - started
  print(f'demo listening: generate+write {generated:.2f} s, load {loaded:.2f} s')
  return result, data


def test_deterministic_byte_identical(tmp_path):
  config = listening_logs.DemoListeningConfig(num_established=120, num_new=40, seed=3)
  catalogue = latent_catalogue.CatalogueConfig(num_tracks=80, num_playlists=1)
  runs = []
  for name in ('a', 'b'):
    result = listening_logs.generate(tmp_path / name, config, catalogue, compress='bz2')
    runs.append({t: open(p, 'rb').read() for t, p in result['files'].items()})
  assert runs[0].keys() == runs[1].keys() and len(runs[0]) == 10
  for table in runs[0]:
    assert runs[0][table] == runs[1][table], table
  other = listening_logs.generate(
      tmp_path / 'c',
      listening_logs.DemoListeningConfig(num_established=120, num_new=40, seed=4),
      catalogue,
      compress='bz2',
  )
  assert open(other['files']['events'], 'rb').read() != runs[0]['events']
  data = listening.load_listening(tmp_path / 'a', progress=False)
  assert data.report.total == 0 and data.num_users == 160


def test_files_load_with_nothing_skipped(demo):
  result, data = demo
  config = result['population'].config
  assert data.report.total == 0, data.report.summary()
  assert data.messages == ()
  for table in listening.TABLES:
    assert data.has(table)
  counts = result['counts']
  assert data.num_users == counts['users'] == config.num_established + config.num_new
  assert data.num_events == counts['events'] and data.num_tracks == 600
  assert counts['follows'] == data.follow_user.size and counts['devices'] == data.device_user.size
  catalogue = result['catalogue']
  # spotify-uris.tsv joins LARP's ids; artists joined by name are the catalogue's.
  index = data.track_ids.astype(int) - 1
  assert data.track_uri.tolist() == [catalogue.track_uri(i) for i in index]
  assert data.artist_names[data.track_artist].tolist() == [
      catalogue.artists[catalogue.attrs['artist'][i]]['name'] for i in index
  ]
  mean_plays = np.diff(data.user_offsets)[: config.num_established].mean()
  assert 150 <= mean_plays <= 250
  devices_per_user = np.bincount(data.device_user, minlength=data.num_users)
  assert devices_per_user.min() >= 1 and devices_per_user.max() <= 3
  assert np.all(data.event_time < config.end_time) and np.all(data.event_time >= config.start_time)


def _cells(result, data):
  catalogue = result['catalogue']
  return listening_logs.track_cells(catalogue)[data.track_ids.astype(int) - 1]


def test_taste_dominates_popularity_and_recent_horizon_adds(demo):
  """Next-week plays: own past (style, mood) histogram beats global popularity (hit rate @50); the
  last 7 days add information to the 182-day histogram."""
  result, data = demo
  config = result['population'].config
  cells = _cells(result, data)
  num_cells = int(cells.max()) + 1
  cut = config.end_time - 7 * DAY
  before = data.event_time < cut
  popularity = np.bincount(data.event_track[before], minlength=data.num_tracks).astype(float)
  tie = 1e-3 * popularity / popularity.max()
  hits = {'popularity': [], 'h182': [], 'h182+h7': []}
  for u in range(config.num_established):
    tracks, times = data.user_events(u)
    past = (times < cut) & (times >= cut - 182 * DAY)
    last_week = (times < cut) & (times >= cut - 7 * DAY)
    future = np.unique(tracks[times >= cut])
    if past.sum() < 5 or not future.size:
      continue
    h182 = np.bincount(cells[tracks[past]], minlength=num_cells) / past.sum()
    h7 = np.bincount(cells[tracks[last_week]], minlength=num_cells) / max(last_week.sum(), 1)
    for name, score in (
        ('popularity', popularity),
        ('h182', h182[cells] + tie),
        ('h182+h7', h182[cells] + 0.5 * h7[cells] + tie),
    ):
      top = np.argsort(-score, kind='stable')[:50]
      hits[name].append(np.isin(future, top).mean())
  rate = {k: float(np.mean(v)) for k, v in hits.items()}
  print('next-week hit rate @50', rate, len(hits['h182']), 'users')
  assert len(hits['h182']) >= 0.4 * config.num_established
  assert rate['h182'] > 1.3 * rate['popularity'], rate
  assert rate['h182+h7'] > rate['h182'] + 0.01, rate


def test_play_counts_heavy_tailed(demo):
  _, data = demo
  counts = np.sort(np.bincount(data.event_track, minlength=data.num_tracks))[::-1]
  top_share = counts[: data.num_tracks // 10].sum() / counts.sum()
  assert top_share > 0.22, top_share  # uniform would be 0.10
  assert counts[0] > 5 * np.median(counts)
  plays = np.diff(data.user_offsets)
  assert np.std(np.log(plays[plays > 0])) > 0.4  # log-normal activity


def test_users_favour_their_country_artists(demo):
  _, data = demo
  user_country = data.user_country[data.event_user]
  artist_country = data.artist_country[data.track_artist[data.event_track]]
  home_share = np.mean(user_country == artist_country)
  # Expected share if plays ignored country: P(artist country == user country) by track counts.
  track_country = data.artist_country[data.track_artist]
  baseline = np.mean(
      [np.mean(track_country == c) for c in data.user_country[data.event_user[::97]]]
  )
  assert home_share > 1.5 * baseline, (home_share, baseline)


def test_registration_and_cold_start_timeline(demo):
  result, data = demo
  config = result['population'].config
  last = data.event_time.max()
  assert (last - data.user_created.min()) / DAY >= 187
  new = np.arange(data.num_users) >= config.num_established
  cut = config.end_time - 7 * DAY
  assert np.all(data.user_created[~new] < cut - 30 * DAY)
  assert np.all(data.user_created[new] >= config.end_time - config.new_user_days * DAY)
  assert 0.1 < np.mean(data.user_created[new] > cut) < 0.4  # new users also after T
  first_delay = np.asarray(
      [data.user_events(u)[1][0] - data.user_created[u] for u in np.flatnonzero(new)]
  )
  assert first_delay.min() >= 0 and np.median(first_delay) < 3600 and first_delay.max() < 4 * 3600


def test_onboarding_shares_menus_and_taste(demo):
  result, data = demo
  population = result['population']
  config = population.config
  new = np.arange(data.num_users) >= config.num_established
  has_row = data.onboarding_time >= 0
  assert not has_row[~new].any()  # registered before the onboarding launch
  share = has_row[new].mean()
  assert abs(share - (1 - config.onboarding_skip_share)) < 0.06, share
  delay = data.onboarding_time[has_row] - data.user_created[has_row]
  assert delay.min() >= 60 and delay.max() <= 600
  num_picked = np.diff(data.onboarding_artist_offsets)
  languages_only = np.mean(num_picked[has_row] == 0)
  assert abs(languages_only - config.onboarding_languages_only_share) < 0.06
  assert num_picked.max() <= config.onboarding_artists[1]
  # Small per-country menus -> onboarding clusters; picks reflect the user's later listening.
  cells = _cells(result, data)
  artist_cell = np.full(data.num_artists, -1)
  artist_cell[data.track_artist] = cells
  picked_share, menu_share = [], []
  for c in range(len(data.countries)):
    users = np.flatnonzero(has_row & (data.user_country == c))
    chosen = np.concatenate(
        [
            data.onboarding_artists[
                data.onboarding_artist_offsets[u] : data.onboarding_artist_offsets[u + 1]
            ]
            for u in users
        ]
        + [np.zeros(0, np.int32)]
    )
    assert np.unique(chosen).size <= config.menu_size
    menu = np.unique(chosen)
    for u in users:
      lo, hi = data.onboarding_artist_offsets[u], data.onboarding_artist_offsets[u + 1]
      if hi == lo or menu.size < 2:
        continue
      tracks, _ = data.user_events(u)
      hist = np.bincount(cells[tracks], minlength=int(cells.max()) + 1) / tracks.size
      picked_share.append(hist[artist_cell[data.onboarding_artists[lo:hi]]].mean())
      menu_share.append(hist[artist_cell[menu]].mean())
  assert np.mean(picked_share) > 1.5 * np.mean(menu_share), (
      np.mean(picked_share),
      np.mean(menu_share),
  )
  codes = [data.languages[x] for x in data.onboarding_languages]
  assert 'en' in codes and len(set(codes)) >= 3


def test_follows_over_time_with_unplayed_share(demo):
  result, data = demo
  config = result['population'].config
  played = np.zeros((data.num_users, data.num_artists), bool)
  played[data.event_user, data.track_artist[data.event_track]] = True
  unplayed = ~played[data.follow_user, data.follow_artist]
  assert abs(unplayed.mean() - config.follow_unplayed_share) < 0.04, unplayed.mean()
  days = (data.follow_time - config.start_time) / DAY
  assert np.histogram(days, bins=4, range=(0, config.num_days))[0].min() > 0.1 * days.size
  pairs = data.follow_user.astype(np.int64) * data.num_artists + data.follow_artist
  assert np.unique(pairs).size == pairs.size  # no artist followed twice by one user
  # Chosen by taste/country: followed artists are played more than artists in general.
  plays = np.zeros((data.num_users, data.num_artists))
  np.add.at(plays, (data.event_user, data.track_artist[data.event_track]), 1)
  followed_played = plays[data.follow_user, data.follow_artist][~unplayed]
  assert followed_played.mean() > plays[played].mean()


def test_age_tilts_taste(demo):
  """Demographics inform taste: style shares differ between age groups beyond chance."""
  result, data = demo
  styles = result['catalogue'].attrs['style'][data.track_ids.astype(int) - 1]
  num_styles = int(styles.max()) + 1
  users = np.flatnonzero(data.user_age >= 0)
  share = np.zeros((users.size, num_styles))
  for row, u in enumerate(users):
    tracks, _ = data.user_events(u)
    share[row] = np.bincount(styles[tracks], minlength=num_styles) / max(tracks.size, 1)

  def spread(ages):
    groups = np.digitize(ages, (25, 35, 45))
    means = np.stack([share[groups == g].mean(0) for g in range(4)])
    return float(((means - share.mean(0)) ** 2).sum())

  ages = data.user_age[users]
  rng = np.random.default_rng(0)
  shuffled = max(spread(rng.permutation(ages)) for _ in range(5))
  assert spread(ages) > 3 * shuffled, (spread(ages), shuffled)
