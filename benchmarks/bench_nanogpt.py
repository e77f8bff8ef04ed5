"""Benchmark the Flax nanoGPT: training tokens/s against a PyTorch twin, generation with and without the cache,
and (``--quality``) a timed training run's held-out perplexity against add-k unigram and bigram baselines.

Usage:
    python benchmarks/bench_nanogpt.py                      # speed: train (Flax vs PyTorch) + generation
    python benchmarks/bench_nanogpt.py --quality --minutes 10   # + seed003 trained for 10 minutes vs n-gram baselines

Training speed: the same architecture (``benchmarks/nanogpt_torch.py``, checked against the Flax model in
tests/test_nanogpt_torch_twin.py), the same batch (``--batch`` windows of ``--context`` + 1 tokens drawn at random from
one token stream on every step), AdamW + clipping, on the same CPU, their timed blocks interleaved (a load change
from other jobs hits both alike). Compile / first-call time is reported apart; figures are medians over
``--repeats`` timed blocks of ``--steps`` steps, each block ending in ``block_until_ready`` (Flax) or a loss read
back (PyTorch, synchronous on the CPU). Each block also records the process's CPU seconds (all threads), so a row
shows the CPU time per step and how many cores the framework kept busy (CPU / wall). Results: JSON in
benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from _checkout import ROOT  # (this checkout first on sys.path: benchmarks/_checkout.py)
sys.path.insert(0, str(ROOT / "benchmarks"))


def flax_trainer(args, stream, dtype: str, one_step_per_call: bool = False, attention: str | None = None):
    """(one-block function, parameter count): ``block(n)`` runs n Flax train steps and waits for the last: one
    compiled call of n steps (``nanogpt_train.train_steps``, as training runs them), or n calls of one step.
    ``attention`` ("fused" / "openblas" / "xla"): the attention traced with that choice
    (``nanogpt.use_attention_gemm``; fresh, uncached step functions), else the library's default."""
    import contextlib

    import jax
    import jax.numpy as jnp
    from flax import nnx

    from llm_bridge import nanogpt as ng
    from llm_bridge import nanogpt_train as nt

    cfg = ng.preset_config(args.preset, args.vocab, context_length=args.context, dtype=dtype)
    graphdef, params = nnx.split(ng.init_model(cfg, 0))
    tc = nt.TrainConfig()
    hyper = (tc.grad_clip, tc.beta1, tc.beta2, tc.weight_decay)
    fresh = attention is not None  # the cached step functions may have been traced with the other choice
    step_fn = (nt.train_step.__wrapped__ if fresh else nt.train_step)(graphdef, hyper, args.batch, args.context)
    steps_fn = (nt.train_steps.__wrapped__ if fresh else nt.train_steps)(graphdef, hyper, args.batch, args.context)
    state = {"params": params, "opt": nt.optimizer(tc).init(params), "step": 0}
    stream_d = jnp.asarray(stream)

    def block(n):
        with ng.use_attention_gemm(attention) if fresh else contextlib.nullcontext():  # traced on the first call
            run(n)

    def run(n):
        p, o = state["params"], state["opt"]
        if one_step_per_call:
            for _ in range(n):
                p, o, loss = step_fn(p, o, stream_d, 0, state["step"], 3e-4)
                state["step"] += 1
        else:
            p, o, loss = steps_fn(p, o, stream_d, 0, state["step"], jnp.full((n,), 3e-4, jnp.float32))
            state["step"] += n
        jax.block_until_ready(loss)
        state["params"], state["opt"] = p, o

    return block, cfg.num_params()


def torch_trainer(args, stream, compiled: bool, dtype: str = "float32"):
    """One-block function of the PyTorch twin on ``--torch-device``: ``block(n)`` runs n train steps and waits for
    the last (``dtype`` bfloat16: autocast, float32 master weights)."""
    import torch

    import nanogpt_torch as tg

    device = torch.device(args.torch_device)
    torch.manual_seed(0)
    model = tg.GPT(args.vocab, args.context, *PRESET_SHAPES[args.preset]).to(device)
    model.train()
    opt = tg.adamw(model, 3e-4)
    data = torch.from_numpy(stream.astype("int64")).to(device)
    offsets = torch.arange(args.context + 1, device=device)
    # The batch's starts are drawn on the device, as the Flax step draws its own: a CPU draw copied to a GPU every
    # step (pageable memory) waits for the stream, so torch could not queue steps ahead (an audit, 2026-12-04).
    gen = torch.Generator(device=device).manual_seed(0)
    step_model = torch.compile(model) if compiled else model
    autocast = None if dtype == "float32" else getattr(torch, dtype)

    def block(n):
        for _ in range(n):
            starts = torch.randint(0, len(data) - args.context - 1, (args.batch,), generator=gen, device=device)
            loss = tg.train_step(step_model, opt, data[starts[:, None] + offsets], autocast_dtype=autocast)
        float(loss)  # waits for the device

    return block


