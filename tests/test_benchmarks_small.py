"""Smoke tests of benchmarks/user_ae_step.py, map2t_step.py and user_features.py at tiny sizes:
each runs end to end, writes its JSON with a positive ratio and a passed parity check, and a
broken baseline makes the parity check raise (no timing is asserted)."""

from __future__ import annotations

import json

import pytest

from benchmarks import dense_roofline
from benchmarks import map2t_step
from benchmarks import user_ae_step
from benchmarks import user_features
from data_pipelines import user_features as uf

AE_FLAGS = ["--variant", "test", "--batch_size", "16", "--features", "24"]
AE_FLAGS += ["--steps", "2", "--warmup", "1"]
MAP2T_FLAGS = ["--variant", "test", "--batch_size", "8", "--books", "20", "--text_dim", "16"]
MAP2T_FLAGS += ["--steps", "2", "--warmup", "1"]
FEATURE_FLAGS = ["--num_established", "40", "--num_new", "15", "--mean_plays", "40"]
FEATURE_FLAGS += ["--audio_dim", "6", "--collab_dim", "5", "--repeats", "1", "--warmup", "0"]


def _run(module, flags, tmp_path):
  path = tmp_path / "out.json"
  module.main(flags + ["--output", str(path)])
  with open(path, encoding="utf-8") as f:
    return json.load(f)


@pytest.mark.parametrize(
    "module,flags",
    [(user_ae_step, AE_FLAGS), (map2t_step, MAP2T_FLAGS), (user_features, FEATURE_FLAGS)],
    ids=["user_ae_step", "map2t_step", "user_features"],
)
def test_benchmark_writes_ratio_and_parity(module, flags, tmp_path, capsys):
  results = _run(module, flags, tmp_path)
  assert results["parity"]["passed"] is True
  assert results["ratio"] > 0
  assert all(r["ratio"] > 0 for r in results.get("results", []))
  assert "load_average_1min" in results
  printed = capsys.readouterr().out
  assert any(line.startswith("ratio ") and line.endswith("x") for line in printed.splitlines())


@pytest.mark.parametrize(
    "module,flags",
    [(user_ae_step, AE_FLAGS), (map2t_step, MAP2T_FLAGS)],
    ids=["user_ae_step", "map2t_step"],
)
def test_step_parity_failure_raises(module, flags, monkeypatch):
  # Torch keeps its own random init instead of our weights: the first-step losses differ.
  monkeypatch.setattr(user_ae_step, "load_flax_params", lambda module, params: None)
  with pytest.raises(AssertionError, match="first-step loss"):
    module.main(flags)


def test_feature_agreement_failure_raises():
  args = user_features._flags(FEATURE_FLAGS)  # pylint: disable=protected-access
  listening, users, times, spaces, spec = user_features.demo_inputs(args)
  ours = uf.features_matrix(listening, users, times, spaces, spec)
  baseline = user_features.pandas_features(listening, users, times, spaces, spec)
  user_features.check_agreement(ours, baseline, spec)
  broken = baseline.copy()
  broken[0, 0] += 1e-3  # first column of the 7-day audio mean
  with pytest.raises(AssertionError, match="block audio_7d"):
    user_features.check_agreement(ours, broken, spec)


def test_dense_roofline_counts_the_step_gemms_and_runs(tmp_path, capsys):
  widths, batch = [10, 7, 3, 7, 10], 5
  gemms = dense_roofline.step_gemms(widths, batch)
  layers = list(zip(widths[:-1], widths[1:]))
  # Forward and weight grad for every layer, input grad for all but the first.
  assert len(gemms) == 3 * len(layers) - 1
  expected = 2 * batch * (3 * sum(i * o for i, o in layers) - widths[0] * widths[1])
  assert sum(2 * m * k * n for m, k, n in gemms) == expected
  path = tmp_path / "roofline.json"
  dense_roofline.main(
      [
          "--variant",
          "test",
          "--batch_size",
          "16",
          "--calls",
          "2",
          "--steps",
          "2",
          "--output",
          str(path),
      ]
  )
  with open(path, encoding="utf-8") as f:
    r = json.load(f)
  assert r["layer_widths"][0] == r["layer_widths"][-1]
  assert r["xla_gemm_s"] > 0 and r["torch_gemm_s"] > 0 and r["ceiling_ratio"] > 0
  assert "ratio user_ae_ceiling" in capsys.readouterr().out
