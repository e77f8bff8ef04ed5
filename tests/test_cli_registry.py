"""The command registry: core commands plus those other packages register in the entry-point group."""

import importlib.metadata

import pytest

from collapse_jax import cli

pytestmark = pytest.mark.fallback  # also runs in the pure-JAX pass (COLLAPSE_JAX_NATIVE=0)


def test_llm_bridge_registers_nanogpt_through_the_entry_point_group():
    names = {e.name: e.value for e in importlib.metadata.entry_points(group=cli.ENTRY_POINT_GROUP)}
    assert names.get("nanogpt") == "llm_bridge.nanogpt_cli"


def test_registered_commands_parse(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["nanogpt", "train", "--help"])
    assert exc.value.code == 0
    assert "--resume" in capsys.readouterr().out


def test_info_reports_devices_cpu_and_native_kernels(capsys):
    import json

    assert cli.main(["info", "--json", "--no-build"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["devices"] and info["cpu_model"]
    native = info["native"]
    assert set(native) >= {"enabled", "compiler", "cache_dir", "simulators_library", "spectral_library"}
    assert cli.main(["info"]) == 0  # builds (or reports why not) and prints the text summary
    text = capsys.readouterr().out
    assert "build cache:" in text and "native kernels:" in text


def test_every_option_of_every_command_has_help():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, __import__("argparse")._SubParsersAction))
    missing = {name: [a.option_strings for a in p._actions if a.option_strings and not a.help]
               for name, p in sub.choices.items()}
    assert not {k: v for k, v in missing.items() if v}, missing
    assert {"gmm-network", "validate", "sigma-precision", "info", "nanogpt", "llm-web", "recursive-train"} <= set(
        sub.choices)
