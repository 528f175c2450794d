"""Writes a demo catalogue (MPD format) as LFM-2b bz2 TSVs or LFM-1b headerless .txt files."""

import json

from data_pipelines import lfm_tables


def lfm_from_mpd(raw, out, lfm1b=False):
  """Writes the demo's MPD playlists as LFM users: events with album ids and times, tracks
  without albums (as LFM-2b ships them), albums, Spotify uris; audio stays named by Spotify id."""
  payload = json.loads(next((raw / 'data').glob('mpd.slice.*.json')).read_text())
  track_ids, albums, meta = {}, {}, {}
  ev = {'user_id': [], 'track_id': [], 'album_id': [], 'timestamp': []}
  for p in payload['playlists']:
    for i, t in enumerate(p['tracks']):
      tid = track_ids.setdefault(t['track_uri'], str(1000 + len(track_ids)))
      aid = albums.setdefault(t['album_name'], str(500 + len(albums)))
      meta[tid] = t
      for repeat in range(1 + i % 2):  # repeated listening events collapse to one track
        ev['user_id'].append(str(p['pid']))
        ev['track_id'].append(tid)
        ev['album_id'].append(aid)
        ev['timestamp'].append(f'2020-01-{1 + i // 24:02d} {i % 24:02d}:{repeat:02d}:00')
  ev['user_id'].append('7')
  ev['track_id'].append('NOSUCHTRACK')
  ev['album_id'].append('1')
  ev['timestamp'].append('2020-02-01 00:00:00')
  tids = sorted(meta)
  if lfm1b:
    artists = {a: str(i) for i, a in enumerate(sorted({meta[t]['artist_name'] for t in tids}))}
    lines = [
        f"{u}\t{artists[meta[t]['artist_name']]}\t{a}\t{t}\t{1577836800 + k}"
        for k, (u, t, a) in enumerate(zip(ev['user_id'], ev['track_id'], ev['album_id']))
        if t in meta
    ]
    (out / 'LFM-1b_LEs.txt').write_text('\n'.join(lines) + '\n')
    (out / 'LFM-1b_tracks.txt').write_text(
        ''.join(f"{t}\t{meta[t]['track_name']}\t{artists[meta[t]['artist_name']]}\n" for t in tids)
    )
    (out / 'LFM-1b_artists.txt').write_text(''.join(f'{i}\t{a}\n' for a, i in artists.items()))
    (out / 'LFM-1b_albums.txt').write_text(''.join(f'{i}\t{a}\t0\n' for a, i in albums.items()))
  else:
    lfm_tables.write_tsv(out / 'listening-events.tsv', list(ev), ev, compress='bz2')
    tracks = {
        'track_id': tids,
        'artist_name': [meta[t]['artist_name'] for t in tids],
        'track_name': [meta[t]['track_name'] for t in tids],
    }
    lfm_tables.write_tsv(out / 'tracks.tsv', list(tracks), tracks, compress='bz2')
    names = sorted(albums)
    table = {'album_id': [albums[a] for a in names], 'album_name': names}
    lfm_tables.write_tsv(out / 'albums.tsv', list(table), table, compress='bz2')
  uris = {'track_id': tids, 'uri': [meta[t]['track_uri'] for t in tids]}
  lfm_tables.write_tsv(out / 'spotify-uris.tsv', list(uris), uris, compress='bz2')
  (out / 'audio').symlink_to(raw / 'audio')
  return meta
