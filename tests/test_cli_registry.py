"""The command registry: core commands plus those other packages register in the entry-point group."""

import argparse
import os
import sys
import importlib.metadata

import pytest

from collapse_jax import _checks, cli
from native_support import needs_native

pytestmark = pytest.mark.fallback  # also runs in the pure-JAX pass (COLLAPSE_JAX_NATIVE=0)


def test_llm_bridge_registers_nanogpt_through_the_entry_point_group():
    names = {e.name: e.value for e in importlib.metadata.entry_points(group=cli.ENTRY_POINT_GROUP)}
    assert names.get("nanogpt") == "llm_bridge.nanogpt_cli"


def test_registered_commands_parse(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["nanogpt", "train", "--help"])
    assert exc.value.code == 0
    assert "--resume" in capsys.readouterr().out


def test_building_the_command_line_imports_no_model_framework():
    """``collapse-jax --help`` and every refusal of a bad flag come before Flax, Optax's models, torch or
    transformers are imported (they cost most of a second): the LLM commands' parsers are built from flax-free
    configuration modules and import their runs when they run."""
    import subprocess
    import sys

    code = ("import sys; from collapse_jax import cli; cli.build_parser(); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'flax', 'orbax', 'torch', 'transformers'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_info_says_why_no_jax_backend_started(capsys, monkeypatch):
    """A user trial (2026-12-06): with JAX_PLATFORMS=cuda on a CPU machine, `info` printed "jax None / jaxlib None,
    backend None" (JAX raised a bare AssertionError) and dropped the reason."""
    import jax

    def fail():
        raise AssertionError

    monkeypatch.setattr(jax, "default_backend", fail)
    monkeypatch.setenv("JAX_PLATFORMS", "cuda")
    assert cli.main(["info", "--no-build"]) == 0
    text = capsys.readouterr().out
    assert f"jax {jax.__version__} / jaxlib " in text
    assert "no backend started: AssertionError (JAX_PLATFORMS='cuda')" in text


def test_info_reports_devices_cpu_and_native_kernels(capsys):
    import json

    assert cli.main(["info", "--json", "--no-build"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["devices"] and info["cpu_model"]
    # the CPUs this process may use, beside the machine's (a cluster trial, 2026-12-06: a taskset job recorded 2)
    assert info["cpus_usable"] == len(os.sched_getaffinity(0)) and 1 <= info["cpus_usable"] <= info["cpu_count"]
    native = info["native"]
    assert set(native) >= {"enabled", "compiler", "cache_dir", "simulators_library", "spectral_library",
                           "cached_libraries"}  # (--no-build: what an earlier process built)
    assert cli.main(["info"]) == 0  # builds (or reports why not) and prints the text summary
    text = capsys.readouterr().out
    assert "build cache:" in text and "native kernels:" in text
    # the versions a bug report needs, as --json gives them (the text gave jax and numpy only; a user trial)
    assert text.startswith(f"collapse-jax {info['collapse-jax']}") and f"optax {info['optax']}" in text
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    printed = capsys.readouterr()
    # the version, and a checkout's commit (a user trial: a bug report from an editable install could not say which
    # code ran)
    where = (f" (git {info['git_commit'][:12]}{', with changes' if info.get('git_dirty') else ''})"
             if info.get("git_commit") else "")
    assert exc.value.code == 0 and printed.out.strip() == f"collapse-jax {info['collapse-jax']}{where}"


def _commands(parser, path=()):
    """(command path, parser) of every subcommand at every depth (``nanogpt train`` included)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from _commands(sub, (*path, name))


def test_every_option_of_every_command_has_help_and_help_works(capsys):
    commands = dict(_commands(cli.build_parser()))
    assert {("gmm-network",), ("validate",), ("recursions-fig2",), ("recursions-fig3",), ("recursions-c2",),
            ("recursions-linreg",), ("recursions-w2",), ("sigma-precision",), ("info",), ("nanogpt",),
            ("nanogpt", "train"), ("llm-web",), ("recursive-train",)} <= set(commands)
    missing = {path: [a.option_strings for a in p._actions if a.option_strings and not (a.help or "").strip()]
               for path, p in commands.items()}
    assert not {k: v for k, v in missing.items() if v}, missing
    for path, p in [((), None), *commands.items()]:  # (the top level lists every command's help, %-formatted: a
        # percent sign in one broke `collapse-jax --help` for all; a user trial, 2026-12-06)
        with pytest.raises(SystemExit) as exc:
            cli.main([*path, "--help"])
        assert exc.value.code == 0, path
        text = capsys.readouterr().out
        assert text.startswith(f"usage: collapse-jax {' '.join(path)}".rstrip()), path
        if p is None:
            continue
        for action in p._actions:
            for flag in action.option_strings:
                assert flag in text, (path, flag)


@pytest.mark.parametrize("argv, flag", [
    (["gmm-network", "--mu", "1,2,3"], "argument --mu: '1,2,3' is not JSON"),
    (["gmm-network", "--preset", "fig5"], "argument --preset: invalid choice"),
    (["gmm-network", "--backend", "gpu"], "argument --backend: invalid choice"),
    (["phase", "filter", "--cells-per-chunk", "two"], "argument --cells-per-chunk: invalid int value"),
    # a user trial (2026-12-05): an empty --out (an unset shell variable) wrote into the current folder
    (["recursions-w2", "--out", ""], "argument --out: must name a folder, got an empty path"),
    (["sweep", "x.toml", "--out", " "], "argument --out: must name a folder"),
])
def test_command_line_errors_name_the_flag(argv, flag, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert flag in capsys.readouterr().err


def test_a_network_of_one_model_is_warned_about(tmp_path, monkeypatch):
    """A user trial (2026-12-07): --models 1 printed ||D|| = 0 at every step without a word. (The run is stopped
    after the note, before any compile: a stand-in for the size check that follows it refuses.)"""
    from collapse_jax import gmm_network

    def stop(*args, **kwargs):
        raise ValueError("stopped by the test")

    monkeypatch.setattr(gmm_network, "check_problem_size", stop)
    with pytest.warns(UserWarning) as caught:
        assert cli.main(["gmm-network", "--models", "1", "--out", str(tmp_path / "one")]) == 2
    said = [str(w.message) for w in caught
            if "||D||_F, the distance between the models' weights, is 0" in str(w.message)]
    assert len(said) == 1 and said[0].startswith("--models 1: "), said


def test_bad_values_are_rejected_before_anything_runs(tmp_path, capsys):
    out = tmp_path / "never"
    assert cli.main(["gmm-network", "--beta", "1.5", "--out", str(out)]) == 2
    assert "beta" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("argv, message", [
    (["validate", "--seed", "-2"], r"seed must be an integer in \[0, 2\*\*63 - 1\], got -2"),
    (["validate", "--doc", "."], "doc '.' is a folder"),
    (["validate", "--doc", "/nonexistent-folder-x/v.md"], "its folder '/nonexistent-folder-x' does not exist"),
    (["recursions-fig2", "--seed", "-1"], r"seed must be an integer in \[0, 2\*\*63 - 1\], got -1"),
    (["recursions-fig2", "--categories", "1"], "categories must be an integer >= 2"),
    (["recursions-linreg", "--seed", "-1"], r"seed must be an integer in \[0, 2\*\*63 - 1\], got -1"),
    (["recursions-w2", "--seed", "-1"], r"seed must be an integer in \[0, 2\*\*63 - 1\], got -1"),
    # (B = 1 runs with the default c since 2026-12-05, c unused at k_t = 0; here k_2 = 1 gives B c = 1)
    (["gmm-network", "--mu", "[5]", "--models", "1", "--points-per-step", "1"],
     r"with num_components B = 1 it fails at t = 2, where k_t = floor\(beta \|A\(t\)\|\) = 1"),
    (["sigma-precision", "--quick", "--dims", "-8"], "--quick sets --dims, .*; drop --dims or --quick"),
    # a user trial (2026-12-06): taken, a run folder made
    (["sigma-precision", "--quick", "--threads", str(10**30)], "--threads must be an integer from 1 to 4096"),
    (["sigma-precision", "--embeddings", "/nonexistent-file-x.npy"], "embeddings file .* does not exist"),
    # a second audit (2026-12-02): these crashed after the run folder existed, or ran into NaN results
    (["sigma-precision", "--ratios", "1,inf"], r"--ratios must lie in \[1\.0, inf\)"),
    (["sigma-precision", "--families", "", "--dims", "8"], "no cells to run"),
    (["sigma-precision", "--num-points", "2000000000", "--dims", "384"],
     "the sweep needs about .* GiB .* lower --num-points"),
    # (2026-12-05: it ended "or run in chunks", though every replicate's records come to the host in any case)
    (["gmm-network", "--replicates", "100000000000"], r"--replicates = 100,000,000,000 needs about .* GiB .* "
                                                      r"use at most [\d,]+$"),
    # 2026-12-05, a user trial: these printed the option without its dashes, or were accepted and had no effect
    (["gmm-network", "--replicate-batch", "0"], "gmm-network: error: --replicate-batch must be"),
    (["gmm-network", "--paper-replicates", "-1"], "gmm-network: error: --paper-replicates must be"),
    (["gmm-network", "--pi-ref", "[0.5, 0.5]"], "--pi-ref weights the human points' GMM only, and --human is 0"),
    # 2026-12-05, a user trial: inf passed the range check, then failed as a rank-deficient Gram naming no option
    (["sigma-precision", "--dims", "8", "--condition-number", "inf"], r"--condition-number must lie in \[1.0, "),
    # an option that is no config field is named as its flag too (it read "until must be ...")
    (["llm-web", "--until", "-1"], "error: --until must be an integer >= 1, got -1"),
    # a user trial (2026-12-06): 0 made a run folder and stopped at once
    (["recursive-train", "--until", "0"], "error: --until must be an integer >= 1, got 0"),
    (["recursions-w2", "--sizes", "1"], "error: --sizes: every M must be"),  # (a field name then a colon: 2026-12-05)
    (["gmm-network", "--seed", str(2**63)], r"seed must be an integer in \[0, 2\*\*63 - 1\]"),
    (["validate", "--replicates", "1"], "replicates must be an integer >= 2"),
    (["validate", "--replicates", "0"], "replicates must be an integer >= 2"),
    (["validate", "--replicates", "10000000000000"], r"--replicates must be at most 2\*\*32"),  # (2026-12-05: it
    # wrote the run folder's config.json, then named first_replicate + num_replicates)
    (["validate", "--steps", "5"], "steps must be an integer >= 20"),   # (a third audit: false "no" rows at T = 2)
    # a user trial (2026-12-06): refused after the run folder existed, as "n_t ... exceeds 2**53 ... lower n_t"
    # a user trial (2026-12-06): it ran the JAX kernel with config.json saying "native"
    (["recursions-linreg", "--backend", "native"], "--backend native does not apply here: the linear-regression "
                                                   "recursion has only a JAX kernel"),
    (["validate", "--steps", "189"], r"--steps must be at most 188 \(a check's sizes n_t = 10 \* 1.2\^t"),
    # a third audit (2026-12-04): an empty --ratios / --blocks, repeated dims / families
    (["sigma-precision", "--dims", "8", "--ratios="], "ratios must name at least one block size ratio"),
    (["sigma-precision", "--dims", "8", "--blocks="], "blocks must name at least one count"),
    (["sigma-precision", "--dims", "8,8"], "dims must not repeat a value, got 8, 8"),
    (["sigma-precision", "--dims", "8", "--ratios", "2,2"], "ratios must not repeat a value, got 2.0, 2.0"),
    (["sigma-precision", "--dims", "8", "--families", "isotropic,isotropic"], "families must not repeat a value"),
    # 2026-12-05: an unknown family read "unknown family 'foo'; choose from ...", naming no flag
    (["sigma-precision", "--dims", "8", "--families", "foo"], "--families must be among isotropic, .*; got unknown "
                                                              "family 'foo'"),
    (["recursions-fig3", "--replicates", "1"], "replicates must be an integer >= 2"),
    # a user trial (2026-12-06): a folder read "does not exist"; "" trained on the working folder's text; one
    # missing --hf folder read "--num-models must be >= 2"
    (["sweep", "/tmp"], "sweep specification '/tmp' is a folder; give the .toml file"),
    (["nanogpt", "train", "--preset", "tiny", "--data", ""], "--data must be 'stdlib' or a .txt file or folder, got an "
                                                             "empty string"),
    (["llm-web", "--hf", "/nonexistent-model-x"], "--hf model folder '/nonexistent-model-x' does not exist"),
    (["recursions-c2", "--replicates", "1"], "replicates must be an integer >= 2"),
    (["gmm-network", "--steps", "0"], r"error: --steps must be an integer >= 1"),
    # a user trial (2026-12-05): a segfault in the native kernel at 100,000 models; --points-per-step 1e8 grew to
    # 15.8 GB before it was killed; --human 1e9 an XLA out-of-memory traceback; each after its run folder was made
    (["gmm-network", "--models", "100000", "--replicates", "1"],  # (the portable kernel's words without native)
     r"--models = 100,000 with --points-per-step = 3, --steps = 200 .* (native kernel's copies|one replicate per)"),
    (["--backend", "jax", "gmm-network", "--models", "100000", "--replicates", "1"], r"one replicate per device"),
    (["gmm-network", "--points-per-step", "100000000", "--steps", "3"], r"\|A\(T\)\| = 900,000,000 points.* "
                                                                      r"lower --models, --points-per-step, --steps"),
    (["gmm-network", "--human", "1000000000", "--replicates", "1"], r"--human = 1,000,000,000 .* needs about"),
    # a user trial (2026-12-06): "do not fit ...; lower them" said not by how much
    (["recursions-fig2", "--replicates", "100000000000"], r"--replicates, --steps: the results, [\d,]+ numbers .* "
                                                          r"lower their product by a factor of at least [\d.e+]+$"),
    # 2026-12-04: a cell's per-block statistics are held in memory (720 bytes a block with the 10 default ratios)
    (["sigma-precision", "--dims", "8", "--blocks", "1000000000"], r"blocks \(per-block statistics .*\) = "
                                                                   "1,000,000,000 needs about .* GiB"),
])
def test_more_bad_values_are_rejected_before_anything_runs(argv, message, tmp_path, capsys, monkeypatch):
    """Found by an audit: each of these ran, or failed late with a message that named no flag."""
    import re

    monkeypatch.chdir(tmp_path)
    assert cli.main([*argv, "--out", str(tmp_path / "never")]) == 2
    assert re.search(message, capsys.readouterr().err.strip())
    assert not (tmp_path / "never").exists() and not (tmp_path / "runs").exists()


def test_an_embeddings_file_that_is_no_npy_array_is_named_as_such(tmp_path, capsys):
    """A user trial (2026-12-07): a text file was refused with NumPy's "pickled (object) data ... load it unsafely"
    (np.load takes any file without the .npy header for a pickle)."""
    import numpy as np

    (tmp_path / "text.npy").write_text("hello\n")
    np.savez(tmp_path / "arrays.npz", x=np.ones((30, 4)))
    for name, what in (("text.npy", "is not a NumPy .npy file (no .npy header)"), ("arrays.npz", "is a .npz archive")):
        argv = ["sigma-precision", "--families", "", "--dims", "", "--embeddings", str(tmp_path / name)]
        assert cli.main([*argv, "--out", str(tmp_path / "never")]) == 2
        err = capsys.readouterr().err
        assert what + "; save one (N, d) array with numpy.save" in err and "pickle" not in err
        assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("raised, code, message", [
    (_checks.MissingExtraError("llm_bridge needs 'tokenizers'; install the optional llm extra"), 2,
     "collapse-jax info: error: llm_bridge needs 'tokenizers'; install the optional llm extra\n"),
    (KeyboardInterrupt(), 130, "collapse-jax info: interrupted"),
])
def test_a_missing_extra_and_ctrl_c_are_one_line_not_a_traceback(raised, code, message, capsys, monkeypatch):
    from collapse_jax import info_cli

    def fail(args):
        raise raised

    monkeypatch.setattr(info_cli, "run", fail)
    assert cli.main(["info"]) == code
    err = capsys.readouterr().err
    assert err.startswith(message) and "Traceback" not in err and len(err.splitlines()) == 1


def test_the_interrupt_hint_names_the_run_folder(capsys, monkeypatch, tmp_path):
    """A user trial (2026-12-06): Ctrl-C in ``nanogpt train --out intr`` said "continue it with ... --resume --out
    RUN"; the hint now names the folder given."""
    from llm_bridge import nanogpt_cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(nanogpt_cli, "cmd_train", interrupted)
    out = tmp_path / "my run"
    assert cli.main(["nanogpt", "train", "--preset", "tiny", "--out", str(out)]) == 130
    assert f"nanogpt train --resume --out '{out}'" in capsys.readouterr().err


def test_resumable_commands_say_how_to_resume_after_ctrl_c(capsys, monkeypatch, tmp_path):
    """A user trial (2026-12-06): gmm-network, sigma-precision and recursive-train said only "a command that
    resumes continues from them when rerun ..."; they now say what to run, with the folder, also a time-stamped
    one made by the command."""
    from collapse_jax import gmm_network_cli
    from collapse_jax.results import RunFolder

    def interrupted(options, out, **_):
        RunFolder.create("gmm-network-fig4", out, root=tmp_path)
        raise KeyboardInterrupt

    monkeypatch.setattr(gmm_network_cli, "run", interrupted)
    assert cli.main(["gmm-network", "--replicates", "10"]) == 130
    err = capsys.readouterr().err
    made = next(tmp_path.iterdir())
    assert (f"continue it: rerun the same command with --out {made} (the batches finished so far are kept, with the "
            "one a first Ctrl-C let finish)") in err, err
    for argv in (["sigma-precision", "--help"], ["recursive-train", "--help"]):
        parser = cli.build_parser()
        args = parser.parse_args([argv[0]])
        assert "rerun the same command with --out RUN" in args.interrupt_hint


def test_an_interrupted_console_script_leaves_without_the_interpreter_teardown(capsys, monkeypatch):
    """An audit (2026-12-04): after Ctrl-C a native kernel could still run in XLA's threads, and the interpreter's
    teardown under it crashed (SIGSEGV in 1-3 of ~10 interrupted sweeps): the console script (argv None) leaves
    through os._exit(130) after flushing; a call with argv (tests, scripts) still returns 130."""
    import os
    import sys

    from collapse_jax import info_cli

    def interrupted(args):
        raise KeyboardInterrupt

    exits = []

    def fake_exit(code):
        exits.append(code)
        raise SystemExit(code)

    monkeypatch.setattr(info_cli, "run", interrupted)
    monkeypatch.setattr(os, "_exit", fake_exit)
    monkeypatch.setattr(sys, "argv", ["collapse-jax", "info"])
    with pytest.raises(SystemExit):
        cli.main()
    assert exits == [130]
    assert cli.main(["info"]) == 130 and exits == [130]


@pytest.mark.parametrize("argv, note", [
    (["sigma-precision", "--backend", "native", "--quick"], "chosen by --engine"),
    (["--backend", "jax", "sigma-precision", "--quick"], "chosen by --engine"),  # before the command name too
    (["nanogpt", "train", "--backend", "native", "--steps", "1"], "one JAX implementation"),
    (["recursive-train", "--backend", "jax"], "one JAX implementation"),
])
def test_a_backend_the_command_does_not_use_is_refused_not_ignored(argv, note, tmp_path, capsys):
    """--backend chooses simulator kernels; where a command has none (or chooses them with its own flag), a
    --backend other than auto was silently ignored: now an error before anything runs, and --help says so."""
    assert cli.main([*argv, "--out", str(tmp_path / "never")]) == 2
    err = capsys.readouterr().err
    assert "does not apply here" in err and note in err and "Traceback" not in err
    assert not (tmp_path / "never").exists()
    with pytest.raises(SystemExit):
        cli.main([a for a in argv if a not in ("--backend", "native", "jax", "--quick", "--steps", "1")] + ["--help"])
    assert note in " ".join(capsys.readouterr().out.split())


def test_a_folder_that_cannot_be_written_is_one_line(tmp_path, capsys, monkeypatch):
    """A user trial (2026-12-05): a read-only --out gave a 30-line PermissionError traceback (exit 1) for
    recursions-w2, sigma-precision and validate; any OSError a command meets is now one line naming the file."""
    from collapse_jax import results

    def denied(*args, **kwargs):  # (as root, permissions are not enforced: the first write fails as it would)
        raise PermissionError(13, "Permission denied", str(tmp_path / "ro" / "config.json"))

    monkeypatch.setattr(results.tempfile, "mkstemp", denied)
    assert cli.main(["recursions-w2", "--generations", "2", "--replicates", "20", "--out", str(tmp_path / "ro")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"collapse-jax recursions-w2: error: cannot use {str(tmp_path / 'ro' / 'config.json')!r}: " \
                  "Permission denied"


def test_a_jax_backend_that_cannot_start_is_one_line(monkeypatch, capsys, tmp_path):
    """A user trial (2026-12-06): JAX_PLATFORMS=cuda on a CPU machine ended every command in a bare AssertionError
    traceback from JAX's backend start; other AssertionErrors still propagate."""
    import jax

    namespace = {}
    exec(compile("def fail(*args, **kwargs):\n    raise AssertionError\n", "/site/jax/_src/xla_bridge.py", "exec"),
         namespace)
    monkeypatch.setattr(jax, "default_backend", namespace["fail"])
    monkeypatch.setenv("JAX_PLATFORMS", "cuda")
    argv = ["recursions-w2", "--replicates", "10", "--generations", "3", "--out", str(tmp_path / "w2")]
    assert cli.main(argv) == 2
    assert capsys.readouterr().err.strip() == (
        "collapse-jax recursions-w2: error: JAX could not start a backend for JAX_PLATFORMS='cuda' (is that "
        "platform's jax plugin installed?); `collapse-jax info` shows what JAX finds")

    exec(compile("def fail(*args, **kwargs):\n    raise RuntimeError(\"Unable to initialize backend 'tpu'\")\n",
                 "/site/jax/_src/xla_bridge.py", "exec"), namespace)  # (tpu, a typo: a RuntimeError; a review)
    monkeypatch.setattr(jax, "default_backend", namespace["fail"])
    monkeypatch.setenv("JAX_PLATFORMS", "tpu")
    assert cli.main(argv) == 2
    assert "JAX could not start a backend for JAX_PLATFORMS='tpu' (is that platform's jax plugin installed?) " \
           "(Unable to initialize backend 'tpu')" in capsys.readouterr().err

    def other(*args, **kwargs):
        raise AssertionError("not JAX's")

    monkeypatch.setattr(jax, "default_backend", other)
    with pytest.raises(AssertionError, match="not JAX's"):
        cli.main(argv)


def test_the_console_script_survives_odd_consoles(tmp_path):
    """A user trial (2026-12-06): ``python3 -OO`` broke every command, even ``--help`` (a module docstring is None
    there); under PYTHONIOENCODING=ascii a finished run printed its non-ASCII --out path, failed with "'ascii' codec
    can't encode" and exit status 2; ``| head -c 0`` gave "error: [Errno 32] Broken pipe", status 2."""
    import subprocess

    if os.environ.get("COLLAPSE_JAX_NATIVE") == "0":  # (its run compiles the JAX path there: 32 s of a 2-min pass)
        pytest.skip("nothing here depends on the native kernels: the main pass checks it")

    def run(*args, env=None, **kw):
        return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                              env={**os.environ, **(env or {})}, **kw)

    assert run("-OO", "-m", "collapse_jax.cli", "--help").returncode == 0
    out = tmp_path / "résultats_日本"
    done = run("-m", "collapse_jax.cli", "recursions-fig3", "--replicates", "5", "--steps", "2", "--no-progress",
               "--out", str(out), env={"PYTHONIOENCODING": "ascii"})
    assert done.returncode == 0, done.stderr
    assert "r\\xe9sultats_\\u65e5\\u672c" in done.stdout and (out / "manifest.json").exists()
    reader = subprocess.Popen([sys.executable, "-m", "collapse_jax.cli", "info", "--no-build"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    reader.stdout.close()                                  # the reader of the output goes away at once
    assert reader.wait() == 141 and reader.stderr.read() == b""


def test_disabled_jit_is_said(capsys):
    """A user trial (2026-12-06): with JAX_DISABLE_JIT=1 a run of seconds sat at 0 % for minutes without a word."""
    import jax

    with jax.disable_jit():
        assert cli.main(["info", "--no-build"]) == 0
    err = capsys.readouterr().err
    assert "collapse-jax info: warning: JAX_DISABLE_JIT is set, so every kernel runs op by op" in err


@pytest.mark.parametrize("launch", [["collapse_jax.cli", "sweep"], ["collapse_jax.sweep_cli"]])
def test_a_ctrl_c_while_jax_imports_is_one_line(tmp_path, launch):
    """A user trial (2026-12-07): a Ctrl-C during start-up (``python -m collapse_jax.cli sweep ...``), before any
    handler of the command line was installed, ended in a traceback raised inside importlib; now one line and exit
    status 130. The press lands, every time, as ``import jax`` starts (sitecustomize adds a finder that raises).
    Also from the launchers of single commands (``python -m collapse_jax.sweep_cli``: a traceback until a review)."""
    import subprocess
    from pathlib import Path

    (tmp_path / "sitecustomize.py").write_text(
        "import sys\n\n\nclass Pressed:\n    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'jax':\n            raise KeyboardInterrupt\n\n\nsys.meta_path.insert(0, Pressed())\n")
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-m", *launch, "s.toml", "--out", "o"], cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{root}"}, capture_output=True,
                          text=True, timeout=120)
    assert done.stderr == "collapse-jax: interrupted while starting (nothing was run or written)\n", done.stderr
    assert done.returncode in (130, -2) and not (tmp_path / "o").exists()


def test_the_early_interrupt_hook_is_the_command_lines_alone(tmp_path, monkeypatch, capsys):
    """A review (2026-12-07): the one-line hook for a Ctrl-C while the command line starts was installed for any
    ``python -m pkg.mod`` whose package imports collapse_jax, and stayed: a user's later Ctrl-C read "interrupted
    while starting (nothing was run or written)" without its traceback. Now only for ``-m collapse_jax[.cli]`` and
    the console script, and cli.main puts the previous hook back once its handlers are in place."""
    import subprocess
    from pathlib import Path

    import collapse_jax

    root = Path(__file__).resolve().parents[1]
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("import collapse_jax\n")
    (tmp_path / "mypkg" / "train.py").write_text("raise KeyboardInterrupt\n")
    done = subprocess.run([sys.executable, "-m", "mypkg.train"], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{root}"}, timeout=120)
    assert "Traceback" in done.stderr and "while starting" not in done.stderr, done.stderr

    def early(*args):
        raise AssertionError("the early hook")

    before = sys.excepthook
    monkeypatch.setattr(collapse_jax, "_EARLY_HOOK", [early, before])
    monkeypatch.setattr(sys, "excepthook", early)
    assert cli.main(["sweep", "--fields", "gaussian"]) == 0
    assert sys.excepthook is before
    capsys.readouterr()


@needs_native  # (the native kernel's one long call; the pure-JAX pass runs the program on the calling thread)
@pytest.mark.parametrize("how", ["SIGTERM", "two Ctrl-C"])
# (preexec_fn forks: JAX warns of a deadlock, which needs the child to take a lock JAX's threads held; it only resets
# a signal and execs)
@pytest.mark.filterwarnings("ignore:os.fork\\(\\) was called:RuntimeWarning")
def test_a_long_kernel_call_is_stopped_at_once(tmp_path, how):
    """A user trial (2026-12-07): `gmm-network --replicates 1 --steps 100000`, one native call of hours, ran on past
    SIGTERM until a SIGKILL (Python handles a signal only between calls, and np.asarray of the running call blocked
    in C). The wait for a call now lets the handler run: SIGTERM stops the command at once (says so, exits 143); a
    first Ctrl-C says at once that the batch is saved first, and a second stops inside the call, without the hint's
    "with the one a first Ctrl-C let finish" (none was)."""
    import signal
    import subprocess
    import time

    from process_support import sigint_as_at_a_terminal

    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "collapse_jax.cli", "gmm-network", "--replicates", "1", "--steps",
                             "100000", "--no-plots", "--progress", "--backend", "native", "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONFAULTHANDLER": "1"},  # (tracebacks on SIGABRT, below)
                            preexec_fn=sigint_as_at_a_terminal)
    try:
        start = time.monotonic()
        while "gmm-network" not in proc.stderr.readline():  # (the bar's first line: the call is about to start)
            assert time.monotonic() - start < 120 and proc.poll() is None, proc.stderr.read()
        time.sleep(3)                                        # (inside the call, which runs for hours)
        with open(f"/proc/{proc.pid}/status") as f:  # (the child's signal masks, for the message below)
            masks = [line.strip() for line in f if line.startswith(("SigBlk", "SigIgn", "SigCgt"))]
        if how == "SIGTERM":
            proc.send_signal(signal.SIGTERM)
        else:
            proc.send_signal(signal.SIGINT)
            time.sleep(2)
            proc.send_signal(signal.SIGINT)
        try:
            status = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:  # (once in a CI run under load, 2026-12-07, with no word of where it was:
            proc.send_signal(signal.SIGABRT)  # every thread's traceback now, from the fault handler)
            proc.wait(timeout=30)
            pytest.fail(f"still running 60 s after the signals ({masks}); its stderr and threads:\n"
                        f"{proc.stderr.read()}")
        err = proc.stderr.read()
    finally:
        proc.kill()
    if how == "SIGTERM":
        assert status == 128 + signal.SIGTERM, err
        assert "collapse-jax gmm-network: stopped by SIGTERM" in err, err
    else:
        assert status == 130, err
        assert "interrupted: saving the 1 replicates running now first (Ctrl-C again to stop without it)" in err, err
        assert "collapse-jax gmm-network: interrupted (files written so far are complete; continue it" in err, err
        assert "let finish" not in err, err


def test_a_scheduler_stop_is_said_and_resumable(tmp_path):
    """A cluster trial (2026-12-06): SIGTERM (a batch scheduler's time limit) or SIGHUP stopped a run with no word in
    its log, which ended at a progress line; now they stop it as Ctrl-C does, say so with the resume hint, and exit
    128 + the signal's number."""
    import signal

    from process_support import signal_once_started

    out = tmp_path / "run"
    status, err = signal_once_started([sys.executable, "-m", "collapse_jax.cli", "gmm-network", "--replicates",
                                       "300000", "--replicate-batch", "1000", "--no-plots", "--progress", "--out",
                                       str(out)], "gmm-network replicates", signal.SIGTERM)
    assert status == 128 + signal.SIGTERM, err
    assert (f"collapse-jax gmm-network: stopped by SIGTERM (files written so far are complete; continue it: rerun the "
            f"same command with --out {out} (the batches finished so far are kept))") in err, err
    assert (out / "config.json").exists() and not (out / "manifest.json").exists()
