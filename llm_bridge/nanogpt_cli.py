"""``collapse-jax nanogpt``: train the Flax nanoGPT, sample from a run, score texts.

* ``nanogpt train``: a new run folder (``--out``), or ``--resume`` an interrupted one (its saved configuration is
  used; it continues to the same final parameters as an uninterrupted run);
* ``nanogpt sample RUN``: continuations of prompts (EOT, i.e. unconditional, when none are given);
* ``nanogpt eval RUN``: held-out loss and perplexity (the run's own held-out documents, or ``--texts FILE``).

The module registers in the ``collapse_jax.commands`` entry-point group; ``python3 -m llm_bridge.nanogpt_cli``
runs it on its own.
"""

from __future__ import annotations

import argparse
import json
import sys

from collapse_jax import cli_options as opts
from llm_bridge import nanogpt_train as nt
from llm_bridge.nanogpt import PRESETS

# CLI option -> (config class, field). Defaults shown in --help come from the dataclasses.
MODEL_OPTIONS = {"preset": "preset", "layers": "num_layers", "heads": "num_heads", "dim": "dim",
                 "context": "context_length", "dropout": "dropout", "dtype": "dtype"}
DATA_OPTIONS = {"data": "source", "unit": "unit", "tokenizer": "tokenizer", "vocab_size": "vocab_size"}
TRAIN_OPTIONS = {"steps": "steps", "minutes": "minutes", "batch_size": "batch_size", "lr": "learning_rate",
                 "min_lr_ratio": "min_lr_ratio", "warmup": "warmup_steps", "weight_decay": "weight_decay",
                 "grad_clip": "grad_clip", "beta1": "beta1", "beta2": "beta2", "eval_every": "eval_every",
                 "eval_windows": "eval_windows", "checkpoint_every": "checkpoint_every",
                 "keep_checkpoints": "keep_checkpoints", "held_out": "held_out_fraction", "seed": "seed"}


def add_parser(sub) -> None:
    p = sub.add_parser("nanogpt", help="train, sample and evaluate the Flax nanoGPT (seed 003 Section 5.2)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = p.add_subparsers(dest="nanogpt_command", metavar="{train,sample,eval}")
    verbs.required = True
    _add_train(verbs)
    _add_sample(verbs)
    _add_eval(verbs)


def _add_train(verbs) -> None:
    m, d, t = nt.ModelSpec(), nt.DataConfig(), nt.TrainConfig()
    q = verbs.add_parser("train", help="train a nanoGPT into a run folder (or --resume one)",
                         description="Train a GPT-2 style nanoGPT on the standard-library corpus (default) or on "
                                     "your .txt files. Checkpoints (Orbax) every --checkpoint-every steps; kill the "
                                     "run at any moment and rerun with --resume --out RUN to continue to the same "
                                     "final parameters. Unset options take the default shown (or, with --resume, "
                                     "the run's saved value).")
    g = q.add_argument_group("model")
    g.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help=f"model sizes to start from (default {m.preset}): "
                        + "; ".join(f"{k}: {v}" for k, v in PRESETS.items()))
    g.add_argument("--layers", type=int, default=None, help="number of transformer blocks (overrides the preset)")
    g.add_argument("--heads", type=int, default=None, help="attention heads (dim must be a multiple)")
    g.add_argument("--dim", type=int, default=None, help="embedding width")
    g.add_argument("--context", type=int, default=None, help="context length in tokens")
    g.add_argument("--dropout", type=float, default=None, help=f"dropout rate in [0, 1) (default {m.dropout})")
    g.add_argument("--dtype", choices=["float32", "bfloat16"], default=None,
                   help=f"matmul dtype; parameters stay float32 (default {m.dtype}; bfloat16 for accelerators)")
    g = q.add_argument_group("data")
    g.add_argument("--data", type=str, default=None,
                   help="'stdlib' (the Python standard library's documentation, default) or a .txt file or folder "
                        "of .txt files (documents: blank-line separated paragraphs)")
    g.add_argument("--unit", choices=["paragraph", "sentence"], default=None,
                   help=f"document unit of the stdlib corpus (default {d.unit})")
    g.add_argument("--tokenizer", choices=["bpe", "byte"], default=None,
                   help=f"byte-level BPE trained on the training documents, or plain bytes (default {d.tokenizer})")
    g.add_argument("--vocab-size", type=int, default=None, help=f"BPE vocabulary size (default {d.vocab_size})")
    g.add_argument("--held-out", type=float, default=None,
                   help=f"fraction of documents held out for evaluation (default {t.held_out_fraction})")
    g = q.add_argument_group("training")
    g.add_argument("--steps", type=int, default=None,
                   help=f"optimiser steps = schedule length (default {t.steps}; with --minutes alone: as many as the "
                        "budget allows, measured before training)")
    g.add_argument("--minutes", type=float, default=None,
                   help="wall-time budget: stop when it is spent, then checkpoint and evaluate")
    g.add_argument("--until", type=int, default=None,
                   help="stop after this step (checkpointed, the schedule still spans --steps); --resume continues")
    g.add_argument("--batch-size", type=int, default=None, help=f"windows per step (default {t.batch_size})")
    g.add_argument("--lr", type=float, default=None, help=f"peak learning rate (default {t.learning_rate})")
    g.add_argument("--min-lr-ratio", type=float, default=None,
                   help=f"final learning rate / peak, end of the cosine (default {t.min_lr_ratio})")
    g.add_argument("--warmup", type=int, default=None, help=f"linear warm-up steps (default {t.warmup_steps})")
    g.add_argument("--weight-decay", type=float, default=None,
                   help=f"AdamW decoupled weight decay on matrices (default {t.weight_decay})")
    g.add_argument("--grad-clip", type=float, default=None, help=f"global gradient-norm clip (default {t.grad_clip})")
    g.add_argument("--beta1", type=float, default=None, help=f"Adam beta1 (default {t.beta1})")
    g.add_argument("--beta2", type=float, default=None, help=f"Adam beta2 (default {t.beta2})")
    g.add_argument("--eval-every", type=int, default=None,
                   help=f"held-out loss and perplexity every this many steps (default {t.eval_every})")
    g.add_argument("--eval-windows", type=int, default=None,
                   help=f"held-out windows of context+1 tokens, fixed for the run (default {t.eval_windows})")
    g.add_argument("--checkpoint-every", type=int, default=None,
                   help=f"Orbax checkpoint every this many steps (default {t.checkpoint_every})")
    g.add_argument("--keep-checkpoints", type=int, default=None,
                   help=f"newest checkpoints kept, >= 2 (default {t.keep_checkpoints})")
    g.add_argument("--seed", type=int, default=None, help=f"seed of data split, init, batches, dropout "
                                                          f"(default {t.seed})")
    g = q.add_argument_group("run folder")
    opts.add_out(g, "nanogpt")
    g.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its newest checkpoint that restores, with its saved "
                        "configuration (model, data and training options must not be given)")
    q.set_defaults(func=cmd_train)


