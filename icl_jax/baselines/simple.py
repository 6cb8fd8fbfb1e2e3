"""Cheap in-context baselines for every prefix at once: averaging, nearest neighbours, zero.

Shape legend: x_BxKxD (B prompts, K points, D dims), y_BxK -> yhat_BxK; yhat[:, k] predicts
y_k from x_k with the k examples before it (exactly 0 for k = 0).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

Array = jax.Array


@jax.jit
def averaging(x_BxKxD: Array, y_BxK: Array) -> Array:
    """yhat_k = x_k . w_k with w_k = (1/k) sum_{i<k} x_i y_i (0 at k = 0): x_BxKxD, y_BxK ->
    yhat_BxK. For x ~ N(0, I) this is an unbiased (not least-squares) estimate of w."""
    x_BxKxD = jnp.asarray(x_BxKxD, jnp.float32)
    y_BxK = jnp.asarray(y_BxK, jnp.float32)
    xy_BxKxD = x_BxKxD * y_BxK[..., None]
    # exclusive prefix sum by shifting an inclusive one (subtracting the own term instead
    # would cancel in float32)
    sum_BxKxD = jnp.pad(jnp.cumsum(xy_BxKxD, axis=1)[:, :-1], ((0, 0), (1, 0), (0, 0)))
    count_K = jnp.maximum(jnp.arange(x_BxKxD.shape[1]), 1).astype(jnp.float32)
    return jnp.sum(x_BxKxD * sum_BxKxD, axis=-1) / count_K


@functools.partial(jax.jit, static_argnames=("n_neighbors",))
def nearest_neighbors(x_BxKxD: Array, y_BxK: Array, n_neighbors: int = 3) -> Array:
    """Mean y of the n_neighbors earlier points i < k nearest to x_k in Euclidean distance
    (all k of them while k < n_neighbors; 0 at k = 0): x_BxKxD, y_BxK -> yhat_BxK.

    Ties: the lower index wins (jax.lax.top_k keeps the lower index first among equals).
    `n_neighbors` is static (a Python int).
    """
    if n_neighbors < 1:
        raise ValueError(f"n_neighbors must be >= 1, got {n_neighbors}")
    x_BxKxD = jnp.asarray(x_BxKxD, jnp.float32)
    y_BxK = jnp.asarray(y_BxK, jnp.float32)
    K = x_BxKxD.shape[1]
    n = min(n_neighbors, K)
    # Distances from differences, not |a|^2 - 2ab + |b|^2: the expansion cancels in float32
    # and would reorder near-ties. XLA fuses the difference into the reduction.
    diff_BxKxKxD = x_BxKxD[:, :, None, :] - x_BxKxD[:, None, :, :]
    dist_BxKxK = jnp.sum(diff_BxKxKxD * diff_BxKxKxD, axis=-1)  # [b, query k, example i]
    earlier_KxK = jnp.arange(K)[None, :] < jnp.arange(K)[:, None]
    # top_k takes the largest: negate; later points get -inf so they rank after every
    # earlier one, and are dropped below when fewer than n earlier points exist.
    _, idx_BxKxN = jax.lax.top_k(jnp.where(earlier_KxK, -dist_BxKxK, -jnp.inf), n)
    valid_BxKxN = idx_BxKxN < jnp.arange(K)[None, :, None]
    y_BxKxN = jnp.take_along_axis(y_BxK[:, None, :], idx_BxKxN, axis=-1)
    count_K = jnp.clip(jnp.arange(K), 1, n).astype(jnp.float32)
    return jnp.sum(jnp.where(valid_BxKxN, y_BxKxN, 0.0), axis=-1) / count_K


@jax.jit
def zero(x_BxKxD: Array, y_BxK: Array) -> Array:
    """Always 0 (the prior mean of y): x_BxKxD, y_BxK -> yhat_BxK."""
    del x_BxKxD
    return jnp.zeros(jnp.shape(y_BxK), jnp.float32)
