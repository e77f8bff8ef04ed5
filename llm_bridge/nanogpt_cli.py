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
from dataclasses import fields, replace
from pathlib import Path

from collapse_jax import _checks
from collapse_jax import cli_options as opts
from llm_bridge import nanogpt_config as nc
from llm_bridge.generators import Sampling, check_texts

# The configuration a new run takes from the flags (one flag per field, help in the field's metadata).
CONFIGS = (nc.ModelSpec, nc.DataConfig, nc.TrainConfig)


# The core's --x64 / --backend do nothing to the nanoGPT: its help says so and a --backend is refused (cli_options)
NANOGPT_RUN_OPTIONS = {
    "x64": "no effect: the nanoGPT computes in float32 (bfloat16 matmuls with --dtype bfloat16) whatever this flag "
           "says",
    "backend": "the nanoGPT has one JAX implementation, run on JAX's default device (JAX_PLATFORMS chooses it)"}


def add_parser(sub) -> None:
    p = sub.add_parser("nanogpt", help="train, sample and evaluate the Flax nanoGPT (seed 003 Section 5.2)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = p.add_subparsers(dest="nanogpt_command", metavar="{train,sample,eval}")
    verbs.required = True
    _add_train(verbs)
    _add_sample(verbs)
    _add_eval(verbs)


def _add_train(verbs) -> None:
    q = verbs.add_parser("train", help="train a nanoGPT into a run folder (or --resume one)",
                         description="Train a GPT-2 style nanoGPT on the standard-library corpus (default) or on "
                                     "your .txt files. Checkpoints (Orbax) every --checkpoint-every steps; kill the "
                                     "run at any moment and rerun with --resume --out RUN to continue to the same "
                                     "final parameters. Unset options take the default shown (or, with --resume, "
                                     "the run's saved value).")
    opts.add_config(q.add_argument_group("model"), nc.ModelSpec)
    g = q.add_argument_group("data")
    opts.add_config(g, nc.DataConfig)
    data_fields = ("held_out_fraction",)  # a TrainConfig field (the split's seed is the run's), shown with the data
    opts.add_config(g, nc.TrainConfig, exclude=tuple(f.name for f in fields(nc.TrainConfig)
                                                     if f.name not in data_fields))
    g = q.add_argument_group("training")
    opts.add_config(g, nc.TrainConfig, exclude=data_fields)
    g.add_argument("--until", type=int, default=None,
                   help="stop after this step, 1 to --steps (checkpointed, the schedule still spans --steps); "
                        "--resume continues (default: none, run to the end)")
    g = q.add_argument_group("run folder")
    opts.add_out(g, "nanogpt", accepts="new or empty; a folder that already holds a run is refused (continue it "
                                       "with --resume --out RUN), and so is a folder with other files")
    g.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its newest checkpoint that restores, with its saved "
                        "configuration (model, data and training options must not be given)")
    q.set_defaults(func=cmd_train, run_option_notes=NANOGPT_RUN_OPTIONS,
                   interrupt_hint="continue it with `collapse-jax nanogpt train --resume --out RUN` (the run's saved "
                                  "options; give no others)")


def _add_sample(verbs) -> None:
    q = verbs.add_parser("sample", help="generate continuations from a trained run",
                         description="Sample continuations of prompts from a run folder (or a NanoGPT.save folder). "
                                     "Without --max-new-tokens a sample has 64 new tokens, or what the model's "
                                     "context leaves beside the longest prompt where that is fewer (at least half "
                                     "the context).")
    q.add_argument("run", help="run folder")
    q.add_argument("--prompt", action="append", default=None,
                   help="a prompt (repeat for several; default: one empty prompt, i.e. unconditional)")
    q.add_argument("--prompts-file", type=str, default=None, help="a file with one prompt per line (default none)")
    q.add_argument("--count", type=int, default=1, help="samples per prompt, >= 1 (default 1)")
    opts.add_config(q, Sampling)
    for action in q._actions:  # its default here is the description's (the help said 64; a user trial, 2026-12-05)
        if action.dest == "max_new_tokens":
            action.help = ("new tokens per sample, >= 1 (default 64, or what the context leaves beside the longest "
                           "prompt where that is fewer, at least half the context)")
    opts.add_seed(q, "the sampling draws")
    q.add_argument("--batch-size", type=int, default=32, help="prompts per batch, >= 1 (default 32)")
    q.add_argument("--no-cache", action="store_true", help="recompute the whole context for each token (slow)")
    _add_step(q)
    q.add_argument("--json", action="store_true", help="print a JSON list of {prompt, text} instead of text")
    q.set_defaults(func=cmd_sample, run_option_notes=NANOGPT_RUN_OPTIONS,  # (messages name these flags too)
                   config_flags={**q.get_default("config_flags"), "count": "--count", "seed": "--seed",
                                 "batch_size": "--batch-size"})


