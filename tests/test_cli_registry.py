"""The command registry: core commands plus those other packages register in the entry-point group."""

import importlib.metadata

import pytest

from collapse_jax import cli


def test_llm_bridge_registers_nanogpt_through_the_entry_point_group():
    names = {e.name: e.value for e in importlib.metadata.entry_points(group=cli.ENTRY_POINT_GROUP)}
    assert names.get("nanogpt") == "llm_bridge.nanogpt_cli"


def test_registered_commands_parse(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["nanogpt", "train", "--help"])
    assert exc.value.code == 0
    assert "--resume" in capsys.readouterr().out
