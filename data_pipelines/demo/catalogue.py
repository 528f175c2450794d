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
Tracks and playlists come from the latent model in `data_pipelines/demo/latent_catalogue.py`
(playlists of one style/mood are revealed by audio, artist playlists by artist/album names, theme
playlists by title words only); the clips from `data_pipelines/demo/audio_synthesis.py`.

Everything is seeded: the same config gives byte-identical JSON/TSV/WAV files.

CLI: `python -m data_pipelines.demo.catalogue --out DIR [--num_tracks 600 --num_playlists 400
      --seed 0 --sample_rate 16000 --clip_seconds 6 --no_audio --lfm --workers 1]`
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from data_pipelines.demo import audio_synthesis
from data_pipelines.demo import latent_catalogue


def mpd_playlist_json(
    catalogue: latent_catalogue.Catalogue, playlist: latent_catalogue.DemoPlaylist
) -> dict[str, Any]:
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


def _ground_truth(
    catalogue: latent_catalogue.Catalogue, playlists_info: list[dict[str, Any]]
) -> dict[str, Any]:
  a = catalogue.attrs
  tracks = []
  for i in range(catalogue.num_tracks):
    tracks.append(
        {
            'track_id': catalogue.track_ids[i],
            'track_name': catalogue.track_names[i],
            'style': int(a['style'][i]),
            'mood': int(a['mood'][i]),
            'artist': int(a['artist'][i]),
            'album': int(a['album'][i]),
            'theme': int(a['theme'][i]),
            'has_theme_word': bool(a['has_theme_word'][i]),
            'tempo': round(float(a['tempo'][i]), 3),
            'key': int(a['key'][i]),
            'mode': 'major' if a['major'][i] else 'minor',
            'register': int(a['register'][i]),
            'brightness': round(float(a['brightness'][i]), 4),
            'noise_level': round(float(a['noise_level'][i]), 4),
            'harmonics': [round(float(x), 4) for x in a['harmonics'][i]],
            'rhythm': [int(x) for x in a['rhythm'][i]],
            'popularity': round(float(a['popularity'][i]), 4),
        }
    )
  return {
      'config': dataclasses.asdict(catalogue.config),
      'styles': [
          {
              'name': s['name'],
              'register': s['register'],
              'tempo': round(s['tempo'], 3),
              'brightness': round(s['brightness'], 4),
          }
          for s in catalogue.styles
      ],
      'moods': [m['name'] for m in catalogue.moods],
      'themes': list(latent_catalogue.THEME_WORDS[: catalogue.config.num_themes]),
      'artists': [
          {
              'name': x['name'],
              'uri': x['uri'],
              'style': x['style'],
              'mood': x['mood'],
              'albums': x['albums'],
          }
          for x in catalogue.artists
      ],
      'albums': [
          {'name': x['name'], 'uri': x['uri'], 'artist': x['artist']} for x in catalogue.albums
      ],
      'tracks': tracks,
      'playlists': playlists_info,
  }


def write_catalogue(
    out_dir: os.PathLike | str,
    config: latent_catalogue.CatalogueConfig = latent_catalogue.CatalogueConfig(),
    *,
    audio: bool = True,
    lfm: bool = False,
    workers: int = 1,
) -> dict[str, Any]:
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
  catalogue = latent_catalogue.build_catalogue(config)
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
      payload = {
          'info': {
              'generated_on': '2017-12-03 08:41:42.057563',
              'slice': f'{first}-{last}',
              'version': 'v1',
          },
          'playlists': batch,
      }
      with open(out / 'data' / f'mpd.slice.{first}-{last}.json', 'w', encoding='utf-8') as f:
        f.write(json.dumps(payload, ensure_ascii=False))  # dumps without indent: C encoder.
        f.write('\n')

    for playlist in latent_catalogue.generate_playlists(catalogue):
      batch.append(mpd_playlist_json(catalogue, playlist))
      playlists_info.append(
          {'pid': playlist.pid, 'name': playlist.name, 'kind': playlist.kind, **playlist.info}
      )
      if counts_file:
        counts = 1 + count_rng.geometric(0.3, playlist.tracks.size)
        counts_file.writelines(
            f'{playlist.pid}\t{catalogue.track_ids[t]}\t{c}\n'
            for t, c in zip(playlist.tracks.tolist(), counts.tolist())
        )
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
        f.write(
            f'{catalogue.track_ids[i]}\t{catalogue.track_names[i]}\t'
            f'{catalogue.artist_of(i)["name"]}\t{catalogue.album_of(i)["name"]}\n'
        )
  with open(out / 'ground_truth.json', 'w', encoding='utf-8') as f:
    f.write(json.dumps(_ground_truth(catalogue, playlists_info)))
    f.write('\n')
  timings['playlists_and_json'] = time.perf_counter() - start

  if audio:
    start = time.perf_counter()
    audio_synthesis.write_audio(catalogue, out / 'audio', workers=workers)
    timings['audio'] = time.perf_counter() - start
  return {
      'out_dir': str(out),
      'num_tracks': catalogue.num_tracks,
      'num_playlists': config.num_playlists,
      'num_slices': num_slices,
      'seconds': timings,
  }


def main(argv: Sequence[str] | None = None) -> None:
  """CLI entry point (see module docstring)."""
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  defaults = latent_catalogue.CatalogueConfig()
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
  config = latent_catalogue.CatalogueConfig(
      num_tracks=args.num_tracks,
      num_playlists=args.num_playlists,
      num_styles=args.num_styles,
      num_moods=args.num_moods,
      num_themes=args.num_themes,
      playlist_length=(args.min_playlist_length, args.max_playlist_length),
      noise_fraction=args.noise_fraction,
      sample_rate=args.sample_rate,
      clip_seconds=args.clip_seconds,
      slice_size=args.slice_size,
      seed=args.seed,
  )
  summary = write_catalogue(
      args.out, config, audio=not args.no_audio, lfm=args.lfm, workers=args.workers
  )
  print(json.dumps(summary, indent=2))


if __name__ == '__main__':
  main()
