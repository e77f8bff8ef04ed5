"""What the experiment commands share: the subcommand built from a config dataclass, the Monte Carlo mean with its
95% confidence band, and finishing a run folder with its figure."""

from __future__ import annotations

import math
import sys
import time
from typing import Callable

import numpy as np

from collapse_jax import _checks
from collapse_jax import cli_options as opts
from collapse_jax.results import pyplot  # noqa: F401 - the experiments' figures call runs.pyplot()


def numerics() -> dict:
    """What changes a run's numbers besides its options, for its run folder's configuration (a rerun with another
    precision or backend into the same ``--out`` is refused instead of overwriting the arrays under the old
    ``config.json``): ``x64`` and the backend asked for (``collapse-jax --backend``; ``auto`` by default)."""
    import jax

    from collapse_jax import _native

    return {"x64": bool(jax.config.jax_enable_x64), "backend": _native.preferred_backend()}


def add_command(sub, name: str, config_cls, run: Callable, what: str,
                run_option_notes: dict[str, str] | None = None) -> None:
    """Subcommand ``name`` (``what`` it does, its help line): one flag per field of ``config_cls``
    (:func:`collapse_jax.cli_options.add_config`) and ``--out``; it calls ``run(config, out)`` with the checked
    config and the run folder's path (or None). ``run_option_notes``: see
    :func:`collapse_jax.cli_options.add_run_options`."""
    p = sub.add_parser(name, help=what, description=what)
    opts.add_config(p, config_cls)
    opts.add_out(p, name)
    p.set_defaults(func=lambda args: run(opts.config_from_args(config_cls, args), args.out),
                   **({"run_option_notes": run_option_notes} if run_option_notes else {}))


def check_results_fit(numbers: int, flags: str, what: str = "the results") -> None:
    """A ValueError naming ``flags`` (``--replicates, --steps``) unless ``numbers`` results, with the copy a run
    makes on its way to the host, fit in 80 % of the memory available: checked first, before the schedules are
    built (a user trial, 2026-12-05: ``recursions-w2 --generations 1000000000`` was killed by the system with no
    message, ``recursions-fig2 --steps 100000000`` held 9.8 GB before a word, and a refusal that came later left a
    run folder its corrected command was refused in)."""
    import jax

    need = 2 * int(numbers) * (8 if jax.config.jax_enable_x64 else 4)
    available = _checks.available_memory_bytes()
    if available and need > 0.8 * available:  # (it said "lower them", not by how much: a user trial, 2026-12-06)
        raise ValueError(f"{flags}: {what}, {int(numbers):,} numbers (about {_checks.bytes_text(need)} with the "
                         f"copy a run makes), do not fit in 80% of the {_checks.bytes_text(available)} available; "
                         f"lower their product by a factor of at least {need / (0.8 * available):,.3g}")


def flagged_sizes(check: Callable[[], None], flags: str) -> None:
    """Run ``check`` (a sample-size check of the core, whose ValueError names ``n``) with its message under the
    ``flags`` that set the sizes: the core's ``n`` is no option of these commands."""
    try:
        check()
    except ValueError as exc:
        raise ValueError(f"{flags}: {exc}") from None


def flagged_steps(check_at: Callable[[int], None], steps: int, flags: str, steps_flag: str = "--steps") -> None:
    """:func:`flagged_sizes` of ``check_at(steps)`` (a check of the sample sizes a command's schedules reach in
    ``steps`` generations), naming where it fails the most steps that pass: recursions-fig2 --steps 310 read
    "n_t up to 1.706e+07 exceeds 2**24", a size no option sets (a user trial, 2026-12-07). The sizes grow with
    the steps, so the most that pass are found by bisection."""
    try:
        check_at(steps)
    except ValueError as exc:
        passes, fails = 0, steps
        while fails - passes > 1:
            mid = (passes + fails) // 2
            try:
                check_at(mid)
                passes = mid
            except ValueError:
                fails = mid
        most = f" (at most {steps_flag} {passes} here)" if passes else ""
        raise ValueError(f"{flags}: {exc}{most}") from None