def _add_eval(verbs) -> None:
    q = verbs.add_parser("eval", help="held-out loss and perplexity of a run",
                         description="Perplexity of the run's held-out windows (as during training), or of the "
                                     "texts of --texts (blank-line separated paragraphs, each prefixed with EOT).")
    q.add_argument("run", help="run folder")
    q.add_argument("--texts", type=str, default=None,
                   help="a .txt file or folder to score instead (default: the run's held-out windows)")
    q.add_argument("--batch-size", type=int, default=32, help="windows per batch, >= 1 (default 32)")
    _add_step(q)
    q.set_defaults(func=cmd_eval, run_option_notes=NANOGPT_RUN_OPTIONS, config_flags={"batch_size": "--batch-size"})


def _add_step(q) -> None:
    q.add_argument("--step", type=int, default=None, help="checkpoint step (default: newest that restores)")


# ----------------------------------------------------------------------------------------------------------------


def given_config_flags(args) -> list[str]:
    """The model, data and training flags given on the command line (``--resume`` refuses them)."""
    return [opts.flag_of(cls, f.name) for cls in CONFIGS for f in fields(cls) if getattr(args, f.name) is not None]


def configs_from_args(args) -> tuple[nc.ModelSpec, nc.DataConfig, nc.TrainConfig]:
    """A new run's (model, data, training) configuration: the flags given, the class defaults otherwise (the
    preset's sizes for the model sizes not given); ``--minutes`` without ``--steps`` sets no step limit."""
    no_step_limit = {"steps": None} if args.minutes is not None and args.steps is None else {}
    return (opts.config_from_args(nc.ModelSpec, args), opts.config_from_args(nc.DataConfig, args),
            opts.config_from_args(nc.TrainConfig, args, **no_step_limit))


def cmd_train(args) -> int:
    from collapse_jax.results import RunFolder
    from llm_bridge import nanogpt_train as nt

    if args.resume:
        if args.out is None:
            raise ValueError("--resume needs --out RUN, the run folder to continue")
        extra = given_config_flags(args)
        if extra:
            raise ValueError(f"--resume uses the run's saved configuration; drop {', '.join(extra)}")
        result = nt.resume(args.out, until=args.until)
    else:
        spec, data, tc = configs_from_args(args)
        if data.tokenizer == "byte" and args.vocab_size is not None:  # (recorded, never used; a user trial)
            raise ValueError("--vocab-size sets the BPE vocabulary; --tokenizer byte has its own (the 256 bytes and "
                             "an end-of-text token, 257): drop --vocab-size")
        # sizes (e.g. dim / heads) and their memory checked before a folder
        nc.check_training_fits(spec.resolve(nc.vocab_bound(data.tokenizer, data.vocab_size)), tc.batch_size)
        nt.check_until(args.until, tc.steps)
        existed = args.out is not None and Path(args.out).expanduser().exists()
        folder = RunFolder.create("nanogpt", args.out).path  # a bad --out fails here, not after the data
        try:
            result = nt.train(folder, spec, data, tc, until=args.until)
        except BaseException:
            # failed before writing anything: leave no folder of ours; one the user made stays (an empty --out made
            # beforehand was removed; a user trial, 2026-12-06)
            if not existed and folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
            raise
    speed = ("no step timed" if result.tokens_per_second is None
             else f"{result.tokens_per_second:.0f} training tokens/s")
    done = "the run had finished; nothing was run or written in" if result.stopped_by == "finished" else "wrote"
    print(f"step {result.step} ({result.stopped_by}): held-out loss {result.held_out_loss:.4f}, perplexity "
          f"{result.held_out_perplexity:.2f}, {speed}; {done} {result.folder}")
    return 0


def _prompts(args) -> list[str]:
    """The prompts of ``--prompt`` and ``--prompts-file`` (its non-blank lines; a file without one is refused), or
    one empty prompt (unconditional) when neither is given."""
    prompts = list(args.prompt or [])
    if args.prompts_file:
        path = Path(args.prompts_file)
        if not path.is_file():
            raise ValueError(f"prompts file {args.prompts_file!r} does not exist")
        from llm_bridge.corpus import read_text_file

        lines = [line for line in read_text_file(path, "prompts file").splitlines() if line.strip()]
        if not lines:
            raise ValueError(f"prompts file {args.prompts_file!r} holds no prompt (no non-blank line); give one "
                             "prompt per line, or leave out --prompts-file for an unconditional sample")
        prompts += lines
    return prompts or [""]


