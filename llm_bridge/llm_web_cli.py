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
from llm_bridge.llm_web import MODES, PRESETS, WebConfig

HELP = {
    "num_models": "n, models in the network (with --hf: one per folder)",
    "samples": "L, answers per model and step",
    "beta": "fraction of the internet each model retrieves per step, k_t = floor(beta |A(t)|), in (0, 1]",
    "num_steps": "T: steps t = 0..T",
    "num_human": "|A(0)|: standard-library sentences about --topic in the initial internet",
    "topic": "word the human sentences of A(0) contain",
    "query": "the fixed query; the answer is the first sentence of query + continuation",
    "query_is_prefix": "the answer continues the query (base LMs); 'false': the answer is the continuation alone "
                       "(instruction models)",
    "mode": "context: retrieved texts in the prompt (the seed); finetune: optimiser steps on them instead",
    "separator": "string joining retrieved texts and the query in the prompt",
    "max_new_tokens": "new tokens per answer",
    "temperature": "sampling temperature, > 0",
    "top_k": "keep the k most likely tokens (default: all)",
    "top_p": "nucleus sampling threshold in (0, 1]",
    "finetune_steps": "finetune mode: optimiser steps per model and step",
    "finetune_lr": "finetune mode: learning rate",
    "finetune_batch": "finetune mode: windows (nanoGPT) or texts (HF) per optimiser step",
    "model_layers": "base nanoGPTs: transformer blocks",
    "model_heads": "base nanoGPTs: attention heads",
    "model_dim": "base nanoGPTs: embedding width",
    "model_context": "base nanoGPTs: context window in tokens",
    "tokenizer": "base nanoGPTs: bpe (trained on each model's part) or byte",
    "vocab_size": "base nanoGPTs: BPE vocabulary size",
    "train_steps": "base nanoGPTs: training steps each",
    "train_batch": "base nanoGPTs: windows per training step",
    "train_lr": "base nanoGPTs: peak learning rate",
    "corpus_docstrings": "train on (and draw A(0) from) the docstrings too; 'false': language reference topics only",
    "hf_dtype": "--hf models' weight dtype (float32 by default; bfloat16 for large models)",
    "encoder": "sentence-transformers folder of the embedding model (default: the packaged all-MiniLM-L6-v2)",
    "gmm_replicates": "GMM network replicates for each band (the GMM band and every calibrated proxy)",
    "gmm_posts": "points each GMM posts per step (1 matches Algorithm 1's internet; the seed's Algorithm 3 posts L)",
    "proxy_dims": "PCA dimensions of the calibrated GMM proxy",
    "proxy_components": "calibrated proxies with B = 1..this components",
    "seed": "seed of every draw (retrieval, sampling, fine-tuning, training, GMM replicates)",
}
BOOLS = ("query_is_prefix", "corpus_docstrings")
CHOICES = {"mode": MODES, "tokenizer": ("bpe", "byte")}


def _bool(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_parser(sub) -> None:
    p = sub.add_parser("llm-web", help="LLM Web Dynamics with real generators next to the GMM network (seed 000)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default = WebConfig()
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu",
                   help="cpu: the CPU default (minutes on 2 cores); paper: the seed's n=3, L=40, beta=0.5, T=60 "
                        "(other options override it)")
    g = p.add_argument_group("experiment (defaults: the cpu preset)")
    for f in fields(WebConfig):
        if f.name == "hf":
            continue
        opt = "--" + f.name.replace("_", "-")
        value = getattr(default, f.name)
        kind = _bool if f.name in BOOLS else (type(value) if value is not None and f.name != "top_k" else
                                              (int if f.name == "top_k" else str))
        extra = {"choices": CHOICES[f.name]} if f.name in CHOICES else {}
        g.add_argument(opt, type=kind, default=None, help=f"{HELP[f.name]} (default {value!r})", **extra)
    g.add_argument("--hf", nargs="+", default=None, metavar="PATH",
                   help="Hugging Face causal LM folders (save_pretrained), one per model, instead of nanoGPTs")
    r = p.add_argument_group("run folder")
    opts.add_out(r, "llm-web")
    r.add_argument("--resume", action="store_true",
                   help="continue the run in --out with its saved configuration (no experiment options)")
    r.add_argument("--until", type=int, default=None,
                   help="stop before step t = UNTIL (steps 0..UNTIL-1 stored, no analysis); --resume continues")
    r.add_argument("--analyse", metavar="RUN", default=None,
                   help="recompute all outputs of RUN from its stored texts and embeddings, without generating")
    p.set_defaults(func=cmd_llm_web)


def config_from_args(args) -> WebConfig:
    given = {f.name: getattr(args, f.name) for f in fields(WebConfig)
             if f.name != "hf" and getattr(args, f.name) is not None}
    if args.hf:
        given["hf"] = tuple(args.hf)
        given.setdefault("num_models", len(args.hf))
    from llm_bridge.llm_web import preset

    return preset(args.preset, **given)


def cmd_llm_web(args) -> int:
    from llm_bridge import llm_web

    experiment = [f"--{f.name.replace('_', '-')}" for f in fields(WebConfig) if getattr(args, f.name) is not None]
    if args.analyse is not None:
        if args.resume or args.until is not None or experiment:
            raise ValueError("--analyse RUN takes no other options")
        from llm_bridge.llm_web_report import analyse

        summary = analyse(args.analyse)
    else:
        if args.resume:
            if args.out is None:
                raise ValueError("--resume needs --out RUN, the run folder to continue")
            if experiment:
                raise ValueError(f"--resume uses the run's saved configuration; drop {', '.join(experiment)}")
            folder = llm_web.resume(args.out, until=args.until)
        else:
            folder = llm_web.run(config_from_args(args), args.out, until=args.until)
        if args.until is not None and not (folder / "summary.json").is_file():
            print(f"stopped before step {args.until}; continue with --resume --out {folder}")
            return 0
        summary = json.loads((folder / "summary.json").read_text())
        args.analyse = str(folder)
    print(json.dumps({k: summary[k] for k in ("dnorm_t0", "dnorm_tT", "dnorm_ratio", "gmm_coverage",
                                              "proxy_coverage", "mean_fitted")}, indent=2))
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
        print(f"llm-web: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
