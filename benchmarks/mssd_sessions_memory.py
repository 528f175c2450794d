"""Peak memory of the streaming MSSD build (data_pipelines/mssd_sessions.py) as the logs grow.

    python -m benchmarks.mssd_sessions_memory [--shards 20] [--rows 20000,80000] [--tracks 50000]

For each total row count R, writes `--shards` MSSD-format log shards (MSSD's columns, sessions of
10-20 plays, gzip) totalling R rows plus `--tracks` tracks, then runs the build in a fresh
subprocess and reports its peak RSS (ru_maxrss of that child) and wall time. A streaming build's
peak should stay flat in R and grow only with the track table.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

LOG_COLUMNS = (
    'session_id,session_position,session_length,track_id_clean,skip_1,skip_2,skip_3,not_skipped,'
    'context_switch,no_pause_before_play,short_pause_before_play,long_pause_before_play,'
    'hist_user_behavior_n_seekfwd,hist_user_behavior_n_seekback,hist_user_behavior_is_shuffle,'
    'hour_of_day,date,premium,context_type,hist_user_behavior_reason_start,'
    'hist_user_behavior_reason_end'
).split(',')
TF_COLUMNS = ['track_id', 'duration', 'release_year', 'us_popularity_estimate', 'mode'] + [
    f'acoustic_vector_{i}' for i in range(8)
]


def write_dataset(root: str, shards: int, rows: int, tracks: int, seed: int = 0) -> None:
  rng = np.random.default_rng(seed)
  os.makedirs(os.path.join(root, 'training_set'), exist_ok=True)
  os.makedirs(os.path.join(root, 'track_features'), exist_ok=True)
  with open(os.path.join(root, 'track_features', 'tf_000000000000.csv'), 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow(TF_COLUMNS)
    for t in range(tracks):
      w.writerow([f't{t}', 200, 2010, rng.uniform(80, 100), 'major'] + list(rng.random(8).round(4)))
  per_shard = rows // shards
  session = 0
  for k in range(shards):
    path = os.path.join(root, 'training_set', f'log_{k}_20180715_000000000000.csv.gz')
    with gzip.open(path, 'wt', newline='') as f:
      w = csv.writer(f)
      w.writerow(LOG_COLUMNS)
      written = 0
      while written < per_shard:
        length = int(min(rng.integers(10, 21), per_shard - written))
        picks = rng.integers(0, tracks, length)
        for p in range(length):
          done = 'true' if rng.random() < 0.5 else 'false'
          w.writerow(
              [
                  f's{session}',
                  p + 1,
                  length,
                  f't{picks[p]}',
                  'false',
                  'false',
                  'false',
                  done,
                  0,
                  1,
                  0,
                  0,
                  0,
                  0,
                  'false',
                  12,
                  '2018-07-15',
                  'true',
                  'radio',
                  'fwdbtn',
                  'fwdbtn',
              ]
          )
        written += length
        session += 1


_CHILD = """
import json, resource, sys, time
from data_pipelines import mssd_sessions
start = time.perf_counter()
meta = mssd_sessions.build(sys.argv[1], sys.argv[2], context_types=('radio',))
print(json.dumps({'peak_rss_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  'seconds': time.perf_counter() - start, 'rows_used': meta['counts']['log/rows_used'],
                  'sets': sum(meta['sets'].values())}))
"""


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(prog='benchmarks.mssd_sessions_memory')
  parser.add_argument('--shards', type=int, default=20)
  parser.add_argument('--rows', default='20000,80000')
  parser.add_argument('--tracks', type=int, default=50000)
  args = parser.parse_args(argv)
  results = []
  for rows in [int(x) for x in args.rows.split(',')]:
    with tempfile.TemporaryDirectory() as tmp:
      write_dataset(os.path.join(tmp, 'mssd'), args.shards, rows, args.tracks)
      out = subprocess.run(
          [sys.executable, '-c', _CHILD, os.path.join(tmp, 'mssd'), os.path.join(tmp, 'out')],
          check=True,
          capture_output=True,
          text=True,
          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
      )
      result = {
          'rows': rows,
          'shards': args.shards,
          'tracks': args.tracks,
          **json.loads(out.stdout.strip().splitlines()[-1]),
      }
      results.append(result)
      print(
          f'rows {rows:>10,}  shards {args.shards}  tracks {args.tracks:,}: peak RSS '
          f"{result['peak_rss_mib']:.0f} MiB, {result['seconds']:.1f} s, "
          f"{result['rows_used'] / result['seconds']:,.0f} rows/s"
      )
  print(json.dumps(results))


if __name__ == '__main__':
  main()
