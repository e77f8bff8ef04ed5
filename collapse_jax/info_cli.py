"""``collapse-jax info``: the devices JAX sees, the CPU and its SIMD features, which native kernels were built (for
which target, with which compiler, where the build cache is), and the versions a bug report needs."""

from __future__ import annotations

import json


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="devices, CPU features, native kernels and build cache, versions",
                       description=__doc__)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the text summary")
    p.add_argument("--no-build", action="store_true",
                   help="report native kernels as they are, without compiling them first")
    p.set_defaults(func=run)


def run(args) -> int:
    from collapse_jax import _native
    from collapse_jax.results import environment_info

    info = environment_info()
    info["native"] = _native.status(build=not args.no_build)
    if args.json:
        print(json.dumps(info, indent=1, default=str))
        return 0
    nat = info["native"]
    cached = nat.get("cached_libraries", {})

    def library(loaded, name):  # --no-build loads nothing: say whether an earlier run built it
        if loaded:
            return loaded
        return f"built, not loaded (--no-build): {cached[name]}" if cached.get(name) else "not built"

    commit = info.get("git_commit")
    extras = [f"{name} {info[name]}" for name in ("flax", "optax", "torch", "transformers", "sentence-transformers")
              if info.get(name)]  # (the text gave jax and numpy only, the JSON all of these; a user trial)
    dirty = ", uncommitted changes" if info.get("git_dirty") else ""
    lines = [
        f"collapse-jax {info.get('collapse-jax')}" + (f" (git {commit[:12]}{dirty})" if commit else ""),
        f"jax {info.get('jax')} / jaxlib {info.get('jaxlib')}, "
        + (f"backend {info.get('backend')}, devices: {', '.join(info.get('devices', []))} ({info.get('device_kind')})"
           if "jax_error" not in info else f"no backend started: {info['jax_error']}"),
        f"python {info['python']}, numpy {info['numpy']}, {info['platform']}",
        f"also: {', '.join(extras) or 'no optional packages found'}",
        f"CPU: {info['cpu_model']}, {info['cpu_count']} logical CPUs"
        + (f" ({info['cpus_usable']} usable by this process)" if info.get("cpus_usable") != info["cpu_count"] else "")
        + f"; SIMD: {' '.join(info['cpu_features']) or 'none'}",
        f"native kernels: {'enabled' if nat['enabled'] else 'disabled (COLLAPSE_JAX_NATIVE=0)'}; compiler "
        f"{nat['compiler'] or 'none found'} ({nat['compiler_version'] or '-'}), target -march={nat['march']}",
        f"  simulators: {library(nat['simulators_library'], 'native')}",
    ]
    if nat.get("multinomial_engines") is not None:
        lines.append(f"    GMM network ({nat['gmm_lanes_float32']} float32 / {nat['gmm_lanes_float64']} float64 lanes), "
                     f"multinomial (engines: {', '.join(nat['multinomial_engines'])}), Gaussian (replace, accumulate)")
    lines.append(f"  spectral: {library(nat['spectral_library'], 'spectral_kernels')}")
    if "amx" in nat:
        lines.append(f"    AMX block-statistics engine: {'yes' if nat['amx'] else 'no (numpy engine on this CPU)'}")
    gemm = nat.get("float32_gemm")
    lines.append(f"  OpenBLAS float32 GEMM (nanoGPT attention, fused by default; COLLAPSE_JAX_ATTENTION_GEMM=openblas "
                 f"unfuses it, =xla turns it off): {gemm or 'not loaded'}")
    lines.append(f"  build cache: {nat['cache_dir']} (COLLAPSE_JAX_CACHE)")
    print("\n".join(lines))
    return 0
