"""Flags generated from a frozen config dataclass (collapse_jax.cli_options.add_config / config_from_args)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import pytest

from collapse_jax import cli_options as opts


@dataclass(frozen=True)
class Demo:
    sizes: tuple[int, ...] = field(default=(1, 2), metadata={"help": "sizes"})
    rates: tuple[float, ...] = field(default=(0.5,), metadata={"help": "rates"})
    names: tuple[str, ...] = field(default=("a",), metadata={"help": "names"})
    steps: int = field(default=3, metadata={"help": "steps"})
    scale: float = field(default=1.5, metadata={"help": "scale"})
    mode: str = field(default="x", metadata={"help": "mode", "choices": ("x", "y")})
    path: str | None = field(default=None, metadata={"help": "a file", "default_help": "none"})
    fast: bool = field(default=False, metadata={"help": "go fast"})
    seed: int = field(default=0, metadata={"help": "the draws"})


def parse(*argv, cls=Demo):
    p = argparse.ArgumentParser()
    opts.add_config(p, cls)
    return p, p.parse_args(list(argv))


def test_defaults_come_from_the_class():
    _, args = parse()
    assert opts.config_from_args(Demo, args) == Demo()


def test_every_type_parses():
    _, args = parse("--sizes", "4,5,6", "--rates", "0.1,2", "--names", "p, q", "--steps", "7", "--scale", "2",
                    "--mode", "y", "--path", "f.npy", "--fast", "--seed", "9")
    assert opts.config_from_args(Demo, args) == Demo((4, 5, 6), (0.1, 2.0), ("p", "q"), 7, 2.0, "y", "f.npy", True, 9)
    _, args = parse("--names", "")
    assert opts.config_from_args(Demo, args).names == ()


def test_overrides_win_and_bad_values_name_the_flag(capsys):
    _, args = parse("--steps", "7")
    assert opts.config_from_args(Demo, args, steps=8).steps == 8
    for argv in (["--sizes", "1,x"], ["--mode", "z"], ["--steps", "1.5"], ["--names", ",a"], ["--sizes", "5,,6"],
                 ["--rates", "0.5,"]):
        with pytest.raises(SystemExit):
            parse(*argv)
        assert argv[0] in capsys.readouterr().err


def test_help_lists_every_field_with_its_default():
    p, _ = parse()
    text = p.format_help()
    for flag in ("--sizes", "--rates", "--names", "--steps", "--scale", "--mode", "--path", "--fast", "--seed"):
        assert flag in text
    assert "(default 1,2)" in text and "(default none)" in text and "the draws" in text


def test_a_field_without_help_is_refused():
    @dataclass(frozen=True)
    class Bare:
        steps: int = 3

    with pytest.raises(TypeError, match="Bare.steps has no help"):
        parse(cls=Bare)


def test_booleans_take_an_optional_value(capsys):
    for argv, want in ((["--fast"], True), (["--fast", "false"], False), (["--fast", "YES"], True),
                       (["--fast", "0"], False), ([], False)):
        _, args = parse(*argv)
        assert opts.config_from_args(Demo, args).fast is want, argv
    for argv in (["--fast", "maybe"], ["--no-fast"]):
        with pytest.raises(SystemExit):
            parse(*argv)
        assert "fast" in capsys.readouterr().err


@dataclass(frozen=True)
class Renamed:
    sizes: tuple[int, ...] = field(default=(10, 30), metadata={"help": "sizes", "nargs": "*"})
    learning_rate: float = field(default=0.1, metadata={"help": "step size", "flag": "lr"})
    replicates: int = field(default=7, metadata={"help": "curves"})
    seed: int = 0


def test_space_separated_lists_renamed_flags_and_common_fields():
    p, args = parse("--sizes", "5", "50", "--lr", "0.5", cls=Renamed)
    assert opts.config_from_args(Renamed, args) == Renamed((5, 50), 0.5)
    _, args = parse("--sizes", cls=Renamed)
    assert opts.config_from_args(Renamed, args).sizes == ()
    assert opts.flag_of(Renamed, "learning_rate") == "--lr"
    text = p.format_help()
    assert "--learning-rate" not in text and "(default 10 30)" in text
    assert "curves, >= 1 (default 7)" in text and "root random seed" in text  # COMMON: --replicates, --seed
    _, args = parse("--replicates", "3", "--seed", "4", cls=Renamed)
    assert opts.config_from_args(Renamed, args) == Renamed(replicates=3, seed=4)


PRESETS = {"small": {}, "big": {"steps": 30, "seed": 5}}


def test_presets_set_the_starting_values_and_show_in_help():
    p = argparse.ArgumentParser()
    opts.add_config(p, Demo, presets=PRESETS, preset_help="starting values")
    text = p.format_help()
    assert "starting values (default small)" in text and "(default 3; big 30)" in text
    big = opts.config_from_args(Demo, p.parse_args(["--preset", "big"]), presets=PRESETS)
    assert (big.steps, big.seed) == (30, 5)  # the preset's seed too: a common flag not given keeps the preset's
    mixed = opts.config_from_args(Demo, p.parse_args(["--preset", "big", "--steps", "4"]), presets=PRESETS)
    assert (mixed.steps, mixed.seed, mixed.scale) == (4, 5, 1.5)
    assert opts.config_from_args(Demo, p.parse_args([]), presets=PRESETS) == Demo()
    with pytest.raises(SystemExit):
        p.parse_args(["--preset", "huge"])


def test_messages_name_flags_as_typed():
    """A config's ValueError worded for the API names the command's flags: the leading field, fields with an
    underscore anywhere, and the API's ``backend='native'`` (a user trial, 2026-12-05: a float32 refusal said
    "or backend='native'" to a command-line user)."""
    args = argparse.Namespace(config_flags={"gmm_steps": "--gmm-steps", "steps": "--steps"})
    assert opts.with_flags("steps must be >= 1; lower gmm_steps", args) == "--steps must be >= 1; lower --gmm-steps"
    assert opts.with_flags("counts beyond 2**24; use backend='native' (a CPU)", args) == \
        "counts beyond 2**24; use --backend native (a CPU)"
    # a plain word in a formula is a field too, in English it is not (a user trial, 2026-12-06: "from 1 to steps =
    # 5000", "num_models * samples = 48")
    args = argparse.Namespace(config_flags={"until": "--until", "steps": "--steps", "samples": "--samples",
                                            "num_models": "--num-models", "dim": "--dim"})
    assert opts.with_flags("until must be from 1 to steps = 50, got 51", args) == \
        "--until must be from 1 to --steps = 50, got 51"
    assert opts.with_flags("at most num_models * samples = 48", args) == "at most --num-models * --samples = 48"
    assert opts.with_flags("needs dim + 2 = 12 samples; more steps help", args) == \
        "needs --dim + 2 = 12 samples; more steps help"


@pytest.mark.parametrize("value, shown", [("0", False), ("false", False), ("FALSE", False), ("No", False),
                                          ("off", False), (" Off ", False), ("", False), ("1", True), ("yes", True)])
def test_the_progress_variable_reads_any_case(value, shown, monkeypatch):
    """A user trial (2026-12-06): COLLAPSE_JAX_PROGRESS=OFF, FALSE or off left the bars on."""
    from collapse_jax import progress

    monkeypatch.setenv("COLLAPSE_JAX_PROGRESS", value)
    assert progress.enabled() is shown


def test_benchmark_outputs_are_checked_before_the_timing(tmp_path):
    """A user trial (2026-12-06): a benchmark's --out that was a folder failed with IsADirectoryError after all its
    timing."""
    import argparse

    from collapse_jax.cli_options import output_file

    assert output_file(str(tmp_path / "new" / "r.json")) == str(tmp_path / "new" / "r.json")  # made when written
    with pytest.raises(argparse.ArgumentTypeError, match="is a folder; give a file path"):
        output_file(str(tmp_path))
    (tmp_path / "f").write_text("x")
    with pytest.raises(argparse.ArgumentTypeError, match="is a file, not a folder"):
        output_file(str(tmp_path / "f" / "r.json"))


@pytest.mark.parametrize("argv", [
    ["recursions-w2", "--replicates", "5", "--generations", "2"],
    ["recursions-gaussian-fit", "--replicates", "5", "--generations", "2"],
    ["recursions-c2", "--model", "gaussian", "--replicates", "5", "--steps", "2"],
])
def test_a_backend_refusal_is_not_blamed_on_the_size_flags(argv, tmp_path, monkeypatch, capsys):
    """A user trial (2026-12-06): `--backend native` where the kernels did not build said "error: --sizes,
    --linear-base: --backend native needs ...", naming flags that were never given."""
    from collapse_jax import cli
    from collapse_jax import gaussian as G

    def refuse(backend, regime):
        raise ValueError("backend='native' needs the CPU backend and the native kernels")

    monkeypatch.setattr(G, "resolve_backend", refuse)
    assert cli.main([*argv, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert f"collapse-jax {argv[0]}: error: --backend native needs the CPU backend" in err, err
