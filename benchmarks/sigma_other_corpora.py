"""The Sigma intervals on real corpora other than the project's own (issue 13's independent check).

The `sentences` cell of `collapse-jax sigma-precision` scores blocks of the standard library's documentation. This
script builds other real corpora from the machine's manual pages (section 1, rendered to text by `man`), embeds them
with all-MiniLM-L6-v2 (the `llm` extra) and runs each as a `--embeddings` cell of the same sweep:

* `unix`: pages of every program except the Google Cloud SDK's (git, llvm, openssl, perf, dpkg, ...), varied prose;
* `gcloud`: the Google Cloud SDK's pages, templated text with many near-duplicate sentences (where installed).

Sentences are cut and filtered as the project's corpus is (`llm_bridge.corpus`), deduplicated, shuffled with a fixed
seed and truncated to `--size`. Example (docs/sigma.md, "Other real corpora"):

    python3 benchmarks/sigma_other_corpora.py --pages unix --size 15000 --blocks 400 --ratios 1.25,1.5,2,3,5,10,20
    python3 benchmarks/sigma_other_corpora.py --pages gcloud --max-pages 3000 --size 6182 --blocks 2000 --seed 1 \\
        --ratios 1.6,2,2.5,3.2
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

import _checkout  # noqa: F401  (this checkout first on sys.path: benchmarks/_checkout.py)

MAN1 = Path("/usr/share/man/man1")
_OVERSTRIKE = re.compile(r".\x08")


def man_pages(kind: str, max_pages: int | None, seed: int) -> list[Path]:
    if shutil.which("man") is None:
        raise SystemExit("this script needs the `man` program (Debian: apt-get install man-db groff-base)")
    if not MAN1.is_dir():
        raise SystemExit(f"{MAN1} does not exist: no manual pages to read")
    pages = sorted(p for p in MAN1.iterdir() if p.name.startswith("gcloud") == (kind == "gcloud"))
    random.Random(seed).shuffle(pages)
    if max_pages:
        pages = pages[:max_pages]
    if not pages:
        raise SystemExit(f"no {kind} pages in {MAN1}")
    return pages


def render(page: Path) -> str:
    """A page as plain text, one paragraph per line (a very wide MANWIDTH keeps paragraphs unwrapped)."""
    env = dict(os.environ, MANWIDTH="3000", LC_ALL="C.UTF-8")
    try:
        out = subprocess.run(["man", "-l", str(page)], env=env, capture_output=True, timeout=30, text=True,
                             errors="replace").stdout
    except subprocess.TimeoutExpired:
        return ""
    return _OVERSTRIKE.sub("", out)


def corpus(pages: list[Path], size: int, seed: int) -> list[str]:
    from llm_bridge import corpus as C
    from collapse_jax.progress import bar

    cfg = C.CorpusConfig()
    seen: dict[str, None] = {}
    with ThreadPoolExecutor(4) as ex, bar(len(pages), "rendering man pages", unit="page") as b:
        for text in ex.map(render, pages):
            for line in text.splitlines():
                for s in C.sentences(" ".join(line.split())):
                    if C.is_prose(s, cfg) and s.endswith((".", "?", "!")):
                        seen.setdefault(s, None)
            b.update(1)
    texts = list(seen)
    random.Random(seed + 1).shuffle(texts)
    if len(texts) < size:
        raise SystemExit(f"--size {size}: only {len(texts)} distinct sentences in {len(pages)} pages")
    return texts[:size]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pages", choices=("unix", "gcloud"), default="unix", help="which manual pages (default unix)")
    ap.add_argument("--max-pages", type=int, default=None, help="read at most this many pages (default all)")
    ap.add_argument("--size", type=int, default=15000, help="sentences in the population N (default 15000)")
    ap.add_argument("--blocks", type=int, default=400, help="random blocks per block size (default 400)")
    ap.add_argument("--ratios", default="1.25,1.5,2,3,5,10,20", help="block sizes n/d (default 1.25,...,20)")
    ap.add_argument("--seed", type=int, default=0, help="the sweep's block seed (default 0; the corpus always uses 0)")
    ap.add_argument("--work", default="runs/sigma-other-corpora", help="folder for corpora, embeddings and runs")
    args = ap.parse_args(argv)
    if args.size < 2 * 384:
        raise SystemExit(f"--size must be at least 768 (two blocks of d + 1 rows at d = 384), got {args.size}")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    stem = f"{args.pages}{args.max_pages or 'all'}_{args.size}"
    emb_path = work / f"{stem}.npy"
    if not emb_path.exists():
        from llm_bridge import encoders

        texts = corpus(man_pages(args.pages, args.max_pages, 0), args.size, 0)
        (work / f"{stem}.txt").write_text("\n".join(texts))
        emb = encoders.minilm_encoder().encode(texts, batch_size=64)
        tmp = emb_path.with_suffix(".tmp.npy")
        np.save(tmp, emb)
        os.replace(tmp, emb_path)
    out = work / f"run_{stem}_b{args.blocks}_s{args.seed}_r{args.ratios.replace(',', '-')}"
    cmd = [sys.executable, "-m", "collapse_jax.cli", "sigma-precision", "--families", "", "--dims", "",
           "--embeddings", str(emb_path), "--blocks", str(args.blocks), "--seed", str(args.seed), "--ratios",
           args.ratios, "--out", str(out)]
    print(" ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True)


if __name__ == "__main__":
    main()