def _sampling_options(q) -> None:
    from llm_bridge.generators import Sampling

    s = Sampling()
    q.add_argument("--max-new-tokens", type=int, default=s.max_new_tokens, help="new tokens per sample")
    q.add_argument("--temperature", type=float, default=s.temperature, help="softmax temperature, > 0")
    q.add_argument("--top-k", type=int, default=None, help="keep the k most likely tokens (1: greedy)")
    q.add_argument("--top-p", type=float, default=s.top_p, help="nucleus: smallest set reaching this probability")
    q.add_argument("--stop", type=str, default=None, help="cut each sample at the first occurrence of this string")


def _add_sample(verbs) -> None:
    q = verbs.add_parser("sample", help="generate continuations from a trained run",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                         description="Sample continuations of prompts from a run folder (or a NanoGPT.save folder).")
    q.add_argument("run", help="run folder")
    q.add_argument("--prompt", action="append", default=None,
                   help="a prompt (repeat for several; default: one empty prompt, i.e. unconditional)")
    q.add_argument("--prompts-file", type=str, default=None, help="a file with one prompt per line")
    q.add_argument("--count", type=int, default=1, help="samples per prompt")
    _sampling_options(q)
    opts.add_seed(q, "the sampling draws")
    q.add_argument("--batch-size", type=int, default=32, help="prompts per batch")
    q.add_argument("--no-cache", action="store_true", help="recompute the whole context for each token (slow)")
    q.add_argument("--step", type=int, default=None, help="checkpoint step (default: newest that restores)")
    q.add_argument("--json", action="store_true", help="print a JSON list of {prompt, text} instead of text")
    q.set_defaults(func=cmd_sample)


def _add_eval(verbs) -> None:
    q = verbs.add_parser("eval", help="held-out loss and perplexity of a run",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                         description="Perplexity of the run's held-out windows (as during training), or of the "
                                     "texts of --texts (blank-line separated paragraphs, each prefixed with EOT).")
    q.add_argument("run", help="run folder")
    q.add_argument("--texts", type=str, default=None, help="a .txt file or folder to score instead")
    q.add_argument("--batch-size", type=int, default=32, help="windows per batch")
    q.add_argument("--step", type=int, default=None, help="checkpoint step (default: newest that restores)")
    q.set_defaults(func=cmd_eval)


