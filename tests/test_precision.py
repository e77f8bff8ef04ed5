"""Full float32 matrix products: importing collapse_jax makes JAX's default float32 product precision "highest", so
that on a GPU no estimator's product is rounded to TensorFloat-32. Checked without a GPU by lowering representative
computations for CUDA and reading every dot's precision; the environment variable and a precision the process chose
first are respected."""

import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import collapse_jax  # noqa: F401  (the import sets the precision)
from collapse_jax import spectral
from collapse_jax import gmm_network as gn
from collapse_jax import sigma_precision as sp
from collapse_jax.multinomial_pallas import lower_for_cuda


def _dot_precisions(fn, *args) -> list[str]:
    """The precision attribute of every dot in ``fn`` lowered for CUDA (empty string: none, i.e. JAX's default)."""
    text = lower_for_cuda(fn, *args)
    dots = re.findall(r"stablehlo\.dot_general[^\n]*", text)
    assert dots, "no dot in the lowered program"
    return [m.group(1) if (m := re.search(r"precision = \[([^\]]*)\]", d)) else "" for d in dots]


def test_import_sets_full_float32_products():
    assert jax.config.jax_default_matmul_precision == "highest"


# (classical MDS has had no product since 2026-12-06: it centres by row and column means, then eigh)
@pytest.mark.parametrize("name", ["gram", "block stats", "leverage statistics", "gmm features"])
def test_every_float32_product_lowers_at_highest_precision_for_a_gpu(name):
    x = jnp.asarray(np.random.default_rng(0).standard_normal((48, 6)), jnp.float32)
    cfg = gn.paper_config(6)
    params = gn.cast_params(gn.make_params(cfg), jnp.float32)
    geometry = gn.Geometry(params.mu, params.chol, params.whitener)
    cases = {
        "gram": (spectral.gram, x),
        "block stats": (lambda v: sp.prefix_block_stats(v, (12, 24, 48)), x),
        "leverage statistics": (lambda v: spectral.leverage_statistics(v), x),
        "gmm features": (lambda v: gn.point_features(v[:, :1], geometry), x),
    }
    fn, arg = cases[name]
    precisions = _dot_precisions(fn, arg)
    assert all(p == "HIGHEST, HIGHEST" for p in precisions), precisions


def _run(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "JAX_PLATFORMS": "cpu", **env})


def test_environment_and_an_earlier_choice_are_respected():
    show = "import jax, collapse_jax; print(jax.config.jax_default_matmul_precision)"
    assert _run(show, COLLAPSE_JAX_MATMUL_PRECISION="default").stdout.strip() == "None"
    first = ("import jax; jax.config.update('jax_default_matmul_precision', 'bfloat16'); import collapse_jax; "
             "print(jax.config.jax_default_matmul_precision)")
    assert _run(first).stdout.strip() == "bfloat16"
    # a bad value: a warning and the default 'highest' (it raised at import: a traceback even for --help; a user
    # trial, 2026-12-06)
    bad = _run(show, COLLAPSE_JAX_MATMUL_PRECISION="tf33")
    assert bad.returncode == 0 and bad.stdout.strip() == "highest", bad.stderr
    assert "COLLAPSE_JAX_MATMUL_PRECISION must be 'default' or a value" in bad.stderr
    assert "using 'highest'" in bad.stderr


def test_the_memory_check_counts_the_blocks_working_memory(monkeypatch):
    """A user trial (2026-12-06): d = 2048, N = 2 10^5 passed a check of the data buffers alone (4.9 GB) and was
    killed at 12 GB by the blocks' working memory (std::bad_alloc, no message); d = 1024, N = 10^5 peaked at 3.67 GB
    against 1.2 GB counted."""
    from collapse_jax import _checks, sigma_cli
    from collapse_jax import sigma_precision as sp

    cfg = sp.PrecisionConfig(dims=(1024,), families=("isotropic",), num_points=100_000, blocks=(4,))
    estimate = 12 * 100_000 * 1024 + 2 * sigma_cli.block_bytes(1024, 100_000, cfg.ratios)
    assert 3.4e9 < estimate < 4.2e9                         # (against 3.67 GB measured)
    monkeypatch.setattr(_checks, "available_memory_bytes", lambda: 4 * 2**30)
    with pytest.raises(ValueError, match=r"GiB of block work per thread, 2 threads\), more than 80% of the 4.0 GiB"):
        sigma_cli.check_memory(cfg, threads=2)
    sigma_cli.check_memory(cfg, threads=1)                 # one thread's blocks fit
