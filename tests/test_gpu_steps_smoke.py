"""benchmarks/gpu_steps.py (what benchmarks/gpu.sh runs on a lent GPU) at its --smoke sizes on
CPU: every benchmark runs and reports a finite time, XLA's FLOP count of the user-AE step agrees
with a hand count of its matmuls, and MFU is n/a where no peak is known."""

import json
import math

from benchmarks import gpu_steps


def test_gpu_steps_smoke_runs_every_benchmark(tmp_path):
  path = tmp_path / "gpu_steps.json"
  gpu_steps.main(["--smoke", "--output", str(path)])
  out = json.loads(path.read_text())
  assert out["failures"] == []
  names = [r["name"] for r in out["results"]]
  for prefix in ("larp", "mostra_decoder", "user_ae", "map2t"):
    assert any(n.startswith(prefix) for n in names), (prefix, names)
  assert {r["dtype"] for r in out["results"] if r["name"].startswith("larp")} == {
      "bfloat16",
      "float32",
  }
  for r in out["results"]:
    assert math.isfinite(r["step_s"]) and r["step_s"] > 0, r["name"]
    assert r["examples_per_s"] > 0 and r["gflop_per_step"] > 0, r["name"]
    assert r["mfu"] is None, r["name"]  # CPU: no peak in the table

  # Hand count: 2*B*d_in*d_out per dense layer of encoder + mirrored decoder, x3 (fwd + bwd).
  (ae,) = [r for r in out["results"] if r["name"].startswith("user_ae")]
  widths = [ae["features"], *ae["hidden"], ae["latent_dim"]]
  layers = list(zip(widths[:-1], widths[1:]))
  layers += [(b, a) for a, b in reversed(layers)]
  hand = 3 * sum(2 * ae["batch"] * a * b for a, b in layers)
  assert abs(ae["flops_per_step"] - hand) / hand < 0.2, (ae["flops_per_step"], hand)
