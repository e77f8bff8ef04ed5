"""``python3 -m collapse_jax.recursions_cli COMMAND ...``: kept so that scripts written against the old module path
still run; it is the same as ``collapse-jax COMMAND ...``. The recursion experiments themselves live in
:mod:`collapse_jax.experiments`, one module per command."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    from collapse_jax.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
