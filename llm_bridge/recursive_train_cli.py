"""``collapse-jax recursive-train``: train the nanoGPT recursively on its own text under seed 003's settings 0-3,
a classifier-filtered setting (Appendix D) and seed 002's S1 / S2, with several repetitions, and set the measured
curves beside the multinomial theory (:mod:`llm_bridge.recursive_train`).

Kill the run at any moment and rerun the same command (same options, same --out): finished generations are kept,
a half-written one is redone, and the run ends with the same files as an uninterrupted one.

The module registers in the ``collapse_jax.commands`` entry-point group; ``python3 -m llm_bridge.recursive_train_cli``
runs it on its own.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from collapse_jax import cli_options as opts
from llm_bridge import recursive_train as rt

HELP = {
    "settings": "comma-separated settings to run: " + "; ".join(
        f"{k} ({v.source}: fresh data {v.fresh}{', accumulate' if v.accumulate else ''}"
        f"{', classifier filter' if v.filtered else ''}, init {v.init})" for k, v in rt.SETTINGS.items()),
    "generations": "recursive generations after generation 0",
    "repetitions": "repetitions (each permutes the documents anew and reseeds everything)",
    "seed": "master seed of splits, initialisations, batches, samples, prompt-bank responses, Sigma block",
    "source": "real text: 'stdlib' (Python standard-library documentation) or a .txt file or folder of them "
              "(documents: blank-line separated paragraphs)",
    "doc_words": "each real document is cut to its first this many words",
    "n0": "real documents generation 0 is trained on",
    "n": "new documents per later generation (n_t = n, or n t with --n-growth linear)",
    "n_growth": "growth of n_t: constant or linear",
    "alpha": "fresh real fraction alpha of the fixed and filtered settings; the decaying one uses alpha t^-gamma",
    "gamma": "decay exponent of the decaying setting",
    "held_out_docs": "real documents held out for perplexity (the prompt bank takes its prompts from them)",
    "classifier_docs": "real documents for the filter's classifier (half fit, half measure type-I), and as many "
                       "synthetic ones (type-II)",
    "vocab_size": "BPE vocabulary (trained on generation 0's documents; the multinomial K)",
    "num_layers": "transformer blocks",
    "num_heads": "attention heads",
    "dim": "embedding width",
    "context_length": "context in tokens",
    "dropout": "dropout rate in [0, 1)",
    "dtype": "matmul dtype (float32, or bfloat16 on accelerators)",
    "steps": "AdamW steps per generation (warm-up then cosine)",
    "batch_size": "windows per step",
    "learning_rate": "peak learning rate",
    "warmup_steps": "linear warm-up steps",
    "min_lr_ratio": "final learning rate / peak",
    "weight_decay": "decoupled weight decay on matrices",
    "sample_tokens": "new tokens per synthetic document (unconditional samples, cut at EOT)",
    "temperature": "sampling temperature of synthetic documents and prompt-bank responses",
    "prompts": "prompts in the frozen prompt bank (first words of held-out documents)",
    "responses": "responses per prompt (Sigma uses all prompts x responses embeddings)",
    "prompt_words": "words of a held-out document that make a prompt",
    "response_tokens": "new tokens per response",
    "ridge": "L2 penalty of the real-vs-synthetic logistic regression",
}
FLAGS = {"learning_rate": "lr", "warmup_steps": "warmup", "num_layers": "layers", "num_heads": "heads",
         "context_length": "context"}


def _flag(name: str) -> str:
    return "--" + FLAGS.get(name, name).replace("_", "-")


def add_parser(sub) -> None:
    p = sub.add_parser("recursive-train", help="recursive training of the nanoGPT on its own text, beside the "
                                               "multinomial theory (seed 003 Sec. 5.2, App. D; seed 002 S1/S2)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cpu, gpu = rt.preset("cpu"), rt.preset("gpu")
    p.add_argument("--preset", choices=sorted(rt.PRESETS), default="cpu",
                   help="starting values of every option below: cpu (all settings, a small model, a few generations, "
                        "under 20 minutes on 2 cores) or gpu (seed 003's 4x4x256 model, 10 generations, 5 "
                        "repetitions); given options override it")
    for f in fields(rt.RecursiveConfig):
        default = getattr(cpu, f.name)
        shown = ",".join(default) if f.name == "settings" else default
        gpu_value = getattr(gpu, f.name)
        extra = "" if gpu_value == default else f", gpu {gpu_value}"
        kind = {"settings": str, "source": str, "n_growth": str, "dtype": str}.get(f.name, type(default))
        p.add_argument(_flag(f.name), dest=f.name, type=kind, default=None,
                       help=f"{HELP[f.name]} (cpu {shown}{extra})")
    opts.add_out(p, "recursive-train")
    p.add_argument("--until", type=int, default=None,
                   help="stop after making this many generations in this call (rerun to continue)")
    p.set_defaults(func=cmd_run)


def config_from_args(args) -> rt.RecursiveConfig:
    given = {f.name: getattr(args, f.name) for f in fields(rt.RecursiveConfig) if getattr(args, f.name) is not None}
    if "settings" in given:
        given["settings"] = tuple(s.strip() for s in given["settings"].split(",") if s.strip())
    return rt.preset(args.preset, **given)


def summary_lines(results: dict) -> list[str]:
    """One line per setting: generation 0 and last perplexity, unigram distance against the theory's ratio,
    Track II drift and distinct-2 (means over repetitions, min-max in brackets)."""
    lines = [f"{'setting':<11} {'perplexity g0 -> last [min, max]':<36} {'unigram d_T/d_0':>15} "
             f"{'theory r_T/r_0':>14} {'Track II drift':>14} {'distinct-2 g0->last':>20}"]
    for s, f in results["final"].items():
        ppl, tr2, d2 = f["held_out_perplexity"], f["track2_drift"], f["distinct_2"]
        lines.append(f"{s:<11} {ppl['gen0_mean']:8.2f} -> {ppl['last_mean']:8.2f} [{ppl['last_min']:.2f}, "
                     f"{ppl['last_max']:.2f}]   {f['unigram_ratio_last']:15.3f} {f['theory_ratio_last']:14.3f} "
                     f"{tr2['last_mean']:14.3f} {d2['gen0_mean']:9.3f} -> {d2['last_mean']:.3f}")
    for s, e in results["theory"]["filter_errors"].items():
        lines.append(f"{s}: measured type-I {e['type1_mean']:.3f}, type-II {e['type2_mean']:.3f} (held-out)")
    return lines


def cmd_run(args) -> int:
    from collapse_jax.results import RunFolder

    config = config_from_args(args)
    folder = RunFolder.create("recursive-train", None).path if args.out is None else args.out
    results = rt.run(folder, config, until=args.until)
    if results is None:
        print(f"stopped after {args.until} generations (--until); rerun with --out {folder} to continue")
        return 0
    print("\n".join(summary_lines(results)))
    print(f"wrote {folder}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python3 -m llm_bridge.recursive_train_cli [options]``: the ``recursive-train`` command without the
    ``collapse-jax`` entry point (same options, errors and return codes)."""
    parser = argparse.ArgumentParser(prog="collapse-jax")
    sub = parser.add_subparsers(dest="command")
    add_parser(sub)
    args = parser.parse_args(["recursive-train", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args) or 0)
    except ValueError as exc:
        print(f"recursive-train: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
