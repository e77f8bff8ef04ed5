"""Distance estimators shared by the GMM network and the LLM experiments (seed 000, Eq. 2 and 4).

The same functions take a GMM network's weight vectors ``Pi`` (num_models, num_components) and LLM mean embeddings
``X`` (num_models, dim).
"""

from __future__ import annotations

import jax.numpy as jnp


def pairwise_distances(x: jnp.ndarray) -> jnp.ndarray:
    """``D_ij = ||x_i - x_j||_2`` for rows of ``x`` (..., num_models, dim) -> (..., num_models, num_models).

    Computed from differences (not the Gram trick) so the diagonal is exactly zero and D exactly symmetric.
    """
    diff = x[..., :, None, :] - x[..., None, :, :]
    sq = jnp.sum(diff * diff, axis=-1)
    # sqrt has an infinite derivative at 0: guard so gradients of ||D||_F stay finite.
    safe = jnp.where(sq > 0, sq, 1.0)
    return jnp.where(sq > 0, jnp.sqrt(safe), 0.0)


def frobenius_norm(d: jnp.ndarray) -> jnp.ndarray:
    """``||D||_F`` over the last two axes."""
    return jnp.sqrt(jnp.sum(d * d, axis=(-2, -1)))


def distance_matrix_norm(x: jnp.ndarray) -> jnp.ndarray:
    """``||D||_F`` of the pairwise distance matrix of the rows of ``x``: ``sqrt(sum_ij ||x_i - x_j||^2)``."""
    diff = x[..., :, None, :] - x[..., None, :, :]
    return jnp.sqrt(jnp.sum(diff * diff, axis=(-3, -2, -1)))
