#!/usr/bin/env bash
# Every GPU benchmark in one run (about 10 minutes on one H200): benchmarks/gpu_bench.py writes gpu.json and gpu.md.
#
#   benchmarks/gpu.sh [OUTDIR] [extra gpu_bench.py options, e.g. --small]
#
# Needs JAX with CUDA, flax, optax, numpy, scipy, matplotlib, tqdm, threadpoolctl (and torch + tokenizers for the
# nanoGPT section; zarr for the sweep section, below); no package index: the project runs from this checkout without
# being installed.
set -uo pipefail
# OUTDIR as given, relative to the folder the command runs in (it was taken relative to the repository)
OUTDIR=${1:-}
shift || true
[ -n "$OUTDIR" ] && case "$OUTDIR" in /*) ;; *) OUTDIR="$PWD/$OUTDIR" ;; esac
cd "$(dirname "$0")/.."
OUTDIR=${OUTDIR:-benchmarks/results/gpu}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 COLLAPSE_JAX_PROGRESS=0
mkdir -p "$OUTDIR"
nvidia-smi 2>&1 | head -15
python3 -c "import jax; print('jax', jax.__version__, jax.devices())"
# The sweep section needs zarr, which the GPU image lacks (it has everything else: KINDS.md of the device tool lists
# its packages). Its wheels travel with the checkout in wheels/ (an ignored folder; the run's `carry`), downloaded for
# the image's Python 3.12, not this machine's (a cp311 numcodecs / google-crc32c does not install there):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d wheels zarr==3.1.6 numcodecs==0.16.6 donfig==0.8.1.post1 google-crc32c==1.9.0
# They go into a folder of their own on PYTHONPATH (--target), after the image's packages: nothing is written into the
# image's site-packages, which may refuse installs (PEP 668).
if ! python3 -c "import zarr" 2>/dev/null && [ -d wheels ]; then
    SITE=${TMPDIR:-/tmp}/collapse-jax-site
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" wheels/*.whl \
        && export PYTHONPATH="$PYTHONPATH:$SITE" \
        && python3 -c "import zarr; print('zarr', zarr.__version__, 'from wheels/')" \
        || echo "zarr from wheels/ failed to install: the sweep section will fail" >&2
fi
python3 benchmarks/gpu_bench.py --out "$OUTDIR" "$@" 2>&1 | tee "$OUTDIR/gpu.log"
