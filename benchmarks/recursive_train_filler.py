"""Why held-out perplexity rose when recursive-train stopped feeding U+FFFD to the next generation: a controlled A/B.

Since 01e9dc4 a synthetic document keeps what decodes of its sample (``recursive_train.document_text`` drops the
U+FFFD characters that decoding writes for bytes that are not UTF-8). The re-run afterwards had 7-17 % higher final
held-out perplexity in the from-scratch settings (docs/recursive_train.md). This script isolates generation 1 of the
``synthetic`` setting, whose training documents differ between the two codes only in those characters, and trains it
on variants of the same generation-0 samples, each with several training seeds:

- ``old``:       the samples as decoded with U+FFFD (the code before 01e9dc4);
- ``new``:       U+FFFD dropped (the code now);
- ``old_fill``:  each U+FFFD replaced by ``~~~`` (as many filler tokens, at the same places);
- ``fill_end``:  U+FFFD dropped and ``~~~`` per dropped character appended at the document's end;
- ``space``:     each U+FFFD replaced by a space (a word boundary without filler tokens);
- ``new_more``:  U+FFFD dropped, with further samples until the token count reaches ``old``'s;
- ``ids``:       the sampled token ids themselves (no decoding, no re-tokenisation).

It needs a finished run folder of ``collapse-jax recursive-train`` (the generation-0 checkpoints and tokenizers; its
config.json gives every setting), regenerates generation 0's samples from the stored weights (checked against the
stored samples.json), trains generation 1 from the shared initialisation (``--steps`` may list several step counts)
and scores the real held-out documents. Prints per-condition mean perplexity with its standard error over every
(repetition, training seed) and the per-repetition means, and writes them with the environment to --out (JSON).

Example (about 2 s per training on 2 cores): python3 benchmarks/recursive_train_filler.py --run runs/rt --seeds 8
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

import jax
import numpy as np

import _checkout  # noqa: F401  (this checkout first on sys.path: benchmarks/_checkout.py)

from collapse_jax.results import atomic_write_json, environment_info, read_json
from llm_bridge import nanogpt_train as nt
from llm_bridge import recursive_train as rt
from llm_bridge.generators import Sampling
from llm_bridge.nanogpt import NanoGPT, committed, init_params

CONDITIONS = ("old", "new", "old_fill", "fill_end", "space", "new_more", "ids")
FILLER = "~~~"


class IdsTokenizer:
    """The repetition's tokenizer whose ``encode_documents`` returns a fixed id stream: trains on sampled ids."""

    def __init__(self, tok, stream: np.ndarray):
        self._tok, self._stream = tok, stream

    def encode_documents(self, texts) -> np.ndarray:
        return self._stream

    def __getattr__(self, name):
        return getattr(self._tok, name)


def variants(tok, ids: list[list[int]], n: int) -> dict[str, list[str]]:
    """Every text condition from the first ``n`` samples (``new_more`` may take more)."""
    old_all = [tok.decode(i) for i in ids]
    old = old_all[:n]
    out = {"old": old, "new": [rt.document_text(tok, i) for i in ids[:n]],
           "old_fill": [s.replace("\ufffd", FILLER) for s in old],
           "fill_end": [s.replace("\ufffd", "") + FILLER * s.count("\ufffd") for s in old],
           "space": [re.sub("\ufffd+", " ", s) for s in old]}
    target, more, total = token_count(tok, old), [], 0
    for i in ids:
        if total >= target:
            break
        more.append(rt.document_text(tok, i))
        total += len(tok.encode(more[-1])) + 1
    if total < target:
        raise ValueError(f"new_more: {len(ids)} samples hold {total} tokens, fewer than old's {target}")
    out["new_more"] = more
    return out


