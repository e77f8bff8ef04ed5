"""Cholesky factors, triangular solves and eigenvalues for the JAX kernels, in LAPACK calls jaxlib does not split.

jaxlib 0.10.0 to 0.11.0 split a *batched* LAPACK call on XLA:CPU (a vmapped Cholesky factor or triangular solve, or
one call with leading batch dimensions) into chunks on XLA's intra-op thread pool whenever the batch's estimated work
is at least 200,000 flops, and block the calling pool thread until the chunks are done. When two such calls are in
flight at once (independent chains of one program, such as the Sigma block statistics at ten block sizes, or the
shards of a run over several host devices), every pool thread can end up waiting for chunks that no free thread will
run: the computation never finishes, and nothing is reported. Measured with jaxlib 0.10.2 (the newest on these
machines' package index) on a 2-core CPU: ``sigma_precision.jit_batched_block_stats`` of 1000 blocks at d = 8 hung in
every run, linear regression over four host devices at 8,000 replicates too. JAX stopped splitting LAPACK calls
in open-source builds after 0.11.0 (jax-ml/jax@859992407d, 2026-07-21, "Don't try to parallelize LAPACK kernels in
opensource builds").

On the CPU these wrappers therefore hand LAPACK batches small enough to run where they are called: a batch of
``CHUNK_FLOPS // cost`` problems at most (``cost`` the kernel's own estimate for one problem; half its threshold, so
rounding in the estimate cannot cross it), looping over the rest with ``lax.map``. Under nested ``vmap`` the outer
levels loop one slice at a time (``jax.custom_batching``), so the batch that reaches LAPACK never grows. LAPACK's
per-problem routine is the same, so the values are those of the batched call. Other platforms
(``lax.platform_dependent``) keep the batched call. Not differentiable (``custom_vmap``); no kernel differentiates
through them.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_batching import custom_vmap

CHUNK_FLOPS = 100_000  # problems per LAPACK call: at most this much estimated work (jaxlib splits from 200,000)


def _mapped(args, in_batched, axis_size):
    """Every argument with the vmapped axis first (an unmapped one repeated along it)."""
    return [a if b else jnp.broadcast_to(a, (axis_size,) + a.shape) for a, b in zip(args, in_batched)]


def _per_chunk(fn, cost, core_ranks):
    """``fn`` (one problem) as a function of problems with any leading batch dimensions and under any ``vmap``, whose
    LAPACK calls see at most ``CHUNK_FLOPS // cost`` problems each. ``cost(*shapes)`` estimates one problem's work
    from its arguments' shapes; ``core_ranks``: the rank of one problem's argument, per argument (leading
    dimensions broadcast against each other, as in the functions wrapped)."""

    @custom_vmap
    def batch_of(*args):  # a batch with an explicit leading axis, as one call: an outer vmap loops over it
        return jax.vmap(fn)(*args)

    @batch_of.def_vmap
    def _(axis_size, in_batched, *args):
        return lax.map(lambda xs: batch_of(*xs), _mapped(args, in_batched, axis_size)), True

    @custom_vmap
    def one(*args):
        return fn(*args)

    @one.def_vmap
    def rule(axis_size, in_batched, *args):
        args = _mapped(args, in_batched, axis_size)
        size = max(1, CHUNK_FLOPS // max(1, int(cost(*(a.shape[1:] for a in args)))))
        if axis_size <= size:
            return batch_of(*args), True
        return lax.map(lambda xs: one(*xs), args, batch_size=size), True  # vmaps of <= size problems, in a loop

    def call(*args):
        cores = [a.shape[a.ndim - r:] for a, r in zip(args, core_ranks)]
        batch = jnp.broadcast_shapes(*(a.shape[:a.ndim - r] for a, r in zip(args, core_ranks)))
        if not batch:
            return one(*args)
        flat = [jnp.broadcast_to(a, batch + core).reshape((-1,) + core) for a, core in zip(args, cores)]
        out = jax.vmap(one)(*flat)
        return out.reshape(batch + out.shape[1:])

    return call


def _on_cpu_in_chunks(fn, *args, cost, core_ranks):
    return lax.platform_dependent(*args, cpu=_per_chunk(fn, cost, core_ranks), default=fn)


def _factor_cost(a):
    return a[-1] ** 3 // 3  # jaxlib's estimate for potrf


def _eigen_cost(a):
    return 5 * a[-1] ** 3  # jaxlib's estimate for syevd


def _solve_cost(a, b):
    return a[-1] * a[-1] * (1 if len(b) == len(a) - 1 else b[-1])  # for trsm: rows x columns of b x rows


def _rhs_rank(a, b) -> int:
    return 1 if b.ndim == a.ndim - 1 else 2


def cholesky(a: jax.Array) -> jax.Array:
    """``jnp.linalg.cholesky`` (lower factor), in LAPACK calls jaxlib does not split on the CPU."""
    return _on_cpu_in_chunks(jnp.linalg.cholesky, a, cost=_factor_cost, core_ranks=(2,))


def cho_factor(a: jax.Array, *, lower: bool) -> jax.Array:
    """The factor of ``jax.scipy.linalg.cho_factor(a, lower=lower)``, in LAPACK calls jaxlib does not split on the
    CPU."""
    return _on_cpu_in_chunks(lambda m: jax.scipy.linalg.cho_factor(m, lower=lower)[0], a, cost=_factor_cost,
                             core_ranks=(2,))


def solve_triangular(a: jax.Array, b: jax.Array, *, lower: bool) -> jax.Array:
    """``jax.scipy.linalg.solve_triangular(a, b, lower=lower)`` (``b`` a vector or a matrix per problem), in
    LAPACK calls jaxlib does not split on the CPU."""
    return _on_cpu_in_chunks(partial(jax.scipy.linalg.solve_triangular, lower=lower), a, b, cost=_solve_cost,
                             core_ranks=(2, _rhs_rank(a, b)))


def cho_solve(factor: jax.Array, b: jax.Array, *, lower: bool) -> jax.Array:
    """``jax.scipy.linalg.cho_solve((factor, lower), b)`` (``b`` a vector or a matrix per problem), in LAPACK calls
    jaxlib does not split on the CPU."""
    return _on_cpu_in_chunks(lambda c, r: jax.scipy.linalg.cho_solve((c, lower), r), factor, b, cost=_solve_cost,
                             core_ranks=(2, _rhs_rank(factor, b)))


def eigvalsh(a: jax.Array) -> jax.Array:
    """``jnp.linalg.eigvalsh`` (ascending), in LAPACK calls jaxlib does not split on the CPU."""
    return _on_cpu_in_chunks(jnp.linalg.eigvalsh, a, cost=_eigen_cost, core_ranks=(2,))
