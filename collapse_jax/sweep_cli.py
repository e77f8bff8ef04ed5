"""``collapse-jax sweep SPEC.toml`` (any grid of any simulator) and ``collapse-jax phase NAME`` (the built-in phase
diagrams): run, resume, share between processes or hosts, plot."""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from pathlib import Path

from collapse_jax import _checks, cli_options
from collapse_jax.cli_options import option


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How a sweep runs (never what it computes: results do not depend on these)."""

    resume: bool = option(False, "continue the sweep in --out: run the cells not yet written (a folder holding "
                                 "this sweep is refused without it; an empty one starts it)")
    cells_per_chunk: int | None = option(None, "cells per call of the simulator, >= 1 (at least one block: up to "
                                               "32 cells of the last grid axis); results do not depend on it",
                                         default_help="by the memory budget, and at most 2e7 "
                                                      "replicate-steps of work")
    memory_budget: int | None = option(None, "bytes of records on the host one chunk of cells may hold, at least one "
                                             "cell's (a block of cells always runs); the simulators fit their calls "
                                             "to the device's memory themselves",
                                       default_help="the specification's, else a quarter of the host's memory")

    def __post_init__(self) -> None:
        for name in ("cells_per_chunk", "memory_budget"):
            if getattr(self, name) is not None:
                _checks.positive_int(name, getattr(self, name))


@dataclasses.dataclass(frozen=True)
class Processes:
    """Several processes or hosts (jax.distributed): each process runs its share of the cells into the same
    store."""

    coordinator: str | None = option(None, "address of process 0's coordination service; with --num-processes and "
                                           "--process-id, or detected from Slurm when omitted under srun",
                                     metavar="HOST:PORT", default_help="JAX_COORDINATOR_ADDRESS")
    num_processes: int | None = option(None, "processes in all", default_help="JAX_NUM_PROCESSES")
    process_id: int | None = option(None, "this process, 0 .. num-processes - 1", default_help="JAX_PROCESS_ID")

    def __post_init__(self) -> None:
        if self.coordinator is not None:
            check_coordinator("coordinator", self.coordinator)
        if self.num_processes is not None:
            _checks.positive_int("num_processes", self.num_processes)
        if self.process_id is not None:
            if self.num_processes is None and os.environ.get("JAX_NUM_PROCESSES") is None:
                raise ValueError("--process-id needs --num-processes (or JAX_NUM_PROCESSES)")
            count = self.num_processes if self.num_processes is not None else _checks.env_int("JAX_NUM_PROCESSES", 1)
            if isinstance(self.process_id, bool) or not 0 <= self.process_id < count:
                raise ValueError(f"process_id must be in 0 .. num_processes - 1 = {count - 1}, got {self.process_id}")


@dataclasses.dataclass(frozen=True)
class PhaseOptions:
    """The size of a built-in phase diagram."""

    replicates: int | None = option(None, "replicates per cell",
                                    default_help="the diagram's: 1000, 200 for recursions-subsample")
    steps: int | None = option(None, "steps / generations T, >= 1", default_help="the diagram's: 200, 100 for filter")
    seed: int = 0


def _add_out(parser, name: str) -> None:
    cli_options.add_out(parser, name, what="the sweep's folder",
                        accepts="new or empty; one holding this same sweep is continued with --resume (refused "
                                "without it); one holding another sweep (specification, precision or kernels) or "
                                "other files is refused")


def _run_options(parser) -> None:
    cli_options.add_config(parser, RunOptions)
    parser.add_argument("--no-plots", action="store_true", help="write the dataset only")
    cli_options.add_config(parser.add_argument_group(
        "several processes or hosts (jax.distributed; each process runs its share of the cells into the same "
        "store)"), Processes)


def add_parser(sub) -> None:
    from collapse_jax.phase import SPECS
    from collapse_jax.sweep_models import MODELS

    p = sub.add_parser("sweep", help="run a parameter grid of any simulator from a TOML specification into one "
                                     "labelled zarr dataset (resumable, multi-process)",
                       description=(__doc__ or "") + "\n\nSpecification format: collapse_jax/sweep_spec.py and "
                                             "docs/sweeps.md; list a simulator's parameters with --fields SIMULATOR. "
                                             "A [[zip]] without name is the dimension of its parameters joined by + "
                                             "('alpha0+n0'): xarray's ds.sel takes it as a dict, not as a keyword "
                                             "(name = \"start\" for ds.sel(start=...)).")
    p.add_argument("spec", nargs="?", help="the sweep specification (TOML)")
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                   help="import this Python module first (repeatable; a dotted name, found from the current folder "
                        "too): one that registers your own simulators with collapse_jax.sweep_models.register "
                        "(docs/sweeps.md, 'Your own simulator'); give it again with --resume and in every process")
    p.add_argument("--fields", default=None, metavar="SIMULATOR",
                   help=f"print the parameters a sweep of this simulator ({', '.join(sorted(MODELS))}, or one "
                        "--import registers) can set, and exit")
    _add_out(p, "sweep-SPEC")
    _run_options(p)
    p.set_defaults(func=cmd_sweep)

    q = sub.add_parser("phase", help="a built-in phase diagram (a sweep and its plot): "
                                     + ", ".join(SPECS), description=__doc__)
    q.add_argument("name", choices=sorted(SPECS), help="the diagram: " + "; ".join(
        f"{k}: {v[0]}" for k, v in SPECS.items()))
    cli_options.add_config(q, PhaseOptions)
    _add_out(q, "phase-NAME")
    q.add_argument("--print-spec", action="store_true", help="print the diagram's sweep specification and exit")
    _run_options(q)
    q.set_defaults(func=cmd_phase)


def check_coordinator(name: str, address: str) -> str:
    """``HOST:PORT`` (an IPv6 host in brackets, ``[::1]:1234``) with a port from 1 to 65535, or a ValueError naming
    ``name``: JAX took any string, then raised an IndexError ("notahost"), crashed ("localhost:abc": SIGSEGV) or
    aborted after its timeout ("localhost:99999"; a user trial, 2026-12-07)."""
    host, sep, port = str(address).rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]") and len(host) > 2
    if (not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535
            or (":" in host and not bracketed) or any(c.isspace() for c in host)):
        raise ValueError(f"{name} must be HOST:PORT (process 0's host name or address and a port from 1 to 65535; "
                         f"an IPv6 address in brackets, [::1]:1234), got {address!r}")
    return address


def _process(args) -> tuple[int, int]:
    """(process index, count): from jax.distributed when asked for (flags, environment or Slurm), else (0, 1)."""
    given = cli_options.config_from_args(Processes, args)
    coordinator = given.coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS")
    count = given.num_processes if given.num_processes is not None else _checks.env_int("JAX_NUM_PROCESSES", 1)
    index = given.process_id if given.process_id is not None else _checks.env_int("JAX_PROCESS_ID", 0)
    slurm = (_checks.env_int("SLURM_NTASKS", 1) or 1) > 1
    if coordinator is None and count is None and not slurm:
        return 0, 1
    import jax

    if coordinator is None and not slurm:
        raise ValueError("--coordinator (HOST:PORT of process 0) is needed with --num-processes")
    if coordinator is not None and not given.coordinator:  # (the flag's value is checked with the options)
        check_coordinator("JAX_COORDINATOR_ADDRESS", coordinator)
    if count is None and not slurm:  # (JAX said "Number of processes must be defined."; a user trial, 2026-12-06)
        raise ValueError("--coordinator needs --num-processes (or JAX_NUM_PROCESSES)")
    jax.distributed.initialize(coordinator_address=coordinator,
                               num_processes=None if count is None else int(count),
                               process_id=None if index is None else int(index))
    return jax.process_index(), jax.process_count()


def _execute(spec, args, name: str) -> int:
    from collapse_jax import phase, sweep
    from collapse_jax.results import RunFolder

    options = cli_options.config_from_args(RunOptions, args)
    given = getattr(args, "backend", "auto")
    if given != "auto" and spec.backend != "auto" and given != spec.backend:  # the spec's ran, silently (an audit)
        raise ValueError(f"--backend {given} conflicts with the specification's backend = {spec.backend!r}: give one "
                         "(the specification's 'auto' follows --backend)")
    if options.resume and args.out is None:
        raise ValueError("--resume needs --out RUN, the sweep folder to continue")
    index, count = _process(args)
    if count > 1 and args.out is None:
        raise ValueError("--out is needed with several processes (every process writes into the same folder)")
    found = sweep.check_plan(spec, memory_budget=options.memory_budget)  # before any folder is made
    if index == 0:
        sweep.check_disk(spec, args.out or "runs")
    if "native" in (given, spec.backend) and "jax" in found.split("+"):  # (ran them on JAX without a word; a user
        # trial, 2026-12-06)
        print(f"collapse-jax {args.command}: backend native: the cells without a native kernel run the JAX one "
              f"(kernels: {found})", file=sys.stderr)
    folder = RunFolder.create(name, args.out)
    out = folder.path
    if args.out is None:   # the folder's name was printed only at the end: after a kill, a search through runs/
        print(f"collapse-jax {args.command}: writing {out}", file=sys.stderr, flush=True)
    again = "--resume" if args.out is not None else f"--out {out} --resume"  # (what reruns it, in the messages below)

    def resuming(earlier: int, cells: int) -> None:  # (a resume said nothing until its last line; a cluster trial;
        # said once the store is checked: not for a store then refused, a review)
        print(f"collapse-jax {args.command}: resuming {out}: {earlier:,} of {cells:,} cells done by an earlier run",
              file=sys.stderr, flush=True)

    try:
        report = sweep.run(spec, out, resume=options.resume, on_resume=resuming,
                           process_index=index, process_count=count,
                           cells_per_chunk=options.cells_per_chunk, memory_budget=options.memory_budget)
    except sweep.SweepExists as exc:
        raise sweep.SweepExists(exc.out, exc.done, exc.cells, "--resume") from None
    except KeyboardInterrupt as exc:
        from collapse_jax import cli

        try:
            finished = bool(sweep.cells_done(out).all())
        except Exception:  # noqa: BLE001 - no store yet (stopped while it was made), or one being written
            finished = False
        if finished:  # (it said "to run the others" with 25/25 cells done; a user trial, 2026-12-07)
            left = "manifest.json" if getattr(args, "no_plots", False) else "the plots and manifest.json"
            print(f"collapse-jax {args.command}: {cli.stopped_how(exc)}; every cell was written before it (in "
                  f"{out}): add {again} to the same command to write {left}", file=sys.stderr)
        else:
            print(f"collapse-jax {args.command}: {cli.stopped_how(exc)}; the cells written so far are kept in {out}: "
                  f"add {again} to the same command to run the others", file=sys.stderr)
        return cli.exit_status(exc)
    except OSError as exc:  # a full disk mid-run printed "[Errno 28] No space left on device" alone (a user trial)
        raise ValueError(f"out: writing {str(out)!r} failed ({exc.strerror or exc}); the cells written before are "
                         f"kept: once it can be written, add {again} to the same command to run the others") from None
    print(f"[process {index}/{count}] {report.describe()}" if count > 1 else report.describe())
    print(f"dataset: {report.path}  (xarray.open_zarr)")
    if report.cells_done < report.cells:
        print(f"{report.cells - report.cells_done} cells are left: other processes are running them (the last to "
              "finish writes the plots and manifest.json), or run the same command again with --resume")
        return 0
    # every cell is done: this process finished the last one (or a --resume found them done) and finishes the folder
    if report.cells_run == 0 and index != 0:  # a resume that found every cell done: process 0 finishes the folder
        # (each process set the manifest aside and wrote it again, and the record of the run that computed the cells
        # could be lost between them; a review, 2026-12-07)
        print("every cell was done before this run: process 0 writes the plots and manifest.json")
        return 0
    if not args.no_plots:
        try:
            for path in phase.plot(name, _plottable(sweep.open_dataset(out)), out):
                print(f"plot: {path}")
        except ValueError as exc:  # a sweep without a built-in plot: the dataset is the result
            print(f"no plot: {exc}")
        except Exception as exc:  # a plot that fails must not leave a finished sweep without its manifest
            print(f"collapse-jax {args.command}: the plot failed ({type(exc).__name__}: {exc}); the dataset is "
                  "complete and the folder is finished without it", file=sys.stderr)
    # manifest.json last, as every command's run folder: the sweep is done; with the kernels and precision that ran
    # (config.json keeps the backend asked for, "auto" under --backend native; a user trial, 2026-12-06)
    # cells_run: what this process computed; and the finished run's manifest kept under "earlier": a --resume that
    # found every cell done (a requeued batch job) replaced it with its own, with no word that it computed nothing
    # (an audit, 2026-12-07)
    attrs = sweep.open_dataset(out).attrs
    folder.set_manifest_aside()
    folder.finish({"simulator": spec.simulator, "cells": report.cells, "cells_run": report.cells_run,
                   "replicates": spec.replicates, "seed": spec.seed, "kernel": attrs.get("backend"),
                   "precision": attrs.get("precision")})
    return 0


def _plottable(ds):
    """``ds``, or a ValueError saying why no plot is drawn for it (more axes than a plot shows)."""
    axes = [d for d in ds["cell_done"].dims if d != "regime"]
    if len(axes) > 2:
        raise ValueError(f"plots are drawn for sweeps over 1 or 2 axes (plus regime); this one has {len(axes)} "
                         f"({', '.join(axes)}): select from the dataset with xarray (ds.sel(...)) and plot that")
    return ds


def import_modules(names: list[str]) -> None:
    """Import each module of ``--import`` (the current folder searched too, as ``python -m`` does); a ValueError
    naming a module that does not import."""
    import importlib

    if names and "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ValueError(f"--import {name}: {exc}") from None


def cmd_sweep(args) -> int:
    from collapse_jax import sweep_models, sweep_spec

    import_modules(args.imports)
    if args.fields:
        model = sweep_models.get(args.fields)
        doc = type(model).__doc__ or "(no description: the model class has no docstring)"
        summary = " ".join(doc.strip().split("\n\n")[0].split())  # its first paragraph, whole
        print(f"{args.fields}: {summary}")
        for key, field in model.fields.items():
            print(f"  {key}: {field.describe()}")
        print("records: " + "; ".join(f"{k} ({o.kind}): {o.description}" for k, o in model.outputs.items()))
        return 0
    if not args.spec:
        raise ValueError("spec: give the sweep specification (a TOML file), or --fields SIMULATOR")
    spec = sweep_spec.load(args.spec)
    return _execute(spec, args, f"sweep-{Path(args.spec).stem}")


def cmd_phase(args) -> int:
    from collapse_jax import phase, sweep_spec

    size = cli_options.config_from_args(PhaseOptions, args)
    text = phase.spec_text(args.name, replicates=size.replicates, steps=size.steps, seed=size.seed)
    if args.print_spec:  # shown, then checked: a specification that cannot run is printed with its error and exit
        print(text)     # status 2 (it was printed as if it could; a user trial, 2026-12-06)
    try:
        spec = sweep_spec.parse(text, name=f"phase {args.name}")
    except sweep_spec.SpecError as exc:  # a line of the built-in text the user never saw: name the flag they gave
        found = re.match(r"phase \S+ line \d+: (\S+): (.*)", str(exc), re.S)
        flags = {"fixed.num_steps": "--steps", "fixed.steps": "--steps", "replicates": "--replicates", "seed": "--seed"}
        if not found or found[1] not in flags:
            raise
        raise ValueError(f"{flags[found[1]]} {found[2]} (the built-in specification's {found[1]}; --print-spec "
                         "shows it)") from None
    if args.print_spec:
        return 0
    return _execute(spec, args, f"phase-{args.name}")


def main(argv: list[str] | None = None) -> int:
    """``python3 -m collapse_jax.sweep_cli SPEC.toml ...``: the same as ``collapse-jax sweep SPEC.toml ...``."""
    from collapse_jax.cli import main as cli_main

    return cli_main(["sweep", *(argv if argv is not None else sys.argv[1:])], launched=argv is None)


if __name__ == "__main__":
    sys.exit(main())
