"""MPD reader and the LarpMpd TFDS builder (Million Playlist Dataset slices + an audio folder).

Manual dir layout: `data/mpd.slice.*.json` (or `mpd.slice.*.json`) and
`audio/<track_id>.<wav|flac|ogg|opus|mp3>`, track_id being the last part of the track uri.
Build with `data_pipelines.playlist_datasets.build_dataset('mpd', manual_dir, data_dir, config)`;
splits, records and `larp_metadata.json` are described in `data_pipelines/playlist_audio.py`.
"""

from __future__ import annotations

import glob
import json
import os
import pathlib
import re
import sys

import tqdm

from data_pipelines import playlist_audio
from data_pipelines import splits as splits_lib

_SPOTIFY_TRACK = re.compile(r'^spotify:track:[0-9A-Za-z]{22}$')
_MPD_TRACK_FIELDS = ('track_uri', 'track_name', 'artist_name', 'album_name')


def read_mpd_slices(
    manual_dir: os.PathLike | str, report: playlist_audio.SkipReport
) -> playlist_audio.SourceData:
  """Reads MPD slices into playlists of track uris plus per-uri metadata.

  Items lacking a required field or with a malformed uri are skipped as 'unknown_track' (the
  playlist keeps its other tracks); playlists without an int pid or a tracks list are skipped as
  'malformed_playlist'; a playlist with no (usable) track as 'empty_playlist'; a slice that is not
  valid JSON is skipped as 'unreadable_slice'.

  Args:
    manual_dir: holds `data/mpd.slice.*.json` (or `mpd.slice.*.json`).
    report: collects the skipped items.

  Returns:
    SourceData: playlists (pid, name, deduplicated track uris in order) and a TrackInfo per uri
    (audio_key = the 22-character id after 'spotify:track:').

  Raises:
    ValueError: no slice files were found, or no usable playlist was in them.
  """
  manual_dir = pathlib.Path(manual_dir)
  paths = sorted(glob.glob(str(manual_dir / 'data' / 'mpd.slice.*.json'))) or sorted(
      glob.glob(str(manual_dir / 'mpd.slice.*.json'))
  )
  if not paths:
    raise ValueError(f'no MPD slices (data/mpd.slice.*.json) in {str(manual_dir)!r}')
  playlists: list[splits_lib.Playlist] = []
  tracks: dict[str, playlist_audio.TrackInfo] = {}
  seen_pids: set[int] = set()
  for path in tqdm.tqdm(paths, desc='reading MPD slices', unit=' slices', mininterval=2.0):
    try:
      with open(path, encoding='utf-8') as f:
        payload = json.load(f)
      items = payload['playlists']
    except (OSError, ValueError, KeyError, TypeError) as e:
      report.add('unreadable_slice', f'{path}: {e!r}')
      continue
    for playlist in items:
      pid = playlist.get('pid') if isinstance(playlist, dict) else None
      if not isinstance(pid, int) or not isinstance(playlist.get('tracks'), list):
        report.add('malformed_playlist', f'{os.path.basename(path)}: pid={pid!r}')
        continue
      if pid in seen_pids:
        report.add('duplicate_playlist', f'pid {pid}')
        continue
      seen_pids.add(pid)
      uris = []
      for item in playlist['tracks']:
        bad = [
            k
            for k in _MPD_TRACK_FIELDS
            if not isinstance(item, dict)
            or not isinstance(item.get(k), str)
            or not item.get(k).strip()
        ]
        uri = item.get('track_uri') if isinstance(item, dict) else None
        if not bad and not _SPOTIFY_TRACK.match(uri):
          bad = ['track_uri (not spotify:track:<22 chars>)']
        if bad:
          report.add('unknown_track', f'pid {pid}: {uri!r} lacks {bad}')
          continue
        uri = sys.intern(uri)  # one str per track, not per playlist entry (66M in the full MPD)
        if uri not in tracks:
          tracks[uri] = playlist_audio.TrackInfo(
              item['track_name'],
              item['artist_name'],
              item['album_name'],
              audio_key=uri.rsplit(':', 1)[1],
          )
        uris.append(uri)
      if not uris:
        report.add('empty_playlist', f'pid {pid} ({os.path.basename(path)}): no usable tracks')
        continue
      playlists.append(
          splits_lib.Playlist(pid, str(playlist.get('name', '')), splits_lib.dedupe(uris))
      )
  if not playlists:
    raise ValueError(f'no usable playlists in the MPD slices under {str(manual_dir)!r}')
  return playlist_audio.SourceData(playlists, tracks)


class LarpMpd(playlist_audio.PlaylistAudioBuilder):
  """LARP data from Million Playlist Dataset slices + an audio folder."""

  KIND = 'mpd'
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Put the MPD slices in `manual_dir/data/mpd.slice.*.json` and one audio file per track in
  `manual_dir/audio/<track_id>.<wav|flac|ogg|opus|mp3>` (track_id = the uri after
  'spotify:track:'). `python -m data_pipelines.demo.catalogue --out DIR` writes a demo.
  """

  def _read_source(
      self, manual_dir: pathlib.Path, report: playlist_audio.SkipReport
  ) -> playlist_audio.SourceData:
    return read_mpd_slices(manual_dir, report)