def cmd_sample(args) -> int:
    from llm_bridge.nanogpt import NanoGPT

    count = _checks.positive_int("count", args.count)
    _checks.random_seed("seed", args.seed)
    _checks.positive_int("batch_size", args.batch_size)
    sampling = opts.config_from_args(Sampling, args)
    prompts = [p for p in _prompts(args) for _ in range(count)]
    check_texts(prompts, "prompts", allow_empty=False)  # before the model loads (a user trial, 2026-12-06)
    model = NanoGPT.load(args.run, step=args.step)
    if args.max_new_tokens is None:
        sampling = replace(sampling, max_new_tokens=default_new_tokens(model, prompts, sampling.max_new_tokens))
    texts = model.generate(prompts, sampling, seed=args.seed, batch_size=args.batch_size,
                           use_cache=not args.no_cache)
    if args.json:
        print(json.dumps([{"prompt": p, "text": t} for p, t in zip(prompts, texts)], indent=2, ensure_ascii=False))
    else:
        for p, t in zip(prompts, texts):
            print(f"--- {p!r}\n{p}{t}")
    return 0


def default_new_tokens(model, prompts: list[str], default: int) -> int:
    """``default`` (64), or what the context leaves beside the longest prompt where that is fewer, but at least
    half the context (a longer prompt is cut, with a warning); never more than context - 1. The tiny preset's
    32-token context refused the default 64 outright."""
    context = model.context_length
    beside = context - max(len(ids) for ids in model.encode_prompts(prompts))
    return max(1, min(default, context - 1, max(beside, context // 2)))


def cmd_eval(args) -> int:
    import math

    from llm_bridge import nanogpt_train as nt
    from llm_bridge.nanogpt import NanoGPT

    _checks.positive_int("batch_size", args.batch_size)
    if args.texts is not None and not Path(args.texts).expanduser().exists():
        raise ValueError(f"--texts {args.texts!r} does not exist (give a .txt file or a folder of them)")
    texts = nt.text_documents(args.texts, "--texts") if args.texts else None
    if texts == []:
        raise ValueError(f"--texts {args.texts!r} holds no text (no non-blank paragraph) to score")
    model = NanoGPT.load(args.run, step=args.step)
    if texts is not None:
        result = model.perplexity(texts, batch_size=args.batch_size)
        summary = {"scored": f"the texts of {args.texts}", "texts": len(result.nll),
                   "tokens": int(result.tokens.sum()),
                   "loss": float(result.nll.sum() / max(result.tokens.sum(), 1)), "perplexity": result.corpus}
    else:
        # (a model saved without a config.json of its own, as recursive-train's generations, loads and samples:
        # it was refused as "not a nanoGPT run"; a user trial, 2026-12-07)
        saved = nt.read_run_config(args.run) if (Path(args.run) / "config.json").is_file() else {}
        if "data" not in saved:
            raise ValueError(f"{args.run!r} is a saved model without training data; give --texts")
        prepared = nt.saved_run_data(Path(args.run), saved, model.tokenizer,
                                     "evaluated on its held-out text; give --texts")
        loss = nt.mean_window_nll(model, prepared.held_out_windows, args.batch_size)
        summary = {"scored": "the run's held-out windows", "windows": len(prepared.held_out_windows),
                   "loss": loss, "perplexity": math.exp(loss)}
    # (what was scored and in what unit: "loss" read as a bare number; a user trial, 2026-12-06)
    summary.update(step=model.step, loss_unit="nats per predicted token")
    from collapse_jax.results import strict_json

    print(json.dumps(strict_json(summary), indent=2, allow_nan=False))  # (strict JSON: a NaN loss as null)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python3 -m llm_bridge.nanogpt_cli train|sample|eval ...``: the ``nanogpt`` command without the
    ``collapse-jax`` entry point (same options, errors and return codes)."""
    parser = argparse.ArgumentParser(prog="collapse-jax")
    sub = parser.add_subparsers(dest="command")
    add_parser(sub)
    args = parser.parse_args(["nanogpt", *(sys.argv[1:] if argv is None else argv)])
    try:
        with opts.plain_warnings(f"nanogpt {args.nanogpt_command}"):
            return int(args.func(args) or 0)
    except ValueError as exc:
        print(f"nanogpt {args.nanogpt_command}: error: {opts.with_flags(str(exc), args)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
