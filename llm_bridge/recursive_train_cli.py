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

from collapse_jax import _checks
from collapse_jax import cli_options as opts
from llm_bridge import encoders
from llm_bridge import recursive_config as rc
from llm_bridge.nanogpt_cli import NANOGPT_RUN_OPTIONS


def add_parser(sub) -> None:
    p = sub.add_parser("recursive-train", help="recursive training of the nanoGPT on its own text, beside the "
                                               "multinomial theory (seed 003 Sec. 5.2, App. D; seed 002 S1/S2)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    opts.add_config(p, rc.RecursiveConfig, presets=rc.PRESETS,
                    preset_help="starting values of every option below: cpu (all settings, a small model, a few "
                                "generations, under 20 minutes on 2 cores) or gpu (seed 003's 4x4x256 model, 10 "
                                "generations, 5 repetitions); given options override it")
    opts.add_out(p, "recursive-train")
    p.add_argument("--until", type=int, default=None,
                   help="stop after making this many generations (>= 1) in this call (rerun to continue; default: "
                        "none, make them all)")
    # (a Ctrl-C said only "a command that resumes continues ..."; a user trial, 2026-12-06)
    p.set_defaults(interrupt_hint="continue it: rerun the same command with --out RUN "
                                  "(the generations finished so far are kept)")
    p.set_defaults(func=cmd_run, run_option_notes={
        "x64": "no effect: the nanoGPT computes in float32 whatever this flag says, and the theory recurrences, the "
               "unigram proxy and the Sigma values are computed in float64 either way",
        "backend": NANOGPT_RUN_OPTIONS["backend"]})


def config_from_args(args) -> rc.RecursiveConfig:
    return opts.config_from_args(rc.RecursiveConfig, args, presets=rc.PRESETS)


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
    from llm_bridge import recursive_train as rt

    config = config_from_args(args)
    if args.until is not None:  # before a run folder is made
        _checks.positive_int("until", args.until)
    encoders.require_extra()  # before a run folder (a half-made one was left behind without the llm extra)
    folder = RunFolder.create("recursive-train", None).path if args.out is None else args.out
    results = rt.run(folder, config, until=args.until)
    if results is None:
        print(f"stopped after {args.until} generations (--until); rerun the same command without --until (same "
              f"options, --out {folder}) to continue")
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
        print(f"recursive-train: error: {opts.with_flags(str(exc), args)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