# ----------------------------------------------------------------------------------------------------------------


def _given(args, options: dict[str, str]) -> dict[str, object]:
    return {field: getattr(args, opt) for opt, field in options.items() if getattr(args, opt) is not None}


def cmd_train(args) -> int:
    from collapse_jax.results import RunFolder

    if args.resume:
        if args.out is None:
            raise ValueError("--resume needs --out RUN, the run folder to continue")
        extra = [f"--{o.replace('_', '-')}" for o in (*MODEL_OPTIONS, *DATA_OPTIONS, *TRAIN_OPTIONS)
                 if getattr(args, o) is not None]
        if extra:
            raise ValueError(f"--resume uses the run's saved configuration; drop {', '.join(extra)}")
        result = nt.resume(args.out, until=args.until)
    else:
        train_given = _given(args, TRAIN_OPTIONS)
        if "minutes" in train_given and "steps" not in train_given:
            train_given["steps"] = None
        spec = nt.ModelSpec(**_given(args, MODEL_OPTIONS))
        data = nt.DataConfig(**_given(args, DATA_OPTIONS))
        tc = nt.TrainConfig(**train_given)
        folder = RunFolder.create("nanogpt", args.out).path if args.out is None else args.out
        result = nt.train(folder, spec, data, tc, until=args.until)
    print(f"step {result.step} ({result.stopped_by}): held-out loss {result.held_out_loss:.4f}, perplexity "
          f"{result.held_out_perplexity:.2f}, {result.tokens_per_second:.0f} training tokens/s; wrote {result.folder}")
    return 0


def _prompts(args) -> list[str]:
    from pathlib import Path

    prompts = list(args.prompt or [])
    if args.prompts_file:
        path = Path(args.prompts_file)
        if not path.is_file():
            raise ValueError(f"prompts file {args.prompts_file!r} does not exist")
        prompts += [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return prompts or [""]


def cmd_sample(args) -> int:
    from llm_bridge.generators import Sampling
    from llm_bridge.nanogpt import NanoGPT

    from collapse_jax import _checks

    count = _checks.positive_int("count", args.count)
    sampling = Sampling(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                        top_p=args.top_p, stop=args.stop)
    prompts = [p for p in _prompts(args) for _ in range(count)]
    model = NanoGPT.load(args.run, step=args.step)
    texts = model.generate(prompts, sampling, seed=args.seed, batch_size=args.batch_size,
                           use_cache=not args.no_cache)
    if args.json:
        print(json.dumps([{"prompt": p, "text": t} for p, t in zip(prompts, texts)], indent=2, ensure_ascii=False))
    else:
        for p, t in zip(prompts, texts):
            print(f"--- {p!r}\n{p}{t}")
    return 0


def cmd_eval(args) -> int:
    import math

    from llm_bridge.nanogpt import NanoGPT

    model = NanoGPT.load(args.run, step=args.step)
    if args.texts:
        result = model.perplexity(nt.text_documents(args.texts), batch_size=args.batch_size)
        summary = {"texts": len(result.nll), "tokens": int(result.tokens.sum()),
                   "loss": float(result.nll.sum() / max(result.tokens.sum(), 1)), "perplexity": result.corpus}
    else:
        saved = nt.read_run_config(args.run)
        if "data" not in saved:
            raise ValueError(f"{args.run!r} is a saved model without training data; give --texts")
        tc, data = nt.TrainConfig(**saved["train"]), nt.DataConfig(**saved["data"])
        _, prepared, _ = nt.prepare_data(data, tc, model.context_length, model.tokenizer)
        loss = nt.mean_window_nll(model, prepared.held_out_windows, args.batch_size)
        summary = {"windows": len(prepared.held_out_windows), "loss": loss, "perplexity": math.exp(loss)}
    summary["step"] = model.step
    print(json.dumps(summary, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python3 -m llm_bridge.nanogpt_cli train|sample|eval ...``: the ``nanogpt`` command without the
    ``collapse-jax`` entry point (same options, errors and return codes)."""
    parser = argparse.ArgumentParser(prog="nanogpt")
    sub = parser.add_subparsers(dest="command")
    add_parser(sub)
    args = parser.parse_args(["nanogpt", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args) or 0)
    except ValueError as exc:
        print(f"nanogpt {args.nanogpt_command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
