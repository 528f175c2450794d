"""Deterministic demo data for MAP-2T (paper 002) in the real formats of ``data_pipelines.audiobooks``.

It EXTENDS the user-representation demo (``listening_logs``): the same users (same ids, same
latent long-term taste over (style, mood) cells, the same LFM-2b music files, written into the
same directory), plus:
  * mood preference = the mood marginal of each user's long-term music taste: it drives music
    (already, through the cells) and the TONE of the audiobooks they pick;
  * topic preference (new): a Dirichlet over NUM topics whose prior is tilted by the user's style
    marginal through a style x topic coupling (so music carries a weak topic signal): it drives
    podcasts and the SUBJECT of the audiobooks they pick;
  * podcast shows (one topic each) with per-episode rows in the Spotify ``metadata.tsv`` format;
    only ``podcast_share`` of the users play podcasts (a majority has none), before and after T;
  * Goodreads-format audiobooks (one topic, one mood; ``format`` an audio edition, plus a few
    print editions that readers must skip) whose titles and descriptions carry topic and mood
    words a text encoder can read; authors as names;
  * audiobook adoption: ``adopter_share`` of users start at a time uniform in
    [launch_day, num_days); each engagement picks a book with probability
    ∝ popularity^β · (topic_pref[topic] · mood_pref[mood])^κ, so TASTE DOMINATES POPULARITY in
    what users listen to next while book popularity stays log-normally skewed; ``short_share``
    of the engagements are short starts (ms_played below 5 minutes: neither positive nor negative
    under the default listen threshold).
Nothing here knows the model: the generator is the world, the job the protocol.
CLI: python -m data_pipelines.demo.audiobook_logs --out DIR
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
from typing import Any

import numpy as np

from data_pipelines import audiobooks
from data_pipelines import lfm_tables
from data_pipelines.demo import latent_catalogue
from data_pipelines.demo import listening_logs

DAY = 86400
TOPICS = {
    "science": ("science", "physics", "biology", "discovery", "the brain", "evolution"),
    "business": ("business", "money", "startups", "leadership", "investing", "markets"),
    "history": ("history", "empire", "war", "ancient Rome", "the last century", "kings"),
    "wellness": ("health", "sleep", "fitness", "habits", "mindfulness", "nutrition"),
    "crime": ("true crime", "murder", "a detective", "an investigation", "a killer", "the trial"),
    "fantasy": ("fantasy", "dragons", "magic", "a lost kingdom", "a quest", "wizards"),
    "romance": ("love", "romance", "a relationship", "a wedding", "a broken heart", "desire"),
    "politics": ("politics", "democracy", "an election", "power", "government", "protest"),
}
MOOD_WORDS = {
    "happy": ("joyful", "uplifting", "cheerful", "heartwarming", "funny"),
    "sad": ("heartbreaking", "melancholy", "grieving", "tearful", "tragic"),
    "calm": ("gentle", "quiet", "peaceful", "soothing", "reflective"),
    "energetic": ("thrilling", "fast-paced", "explosive", "gripping", "intense"),
}
FIRST = ("Anna", "James", "Maria", "David", "Lena", "Omar", "Sofia", "Kenji", "Ruth", "Paul")
LAST = ("Walker", "Clear", "Hoover", "Manson", "Okafor", "Lindqvist", "Moreau", "Tanaka", "Reyes")
SHOW_SUFFIX = ("Show", "Hour", "Podcast", "Daily", "Weekly", "Talks")


@dataclasses.dataclass(frozen=True)
class DemoAudiobookConfig:
  """Knobs of the audiobook/podcast demo (defaults: ~8 s including the listening demo).

  Attributes:
    num_books / num_shows: audiobook catalogue size / podcast shows.
    print_share: extra print-edition rows in the Goodreads file (skipped by the reader).
    episodes_per_show: (min, max) episode rows per show in metadata.tsv.
    topic_concentration: Dirichlet alpha per topic of the topic preference.
    style_topic_weight: weight of the style-driven topic prior (vs uniform).
    podcast_share: share of users with podcast plays.
    podcast_plays_mean: mean plays of a podcast user.
    adopter_share: share of users who ever engage with audiobooks.
    launch_day: day (from the listening timeline's start) audiobooks launch.
    books_mean: mean distinct books of an adopter (1 + Poisson).
    engagements_per_book: (min, max) engagements of one picked book.
    follow_days: an adopter's engagements fall within this many days of adoption.
    popularity_sigma: log-normal sigma of book and show popularity.
    popularity_exponent: β.
    taste_exponent: κ.
    mood_exponent / topic_exponent: how sharply mood / topic preferences act inside the taste.
    short_share: engagements that are short starts (ms_played < 5 min).
    seed: seed of everything here (the listening demo has its own, in ``listening``).
    listening: the listening demo's config (the users).
  """

  num_books: int = 240
  num_shows: int = 48
  print_share: float = 0.1
  episodes_per_show: tuple[int, int] = (1, 4)
  topic_concentration: float = 0.35
  style_topic_weight: float = 0.5
  podcast_share: float = 0.35
  podcast_plays_mean: float = 25.0
  adopter_share: float = 0.6
  launch_day: float = 120.0
  books_mean: float = 2.0
  engagements_per_book: tuple[int, int] = (1, 3)
  follow_days: float = 60.0
  popularity_sigma: float = 1.0
  popularity_exponent: float = 0.5
  taste_exponent: float = 2.0
  mood_exponent: float = 1.0
  topic_exponent: float = 1.5
  short_share: float = 0.2
  seed: int = 0
  listening: listening_logs.DemoListeningConfig = dataclasses.field(
      default_factory=listening_logs.DemoListeningConfig
  )


@dataclasses.dataclass(frozen=True)
class AudiobookWorld:
  """The latents (U users as in the listening population, K topics, M moods).

  mood_pref float64 [U, M]; topic_pref float64 [U, K]; has_podcasts bool [U]; book_topic,
  book_mood int32 [N]; book_pop float64 [N]; show_topic int32 [S]; show_pop float64 [S].
  """

  mood_pref: np.ndarray
  topic_pref: np.ndarray
  has_podcasts: np.ndarray
  book_topic: np.ndarray
  book_mood: np.ndarray
  book_pop: np.ndarray
  show_topic: np.ndarray
  show_pop: np.ndarray

  def book_weights(self, u: int, config: DemoAudiobookConfig) -> np.ndarray:
    """float64 [N] ∝ pop^β · (topic^a · mood^b)^κ: user u's next-listen distribution."""
    taste = (
        self.topic_pref[u, self.book_topic] ** config.topic_exponent
        * self.mood_pref[u, self.book_mood] ** config.mood_exponent
    )
    w = self.book_pop**config.popularity_exponent * taste**config.taste_exponent
    return w / w.sum()


def build_world(
    config: DemoAudiobookConfig,
    population: listening_logs.Population,
    catalogue: latent_catalogue.Catalogue,
) -> AudiobookWorld:
  rng = np.random.default_rng([config.seed, 21])
  num_styles, num_moods = catalogue.config.num_styles, catalogue.config.num_moods
  k = len(TOPICS)
  taste = population.taste_long.reshape(-1, num_styles, num_moods)
  mood_pref = taste.sum(1)
  style_pref = taste.sum(2)
  style_topic = rng.dirichlet(np.full(k, 0.5), num_styles)
  base = (1 - config.style_topic_weight) / k + config.style_topic_weight * style_pref @ style_topic
  topic_pref = np.stack([rng.dirichlet(config.topic_concentration * k * b + 1e-3) for b in base])
  has_podcasts = rng.random(population.num_users) < config.podcast_share
  return AudiobookWorld(
      mood_pref=mood_pref,
      topic_pref=topic_pref,
      has_podcasts=has_podcasts,
      book_topic=rng.integers(0, k, config.num_books).astype(np.int32),
      book_mood=rng.integers(0, num_moods, config.num_books).astype(np.int32),
      book_pop=np.exp(rng.normal(0, config.popularity_sigma, config.num_books)),
      show_topic=(np.arange(config.num_shows) % k).astype(np.int32),
      show_pop=np.exp(rng.normal(0, config.popularity_sigma, config.num_shows)),
  )


def _bare(word: str) -> str:
  """'the brain' -> 'brain' (names add their own article)."""
  for article in ("the ", "a ", "an "):
    if word.startswith(article):
      return word[len(article) :]
  return word


def _book_rows(rng, world: AudiobookWorld, catalogue, config) -> list[dict[str, Any]]:
  topics, moods = list(TOPICS), [m["name"] for m in catalogue.moods]
  rows = []
  for b in range(config.num_books):
    words = TOPICS[topics[world.book_topic[b]]]
    tone = MOOD_WORDS.get(moods[world.book_mood[b]], (moods[world.book_mood[b]],))
    w = rng.choice(len(words), 3, replace=False)
    adj = str(rng.choice(tone))
    title = f"The {adj.title()} Story of {_bare(words[w[0]]).title()} {b}"
    author = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
    description = (
        f"A {adj} audiobook about {words[w[1]]} and {words[w[2]]}. "
        f"{str(rng.choice(tone)).capitalize()} and {rng.choice(tone)}, a listen about "
        f"{words[w[0]]} for fans of {topics[world.book_topic[b]]}."
    )
    rows.append(
        {
            "book_id": str(100000 + b),
            "title": title,
            "authors": [{"author_id": str(int(rng.integers(1, 999))), "role": "", "name": author}],
            "description": description,
            "format": str(rng.choice(audiobooks.AUDIO_FORMATS[:4])),
            "language_code": "eng",
            "is_ebook": "false",
        }
    )
  for i in range(int(config.print_share * config.num_books)):  # print editions: not audiobooks
    rows.append({**rows[i], "book_id": str(900000 + i), "format": "Paperback"})
  return rows


def _episode_rows(rng, world: AudiobookWorld, config) -> dict[str, list[str]]:
  topics = list(TOPICS)
  cols: dict[str, list[str]] = {h: [] for h in _SHOW_HEADER}
  for s in range(config.num_shows):
    words = TOPICS[topics[world.show_topic[s]]]
    w = rng.choice(len(words), 3, replace=False)
    name = f"The {_bare(words[w[0]]).title()} {rng.choice(SHOW_SUFFIX)} {s}"
    desc = f"A weekly conversation about {words[w[1]]}, {words[w[2]]} and {words[w[0]]}."
    lo, hi = config.episodes_per_show
    for e in range(int(rng.integers(lo, hi + 1))):
      values = {
          "show_uri": f"spotify:show:demo{s:05d}",
          "show_name": name,
          "show_description": desc,
          "publisher": f"{rng.choice(LAST)} Media",
          "language": "['en']",
          "rss_link": f"https://example.invalid/rss/{s}",
          "episode_uri": f"spotify:episode:demo{s:05d}e{e:03d}",
          "episode_name": f"Episode {e + 1}: {words[(w[0] + e) % len(words)]}",
          "episode_description": f"This week: {words[(w[1] + e) % len(words)]}.",
          "duration": f"{rng.uniform(20, 90):.2f}",
          "show_filename_prefix": f"show_demo{s:05d}",
          "episode_filename_prefix": f"demo{s:05d}e{e:03d}",
      }
      for h in _SHOW_HEADER:
        cols[h].append(values[h])
  return cols


_SHOW_HEADER = (
    "show_uri show_name show_description publisher language rss_link episode_uri episode_name "
    "episode_description duration show_filename_prefix episode_filename_prefix"
).split()


def _engagements(rng, world: AudiobookWorld, population, config) -> dict[str, np.ndarray]:
  lc = config.listening
  start, end = lc.start_time, lc.end_time
  users, items, times, ms = [], [], [], []
  adopters = np.flatnonzero(rng.random(population.num_users) < config.adopter_share)
  for u in adopters:
    t0 = start + config.launch_day * DAY + rng.random() * (end - start - config.launch_day * DAY)
    t0 = max(t0, population.created[u])
    if t0 >= end - 3600:
      continue
    t1 = min(end - 60, t0 + config.follow_days * DAY)
    n_books = 1 + rng.poisson(config.books_mean - 1) if config.books_mean > 1 else 1
    picks = rng.choice(config.num_books, n_books, p=world.book_weights(u, config))
    lo, hi = config.engagements_per_book
    for i, b in enumerate(picks):
      # The first pick happens at adoption, later ones spread after it.
      first = t0 if i == 0 else rng.uniform(t0, t1)
      for j in range(int(rng.integers(lo, hi + 1))):
        t = first if j == 0 else rng.uniform(first, t1)
        short = rng.random() < config.short_share
        users.append(population.user_ids[u])
        items.append(str(100000 + b))
        times.append(int(t))
        ms.append(int(rng.uniform(5_000, 250_000) if short else rng.uniform(6e5, 7.2e6)))
  order = np.argsort(np.asarray(times, np.int64), kind="stable")
  return {
      "user_id": np.asarray(users)[order],
      "book_id": np.asarray(items)[order],
      "timestamp": lfm_tables.format_utc(np.asarray(times, np.int64)[order]),
      "ms_played": np.asarray(ms, np.int64)[order],
  }


def _plays(rng, world: AudiobookWorld, population, config) -> dict[str, np.ndarray]:
  lc = config.listening
  users, shows, times, ms = [], [], [], []
  w_pop = world.show_pop**config.popularity_exponent
  for u in np.flatnonzero(world.has_podcasts):
    lo = max(lc.start_time, population.created[u])
    if lo >= lc.end_time - 3600:
      continue
    n = 1 + rng.poisson(config.podcast_plays_mean * population.activity[u])
    w = w_pop * world.topic_pref[u, world.show_topic] ** config.taste_exponent
    for s in rng.choice(config.num_shows, n, p=w / w.sum()):
      users.append(population.user_ids[u])
      shows.append(f"spotify:show:demo{s:05d}")
      times.append(int(rng.uniform(lo, lc.end_time)))
      ms.append(int(rng.uniform(3e4, 3.6e6)))
  order = np.argsort(np.asarray(times, np.int64), kind="stable")
  return {
      "user_id": np.asarray(users)[order],
      "show_uri": np.asarray(shows)[order],
      "timestamp": lfm_tables.format_utc(np.asarray(times, np.int64)[order]),
      "ms_played": np.asarray(ms, np.int64)[order],
  }


def generate(out_dir: str | pathlib.Path, config: DemoAudiobookConfig = DemoAudiobookConfig()):
  """Writes the listening demo + the audiobook/podcast files into ``out_dir``.

  Returns {'files', 'population', 'catalogue', 'world', 'counts'}.
  """
  out = pathlib.Path(out_dir)
  listening = listening_logs.generate(out, config.listening)
  population, catalogue = listening["population"], listening["catalogue"]
  world = build_world(config, population, catalogue)
  rng = np.random.default_rng([config.seed, 22])
  books = audiobooks.write_books_json(
      out / "goodreads_books.json", _book_rows(rng, world, catalogue, config), compress=True
  )
  episodes = _episode_rows(rng, world, config)
  shows = lfm_tables.write_tsv(out / "metadata.tsv", _SHOW_HEADER, episodes)
  plays = _plays(rng, world, population, config)
  lfm_tables.write_tsv(
      out / "podcast-plays.tsv", ("user_id", "show_uri", "timestamp", "ms_played"), plays
  )
  eng = _engagements(rng, world, population, config)
  lfm_tables.write_tsv(
      out / "audiobook-engagements.tsv", ("user_id", "book_id", "timestamp", "ms_played"), eng
  )
  counts = {
      "books": config.num_books,
      "episodes": len(episodes["show_uri"]),
      "podcast_plays": len(plays["user_id"]),
      "engagements": len(eng["user_id"]),
  }
  files = {**listening["files"], "books": str(books), "shows": str(shows)}
  return {
      "files": files,
      "population": population,
      "catalogue": catalogue,
      "world": world,
      "counts": counts,
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", required=True)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  result = generate(args.out, DemoAudiobookConfig(seed=args.seed))
  print(f"wrote {result['counts']} to {args.out}")


if __name__ == "__main__":
  main()