def token_count(tok, texts: list[str]) -> int:
    return int(sum(len(x) + 1 for x in tok.encode_batch(texts)))     # +1: each document's EOT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a finished recursive-train run folder")
    parser.add_argument("--seeds", type=int, default=8, help="training seeds per repetition and condition")
    parser.add_argument("--steps", type=int, nargs="+", default=None, help="training steps (default: the run's)")
    parser.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=CONDITIONS)
    parser.add_argument("--repetitions", type=int, default=None, help="default: the run's")
    parser.add_argument("--extra-samples", type=int, default=200, help="samples beyond n for new_more")
    parser.add_argument("--out", default="benchmarks/results/recursive_train_filler.json")
    args = parser.parse_args()
    run = Path(args.run)
    stored = read_json(run / "config.json")["config"]
    base = rt.RecursiveConfig(**{**stored, "settings": ("synthetic",)})
    reps = base.repetitions if args.repetitions is None else args.repetitions
    if not 1 <= reps <= base.repetitions:
        raise SystemExit(f"--repetitions must be in [1, {base.repetitions}] (the run's), got {reps}")
    if args.seeds < 2:
        raise SystemExit(f"--seeds must be >= 2 (a standard error needs two), got {args.seeds}")
    docs = rt.load_real_documents(base)
    results: dict[str, dict[str, dict[str, list[float]]]] = {}
    tokens: dict[str, dict[str, int]] = {}
    for r in range(reps):
        rep = rt.prepare_repetition(base, docs, r, run / f"rep{r}", None)
        tok = rep.tokenizer
        gcfg = base.gpt_config(tok.vocab_size)
        skeleton = NanoGPT(gcfg, tok, init_params(gcfg, rt.derive_seed(base.seed, r, "init")))
        abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), skeleton.params)
        _, p0 = nt.restore_params(run / f"rep{r}/gen00", abstract)
        gen0 = NanoGPT(gcfg, tok, committed(p0))
        n = int(base.sizes()[1])
        ids = gen0.generate_ids([""] * (base.num_samples + args.extra_samples),
                                Sampling(base.sample_tokens, base.temperature),
                                seed=rt.derive_seed(base.seed, r, "synthetic", 0, "samples"), progress=False)
        kept = read_json(run / f"rep{r}/gen00/samples.json")
        if [rt.document_text(tok, i) for i in ids[:len(kept)]] != kept:
            raise SystemExit(f"rep{r}: the regenerated generation-0 samples differ from the stored ones")
        texts = variants(tok, ids, n)
        seqs = [[int(v) for v in i if int(v) != tok.eot_id] for i in ids[:n]]
        stream = np.concatenate([np.asarray([tok.eot_id] + q, np.int32) for q in seqs])
        for name in args.conditions:
            model = NanoGPT(gcfg, IdsTokenizer(tok, stream), skeleton.params) if name == "ids" else skeleton
            train_texts = [""] * n if name == "ids" else texts[name]
            tokens.setdefault(name, {})[f"rep{r}"] = len(stream) if name == "ids" else token_count(tok, train_texts)
            for steps in args.steps or [base.steps]:
                cfg = rt.RecursiveConfig(**{**stored, "settings": ("synthetic",), "steps": steps})
                for k in range(args.seeds):
                    start = time.perf_counter()
                    seed = rt.derive_seed(base.seed, r, "synthetic", 1, "train") + k
                    params, _ = rt.train_params(model, train_texts, skeleton.params, cfg, seed)
                    ppl = NanoGPT(gcfg, tok, params).perplexity(rep.held_out, progress=False).corpus
                    results.setdefault(str(steps), {}).setdefault(name, {}).setdefault(f"rep{r}", []).append(ppl)
                    print(f"rep {r} steps {steps} {name:9s} tokens {tokens[name][f'rep{r}']} seed+{k} "
                          f"perplexity {ppl:.2f} ({time.perf_counter() - start:.1f} s)", flush=True)
    summary = {}
    for steps, by_name in results.items():
        for name, by_rep in by_name.items():
            values = np.concatenate([np.asarray(v) for v in by_rep.values()])
            row = dict(mean=float(values.mean()), se=float(values.std(ddof=1) / np.sqrt(values.size)),
                       runs=int(values.size), per_repetition={k: float(np.mean(v)) for k, v in by_rep.items()},
                       tokens=tokens[name])
            summary.setdefault(steps, {})[name] = row
            print(f"steps {steps:>4s} {name:9s} perplexity {row['mean']:7.2f} +- {row['se']:.2f} "
                  f"({row['runs']} runs; per repetition "
                  + " ".join(f"{v:.1f}" for v in row["per_repetition"].values()) + ")")
    atomic_write_json(args.out, dict(environment=environment_info(), run=str(run), config=stored,
                                     seeds=args.seeds, repetitions=reps, summary=summary, perplexity=results))


if __name__ == "__main__":
    main()
