"""``collapse-jax --help``, ``--version`` and every subcommand's ``--help`` answer without importing JAX (importing it
was 81 % of the 2.7 s ``--help`` took on a 2-core CPU, 5.7 s under load; a user's report), with the help texts the
parsers give once the numerical core is imported; a command that runs still imports the core first."""

import argparse
import json
import os
import subprocess
import sys

from collapse_jax import cli

# (the console script's setting: ``collapse_jax`` defers JAX in the command line, not in a library user's process)
_AS_THE_CONSOLE_SCRIPT = "import sys; sys.argv = ['collapse-jax']; import collapse_jax\n"


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "100"})


def _command_paths(parser, path=()):
    """Every subcommand path at every depth (``nanogpt train`` included)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name)
                yield from _command_paths(sub, (*path, name))


def test_help_and_version_import_no_jax():
    paths = [(), *_command_paths(cli.build_parser())]
    assert ("gmm-network",) in paths and ("sweep",) in paths and ("nanogpt", "train") in paths
    argvs = [[*p, "--help"] for p in paths] + [["--version"]]
    code = _AS_THE_CONSOLE_SCRIPT + f"""
from collapse_jax import cli
codes = []
for argv in {argvs!r}:
    try:
        cli.main(argv)
    except SystemExit as exc:
        codes.append(exc.code)
print()
print({{"codes": codes, "jax": sorted(m for m in sys.modules if m.split(".")[0] in ("jax", "jaxlib", "flax",
                                                                                   "optax"))}})
"""
    done = _python(code)
    assert done.returncode == 0, done.stderr
    result = eval(done.stdout.splitlines()[-1])
    assert result["codes"] == [0] * len(argvs)
    assert result["jax"] == []


def test_the_launched_command_line_imports_no_jax_for_help():
    """The real launch, ``python -m collapse_jax.cli``, with every import listed (``-X importtime``)."""
    for argv in (["--help"], ["--version"], ["sweep", "--help"]):
        done = subprocess.run([sys.executable, "-X", "importtime", "-m", "collapse_jax.cli", *argv],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line}
        assert "collapse_jax.cli" in imported and not imported & {"jax", "jaxlib", "flax", "optax"}, argv
        assert done.stdout.startswith("collapse-jax " if argv == ["--version"] else "usage: collapse-jax")


def test_help_texts_are_those_of_the_parser_built_after_the_core(capsys, monkeypatch):
    """Each command's --help, from a process that never imported JAX, equals the one this process (the core
    imported, JAX with it) prints."""
    paths = [(), *_command_paths(cli.build_parser())]
    code = _AS_THE_CONSOLE_SCRIPT + f"""
import contextlib, io, json
from collapse_jax import cli
texts = {{}}
for path in {paths!r}:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            cli.main([*path, "--help"])
        except SystemExit:
            pass
    texts[" ".join(path)] = out.getvalue()
print()
print(json.dumps({{"texts": texts, "jax": "jax" in sys.modules}}))
"""
    done = _python(code)
    assert done.returncode == 0, done.stderr
    light = json.loads(done.stdout.splitlines()[-1])
    assert not light["jax"]
    monkeypatch.setenv("COLUMNS", "100")  # (argparse reads it for each text)
    for path in paths:
        try:
            cli.main([*path, "--help"])
        except SystemExit:
            pass
        assert capsys.readouterr().out == light["texts"][" ".join(path)], path


def test_a_command_imports_the_core_before_it_runs():
    """The deferred import happens before any command runs: the public API is bound and JAX's float32 products are
    at full precision, as for ``import collapse_jax``."""
    code = _AS_THE_CONSOLE_SCRIPT + """
assert "jax" not in sys.modules and "GMMNetworkConfig" not in vars(collapse_jax)
from collapse_jax import cli
status = cli.main(["info", "--json", "--no-build"])
import jax
print()
print(status, jax.config.jax_default_matmul_precision, collapse_jax.GMMNetworkConfig.__name__,
      sorted(set(collapse_jax.__all__) - set(vars(collapse_jax))))
"""
    done = _python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "0 highest GMMNetworkConfig []"


def test_a_library_import_still_imports_the_core():
    done = _python("import sys, collapse_jax; print('jax' in sys.modules, collapse_jax.gmm_network.__name__, "
                   "sorted(set(collapse_jax.__all__) - set(vars(collapse_jax))))")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True collapse_jax.gmm_network []"


def test_a_scripts_own_dash_m_argument_is_not_the_command_line(tmp_path):
    """A review (2026-12-07): ``-m collapse_jax`` among a script's own arguments (``python3 script.py -m
    collapse_jax``, ``pytest -m collapse_jax``) made ``import collapse_jax`` defer the core as the command line does:
    the script ran without the float32 product precision and without ``collapse_jax.results`` and the rest."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    script = tmp_path / "script.py"
    script.write_text("import collapse_jax, jax\n"
                      "print(jax.config.jax_default_matmul_precision, hasattr(collapse_jax, 'results'))\n")
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "COLLAPSE_JAX_MATMUL_PRECISION": "highest"}
    for args in (["-m", "collapse_jax"], ["-m", "collapse_jax.cli"]):
        done = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, env=env,
                              timeout=300)
        assert done.stdout.split() == ["highest", "True"], (args, done.stdout, done.stderr)
