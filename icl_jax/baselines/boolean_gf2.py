"""Exact Bayes for parities by Gaussian elimination over GF(2), every prefix at once.

With bits b = (1 - x)/2 and label bit c = (1 - y)/2, a parity y = Π_{i∈S} x_i is the
linear equation c = Σ_{i∈S} b_i (mod 2). Under the uniform prior over all 2^n subsets the
version space after k examples is an affine subspace, and the query's label is determined
exactly when its b lies in the span of the seen b's (its label is then the same combination
of their labels); otherwise half the consistent parities say +1 and half -1: a coin flip.

The basis is kept in echelon form indexed by pivot (row i has its first 1 at bit i), built
by a scan over the K positions, vectorized over prompts; at each position the query is
reduced before its own example joins the basis. Cost K·n XORs of (n+1)-bit rows per prompt.
Legend: B prompts, K points, D = n bits, E = D + 1 (bits and label bit).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def _reduce(basis_BxDxE: Array, v_BxE: Array) -> Array:
    D = basis_BxDxE.shape[1]

    def body(i, v):
        use_B = v[:, i] & basis_BxDxE[:, i, i]
        return v ^ (use_B[:, None] & basis_BxDxE[:, i])

    return jax.lax.fori_loop(0, D, body, v_BxE)


@jax.jit
def parity_posterior(x_BxKxD: Array, y_BxK: Array) -> Array:
    """E[y_k | examples i < k, x_k] under the uniform prior over parities: ±1 where the
    query is in the span of the earlier inputs, else 0."""
    x, y = jnp.asarray(x_BxKxD), jnp.asarray(y_BxK)
    B, K, D = x.shape
    rows_KxBxE = jnp.concatenate([x < 0, (y < 0)[..., None]], axis=-1).transpose(1, 0, 2)
    rows_B = jnp.arange(B)

    def step(basis_BxDxE, row_BxE):
        query = _reduce(basis_BxDxE, row_BxE.at[:, D].set(False))
        determined_B = ~jnp.any(query[:, :D], axis=-1)
        yhat_B = jnp.where(determined_B, jnp.where(query[:, D], -1.0, 1.0), 0.0)
        v = _reduce(basis_BxDxE, row_BxE)
        new_B = jnp.any(v[:, :D], axis=-1)
        pivot_B = jnp.argmax(v[:, :D], axis=-1)
        current = basis_BxDxE[rows_B, pivot_B]
        basis_BxDxE = basis_BxDxE.at[rows_B, pivot_B].set(jnp.where(new_B[:, None], v, current))
        return basis_BxDxE, yhat_B

    _, yhat_KxB = jax.lax.scan(step, jnp.zeros((B, D, D + 1), bool), rows_KxBxE)
    return yhat_KxB.T
