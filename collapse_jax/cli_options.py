"""Options every experiment command shares, defined once: the seed, the run folder, the number of replicates."""

from __future__ import annotations

import argparse


def _default(parser, value) -> str:
    """`` (default VALUE)`` unless the parser's formatter prints defaults itself."""
    shows = isinstance(parser.formatter_class, type) and issubclass(parser.formatter_class,
                                                                    argparse.ArgumentDefaultsHelpFormatter)
    return "" if shows else f" (default {value})"


def add_seed(parser, what: str = "replicate r uses fold_in(key(seed), r)") -> None:
    parser.add_argument("--seed", type=int, default=0, help=f"root random seed, >= 0{_default(parser, 0)}: {what}")


def add_out(parser, name: str) -> None:
    parser.add_argument("--out", default=None,
                        help=f"run folder (default runs/{name}-<time>); an existing folder of an unfinished run of the "
                             "same configuration is resumed where the command supports it")


def add_replicates(parser, default: int, what: str = "Monte Carlo replicates") -> None:
    parser.add_argument("--replicates", type=int, default=default, help=f"{what}, >= 1{_default(parser, default)}")
