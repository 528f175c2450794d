#!/usr/bin/env bash
# One call on a lent GPU (<= 10 minutes): LARP mpd step (bf16, float32), MOSTRA decoder at
# B = 65,536, user-AE and MAP-2T steps; examples/s and MFU (benchmarks/gpu_steps.py).
#   bash benchmarks/gpu.sh            # on the accelerator ($OUT: where the JSON goes)
#   bash benchmarks/gpu.sh --smoke    # tiny CPU sizes (what tests run)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
if command -v nvidia-smi >/dev/null 2>&1; then nvidia-smi; fi
exec timeout 570 "$PY" -m benchmarks.gpu_steps --output "${OUT:-.}/gpu_steps.json" "$@"