def bench_train(args, stream) -> dict:
    """Training tokens/s of every framework, their timed blocks interleaved (round r times each framework's block
    r), so that a change in the machine's load hits all of them alike; each round starts one framework later, so
    none always runs right after the same other one (2026-12-03: the Flax block that always followed torch.compile
    took 4.5-5.2 s per 8 steps, the same step 4.5-4.6 s with no torch in the process)."""
    import numpy as np
    import torch

    blocks = {f"flax {d}": flax_trainer(args, stream, d)[0] for d in args.dtypes}
    if args.attention_ab:
        blocks.update({f"flax {d}, {label}": flax_trainer(args, stream, d, attention=choice)[0]
                       for d in args.dtypes
                       for choice, label in (("openblas", "unfused attention (OpenBLAS products)"),
                                             ("xla", "XLA attention"))})
    if not args.no_flax_single_step:
        blocks.update({f"flax {d}, one step per call": flax_trainer(args, stream, d, one_step_per_call=True)[0]
                       for d in args.dtypes})
    for d in args.torch_dtypes:
        suffix = "" if d == "float32" else f" {d}"
        blocks[f"torch eager{suffix}"] = torch_trainer(args, stream, compiled=False, dtype=d)
        if not args.no_torch_compile and d in args.torch_compile_dtypes:
            blocks[f"torch.compile{suffix}"] = torch_trainer(args, stream, compiled=True, dtype=d)
    out = {name: {"block_seconds": [], "block_cpu_seconds": []} for name in blocks}
    for name, block in blocks.items():  # first step (compilation), then one warm block (compiles a block-long call)
        t0 = time.perf_counter()
        block(1)
        out[name]["first_step_seconds"] = time.perf_counter() - t0
        block(args.steps)
    names = list(blocks)
    for r in range(args.repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            block = blocks[name]
            t0, c0 = time.perf_counter(), time.process_time()
            block(args.steps)
            out[name]["block_seconds"].append(time.perf_counter() - t0)
            out[name]["block_cpu_seconds"].append(time.process_time() - c0)
    tokens = args.steps * args.batch * args.context
    for name, row in out.items():
        wall, cpu = (np.asarray(row[k]) for k in ("block_seconds", "block_cpu_seconds"))
        row["tokens_per_second"] = tokens / float(np.median(wall))
        # CPU seconds of the whole process (every thread) per step, and the cores kept busy (CPU / wall)
        row["cpu_seconds_per_step"] = float(np.median(cpu)) / args.steps
        row["cores_busy"] = float(np.median(cpu / wall))
        print(f"{name}: {row['tokens_per_second']:,.0f} tokens/s, {1e3 * row['cpu_seconds_per_step']:,.0f} CPU-ms "
              f"per step, {row['cores_busy']:.2f} cores busy (first step {row['first_step_seconds']:.1f} s)",
              flush=True)
    out["torch_threads"], out["torch"] = torch.get_num_threads(), torch.__version__
    return out


def median_rate(run, items: int, repeats: int) -> tuple[float, list[float]]:
    """(items/s of the median call, call seconds): ``run()`` does one call of work and waits for it."""
    import numpy as np

    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return items / float(np.median(times)), times


def bench_generation(args) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from llm_bridge import nanogpt as ng

    cfg = ng.preset_config(args.preset, args.vocab, context_length=args.context)
    graphdef, params = nnx.split(ng.init_model(cfg, 0))
    rng = np.random.default_rng(0)
    prompts = jnp.asarray(rng.integers(1, args.vocab, (args.gen_batch, args.prompt_len)), jnp.int32)
    pad = jnp.zeros((args.gen_batch,), jnp.int32)
    keys = jax.random.split(jax.random.key(0), args.gen_batch)
    out = {}
    for use_cache in (True, False):
        def run():
            # eot_id = -1: no row stops early, so every row makes all max_new_tokens tokens
            toks = ng.generate_tokens(graphdef, params, prompts, pad, keys, 1.0, False, max_new_tokens=args.new_tokens,
                                      top_k=None, top_p=1.0, use_cache=use_cache, eot_id=-1)
            jax.block_until_ready(toks)

        t0 = time.perf_counter()
        run()
        first = time.perf_counter() - t0
        rate, times = median_rate(run, args.gen_batch * args.new_tokens, args.repeats)
        key = "cache" if use_cache else "no_cache"
        out[key] = dict(tokens_per_second=rate, seconds=times, first_call_seconds=first)
        print(f"generation {key}: {rate:,.0f} new tokens/s (batch {args.gen_batch}, prompt {args.prompt_len}, "
              f"{args.new_tokens} new)", flush=True)
    out["speedup"] = out["cache"]["tokens_per_second"] / out["no_cache"]["tokens_per_second"]
    return out


def bench_quality(args) -> dict:
    """Train ``--preset`` for ``--minutes`` on the standard-library corpus (the CLI's defaults), then compare its
    held-out perplexity with add-k unigram / bigram models of the same tokens fitted on the same training text, and
    rank the diversity of its samples between human sentences and one sentence repeated."""
    import numpy as np

    from llm_bridge import corpus, diversity, encoders, ngram
    from llm_bridge import nanogpt_train as nt
    from llm_bridge.generators import Sampling

    folder = Path(args.quality_out) / f"nanogpt-{args.preset}-{time.strftime('%Y%m%d-%H%M%S')}"
    spec = nt.ModelSpec(preset=args.preset)
    tc = nt.TrainConfig(steps=None, minutes=args.minutes, batch_size=args.quality_batch, eval_windows=args.eval_windows,
                        warmup_steps=args.quality_warmup, learning_rate=args.quality_lr)
    result = nt.train(folder, spec, nt.DataConfig(), tc)
    saved = nt.read_run_config(folder)
    tokenizer, prepared, _ = nt.prepare_data(nt.DataConfig(**saved["data"]), nt.TrainConfig(**saved["train"]),
                                             result.model.context_length, result.model.tokenizer)
    held = prepared.held_out_windows        # (windows, context + 1): the held-out tokens the model was scored on
    # the n-gram models predict the same tokens as the model: tokens 1..context of every window, each given the
    # one before (bigram) or nothing (unigram)
    v = tokenizer.vocab_size
    def window_logs(order, k):
        per = [ngram.heldout_log_probs(prepared.train, w, v, order, k) for w in held]
        return np.concatenate([p[1:] if order == 1 else p for p in per])

    logs = {(order, k): window_logs(order, k) for order in (1, 2) for k in ngram.K_GRID}
    best = {order: min(ngram.K_GRID, key=lambda k: -logs[order, k].mean()) for order in (1, 2)}
    baselines = {name: dict(k=best[order], perplexity=float(np.exp(-logs[order, best[order]].mean())),
                            predicted_tokens=int(logs[order, best[order]].size))
                 for name, order in (("unigram", 1), ("bigram", 2))}
    res = dict(folder=str(folder), minutes=args.minutes, steps=result.step, stopped_by=result.stopped_by,
               train_tokens=int(len(prepared.train)), held_out_windows=int(len(held)), vocab_size=v,
               model_perplexity=result.held_out_perplexity, train_tokens_per_second=result.tokens_per_second,
               **baselines)
    print(json.dumps(res, indent=2), flush=True)

    # samples, and the diversity ordering human > nanoGPT at low temperature > one text repeated
    sampling = Sampling(max_new_tokens=40, temperature=args.sample_temperature, stop="\n")
    samples = result.model.generate([""] * args.diversity_texts, sampling, seed=0)
    human = corpus.stdlib_corpus().texts
    pick = np.random.default_rng(0).choice(len(human), args.diversity_texts, replace=False)
    sets = {"human stdlib sentences": [human[i] for i in pick],
            f"nanoGPT samples (T = {args.sample_temperature})": [t.strip() or "." for t in samples],
            "one sentence repeated": [human[pick[0]]] * args.diversity_texts}
    enc = encoders.minilm_encoder()
    reports = {name: diversity.diversity(texts, encoder=enc).as_dict() for name, texts in sets.items()}
    res.update(samples=samples[:12], diversity=reports, ordering_violations=diversity.report_violations(reports))
    print(json.dumps({k: res[k] for k in ("samples", "diversity", "ordering_violations")}, indent=2), flush=True)
    return res


PRESET_SHAPES = {"seed003": (4, 4, 256), "tiny": (2, 2, 32), "seed003x4": (4, 8, 512)}   # (num_layers, num_heads, dim), as llm_bridge.nanogpt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="seed003", choices=sorted(PRESET_SHAPES))
    ap.add_argument("--vocab", type=int, default=4096, help="vocabulary size (the BPE default)")
    ap.add_argument("--context", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32, help="training windows per step")
    ap.add_argument("--steps", type=int, default=8, help="training steps per timed block (Flax: one compiled call "
                                                        "of this many steps, as training's default steps_per_call)")
    ap.add_argument("--no-flax-single-step", action="store_true",
                    help="skip the Flax variant that makes one call per step")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dtypes", nargs="+", default=["float32"], help="Flax compute dtypes (bfloat16 for accelerators)")
    ap.add_argument("--no-torch-compile", action="store_true", help="skip the torch.compile variant")
    ap.add_argument("--attention-ab", action="store_true",
                    help="also Flax with the attention unfused (its products by OpenBLAS, the rest in XLA) and "
                         "all in XLA (the library's default on the CPU is the fused kernel; "
                         "nanogpt.use_attention_gemm)")
    ap.add_argument("--torch-device", default="cpu", help="device of the PyTorch twin (cuda on a GPU machine)")
    ap.add_argument("--torch-dtypes", nargs="+", default=["float32"], choices=["float32", "bfloat16"],
                    help="PyTorch compute dtypes (bfloat16: autocast)")
    ap.add_argument("--torch-compile-dtypes", nargs="+", default=["float32"], choices=["float32", "bfloat16"],
                    help="dtypes that also get a torch.compile variant")
    ap.add_argument("--no-generation", action="store_true", help="skip the generation benchmark")
    ap.add_argument("--gen-batch", type=int, default=32)
    ap.add_argument("--prompt-len", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--quality", action="store_true", help="also the timed training run against n-gram baselines")
    ap.add_argument("--minutes", type=float, default=10.0, help="training budget of the --quality run")
    ap.add_argument("--eval-windows", type=int, default=256, help="held-out windows of the --quality run")
    ap.add_argument("--quality-batch", type=int, default=16, help="training windows per step of the --quality run")
    ap.add_argument("--quality-warmup", type=int, default=30, help="warm-up steps of the --quality run")
    ap.add_argument("--quality-lr", type=float, default=2e-3, help="peak learning rate of the --quality run")
    ap.add_argument("--sample-temperature", type=float, default=0.7, help="temperature of the diversity samples")
    ap.add_argument("--diversity-texts", type=int, default=200, help="texts per set in the diversity ordering")
    ap.add_argument("--quality-out", default=str(ROOT / "runs"))
    ap.add_argument("--out", default=None, help="JSON file (default benchmarks/results/nanogpt-<time>.json)")
    args = ap.parse_args()

    import numpy as np

    from collapse_jax.results import atomic_write_json, environment_info

    stream = np.random.default_rng(0).integers(0, args.vocab, 400_000).astype(np.int32)
    res = dict(environment=environment_info(), args=vars(args))
    load = res["environment"].get("load_average", [0.0])[0]
    if load > 0.5 * (os.cpu_count() or 1):   # torch's threads then fight the other jobs: 30x slower at load 4.5 on
        print(f"bench_nanogpt: warning: the machine is busy (load average {load:.1f} on {os.cpu_count()} cores); "
              "torch's multithreaded steps slow down far more than XLA's, so the Flax / torch ratio is not "
              "trustworthy (the load is recorded in the JSON)", file=sys.stderr)   # 2 cores (a user trial, 2026-12-05)
    res["train"] = bench_train(args, stream)
    if not args.no_generation:
        res["generation"] = bench_generation(args)
    if args.quality:
        res["quality"] = bench_quality(args)
    from collapse_jax import _native

    res["environment"]["native"] = _native.status()  # again after the runs: the kernels they loaded (gemm, attention)
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"nanogpt-{time.strftime('%Y%m%d-%H%M%S')}.json")
    atomic_write_json(out, res)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
