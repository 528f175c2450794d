"""Paper 001's evaluation protocol on listening logs: the cut time T, cohorts, splits, snapshots.

* **Cut time T** (``config.split.cut_time``): an ISO time (UTC), or ``'auto'`` = the latest UTC
  midnight T with T + 7 days <= the last event and at least ``min_active_users`` users playing
  in [T, T + 7 days).
* **Cohorts** (Sec. 5.1.1):
    established  registered >= ``established_days`` (30) before T, plays before T and in
                 (T, T + 7 days] -> the 7-day future-listening task, snapshot at T;
    new          registered in [T, T + ``new_user_days``) -> evaluated on their first 4 hours,
                 snapshot just after registration/onboarding (``snapshot_time``), features from
                 registration and onboarding only. The paper says "around T"; we take only
                 users registered *after* T so that nothing fitted on events before T (track
                 spaces, popularity, baselines) has seen a new test user's first plays;
    other        everyone else (still trained on and exported).
  ``onboarded`` = a new user who chose at least one artist.
* **Splits**: seeded train / validation / test users, stratified by (cohort, country).
"""

from __future__ import annotations

import dataclasses
import datetime

import numpy as np

from data_pipelines.user_features import DAY_SECONDS

HOUR_SECONDS = 3_600
COHORTS = ("established", "new", "other")


def parse_time(text: str) -> int:
  """Unix seconds of an ISO time; a time without a zone is UTC."""
  value = datetime.datetime.fromisoformat(str(text))
  if value.tzinfo is None:
    value = value.replace(tzinfo=datetime.timezone.utc)
  return int(value.timestamp())


def format_time(t: int) -> str:
  return datetime.datetime.fromtimestamp(int(t), datetime.timezone.utc).strftime(
      "%Y-%m-%dT%H:%M:%SZ"
  )


def resolve_cut_time(listening, cut_time: str, *, future_days: int = 7, min_active_users: int = 1):
  """T in unix seconds (see the module docstring); errors name ``config.split.cut_time``."""
  if listening.num_events == 0:
    raise ValueError("no listening events: cannot choose config.split.cut_time.")
  if str(cut_time) != "auto":
    return parse_time(cut_time)
  last = int(listening.event_time.max())
  t = (last - future_days * DAY_SECONDS) // DAY_SECONDS * DAY_SECONDS
  first = int(listening.event_time.min())
  while t > first:
    window = (listening.event_time >= t) & (listening.event_time < t + future_days * DAY_SECONDS)
    if len(np.unique(listening.event_user[window])) >= min_active_users:
      return int(t)
    t -= DAY_SECONDS
  raise ValueError(
      f"config.split.cut_time='auto': no day has >= {min_active_users} users active in the "
      f"following {future_days} days; give an ISO cut time."
  )


@dataclasses.dataclass(frozen=True)
class Protocol:
  """Cohorts, splits and snapshot times of every user (arrays of length U).

  Attributes:
    cut_time: T, unix seconds.
    cohort: int8 [U] index into ``COHORTS``.
    split: int8 [U] 0 train, 1 validation, 2 test.
    snapshot_time: int64 [U] T for users registered before T; for later users (the new cohort
      among them) their registration (or onboarding, when later) + 1 s.
    onboarded: bool [U] a new user with at least one onboarding artist.
  """

  cut_time: int
  cohort: np.ndarray
  split: np.ndarray
  snapshot_time: np.ndarray
  onboarded: np.ndarray

  def users(self, cohort: str | None = None, split: int | None = None) -> np.ndarray:
    """int64 indices of the users of a cohort and/or split."""
    keep = np.ones(len(self.cohort), bool)
    if cohort is not None:
      keep &= self.cohort == COHORTS.index(cohort)
    if split is not None:
      keep &= self.split == split
    return np.flatnonzero(keep)


def build_protocol(
    listening,
    cut_time: int,
    *,
    established_days: int = 30,
    new_user_days: int = 7,
    future_days: int = 7,
    split_fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
    seed: int = 0,
) -> Protocol:
  """Assigns every user of a ``Listening`` a cohort, a split and a snapshot time."""
  if abs(sum(split_fractions) - 1.0) > 1e-6 or min(split_fractions) < 0:
    raise ValueError(f"config.split.fractions={split_fractions} must be >= 0 and sum to 1.")
  num_users = listening.num_users
  t = int(cut_time)
  created = listening.user_created
  users, times = listening.event_user, listening.event_time
  before = np.bincount(users[times < t], minlength=num_users) > 0
  future = (times >= t) & (times < t + future_days * DAY_SECONDS)
  after = np.bincount(users[future], minlength=num_users) > 0
  established = (created >= 0) & (created <= t - established_days * DAY_SECONDS) & before & after
  new = (created >= t) & (created < t + new_user_days * DAY_SECONDS)
  cohort = np.full(num_users, COHORTS.index("other"), np.int8)
  cohort[established] = COHORTS.index("established")
  cohort[new] = COHORTS.index("new")

  onboarded = np.zeros(num_users, bool)
  snapshot = np.full(num_users, t, np.int64)
  if listening.onboarding_time is not None:
    counts = np.diff(listening.onboarding_artist_offsets)
    row = listening.onboarding_time >= 0  # languages-only rows count for the snapshot too
    onboarded = new & row & (counts > 0)
    registration = np.where(row, np.maximum(listening.onboarding_time, created), created)
  else:
    registration = created
  # Users registered at or after T are seen at registration (+ onboarding), never before they exist.
  late = created >= t
  snapshot[late] = registration[late] + 1

  split = np.zeros(num_users, np.int8)
  rng = np.random.default_rng(seed)
  strata = cohort.astype(np.int64) * (len(listening.countries) + 1) + (listening.user_country + 1)
  bounds = np.cumsum(split_fractions)[:-1]
  for key in np.unique(strata):
    members = np.flatnonzero(strata == key)
    members = members[rng.permutation(len(members))]
    # Largest-remainder cut points so that small strata still get test users.
    cuts = np.round(bounds * len(members)).astype(int)
    split[members[cuts[0] : cuts[1]]] = 1
    split[members[cuts[1] :]] = 2
  return Protocol(
      cut_time=t, cohort=cohort, split=split, snapshot_time=snapshot, onboarded=onboarded
  )


def summary(protocol: Protocol) -> dict[str, int]:
  """Counts of users per cohort and split (for the report)."""
  out = {}
  for c, name in enumerate(COHORTS):
    for s, split in enumerate(("train", "validation", "test")):
      out[f"{name}/{split}"] = int(((protocol.cohort == c) & (protocol.split == s)).sum())
  out["new/onboarded"] = int(protocol.onboarded.sum())
  return out
