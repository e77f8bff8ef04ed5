"""``collapse-jax validate``: theory against Monte Carlo for every theorem and proposition the simulators implement
(:mod:`collapse_jax.validate`), as a table in the run folder and in ``docs/validation.md``."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from collapse_jax import _checks
from collapse_jax.experiments import runs
from collapse_jax.results import RunFolder, atomic_write_text


MIN_STEPS = 20  # below this the asymptotic rows (Cor 3.2, Props 3.4, 3.7) fail by construction
MAX_STEPS = 188  # validate.MAX_STEPS (not imported here: the command's --help would load JAX): n_t = 10 * 1.2^t


@dataclass(frozen=True)
class ValidateConfig:
    """``replicates`` per checked statement, ``steps`` generations of the multinomial checks, ``seed``; ``doc``: a
    second copy of the table ('' for none: a user's run never writes outside its run folder unless asked). Checked on
    creation."""

    replicates: int = field(default=4000, metadata={"help": "Monte Carlo replicates per checked statement (the "
                                                            "linear-regression rows run 16x as many)",
                                                    "minimum": 2})
    steps: int = field(default=30, metadata={"help": f"generations T of the multinomial checks, {MIN_STEPS} to "
                                                     f"{MAX_STEPS} (the limit and asymptotic rows compare r_T with T "
                                                     "-> infinity; a row's n_t = 10 * 1.2^t stays exact to "
                                                     f"t = {MAX_STEPS})"})
    seed: int = 0
    doc: str = field(default="", metadata={"help": "also write the table to this file (the repository's own copy: "
                                               "--doc docs/validation.md)",
                                       "default_help": "none: the run folder only"})

    def __post_init__(self) -> None:
        # (beyond 2**32 the simulators refused it, but only after the run folder existed)
        if runs.at_least_two_replicates(self.replicates) > _checks.REPLICATE_INDICES:
            raise ValueError(f"replicates must be at most 2**32 = {_checks.REPLICATE_INDICES} (replicate indices "
                             f"are 32-bit), got {self.replicates}")
        if _checks.positive_int("steps", self.steps) < MIN_STEPS:  # at T = 2 r_T is 12 SE from r_inf: a false "no"
            raise ValueError(f"steps must be an integer >= {MIN_STEPS} (the fixed-alpha limit and the consistency / "
                             f"improvement rows compare r_T with its T -> infinity behaviour), got {self.steps}")
        if self.steps > MAX_STEPS:  # (found only after the run folder existed, naming n_t; a user trial)
            raise ValueError(f"steps must be at most {MAX_STEPS} (a check's sizes n_t = 10 * 1.2^t stay whole "
                             f"float64 numbers, <= 2**53, up to t = {MAX_STEPS}), got {self.steps}")
        _checks.random_seed("seed", self.seed)
        if self.doc:  # checked now, not after minutes of checks (nor created: a typo'd folder is refused)
            doc = Path(self.doc)
            if doc.is_dir():
                raise ValueError(f"doc {self.doc!r} is a folder; give a file path, e.g. docs/validation.md")
            if not doc.parent.is_dir():
                raise ValueError(f"doc {self.doc!r}: its folder {str(doc.parent)!r} does not exist")


def run(cfg: ValidateConfig, out: str | None) -> int:
    import jax

    jax.config.update("jax_enable_x64", True)  # theory checks run in float64
    from collapse_jax import validate as V

    reps, steps, seed = cfg.replicates, cfg.steps, cfg.seed
    # before the run folder (refused after it, naming num_replicates, the folder then refused the corrected
    # command as "another configuration"; a user trial, 2026-12-07)
    _checks.fits_in_memory("--replicates", reps, V.host_bytes_per_replicate(steps), remedy="(or fewer --steps)")
    start = time.perf_counter()
    folder = RunFolder.create("validate", out)
    folder.start({**runs.numerics(), "command": "validate", "replicates": reps, "steps": steps, "seed": seed})
    caveat = V.small_sample_warning(reps)  # (once the folder is taken: before it, a refused --out got two lines)
    if caveat:
        print(f"warning: {caveat}", file=sys.stderr)
    table = V.run_all(num_replicates=reps, num_steps=steps, seed=seed, extra=V.extra_checks(reps, seed))
    elapsed = time.perf_counter() - start
    bad = [i for i, r in enumerate(table.rows, 1) if not r.agree]
    backend = runs.numerics()["backend"]     # named when not the default: another backend draws another table
    # the installed command with every option that changes the table (it named a source-tree invocation the user
    # had not typed; a user trial, 2026-12-06); manifest.json keeps the command line as typed
    command = (f"collapse-jax validate --replicates {reps} --steps {steps} --seed {seed}"
               + (f" --backend {backend}" if backend != "auto" else ""))
    md = V.render(table, reps=reps, steps=steps, seed=seed, elapsed=elapsed,
                  command=command + (f" --doc {cfg.doc}" if cfg.doc else ""))
    folder.save_text("validation.md", md)
    folder.save_text("validation.csv", table.csv())  # (pandas.read_csv: no Markdown to parse)
    if cfg.doc:
        atomic_write_text(Path(cfg.doc), md)
    print(table.markdown())
    print(f"\n{len(table.rows)} checks, {len(table.rows) - len(bad)} agree, disagreements: {bad or 'none'} "
          f"({elapsed:.0f} s); written to {folder.path}" + (f" and {cfg.doc}" if cfg.doc else ""))
    from collapse_jax import gaussian as G
    from collapse_jax import multinomial as M

    # the kernels that ran (config.json's backend is the one asked for; native and jax draw differently: a user
    # trial, 2026-12-06, found validate the one command without this record)
    kernel = {"multinomial": {r: M.resolve_backend("auto", r) for r in M.REGIMES},
              "gaussian": {r: G.resolve_backend("auto", r) for r in G.REGIMES},
              "linear-regression": "jax", "logistic": "jax", "mixture": "jax"}
    # the exit status a script or CI reads: an exact formula the Monte Carlo rejects (approximation and statement rows
    # may disagree for their own reasons: an approximation's error, too little power; the table says which). Both in
    # the manifest too ("disagree" mixes the kinds; a calibration trial, 2026-12-06)
    failed = [i for i, r in enumerate(table.rows, 1) if r.kind == "exact" and not r.agree]
    folder.finish({"rows": len(table.rows), "disagree": bad, "exact_disagree": failed,
                   "exit_status": 1 if failed else 0, "elapsed_s": elapsed, "kernel": kernel})
    if failed:
        chance = ("about 1 run in 20 exits 1 by chance" if cfg.replicates >= V.FAMILY_WISE_MIN_REPLICATES else
                  f"and with fewer than {V.FAMILY_WISE_MIN_REPLICATES} replicates more often than 1 run in 20 (the "
                  "table's caveat)")
        print(f"exact rows that disagree: {failed}; exit status 1 (the exact rows are judged at a 5 % family-wise "
              f"level, so {chance}: rerun with another --seed before reading it as a defect)", file=sys.stderr)
    return 1 if failed else 0


def add_parser(sub) -> None:
    runs.add_command(sub, "validate", ValidateConfig, run,
                     "theory vs Monte Carlo for every theorem / proposition (writes a table; exit status 1 when "
                     "an exact row disagrees, which a correct theory does in about 1 run in 20: the rows are judged "
                     "at a family-wise error of 0.05)",  # (no percent sign: argparse formats the help with %)
                     run_option_notes={"x64": "no effect: validate turns float64 on itself (its theory checks)"})
