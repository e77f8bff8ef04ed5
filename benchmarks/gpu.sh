#!/usr/bin/env bash
# Every GPU benchmark in one run (about 10 minutes on one H200): benchmarks/gpu_bench.py writes gpu.json and gpu.md.
#
#   benchmarks/gpu.sh [OUTDIR] [extra gpu_bench.py options, e.g. --small]
#
# Needs JAX with CUDA, flax, optax, numpy, scipy, matplotlib, tqdm, threadpoolctl, chex (and torch + tokenizers for
# the nanoGPT section); no package index: the project runs from this checkout without being installed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUTDIR=${1:-benchmarks/results/gpu}
shift || true
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 COLLAPSE_JAX_PROGRESS=0
mkdir -p "$OUTDIR"
nvidia-smi 2>&1 | head -15
python3 -c "import jax; print('jax', jax.__version__, jax.devices())"
# the sweep section needs zarr, which the GPU image lacks: wheels downloaded here (`pip download -d wheels zarr
# numcodecs donfig google-crc32c --no-deps`, an ignored folder) travel with the checkout (run's `carry`)
python3 -c "import zarr" 2>/dev/null || { [ -d wheels ] && python3 -m pip install -q --no-index --find-links wheels zarr; }
python3 benchmarks/gpu_bench.py --out "$OUTDIR" "$@" 2>&1 | tee "$OUTDIR/gpu.log"
