#!/usr/bin/env bash
# The accelerator check (benchmarks/gpu_check.py) with whatever jax and torch are installed.
# It installs nothing (the device machine has no network); where JAX lacks a GPU backend it
# says so and still measures PyTorch. To give JAX one: pip install "jax[cuda12]==0.10.2".
# Usage, from anywhere: bash benchmarks/gpu_check.sh [--batch 256] [--budget 220]
set -u
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null \
  || echo "nvidia-smi: not available"
echo "jax backend: $($PY -c 'import jax; print(jax.default_backend())' 2>/dev/null || echo none)"
timeout 280 $PY benchmarks/gpu_check.py "$@"
