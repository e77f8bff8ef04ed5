"""``collapse-jax llm-web``: LLM Web Dynamics with real generators (seed 000, Algorithm 1), next to the GMM network.

* ``llm-web [options]``: a new run (``--out`` folder, default ``runs/llm-web-<time>``): trains the base nanoGPTs
  (or loads ``--hf`` folders), runs steps t = 0..T, then analyses (plots, report.md, summary.json);
* ``llm-web --resume --out RUN``: continue a killed run with its saved configuration (same final result);
* ``llm-web --analyse RUN``: recompute every output of a run from its stored texts and embeddings (no generation).

The module registers in the ``collapse_jax.commands`` entry-point group; ``python3 -m llm_bridge.llm_web_cli``
runs it on its own.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields

from collapse_jax import cli_options as opts
from llm_bridge.llm_web import PRESETS, WebConfig



def add_parser(sub) -> None:
    p = sub.add_parser("llm-web", help="LLM Web Dynamics with real generators next to the GMM network (seed 000)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("experiment (defaults: the cpu preset)")
    opts.add_config(g, WebConfig, presets=PRESETS,
                    preset_help="cpu: the CPU default (minutes on 2 cores); paper: the seed's n=3, L=40, beta=0.5, "
                                "T=60 (other options override it)")
    r = p.add_argument_group("run folder")
    opts.add_out(r, "llm-web")
    r.add_argument("--resume", action="store_true",
                   help="continue the run in --out with its saved configuration (no experiment options)")
    r.add_argument("--until", type=int, default=None,
                   help="stop before step t = UNTIL (steps 0..UNTIL-1 stored, no analysis); --resume continues "
                        "(default: none, run every step)")
    r.add_argument("--analyse", metavar="RUN", default=None,
                   help="recompute all outputs of RUN from its stored texts and embeddings, without generating")
    p.set_defaults(func=cmd_llm_web, run_option_notes={
        "x64": "no effect: the language models and the encoder compute in their own dtypes (the nanoGPTs in "
               "float32), and the metrics, the GMM network band and the proxies are computed in float64, whatever "
               "this flag says"})


def config_from_args(args) -> WebConfig:
    """The run's configuration: the ``--preset``, the options given, and ``num_models`` one per ``--hf`` folder
    unless given."""
    models = {"num_models": args.num_models or len(args.hf)} if args.hf else {}
    return opts.config_from_args(WebConfig, args, presets=PRESETS, **models)


def cmd_llm_web(args) -> int:
    from llm_bridge import llm_web

    experiment = [opts.flag_of(WebConfig, f.name) for f in fields(WebConfig) if getattr(args, f.name) is not None]
    if args.analyse is not None:
        # (--out and --preset were ignored without a word: the outputs go into RUN; a user trial, 2026-12-06)
        other = {"--resume": args.resume, "--until": args.until is not None, "--out": args.out is not None,
                 "--preset": args.preset != next(iter(PRESETS))}
        given = [flag for flag, on in other.items() if on] + experiment
        if given:
            raise ValueError(f"--analyse RUN takes no other options (it rewrites RUN's outputs in RUN): drop "
                             f"{', '.join(given)}")
        from llm_bridge.llm_web_report import analyse

        summary = analyse(args.analyse)
    else:
        from llm_bridge.encoders import require_extra

        require_extra()  # before a run folder (a half-made one was left behind without the llm extra)
        if args.resume:
            if args.out is None:
                raise ValueError("--resume needs --out RUN, the run folder to continue")
            if experiment:
                raise ValueError(f"--resume uses the run's saved configuration; drop {', '.join(experiment)}")
            folder = llm_web.resume(args.out, until=args.until)
        else:
            cfg = config_from_args(args)
            # before the folder and the training (a user trial, 2026-12-05: --samples 1e9 or --gmm-replicates 1e11
            # started training): each step's embeddings (at least 384-d) and the GMM comparison's records
            from collapse_jax.experiments.runs import check_results_fit

            check_results_fit((cfg.num_steps + 1) * (cfg.num_models * cfg.samples * 384
                                                     + cfg.gmm_replicates * (1 + cfg.proxy_components)),
                              "--num-steps, --num-models, --samples, --gmm-replicates",
                              "the embeddings and GMM records")
            folder = llm_web.run(cfg, args.out, until=args.until)
        done = llm_web.completed_steps(folder)
        if args.until is not None and done > args.until:  # (said nothing: a user trial, 2026-12-06)
            print(f"--until {args.until}: nothing generated, {folder} already holds steps 0..{done - 1}")
        if done < llm_web.saved_config(folder).num_steps + 1:  # (a summary.json may be an --analyse of a part)
            print(f"stopped before step {done}; continue with --resume --out {folder}")
            return 0
        summary = json.loads((folder / "summary.json").read_text())
        args.analyse = str(folder)
    from collapse_jax.results import strict_json

    # (strict JSON, NaN as null, as summary.json: --analyse printed "NaN" where the first run printed null; a user
    # trial, 2026-12-07)
    print(json.dumps(strict_json({k: summary[k] for k in ("dnorm_t0", "dnorm_tT", "dnorm_ratio", "gmm_coverage",
                                                          "proxy_coverage", "mean_fitted")}), indent=2,
                     allow_nan=False))
    print(f"wrote {args.analyse}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python3 -m llm_bridge.llm_web_cli [options]``: the ``llm-web`` command without the ``collapse-jax`` entry
    point (same options, errors and return codes)."""
    parser = argparse.ArgumentParser(prog="collapse-jax")
    sub = parser.add_subparsers(dest="command")
    add_parser(sub)
    args = parser.parse_args(["llm-web", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args) or 0)
    except ValueError as exc:
        print(f"llm-web: error: {opts.with_flags(str(exc), args)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
