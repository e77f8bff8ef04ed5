"""``recursions-fig2`` and ``recursions-fig3``: a tiny end-to-end run writes the run folder; bad options fail first."""

import json

import pytest

from collapse_jax.cli import main


@pytest.mark.parametrize("command,png", [("recursions-fig2", "fig2.png"), ("recursions-fig3", "fig3.png")])
def test_tiny_run_writes_its_folder(tmp_path, command, png):
    out = tmp_path / "run"
    assert main([command, "--out", str(out), "--replicates", "4", "--steps", "5", "--categories", "6"]) == 0
    assert (out / png).stat().st_size > 0
    assert (out / "arrays.npz").exists() and (out / "manifest.json").exists()
    assert len(json.loads((out / "config.json").read_text())["config"]["p"]) == 6


@pytest.mark.parametrize("command", ["recursions-fig2", "recursions-fig3"])
def test_bad_replicates_fail_before_the_run_folder(tmp_path, capsys, command):
    out = tmp_path / "run"
    assert main([command, "--out", str(out), "--replicates", "0"]) == 2
    assert "replicates" in capsys.readouterr().err
    assert not out.exists()
