"""``collapse-jax validate``: every theorem / proposition check of the recursions, as one honest table.

Each row is a claim from seed 003 (Theorems 3.1, A.1, D.2, Corollaries 3.2, 3.6, Propositions 3.4, 3.7, 3.8, Remark
D.3, Appendix E; the logistic first-order recurrence and Appendix C.2's empirical statements about the EM mixture and
logistic models), seed 004 (linear regression replace / accumulate, Gaussian W2) or our accumulate-subsample
recurrence (docs/recursions.md), a setting, the Monte Carlo value with its 95% interval (Student t over replicates),
the theory value and whether they agree.

Two kinds of rows:
- ``exact``: an exact closed form or recurrence. Agreement means ``|MC - theory| <= z* se`` with the Bonferroni
  critical value ``z*`` for a 5% family-wise error over all exact and approximation rows (so a correct theory fails
  *some* row with probability at most 5%); the table also says whether the theory lies inside the plain 95%
  interval.
- ``statement``: a qualitative claim without a closed form (a limit, a monotonicity, a bound). The Monte Carlo
  quantity and the claimed threshold are shown; agreement means the whole 95% interval is on the claimed side.
- ``approximation``: an approximate formula (mean-field, first-order); judged like ``exact``, and a disagreement is
  expected where the approximation is poor. It is reported, not hidden.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial
from typing import Callable

import numpy as np

from collapse_jax import multinomial as M
from collapse_jax import schedules as S

# The geometric row's sizes n_t = 10 * 1.2^t stay whole float64 numbers (<= 2**53) up to this many steps; beyond,
# the simulator refuses them (`validate --steps 200` was told "n_t exceeds 2**53 ... lower n_t", a size the user
# cannot set; a user trial, 2026-12-06).
GEOMETRIC_BASE, GEOMETRIC_RATE = 10, 1.2
MAX_STEPS = int(math.log(2**53 / GEOMETRIC_BASE) / math.log(GEOMETRIC_RATE))


@dataclass
class Row:
    claim: str
    setting: str
    kind: str  # exact | approximation | statement
    mc: float
    lo: float
    hi: float
    theory: float
    se: float
    side: str = ""  # statement rows: "<" (MC below theory) or ">" (MC above)
    replicates: int = 0
    agree: bool = False
    in_ci: bool = False
    z: float = float("nan")
    third: float = 0.0  # the samples' third central moment (unbiased), for the skewness-corrected t


@dataclass
class Table:
    rows: list[Row] = field(default_factory=list)

    def add_mean(self, claim, setting, kind, samples, theory, side=""):
        samples = np.asarray(samples, dtype=np.float64)
        r = samples.shape[0]
        mean = float(samples.mean())
        se = float(samples.std(ddof=1) / math.sqrt(r))
        half = _t_quantile(0.975, r - 1) * se
        third = float(np.sum((samples - mean) ** 3) * r / ((r - 1) * (r - 2))) if r > 2 else 0.0
        self.rows.append(Row(claim, setting, kind, mean, mean - half, mean + half, float(theory), se, side, r,
                             third=third))

    def judge(self) -> None:
        """Exact and approximation rows: |z| against the Bonferroni critical value of Student's t with the row's
        replicates - 1 degrees of freedom (with the normal quantile a correct theory failed some row in 39 % of
        tables at 10 replicates; an audit, 2026-12-04), z Hall's skewness-corrected t (:func:`skew_corrected_t`).
        ``zcrit``: the value at the most replicates (the normal one's at the default 4000, to 3 digits)."""
        tested = [row for row in self.rows if row.kind != "statement"]
        critical = partial(t_critical, len(tested))
        for row in self.rows:
            row.in_ci = row.lo <= row.theory <= row.hi
            if row.kind == "statement":
                row.agree = row.hi < row.theory if row.side == "<" else row.lo > row.theory
            else:
                row.z = skew_corrected_t(row)
                row.agree = abs(row.z) <= critical(row.replicates)
        self.zcrit = critical(max((row.replicates for row in tested), default=2))

    def csv(self) -> str:
        """The rows as CSV, one per check, every number at full precision (the table's only machine-readable copy
        was the Markdown, rounded; a user trial, 2026-12-06): ``row`` (the table's #), the :class:`Row` fields."""
        import csv
        import dataclasses
        import io

        out = io.StringIO()
        names = ["row", *(f.name for f in dataclasses.fields(Row))]
        writer = csv.DictWriter(out, fieldnames=names, lineterminator="\n")
        writer.writeheader()
        for i, row in enumerate(self.rows, 1):
            fields = dataclasses.asdict(row)
            if row.kind == "statement":  # (a bound, not an estimate: "in CI" means nothing there, blank as in the
                fields["in_ci"] = ""  # Markdown; a review, 2026-12-06)
            writer.writerow({"row": i, **fields})
        return out.getvalue()

    def markdown(self) -> str:
        lines = ["| # | claim | setting | kind | Monte Carlo [95% CI] | theory | z | in 95% CI | agree |",
                 "|---|---|---|---|---|---|---|---|---|"]
        def cell(text) -> str:  # a "|" in a claim ("E[1/N|N>0]") split its row into one cell too many
            return str(text).replace("|", "\\|")

        for i, row in enumerate(self.rows, 1):
            theory = f"{row.side} {row.theory:.5g}" if row.kind == "statement" else f"{row.theory:.5g}"
            z = "" if row.kind == "statement" else f"{row.z:+.2f}"
            inci = "" if row.kind == "statement" else ("yes" if row.in_ci else "no")
            lines.append(f"| {i} | {cell(row.claim)} | {cell(row.setting)} | {row.kind} | {row.mc:.5g} "
                         f"[{row.lo:.5g}, {row.hi:.5g}] | {theory} | {z} | {inci} | "
                         f"{'yes' if row.agree else '**no**'} |")
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------------------
def _t_quantile(q: float, df: int) -> float:
    """Student-t quantile (``scipy.stats``, imported on first use: at import time it added about 0.4 s to every
    start-up)."""
    from scipy import stats

    return float(stats.t.ppf(q, df))


def _sched(kind: str, value, num_steps: int) -> np.ndarray:
    if kind == "const":
        return S.constant_alpha(value, num_steps)
    if kind == "pow":
        return S.power_decay_alpha(value, num_steps)
    if kind == "log":
        return S.inverse_log_alpha(num_steps)
    raise ValueError(kind)


# The most settings one multinomial_rows call simulates at once (its replace grid): this many float64 losses per
# replicate and step (tests/test_validate.py checks it against the calls)
LARGEST_GRID = 13


def host_bytes_per_replicate(num_steps: int) -> int:
    """Bytes per replicate (of ``--replicates``) of the largest record the table's checks bring to the host at
    ``num_steps``: the multinomial grid's, or from about 23 steps down the linear-regression rows' (16x the
    replicates, 20 iterations each: they were not counted; a review, 2026-12-07). The other models' records are
    smaller (the Gaussian's 31 numbers, the mixture's 22)."""
    from collapse_jax import linear_regression as LR

    return 8 * max(LARGEST_GRID * (num_steps + 1), LR.VALIDATION_REPLICATE_FACTOR * LR.VALIDATION_ITERATIONS)


def multinomial_rows(table: Table, *, num_replicates: int, num_steps: int, seed: int, num_categories: int = 20,
                     progress: bool | None = None) -> None:
    """Seed 003 multinomial checks (all regimes), grouped into one grid call per regime."""
    p = np.random.default_rng(2024).dirichlet(np.full(num_categories, 2.0))
    s = 1 - float(np.sum(p ** 2))
    T = num_steps
    lin = lambda b: S.linear_size(b, T)  # noqa: E731
    quad = lambda b: S.quadratic_size(b, T)  # noqa: E731
    const = lambda b: S.constant_size(b, T)  # noqa: E731

    def run(regime, settings, type1=0.0, type2=0.0):
        alpha = np.stack([a for _, a, _ in settings])
        n = np.stack([m for _, _, m in settings])
        losses = M.simulate(seed, p, alpha, n, M.MultinomialConfig(regime, type1, type2), num_replicates,
                            chunk_size=min(num_replicates, 2500), progress=progress)
        return losses

    # --- replace (Theorem 3.1) and its corollaries -----------------------------------------------------------
    rep = [("alpha=0.5, n=20", _sched("const", 0.5, T), const(20)),
           ("alpha=0.1, n=50", _sched("const", 0.1, T), const(50)),
           ("alpha=t^-1/2, n=10(t+1)", _sched("pow", 0.5, T), lin(10)),
           ("alpha=1/log(t+e), n=5(t+1)^2", _sched("log", None, T), quad(5)),
           ("alpha=0.9, n=3", _sched("const", 0.9, T), const(3)),
           ("alpha=t^-1, n=10*1.2^t", _sched("pow", 1.0, T), S.geometric_size(GEOMETRIC_BASE, GEOMETRIC_RATE, T)),
           ("pure synthetic, n=20", S.pure_synthetic_alpha(T), const(20)),
           ("pure synthetic, n=10(t+1)", S.pure_synthetic_alpha(T), lin(10)),
           ("pure synthetic, n=5(t+1)^2", S.pure_synthetic_alpha(T), quad(5)),
           ("alpha=0.3, n=10", _sched("const", 0.3, T), const(10)),
           ("alpha=0.5, n=10(t+1)", _sched("const", 0.5, T), lin(10)),
           ("alpha=t^-1/2, n=10(t+1)^2", _sched("pow", 0.5, T), quad(10))]
    f_exp = lambda r: float(np.exp(-200.0 * r))  # noqa: E731 - synthetic share falls as the risk grows
    f_rat = lambda r: float(1.0 / (1.0 + 100.0 * r))  # noqa: E731
    a_exp, r_exp = M.adaptive_alpha(p, f_exp, const(20))
    a_rat, r_rat = M.adaptive_alpha(p, f_rat, const(20), regime="accumulate")
    rep.append(("adaptive 1-alpha_t=exp(-200 r_{t-1}), n=20", a_exp, const(20)))
    losses = run("replace", rep)
    for (name, alpha, n), loss in zip(rep[:9], losses[:9]):
        table.add_mean("Thm 3.1 replace recurrence, r_T", name, "exact", loss[:, T], M.replace_risk(p, alpha, n)[T])
    for (name, alpha, n), loss in zip(rep[6:9], losses[6:9]):
        table.add_mean("Cor 3.6 pure synthetic: r_T = s(1 - prod(1 - 1/n_i))", name, "exact", loss[:, T],
                       M.pure_synthetic_limit(p, n)[T])
    table.add_mean("Cor 3.2 / Rem 3.3 fixed-alpha limit r_inf", f"alpha=0.3, n=10, T={T}", "exact",
                   losses[9][:, T], M.fixed_alpha_limit(p, 0.3, 10))
    table.add_mean("Cor 3.2(1) fixed n: never better than r_0 (r_T > r_0)", "alpha=0.3, n=10", "statement",
                   losses[9][:, T], s / 10, side=">")
    table.add_mean("Cor 3.2(1) fixed n: r_T below the collapse level s", "alpha=0.5, n=20", "statement",
                   losses[0][:, T], s, side="<")
    table.add_mean("Cor 3.2(2) fixed alpha, growing n: consistency (r_T < r_0 / 5)", "alpha=0.5, n=10(t+1)",
                   "statement", losses[10][:, T], s / 10 / 5, side="<")
    table.add_mean("Prop 3.4 decaying alpha, n_t fast enough: improvement (r_T < r_0 / 20)",
                   "alpha=t^-1/2, n=10(t+1)^2", "statement", losses[11][:, T], s / 10 / 20, side="<")
    table.add_mean("Cor 3.6 pure synthetic: no improvement (r_T > r_0)", "pure synthetic, n=5(t+1)^2",
                   "statement", losses[8][:, T], s / 5, side=">")
    table.add_mean("App. E adaptive weights: exact recurrence with alpha_t = 1 - f(r_{t-1})",
                   rep[-1][0], "exact", losses[-1][:, T], r_exp[T])
    table.add_mean("Prop E.1 adaptive weights avoid collapse (r_T < s)", rep[-1][0], "statement",
                   losses[-1][:, T], s, side="<")

    # --- accumulate (Theorem A.1) and Propositions 3.7 / 3.8 --------------------------------------------------
    acc = [("alpha=0.5, n=20", _sched("const", 0.5, T), const(20)),
           ("pure synthetic, n=20", S.pure_synthetic_alpha(T), const(20)),
           ("pure synthetic, n=10(t+1)", S.pure_synthetic_alpha(T), lin(10)),
           ("alpha=t^-1/2, n=10(t+1)", _sched("pow", 0.5, T), lin(10)),
           ("alpha=0.2, n=5(t+1)^2", _sched("const", 0.2, T), quad(5)),
           ("adaptive 1-alpha_t=1/(1+100 r_{t-1}), n=20", a_rat, const(20))]
    losses = run("accumulate", acc)
    for (name, alpha, n), loss in zip(acc[:5], losses[:5]):
        table.add_mean("Thm A.1 accumulate recurrence, r_T", name, "exact", loss[:, T],
                       M.accumulate_risk(p, alpha, n)[T])
    table.add_mean("App. E adaptive weights (accumulate): exact recurrence", acc[5][0], "exact", losses[5][:, T],
                   r_rat[T])
    half = T // 2
    table.add_mean("Prop 3.7 accumulate, fixed n: r_T below replace's collapse level s", "pure synthetic, n=20",
                   "statement", losses[1][:, T], s, side="<")
    table.add_mean("Prop 3.7 accumulate, fixed n: eventually increasing (r_T - r_{T/2} > 0)",
                   "pure synthetic, n=20", "statement", losses[1][:, T] - losses[1][:, half], 0.0, side=">")
    table.add_mean("Prop 3.8 accumulate, growing n: eventually increasing (r_T - r_{T/2} > 0)",
                   "pure synthetic, n=10(t+1)", "statement", losses[2][:, T] - losses[2][:, half], 0.0, side=">")
    table.add_mean("Sec 3.1.1 accumulation never improves on r_0 without fresh data (r_T > r_0)",
                   "pure synthetic, n=10(t+1)", "statement", losses[2][:, T], s / 10, side=">")

    # --- accumulate-subsample (issue 11: n_t points drawn without replacement from the accumulated pool) -------
    sub = [("alpha=0.5, n=20", _sched("const", 0.5, T), const(20)),
           ("pure synthetic, n=20", S.pure_synthetic_alpha(T), const(20)),
           ("alpha=t^-1/2, n=10(t+1)", _sched("pow", 0.5, T), lin(10))]
    losses = run("accumulate-subsample", sub)
    for (name, alpha, n), loss in zip(sub, losses):
        table.add_mean("Accumulate-subsample exact recurrence (docs/recursions.md), r_T", name, "exact", loss[:, T],
                       M.accumulate_subsample_risk(p, alpha, n)[T])

    # --- filter (Theorem D.2, Remark D.3) ---------------------------------------------------------------------
    fil = [((0.1, 0.2), "alpha=0.5, n=20", _sched("const", 0.5, T), const(20)),
           ((0.3, 0.5), "alpha=0.3, n=4", _sched("const", 0.3, T), const(4)),
           ((0.05, 0.05), "alpha=t^-1/2, n=10(t+1)", _sched("pow", 0.5, T), lin(10)),
           ((0.5, 0.0), "alpha=0.2, n=10", _sched("const", 0.2, T), const(10)),
           ((0.2, 0.3), "alpha=0.5, n=2000", _sched("const", 0.5, T), const(2000))]
    for (a, b), name, alpha, n in fil:
        loss = run("filter", [(name, alpha, n)], a, b)[0]
        setting = f"a={a}, b={b}, {name}"
        table.add_mean("Thm D.2 filter recurrence (exact E[1/N|N>0]), r_T", setting, "exact", loss[:, T],
                       M.filter_risk(p, alpha, n, a, b)[T])
        if name.endswith("n=4") or name.endswith("n=2000"):
            table.add_mean("Rem D.3 mean-field E[1/N] ~ 1/(n kappa), r_T", setting, "approximation", loss[:, T],
                           M.filter_risk(p, alpha, n, a, b, mean_field=True)[T])


def skew_corrected_t(row: Row) -> float:
    """Hall's (1992) skewness-corrected t of ``row``'s mean against its theory value,
    ``T(u) = sqrt(r) (u + g / (6 r) + g u^2 / 3 + g^2 u^3 / 27)`` with ``u = (MC - theory) / s``, ``s`` the samples' SD,
    ``g`` their skewness (third central moment / s^3) and ``r`` replicates: Johnson's (1978) correction of the t
    statistic's skew with a cubic term that makes it monotone (Johnson's alone turns back towards 0 for means far
    below a positively skewed theory, so a wrong theory could agree). The expansion holds for ``|u|`` of order
    ``1 / sqrt(r)``; where ``|g u| > 3/2`` it is left, and ``T`` continues linearly with the plain t's slope
    ``sqrt(r)``, so the statistic stays continuous and monotone and the correction bounded (``T`` flattens near
    ``u = -3 / g``: at 10 replicates a theory 3 SD away scored |z| < 1.5 without this). Symmetric samples: plain
    ``(MC - theory) / se``.

    Why: the per-replicate quantities here are skewed (squared errors, fitted variances), and so is the plain t of
    their mean, most in the far tail the Bonferroni value sits in: the Gaussian W2 row (M = 10, t = 5) at 300
    replicates had 0.1 / 99.9 % quantiles -4.47 / +2.44 and |t| > 3.5 in 0.62 % of 20,000 tables, against the row's
    family-wise share of 0.09 % (a user trial, 2026-12-06)."""
    if not row.se > 0:
        return float("inf") if row.mc != row.theory else 0.0
    r = row.replicates
    s = row.se * math.sqrt(r)
    u, g = (row.mc - row.theory) / s, row.third / s ** 3
    if g == 0:
        return math.sqrt(r) * u
    edge = math.copysign(min(abs(u), 1.5 / abs(g)), u)
    return math.sqrt(r) * (edge + g / (6 * r) + g * edge ** 2 / 3 + g ** 2 * edge ** 3 / 27 + (u - edge))


def run_all(*, num_replicates: int = 4000, num_steps: int = 30, seed: int = 0, progress: bool | None = None,
            extra: list[Callable[[Table], None]] | None = None) -> Table:
    table = Table()
    multinomial_rows(table, num_replicates=num_replicates, num_steps=num_steps, seed=seed, progress=progress)
    for fn in extra or []:
        fn(table)
    table.judge()
    return table


def extra_checks(num_replicates: int, seed: int) -> list[Callable[[Table], None]]:
    """Checks of the other models (seed 004; seed 003 App. C.2), where their modules exist."""
    out = []
    try:
        from collapse_jax import linear_regression as LR

        out.append(lambda table: LR.validation_rows(table, num_replicates=num_replicates, seed=seed))
    except ImportError:
        pass
    try:
        from collapse_jax import gaussian as G

        out.append(lambda table: G.validation_rows(table, num_replicates=num_replicates, seed=seed))
    except ImportError:
        pass
    try:  # seed 003 App. C.2: logistic first-order theory, and the empirical GMM / logistic statements
        from collapse_jax import logistic as L
        from collapse_jax import mixture_refit as MR

        out.append(lambda table: L.validation_rows(table, num_replicates=num_replicates, seed=seed))
        out.append(lambda table: MR.validation_rows(table, num_replicates=num_replicates, seed=seed))
    except ImportError:
        pass
    return out


# Below this many replicates the exact rows' family-wise level is not reached: their per-replicate quantities are
# skewed, so z is not t-distributed in the far tail the Bonferroni value sits in. Measured over the multinomial,
# linear-regression and Gaussian rows with the plain t (2026-12-04, independent seeds): every exact row agreed in
# 38 / 40 tables at 4000 replicates, 57 / 60 at 1000, 83 / 100 at 100 and 67 / 100 at 10. With the skew-corrected z
# (skew_corrected_t; 2026-12-06, every row, the same tables judged both ways, plain in brackets): 75 / 80 at 300
# (74), 59 / 60 at 100 (55), 44 / 60 at 10 (40); a calibration trial the same day, seeds 1-10 at 1000: 8 / 10
# (seed 2: z = +3.34 on the pure-synthetic row and its Cor. 3.6 twin; seed 7: z = -3.55), 3 of 470 exact z beyond
# the critical 3.32, their SD 1.07.
FAMILY_WISE_MIN_REPLICATES = 1000


def small_sample_warning(reps: int) -> str | None:
    """The caveat for a table of ``reps`` replicates per setting, or None from FAMILY_WISE_MIN_REPLICATES on."""
    if reps >= FAMILY_WISE_MIN_REPLICATES:
        return None
    return (f"With {reps} replicates (fewer than {FAMILY_WISE_MIN_REPLICATES}) a correct theory can fail some exact "
            "row more often than 5 % of the time (measured: 6 % of tables at 300 replicates, 2 % at 100, 27 % at "
            "10), and statement rows lack the power to agree: read disagreements here as prompts to rerun with the "
            "default 4000, not as evidence."
            + (f" Agreements are weak evidence too: an exact row agrees unless its Monte Carlo mean is off by more "
               f"than the critical t = {t_critical(55, reps):.3g} standard errors (55 exact and approximation rows; "
               "3.32 at the default), so a wrong theory can pass." if reps < 30 else ""))


def t_critical(num_tested: int, replicates: int) -> float:
    """The two-sided Bonferroni critical value (5 % family-wise over ``num_tested`` rows) of Student's t with
    ``replicates - 1`` degrees of freedom."""
    level = 1 - 0.05 / (2 * max(1, num_tested))
    return _t_quantile(level, replicates - 1) if replicates > 1 else float("inf")


def _critical_values(table: Table) -> str:
    """The critical values the rows were judged by, e.g. "3.42 at 100 replicates, 3.33 at 1,600" (the header gave
    only the one at the most replicates, which is not the one most rows use)."""
    tested = [r.replicates for r in table.rows if r.kind != "statement"]
    return ", ".join(f"{t_critical(len(tested), r):.2f} at {r:,} replicates" for r in sorted(set(tested)))


def _shared_samples(table: Table) -> str:
    """A sentence on the tested rows that judge a second formula on another row's samples (Cor 3.6's closed form
    beside Thm 3.1's recurrence, accumulate at its first iteration, where it is replace, an approximation beside the
    exact formula): one chance excursion shows in both, and the Bonferroni count of every tested row is a little
    conservative (an audit, 2026-12-07: 10 of the 55 default rows)."""
    seen, shared = set(), 0
    for r in table.rows:
        if r.kind != "statement":
            key = (r.mc, r.se, r.replicates)
            shared += key in seen
            seen.add(key)
    if not shared:
        return ""
    return (f" {shared} of these rows {'tests' if shared == 1 else 'test'} a second formula on the samples of "
            "another row (so one chance excursion "
            f"shows in both): {len(seen)} distinct samples, and the correction over every row is a little "
            "conservative.")


def render(table: Table, *, reps: int, steps: int, seed: int, elapsed: float, command: str) -> str:
    bad = [i for i, r in enumerate(table.rows, 1) if not r.agree]
    caveat = small_sample_warning(reps)
    kinds = {k: sum(r.kind == k for r in table.rows) for k in ("exact", "approximation", "statement")}
    return "\n".join([
        "# Validation: Monte Carlo against theory",
        "",
        f"Generated by `{command}` ({elapsed:.0f} s on this machine, float64). Do not edit by hand.",
        "",
        f"{len(table.rows)} checks: {kinds['exact']} exact formulas, {kinds['approximation']} approximations, "
        f"{kinds['statement']} qualitative statements. Monte Carlo: {reps} replicates per setting "
        f"(multinomial: T = {steps} generations, K = 20, p ~ Dirichlet(2) with seed 2024), seed {seed}.",
        "",
        "How to read it: *exact* and *approximation* rows agree when |z| is at most the "
        "Bonferroni critical value of Student's t with the row's replicates - 1 degrees of freedom for a 5% "
        f"family-wise error over those rows ({_critical_values(table)}); z is (MC - theory) / se corrected for "
        "the skew of the per-replicate values (Hall's transformation of Johnson's t: squared errors and fitted "
        "variances are skewed, and the plain t's far tail was several times too heavy on one side at a few hundred "
        f"replicates).{_shared_samples(table)} The "
        "'in 95% CI' column says whether the theory lies in the plain 95% interval (about 1 row in 20 falls "
        "outside by chance alone). *Approximation* rows compare an approximate formula (mean-field, first-order) "
        "with the simulation: a disagreement there is the approximation's error showing, expected where it is poor "
        "(and an agreement may only mean the Monte Carlo cannot resolve that error). *Statement* rows show the "
        "claimed threshold with its side (`<` or `>`) and agree when the whole 95% interval is on that side: "
        "evidence for the claim, so their power falls with fewer replicates or more steps than the defaults.",
        "",
        *([f"**{caveat}**", ""] if caveat else []),
        table.markdown(),
        "",
        f"Disagreements: {', '.join(f'#{i}' for i in bad) if bad else 'none'}"
        + (f" (at {reps} replicates an agreement is weak evidence: approximation rows whose error shows at the "
           "default 4000, such as the mean-field filter rows, can agree here)." if caveat else "."),
        "",
        "The command's exit status is 1 when an exact row disagrees, else 0: with a correct theory, in about 1 run "
        "in 20 by chance (the 5% family-wise level), so rerun with another seed before reading it as a defect.",
        "",
    ])
