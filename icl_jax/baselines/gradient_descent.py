"""Gradient descent on the in-context squared loss, from w = 0, for every prompt length at once.

For the k examples before the query, L_k(w) = (1/2k) sum_{j<k} (x_j·w - y_j)^2 and
    w <- w - η_k ∇L_k(w) = w - η_k (G_k w - b_k),   G_k = X_kᵀX_k / k,  b_k = X_kᵀy_k / k,
n_steps times; yhat_k = x_k·w. One step with η = 1 is the averaging estimator.

The step size is per k, and that is not a detail (DESIGN.md §4): the curvature of L_k is
λ_max(G_k) ≈ (1 + sqrt(d/k))^2, about d/k for k << d, so a step size tuned at the last k (where
G ≈ I) exceeds 2/λ_max at small k and multi-step GD diverges there. `tune_step_sizes` picks
η_k on prompts drawn from the prior, separately for every k.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def prefix_moments(x_BxKxD: Array, y_BxK: Array) -> tuple[Array, Array]:
    """G_BxKxDxD = X_kᵀX_k / k and b_BxKxD = X_kᵀy_k / k over the rows j < k (0 at k = 0)."""
    K = x_BxKxD.shape[1]
    outer = jnp.einsum("bkd,bke->bkde", x_BxKxD, x_BxKxD)
    xy = x_BxKxD * y_BxK[..., None]

    def exclusive(a):
        return jnp.concatenate([jnp.zeros_like(a[:, :1]), jnp.cumsum(a, axis=1)[:, :-1]], axis=1)

    inv_k = 1.0 / jnp.maximum(jnp.arange(K), 1).astype(x_BxKxD.dtype)
    return exclusive(outer) * inv_k[:, None, None], exclusive(xy) * inv_k[:, None]


@functools.partial(jax.jit, static_argnames=("n_steps",))
def gradient_descent_weights(x_BxKxD, y_BxK, step_size_K, n_steps: int) -> Array:
    """w_BxKxD after n_steps of GD on L_k from 0, step size step_size_K[k] (scalar: every k)."""
    x = jnp.asarray(x_BxKxD, jnp.float32)
    y = jnp.asarray(y_BxK, jnp.float32)
    G, b = prefix_moments(x, y)
    eta_K = jnp.broadcast_to(jnp.asarray(step_size_K, jnp.float32), (x.shape[1],))

    def step(w, _):
        grad = jnp.einsum("bkde,bke->bkd", G, w, precision=jax.lax.Precision.HIGHEST) - b
        return w - eta_K[None, :, None] * grad, None

    w, _ = jax.lax.scan(step, jnp.zeros_like(b), None, length=n_steps)
    return w


def gradient_descent(x_BxKxD, y_BxK, step_size_K, n_steps: int) -> Array:
    """yhat_BxK = x_k · (w after n_steps of GD on the k earlier examples); 0 at k = 0."""
    w = gradient_descent_weights(x_BxKxD, y_BxK, step_size_K, n_steps)
    return jnp.einsum("bkd,bkd->bk", jnp.asarray(x_BxKxD, jnp.float32), w)


def tune_step_sizes(x_BxKxD, y_BxK, n_steps: int, grid=None, grid_size: int = 45) -> np.ndarray:
    """step_size_K: for each k, the grid value with the smallest mean squared error of GD's
    prediction of y_k on these prompts (draw them from the prior, not from the evaluation
    set). k = 0 has no examples: 0. The default grid is log-spaced over [1e-3, 2] / E[x_j²]:
    the best step scales with the inputs' inverse second moment (1 for N(0, I), 12 for
    U(−½, ½)^d)."""
    if grid is None:
        second_moment = float(np.mean(np.square(np.asarray(x_BxKxD, np.float64))))
        grid = np.geomspace(1e-3, 2.0, grid_size) / (second_moment if second_moment > 0 else 1.0)
    grid = np.asarray(grid)
    mse_GxK = np.asarray(_grid_mse(jnp.asarray(x_BxKxD, jnp.float32), jnp.asarray(y_BxK, jnp.float32),
                                   jnp.asarray(grid, jnp.float32), n_steps))
    mse_GxK = np.where(np.isfinite(mse_GxK), mse_GxK, np.inf)  # diverged: never chosen
    best = grid[np.argmin(mse_GxK, axis=0)]
    best[0] = 0.0
    return best


@functools.partial(jax.jit, static_argnames=("n_steps",))
def _grid_mse(x_BxKxD, y_BxK, grid_G, n_steps: int):
    """Mean squared error per (step size, k), every step size of the grid in one call."""
    def one(eta):
        w = gradient_descent_weights(x_BxKxD, y_BxK, eta, n_steps)
        return jnp.mean((jnp.einsum("bkd,bkd->bk", x_BxKxD, w) - y_BxK) ** 2, axis=0)

    return jax.lax.map(one, grid_G)