def _at_least_two(name: str, value, why: str) -> int:
    """``value`` as an int, or a ValueError naming ``name`` unless it is an integer >= 2 (one message for 1, 0 and
    -4 alike), ``why`` in parentheses."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 2:
        raise ValueError(f"{name} must be an integer >= 2 ({why}), got {value!r}")
    return int(value)


def at_least_two_replicates(value) -> int:
    """``value`` as an int, or a ValueError naming ``replicates`` unless it is >= 2 (a confidence band needs two)."""
    return _at_least_two("replicates", value, "a confidence band needs two")


def at_least_two_categories(value) -> int:
    """``value`` as an int, or a ValueError naming ``categories`` unless it is >= 2 (K of a multinomial)."""
    return _at_least_two("categories", value, "K of the multinomial")


def mean_ci(losses):
    """Mean over replicates (axis 0) and the half-width of its 95% confidence interval (Student t). NaN entries (a
    failed fit's risks) are left out step by step: each step's mean is over the replicates finite there (NaN where
    fewer than 2 are)."""
    from scipy import stats

    if not np.isnan(losses).any():
        half = stats.t.ppf(0.975, losses.shape[0] - 1) * losses.std(0, ddof=1) / np.sqrt(losses.shape[0])
        return losses.mean(0), half
    count = np.sum(~np.isnan(losses), axis=0)
    # (steps with fewer than 2 finite values: NaN)
    with _checks.ignoring_warnings(RuntimeWarning), np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count >= 2, np.nanmean(losses, axis=0), np.nan)
        half = stats.t.ppf(0.975, count - 1) * np.nanstd(losses, axis=0, ddof=1) / np.sqrt(count)
    return mean, np.where(count >= 2, half, np.nan)


def band(ax, t, losses, color, label, theory=None, ls="--", lw=1.0):
    """Mean over replicates with a 95% confidence band for the mean (Student t); ``theory`` (optional, per t): its
    curve in the same colour, line style ``ls``, width ``lw``. The quantities drawn are positive, and a band whose
    lower edge reaches 0 or below (few replicates, heavy tails) is drawn down to a thousandth of the mean: the
    edge 1e-300 it was drawn to before stretched a log axis over 300 decades and flattened every curve on it."""
    mean, half = mean_ci(losses)
    ax.plot(t, mean, color=color, lw=1.4, label=label)
    with np.errstate(invalid="ignore"):
        floor = np.where(mean > 0, mean * 1e-3, np.nan)
        lower = np.where(mean - half > floor, mean - half, floor)
    ax.fill_between(t, lower, mean + half, color=color, alpha=0.25, lw=0)
    if theory is not None:
        ax.plot(t, theory, color=color, ls=ls, lw=lw)


def agreement(mc, theory):
    """Per-step Monte Carlo mean, 95% half-width, theory and whether theory lies inside the interval."""
    mean, half = mean_ci(mc)
    return {"mc_mean": mean, "ci_half_width": half, "theory": theory, "inside": np.abs(mean - theory) <= half}


def finish(run, fig, filename: str, command: str, start: float, summary: dict | None = None) -> int:
    """Save the figure, mark the run complete with its wall time (and ``summary``), and say where it went."""
    run.save_figure(fig, filename)
    pyplot().close(fig)
    elapsed = time.perf_counter() - start
    run.finish({"elapsed_s": elapsed, **(summary or {})})
    jax_parts = _jax_parts(summary or {})
    from collapse_jax import _native

    if jax_parts and _native.preferred_backend() == "native":  # (ran them on JAX without a word; a user trial)
        print(f"{command}: --backend native: {', '.join(jax_parts)} ran the JAX kernel (no native one exists)",
              file=sys.stderr)
    print(f"{command}: {run.path} ({elapsed:.1f} s end to end)")
    return 0


def _jax_parts(summary: dict, name: str = "") -> list[str]:
    """The parts of a run that ran the JAX kernel, by the ``kernel`` records in its summary (a name, or dicts of
    names by model and regime; at the top or within a part's own entry)."""
    def named(kernel, where: str) -> list[str]:
        if isinstance(kernel, dict):
            return [part for key, value in kernel.items() for part in named(value, f"{where} {key}".strip())]
        return [where or "the simulator"] if kernel == "jax" else []

    parts = named(summary["kernel"], name) if "kernel" in summary else []
    return parts + [part for key, value in summary.items() if key != "kernel" and isinstance(value, dict)
                    for part in _jax_parts(value, f"{name} {key}".strip())]


# Above this share of the Monte Carlo sum held by the largest 1 % of runs, the normal interval of the mean is not
# trusted (measured at the last generation: 0.10-0.17 where the exact law sits inside it, 0.42-0.68 at M = 5-10
# after 30-50 generations, where it fell outside at one seed and inside at the next; a user trial, 2026-12-06;
# recursions-w2 and recursions-gaussian-fit)
HEAVY_TAIL_SHARE = 0.25
HEAVY_TAIL_MIN_RUNS = 100  # below, the top 1 % is one run, which holds more than 0.25 of light-tailed sums too (the
# largest of 10 exponentials: about 0.3; a review, 2026-12-06): no verdict


def heavy_tailed(share: float, num_runs: int) -> bool:
    """Whether the normal interval of the mean is not trusted: :func:`top_share` above HEAVY_TAIL_SHARE, judged from
    HEAVY_TAIL_MIN_RUNS runs on."""
    return num_runs >= HEAVY_TAIL_MIN_RUNS and share > HEAVY_TAIL_SHARE


def top_count(num_runs: int, fraction: float = 0.01) -> int:
    """How many runs :func:`top_share` sums: the largest ``fraction`` of them, at least one."""
    return max(1, int(num_runs * fraction))


def top_share(values, fraction: float = 0.01) -> float:
    """Share of ``sum(values)`` held by the largest ``fraction`` of them (at least one; NaN when they sum to 0)."""
    values = np.sort(np.asarray(values, dtype=np.float64))[::-1]
    total = values.sum()
    return float(values[:top_count(len(values), fraction)].sum() / total) if total else math.nan


def largest_runs(num_runs: int) -> str:
    """The runs :func:`top_share` sums, in words: "1% of runs", or their count where that is not 1 % (fewer than 100
    runs: "1% of runs" was one run of 10; a review, 2026-12-06)."""
    k = top_count(num_runs)
    return "1% of runs" if k == num_runs / 100 else f"{k} of {num_runs} runs"
