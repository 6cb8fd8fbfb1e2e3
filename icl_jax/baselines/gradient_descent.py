"""Gradient descent on the in-context squared loss, from w = 0, for every prompt length at once.

For the k examples before the query, L_k(w) = (1/2k) sum_{j<k} (x_j·w - y_j)^2 and
    w <- w - η_k ∇L_k(w) = w - η_k (G_k w - b_k),   G_k = X_kᵀX_k / k,  b_k = X_kᵀy_k / k,
n_steps times; yhat_k = x_k·w. One step with η = 1 is the averaging estimator.

The step size is per k, and that is not a detail (docs/baselines.md): the curvature of L_k is
λ_max(G_k) ≈ (1 + sqrt(d/k))^2, about d/k for k << d, so a step size tuned at the last k (where
G ≈ I) exceeds 2/λ_max at small k and multi-step GD diverges there. `tune_step_sizes` picks
η_k on prompts drawn from the prior, separately for every k.

A fixed η_k is still not enough for many steps: n steps multiply the error along the top
eigenvector by |1 - η_k λ_max(G_k)|^n, the best fixed η_k on a few hundred tuning prompts sits
at the edge 2/λ_max of the typical prompt, and λ_max varies between prompts (for Gaussian
inputs without bound). Ten steps then blew up on a few evaluation prompts in thousands, and the
mean at a k that depended on the tuning sample was many times one step's. Tuning on more
prompts, or only among steps that diverge on no tuning prompt, narrows this but cannot close it:
the evaluation set meets prompts steeper than any tuning prompt.

`normalized=True` is the textbook remedy, and what evaluate's `gd_t` is: t steps of GD from 0
with the step η_k / λ_max(G_k) of each prompt, its own smoothness constant (computed exactly,
eigvalsh of the D×D G_k), and η_k ∈ (0, 2) tuned per k on prior prompts. Then |1 - step·λ| < 1
on every eigenvalue of every prompt: w_t applies a filter in [0, 2) to each eigendirection of
the least-squares solution, no prompt can diverge, the tuning loss is a bounded, smooth function
of η_k, and the curve is a property of the algorithm, not of the tuning sample. It is also free
of the inputs' scale (x → cx leaves w unchanged). Plain fixed steps remain the default here:
they are what the linear-attention construction computes (one layer = one plain GD step).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

NORMALIZED_GRID_MAX = 1.99  # η_k·λ/λ_max < 2 on every eigenvalue: a contraction, never a divergence


def prefix_moments(x_BxKxD: Array, y_BxK: Array) -> tuple[Array, Array]:
    """G_BxKxDxD = X_kᵀX_k / k and b_BxKxD = X_kᵀy_k / k over the rows j < k (0 at k = 0)."""
    K = x_BxKxD.shape[1]
    outer = jnp.einsum("bkd,bke->bkde", x_BxKxD, x_BxKxD)
    xy = x_BxKxD * y_BxK[..., None]

    def exclusive(a):
        return jnp.concatenate([jnp.zeros_like(a[:, :1]), jnp.cumsum(a, axis=1)[:, :-1]], axis=1)

    inv_k = 1.0 / jnp.maximum(jnp.arange(K), 1).astype(x_BxKxD.dtype)
    return exclusive(outer) * inv_k[:, None, None], exclusive(xy) * inv_k[:, None]


@jax.jit
def inverse_curvature(x_BxKxD) -> Array:
    """1 / λ_max(G_k) of every prompt and k (eigvalsh of the D×D moments); 0 where G_k = 0
    (k = 0, or all-zero inputs: no gradient to scale). Its own jit: a batched eigendecomposition
    next to another solver chain in one jitted function can deadlock on CPU."""
    x = jnp.asarray(x_BxKxD, jnp.float32)
    G, _ = prefix_moments(x, jnp.zeros(x.shape[:2], jnp.float32))
    lam = jnp.linalg.eigvalsh(G)[..., -1]
    # float32 eigvalsh is accurate to ~1e-6·||G||; the margin keeps step·λ_max below the grid's 2.
    lam = lam * (1.0 + 1e-5)
    return jnp.where(lam > 0, 1.0 / jnp.where(lam > 0, lam, 1.0), 0.0)


@functools.partial(jax.jit, static_argnames=("n_steps",))
def gradient_descent_weights(x_BxKxD, y_BxK, step_size_K, n_steps: int) -> Array:
    """w_BxKxD after n_steps of GD on L_k from 0, step size step_size_K[k] (scalar: every k;
    B×K: one per prompt and k)."""
    x = jnp.asarray(x_BxKxD, jnp.float32)
    y = jnp.asarray(y_BxK, jnp.float32)
    G, b = prefix_moments(x, y)
    eta_BxK = jnp.broadcast_to(jnp.asarray(step_size_K, jnp.float32), x.shape[:2])

    def step(w, _):
        grad = jnp.einsum("bkde,bke->bkd", G, w, precision=jax.lax.Precision.HIGHEST) - b
        return w - eta_BxK[..., None] * grad, None

    w, _ = jax.lax.scan(step, jnp.zeros_like(b), None, length=n_steps)
    return w


def gradient_descent(x_BxKxD, y_BxK, step_size_K, n_steps: int) -> Array:
    """yhat_BxK = x_k · (w after n_steps of GD on the k earlier examples); 0 at k = 0."""
    w = gradient_descent_weights(x_BxKxD, y_BxK, step_size_K, n_steps)
    return jnp.einsum("bkd,bkd->bk", jnp.asarray(x_BxKxD, jnp.float32), w)


def normalized_step_sizes(x_BxKxD, eta_K) -> Array:
    """step_BxK = η_k / λ_max(G_k) of each prompt: GD's step in units of the prompt's own
    stability limit (η_k < 2: no divergence)."""
    return jnp.asarray(eta_K, jnp.float32) * inverse_curvature(x_BxKxD)


def normalized_gradient_descent_weights(x_BxKxD, y_BxK, eta_K, n_steps: int) -> Array:
    """w_BxKxD after n_steps of GD on L_k from 0 with the step η_k / λ_max(G_k) per prompt."""
    return gradient_descent_weights(x_BxKxD, y_BxK, normalized_step_sizes(x_BxKxD, eta_K), n_steps)


def normalized_gradient_descent(x_BxKxD, y_BxK, eta_K, n_steps: int) -> Array:
    """yhat_BxK of n_steps of GD with the step η_k / λ_max(G_k) per prompt; 0 at k = 0."""
    return gradient_descent(x_BxKxD, y_BxK, normalized_step_sizes(x_BxKxD, eta_K), n_steps)


def tune_step_sizes(x_BxKxD, y_BxK, n_steps: int, grid=None, grid_size: int = 45,
                    normalized: bool = False) -> np.ndarray:
    """step_size_K: for each k, the grid value with the smallest mean squared error of GD's
    prediction of y_k on these prompts (draw them from the prior, not from the evaluation
    set). k = 0 has no examples: 0. A grid value that diverges (a non-finite error) on any
    tuning prompt is never chosen; where every grid value does, the smallest is.

    normalized=False: the step itself. The default grid is log-spaced over [1e-3, 2] / E[x_j²]:
    the best step scales with the inputs' inverse second moment (1 for N(0, I), 12 for
    U(−½, ½)^d). normalized=True: η_k of the step η_k / λ_max(G_k) of each prompt (see the
    module docstring); the default grid, whatever the inputs, is log-spaced over [1e-3, 1.99]
    together with grid_size linearly spaced values up to 1.99."""
    x = jnp.asarray(x_BxKxD, jnp.float32)
    if grid is None:
        if normalized:  # log-spaced for strong shrinkage, linear near the limit many steps want
            grid = np.union1d(np.geomspace(1e-3, NORMALIZED_GRID_MAX, grid_size),
                              np.linspace(NORMALIZED_GRID_MAX / grid_size, NORMALIZED_GRID_MAX, grid_size))
        else:
            second_moment = float(np.mean(np.square(np.asarray(x_BxKxD, np.float64))))
            grid = np.geomspace(1e-3, 2.0, grid_size) / (second_moment if second_moment > 0 else 1.0)
    grid = np.asarray(grid, np.float64)
    scale_BxK = inverse_curvature(x) if normalized else jnp.ones(x.shape[:2], jnp.float32)
    mse_GxK = np.asarray(_grid_mse(x, jnp.asarray(y_BxK, jnp.float32), jnp.asarray(grid, jnp.float32),
                                   scale_BxK, n_steps))
    mse_GxK = np.where(np.isfinite(mse_GxK), mse_GxK, np.inf)  # diverged: never chosen
    best = grid[np.argmin(mse_GxK, axis=0)]
    best = np.where(np.isinf(mse_GxK).all(axis=0), grid.min(), best)
    best[0] = 0.0
    return best


@functools.partial(jax.jit, static_argnames=("n_steps",))
def _grid_mse(x_BxKxD, y_BxK, grid_G, scale_BxK, n_steps: int):
    """Mean squared error per (step size, k), every step size of the grid in one call; the step
    of prompt b at k is grid value × scale_BxK[b, k]. A prompt whose error is not finite makes
    the mean not finite."""
    def one(eta):
        w = gradient_descent_weights(x_BxKxD, y_BxK, eta * scale_BxK, n_steps)
        return jnp.mean((jnp.einsum("bkd,bkd->bk", x_BxKxD, w) - y_BxK) ** 2, axis=0)

    return jax.lax.map(one, grid_G)
