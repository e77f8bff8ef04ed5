"""The Pallas GPU kernels compiled for an H100/H200 (sm_90a) on a machine without a GPU: a check that Triton's NVIDIA
pipeline accepts them, with the register, spill and compile-time figures, before any GPU time is spent.

Two steps, because the compiler comes from the `triton` wheel of the package index (its `ptxas` inside), which the
project does not depend on; install it in a separate environment:

    # this environment: Pallas -> Triton IR text, one file per kernel
    python3 benchmarks/triton_offline.py capture OUT
    python3 -m venv --system-site-packages /tmp/triton-env && /tmp/triton-env/bin/pip install --no-deps triton
    # Triton IR -> PTX -> sm_90a cubin, ptxas -v: OUT/compile.json
    /tmp/triton-env/bin/python benchmarks/triton_offline.py compile OUT

`capture` lowers each kernel for CUDA with `jax.export` (the lowering JAX runs on a GPU machine) and keeps the Triton
module Pallas builds, through a wrapper around JAX's private `lower_jaxpr_to_triton_module` (it fails with a clear
message if a JAX version moves it). The kernels and shapes are those `benchmarks/gpu_bench.py` times: the GMM network,
Figures 4 and 6, T = 200, and the multinomial recursion, K = 50, T = 200, both regimes.

What this does not show: a GPU compiles the same IR with the Triton that its jaxlib bundles, not the wheel's, and
nothing here runs the kernel; speed and the law on a device stay for `benchmarks/gpu.sh`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _checkout  # noqa: F401  (this checkout first on sys.path: benchmarks/_checkout.py)


def capture(out: Path) -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np

    try:
        from jax._src.pallas.triton import lowering, pallas_call_registration as registration
    except ImportError as e:
        sys.exit(f"this JAX has no Pallas Triton lowering where this script looks for it: {e}")
    if not hasattr(registration.lowering, "lower_jaxpr_to_triton_module"):
        sys.exit("this JAX no longer lowers Pallas calls through lower_jaxpr_to_triton_module; update the script")

    from collapse_jax import gmm_network as gn
    from collapse_jax import gmm_pallas
    from collapse_jax import multinomial_pallas as mp
    from collapse_jax import schedules as S
    from collapse_jax.replicates import replicate_keys

    captured: list[str] = []
    original = lowering.lower_jaxpr_to_triton_module

    def keep(*args, **kwargs):
        result = original(*args, **kwargs)
        captured.append(result.module.operation.get_asm(enable_debug_info=False))
        return result

    def lowered(name: str, lower) -> None:
        before = len(captured)
        t = time.perf_counter()
        lower()
        if len(captured) != before + 1:
            sys.exit(f"{name}: expected one Pallas call, the lowering made {len(captured) - before}")
        (out / f"{name}.ttir").write_text(captured[-1])
        print(f"{name}: Triton IR {len(captured[-1]):,} characters (lowered in {time.perf_counter() - t:.1f} s)",
              flush=True)

    out.mkdir(parents=True, exist_ok=True)
    registration.lowering.lower_jaxpr_to_triton_module = keep
    try:
        for figure in (4, 6):
            cfg = gn.paper_config(figure, num_steps=200)
            lowered(f"gmm_fig{figure}", lambda: gmm_pallas.lower_for_gpu(cfg.static, gn.make_params(cfg)))
        K, T = 50, 200
        p = jnp.asarray(np.random.default_rng(0).dirichlet(np.ones(K)), jnp.float32)
        alpha = jnp.asarray(S.constant_alpha(0.5, T), jnp.float32)
        n = jnp.asarray(S.constant_size(1000, T), jnp.float32)
        for regime in mp.REGIMES:
            lowered(f"multinomial_{regime}", lambda: mp.lower_for_cuda(
                lambda k, p, a, n: mp.batched_risk_pallas(k, p, a, n, regime=regime),
                replicate_keys(0, 0, 256), p, alpha, n))
    finally:
        registration.lowering.lower_jaxpr_to_triton_module = original
    (out / "capture.json").write_text(json.dumps(dict(jax=jax.__version__, python=platform.python_version()),
                                                 indent=2))


def compile_all(out: Path, arch: int, num_warps: int) -> None:
    # a fresh cache: Triton would otherwise reuse an earlier run's binaries, and the compile times would be lookups
    os.environ["TRITON_CACHE_DIR"] = tempfile.mkdtemp(prefix="triton-cache-")
    try:
        import triton
        from triton.backends.compiler import GPUTarget
    except ImportError:
        sys.exit("no triton here: install the wheel in a separate environment (see this script's docstring)")
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # what Triton 3.9 assumes; silences its warning
    bin_dir = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    ptxas = next((p for p in (bin_dir / "ptxas-blackwell", bin_dir / "ptxas") if p.exists()), None)
    files = sorted(out.glob("*.ttir"))
    if not files:
        sys.exit(f"no .ttir files in {out}: run the capture step first")
    rows = []
    for path in files:
        row = dict(kernel=path.stem, arch=f"sm_{arch}a", num_warps=num_warps)
        t = time.perf_counter()
        try:
            compiled = triton.compile(str(path), target=GPUTarget("cuda", arch, 32),
                                      options=dict(num_warps=num_warps, num_stages=1))  # as the kernels ask
        except Exception as e:  # noqa: BLE001 (record it and go on to the next kernel)
            row.update(ok=False, error=f"{e.__class__.__name__}: {str(e)[:2000]}")
            print(f"{path.stem}: FAILED {row['error'][:300]}", flush=True)
            rows.append(row)
            continue
        row.update(ok=True, compile_s=round(time.perf_counter() - t, 2), shared_bytes=compiled.metadata.shared,
                   ptx_lines=compiled.asm["ptx"].count("\n"), cubin_bytes=len(compiled.asm["cubin"]))
        if ptxas is not None:  # the same PTX through ptxas -v: registers and spills
            with tempfile.TemporaryDirectory() as tmp:
                ptx = Path(tmp) / "k.ptx"
                ptx.write_text(compiled.asm["ptx"])
                info = subprocess.run([str(ptxas), "-v", f"--gpu-name=sm_{arch}a", str(ptx), "-o",
                                       str(Path(tmp) / "k.cubin")], capture_output=True, text=True)
            text = info.stdout + info.stderr
            row["ptxas"] = [line.split("info    :")[-1].strip() for line in text.splitlines()
                            if "registers" in line or "spill" in line]
        rows.append(row)
        print(f"{path.stem}: compiled in {row['compile_s']} s; {'; '.join(row.get('ptxas', []))}", flush=True)
    version = (subprocess.run([str(ptxas), "--version"], capture_output=True, text=True).stdout.strip().splitlines()
               or ["?"])[-1] if ptxas is not None else None
    record = dict(triton=triton.__version__, ptxas=f"{ptxas.name}: {version}" if ptxas else None,
                  python=platform.python_version(), cpu=_cpu_model(),
                  kernels=rows)
    (out / "compile.json").write_text(json.dumps(record, indent=2))
    print(f"wrote {out / 'compile.json'}")
    if not all(r["ok"] for r in rows):
        sys.exit(1)


def _cpu_model() -> str:
    """The CPU the compile times were measured on (Linux; the machine type elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=["capture", "compile"])
    ap.add_argument("out", type=Path, help="folder for the Triton IR files and compile.json")
    ap.add_argument("--arch", type=int, default=90, help="CUDA compute capability (90: H100 / H200)")
    ap.add_argument("--num-warps", type=int, default=4, help="Triton warps per program (the kernels' default: 4)")
    args = ap.parse_args()
    if args.step == "capture":
        capture(args.out)
    else:
        compile_all(args.out, args.arch, args.num_warps)


if __name__ == "__main__":
    main()
