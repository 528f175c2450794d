"""Paper 001's per-user features: a plain NumPy reference written from the definition (module
docstring of data_pipelines/user_features.py), causality at the cut, and the protocol."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from data_pipelines import listening as listening_lib
from data_pipelines import user_features as uf
from data_pipelines import user_protocol
from data_pipelines.demo import listening_logs

DAY = 86_400


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  root = tmp_path_factory.mktemp("listening")
  config = listening_logs.DemoListeningConfig(num_established=40, num_new=15, mean_plays=80.0)
  listening_logs.generate(str(root), config)
  listening = listening_lib.load_listening(str(root), progress=False)
  rng = np.random.default_rng(0)
  m, a = listening.num_tracks, listening.num_artists
  spaces = uf.TrackSpaces(
      audio=rng.normal(size=(m, 6)).astype(np.float32),
      collab=rng.normal(size=(m, 5)).astype(np.float32),
      artist_audio=rng.normal(size=(a, 6)).astype(np.float32),
      artist_collab=rng.normal(size=(a, 5)).astype(np.float32),
      fill_audio=rng.normal(size=6),
      fill_collab=rng.normal(size=5),
      batch_ids={"audio": "a", "collaborative": "c"},
  )
  spec = uf.spec_for(listening, 6, 5)
  return listening, spaces, spec


def reference_features(listening, u, t, spaces, spec):
  """Direct NumPy transcription of the feature definition (no day bins)."""
  a, b = listening.user_offsets[u], listening.user_offsets[u + 1]
  tracks, times = listening.event_track[a:b], listening.event_time[a:b]
  past = times < t
  tracks, times = tracks[past], times[past]
  out, counts, flags = [], [], []
  for h in spec.horizons:
    # h calendar days ending today (UTC), today's part before t.
    first_day = t // DAY - h + 1
    w = tracks[times // DAY >= first_day]
    if len(w):
      out += [
          spaces.audio[w].astype(np.float64).mean(0),
          spaces.collab[w].astype(np.float64).mean(0),
      ]
    else:
      out += [spaces.fill_audio, spaces.fill_collab]
    counts.append(np.log(1 + len(w)))
    flags.append(1.0 if len(w) == 0 else 0.0)
  created = listening.user_created[u]
  days = max(0.0, (t - created) / DAY)
  out.append(np.array(counts + flags + [np.log(1 + days)]))
  country = np.zeros(spec.num_countries)
  if listening.user_country[u] >= 0:
    country[listening.user_country[u]] = 1
  age = np.zeros(len(spec.age_edges) + 2)
  if listening.user_age[u] < 0:
    age[-1] = 1
  else:
    age[sum(listening.user_age[u] >= e for e in spec.age_edges)] = 1
  gender = np.zeros(spec.num_genders + 1)
  gender[listening.user_gender[u] if listening.user_gender[u] >= 0 else -1] = 1
  devices = np.zeros(spec.num_devices)
  rows = np.flatnonzero((listening.device_user == u) & (listening.device_time < t))
  devices[listening.device_index[rows]] = 1
  out.append(np.concatenate([country, age, gender, devices]))
  o0, o1 = listening.onboarding_artist_offsets[u], listening.onboarding_artist_offsets[u + 1]
  chosen = listening.onboarding_artists[o0:o1]
  when = listening.onboarding_time[u]
  use = when >= 0 and when < t and (t - created) < spec.onboarding_days * DAY and len(chosen)
  languages = np.zeros(spec.num_languages)
  if use:
    l0, l1 = listening.onboarding_language_offsets[u], listening.onboarding_language_offsets[u + 1]
    languages[listening.onboarding_languages[l0:l1]] = 1
    out += [
        spaces.artist_audio[chosen].mean(0),
        spaces.artist_collab[chosen].mean(0),
        languages,
        [0.0],
    ]
  else:
    out += [spaces.fill_audio, spaces.fill_collab, languages, [1.0]]
  return np.concatenate(out)


def test_features_equal_numpy_reference(data):
  listening, spaces, spec = data
  rng = np.random.default_rng(1)
  lo, hi = int(listening.event_time.min()), int(listening.event_time.max())
  users = rng.choice(listening.num_users, 25, replace=False)
  checked_onboarding = 0
  for u in users:
    for t in (int(rng.integers(lo, hi)), hi - 3 * DAY + 3600, int(listening.user_created[u]) + 100):
      got = uf.user_features(uf.user_record(listening, int(u)), t, spaces, spec)
      want = reference_features(listening, int(u), t, spaces, spec)
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
      checked_onboarding += int(got[-1] == 0)
  assert got.shape == (spec.dim,)
  assert checked_onboarding > 0  # some snapshots used a real onboarding


def test_events_at_or_after_cut_change_nothing(data):
  listening, spaces, spec = data
  u = int(np.argmax(np.diff(listening.user_offsets)))
  record = uf.user_record(listening, u)
  t = int(np.median(record.times))
  before = uf.user_features(record, t, spaces, spec)
  more = record._replace(
      tracks=np.r_[record.tracks, [0, 1, 2]],
      times=np.r_[record.times, [t, t + 1, t + 10 * DAY]],
      device_index=np.r_[record.device_index, [0]],
      device_time=np.r_[record.device_time, [t]],
      onboarding_time=t if record.onboarding_time < 0 else record.onboarding_time,
  )
  np.testing.assert_array_equal(uf.user_features(more, t, spaces, spec), before)
  # ...while an event just before t does change the short horizon.
  earlier = record._replace(tracks=np.r_[record.tracks, [0]], times=np.r_[record.times, [t - 1]])
  assert not np.array_equal(uf.user_features(earlier, t, spaces, spec), before)


def test_ablation_columns_select_blocks(data):
  _, _, spec = data
  full = np.arange(spec.dim)
  for drop in (("onboarding",), ("modality",), ("static",), ("modality", "static")):
    reduced = dataclasses.replace(spec, drop=drop)
    cols = reduced.columns()
    assert len(cols) == reduced.dim
    names = [n for n, _ in reduced.blocks()]
    assert any(n.startswith(("audio_", "collab_")) for n in names) != ("modality" in drop)
    assert ("static" in names) != ("static" in drop)
    assert set(cols) <= set(full)
  with pytest.raises(ValueError, match="unknown groups"):
    dataclasses.replace(spec, drop=("audio",))


def test_protocol_cohorts_and_cut(data):
  listening, _, _ = data
  t = user_protocol.resolve_cut_time(listening, "auto", min_active_users=5)
  assert t % DAY == 0 and t + 7 * DAY <= listening.event_time.max()
  p = user_protocol.build_protocol(listening, t, seed=3)
  est = p.users(cohort="established")
  for u in est:
    times = listening.event_time[listening.user_offsets[u] : listening.user_offsets[u + 1]]
    assert (times < t).any() and ((times >= t) & (times < t + 7 * DAY)).any()
    assert listening.user_created[u] <= t - 30 * DAY
  new = p.users(cohort="new")
  assert len(new) and (listening.user_created[new] >= t).all()
  assert (p.snapshot_time[new] > listening.user_created[new]).all()
  assert (p.snapshot_time[listening.user_created < t] == t).all()
  # Seeded and stratified: same seed, same split; every split non-empty.
  again = user_protocol.build_protocol(listening, t, seed=3)
  np.testing.assert_array_equal(p.split, again.split)
  assert set(np.unique(p.split)) == {0, 1, 2}
  assert user_protocol.parse_time("2024-08-20T00:00:00") == user_protocol.parse_time(
      "2024-08-20T00:00:00+00:00"
  )
