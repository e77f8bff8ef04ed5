"""Benchmark: what the nanoGPT's two-level exponential race costs against the inverse-CDF draw it replaced.

``llm_bridge.nanogpt.sample_tokens`` draws a group of about sqrt(vocab) tokens, then a token in it, each as
``argmax w / E`` with Exp(1) variables of 32 random bits, which resolves token probabilities to ~1e-9; before
2026-12-04 it compared one float32 uniform with a float32 cumulative sum, which rounded every probability to a
multiple of 2^-23 (``inverse_cdf`` below, kept here only as the baseline). ``--one-race`` adds a single race over the
whole vocabulary (one Exp(1) per token: what the two levels avoid). Each is compiled into ``generate_tokens``
(key/value cache, every row making all ``--new-tokens`` tokens) and timed alternately in one process: the first call
apart, then the median of ``--repeats`` calls of each, per model shape. Writes the figures with the CPU and versions
to --out (JSON).

Example: python3 benchmarks/bench_sampler.py --repeats 7
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import _checkout  # noqa: F401  (this checkout first on sys.path: benchmarks/_checkout.py)
from collapse_jax.results import atomic_write_json, environment_info  # noqa: E402
from collapse_jax.cli_options import positive_int  # noqa: E402
from llm_bridge import nanogpt as ng  # noqa: E402

# (name, vocab, context, layers, heads, dim): the recursive-train CPU default and the seed003 preset (BPE-4096)
SHAPES = {"recursive-train-cpu": (512, 64, 2, 2, 64), "seed003": (4096, 128, 4, 4, 256)}


def inverse_cdf(logits, keys, temperature, top_k, top_p, greedy=False):
    """The draw before 2026-12-04: the first token whose float32 cumulative probability reaches u * total."""
    if top_k == 1:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    shifted = logits.astype(jnp.float32) - jnp.max(logits, axis=-1, keepdims=True).astype(jnp.float32)
    scaled = ng.filter_logits(jnp.where(shifted < 0, shifted / temperature, 0.0), top_k, top_p)
    cdf = jnp.cumsum(jax.nn.softmax(scaled, axis=-1), axis=-1)
    u = 1.0 - jax.vmap(lambda k: jax.random.uniform(k, (), jnp.float32))(keys)
    idx = jnp.minimum(jnp.sum(cdf < (u * cdf[:, -1])[:, None], axis=-1), logits.shape[-1] - 1)
    return jnp.where(greedy, jnp.argmax(logits, axis=-1), idx).astype(jnp.int32)


def one_race(logits, keys, temperature, top_k, top_p, greedy=False):
    """A single exponential race over the whole vocabulary: one Exp(1) variable per token and row."""
    shifted = logits.astype(jnp.float32) - jnp.max(logits, axis=-1, keepdims=True).astype(jnp.float32)
    weights = jnp.exp(ng.filter_logits(jnp.where(shifted < 0, shifted / temperature, 0.0), top_k, top_p))
    token = jax.vmap(ng._race)(weights, keys)
    return jnp.where(greedy, jnp.argmax(logits, axis=-1), token).astype(jnp.int32)


def compiled(sampler, graphdef, params, prompts, pad, keys, new_tokens):
    """``generate_tokens`` jitted afresh with ``sampler`` in place of ``ng.sample_tokens`` (traced on this call):
    (the timed call, its first call's seconds, the tokens it drew)."""
    kept = ng.sample_tokens
    ng.sample_tokens = sampler
    try:
        def fresh(*args, **kwargs):     # a new function object: jit's trace cache is keyed on the function
            return ng.generate_tokens.__wrapped__(*args, **kwargs)

        fn = jax.jit(fresh, static_argnames=(
            "graphdef", "max_new_tokens", "top_k", "top_p", "use_cache", "eot_id", "vocab_limit"))
        run = lambda: jax.block_until_ready(fn(graphdef, params, prompts, pad, keys, 1.0, False,  # noqa: E731
                                               max_new_tokens=new_tokens, top_k=None, top_p=1.0, use_cache=True,
                                               eot_id=-1))
        start = time.perf_counter()
        tokens = np.asarray(run())
        return run, time.perf_counter() - start, tokens
    finally:
        ng.sample_tokens = kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--prompt-len", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=positive_int, default=7)
    parser.add_argument("--one-race", action="store_true", help="also time one race over the whole vocabulary")
    parser.add_argument("--out", default="benchmarks/results/bench_sampler.json")
    args = parser.parse_args()
    rows = []
    for name in args.shapes:
        vocab, context, layers, heads, dim = SHAPES[name]
        cfg = ng.GPTConfig(vocab_size=vocab, context_length=context, num_layers=layers, num_heads=heads, dim=dim)
        graphdef, params = nnx.split(ng.init_model(cfg, 0))
        rng = np.random.default_rng(0)
        prompts = jnp.asarray(rng.integers(1, vocab, (args.batch, args.prompt_len)), jnp.int32)
        pad = jnp.zeros((args.batch,), jnp.int32)
        keys = jax.random.split(jax.random.key(0), args.batch)
        runs, drawn = {}, {}
        samplers = {"race": ng.sample_tokens, "inverse_cdf": inverse_cdf, **({"one_race": one_race} if args.one_race
                                                                             else {})}
        for label, sampler in samplers.items():
            runs[label], runs[label + "_first"], drawn[label] = compiled(sampler, graphdef, params, prompts, pad,
                                                                         keys, args.new_tokens)
        if np.array_equal(drawn["race"], drawn["inverse_cdf"]):
            raise SystemExit("both compiled generators drew the same tokens: the sampler was not swapped")
        times: dict[str, list[float]] = {label: [] for label in samplers}
        for _ in range(args.repeats):
            for label in times:                       # alternated, so load changes hit both alike
                start = time.perf_counter()
                runs[label]()
                times[label].append(time.perf_counter() - start)
        tokens = args.batch * args.new_tokens
        row = dict(shape=name, vocab=vocab, context=context, layers=layers, heads=heads, dim=dim, batch=args.batch,
                   prompt_len=args.prompt_len, new_tokens=args.new_tokens)
        for label, values in times.items():
            row[label] = dict(tokens_per_second=tokens / statistics.median(values), seconds=values,
                              first_call_seconds=runs[label + "_first"])
        base = statistics.median(times["inverse_cdf"])
        row["time_ratio"] = {label: statistics.median(values) / base for label, values in times.items()}
        print(f"{name:20s} " + "   ".join(f"{label} {row[label]['tokens_per_second']:,.0f} new tokens/s "
                                        f"(x{row['time_ratio'][label]:.3f} time)" for label in samplers)
              + f"   (median of {args.repeats}, alternated)", flush=True)
        rows.append(row)
    atomic_write_json(args.out, dict(environment=environment_info(), results=rows))


if __name__ == "__main__":
    main()
