"""The Gaussian-linear posterior mean, w ~ N(μ, Σ), y = x·w + σε, every prompt length at once.

    E[y_k | first k examples] = x_k·μ + x_k Σ Xᵀ (X Σ Xᵀ + σ² I)^-1 (y - X μ).

With Σ = F Fᵀ this is ridge regression with λ = σ² on the whitened problem (x F, y - x·μ),
plus x·μ; σ = 0 gives the minimum-Σ⁻¹-norm interpolant (least squares once k >= rank). So it
is `least_squares` (regression.py: float64 inside, exact at the ill-conditioned k = d) on
transformed data, not a second solver. Σ may be singular (F has fewer columns: a degenerate
prior lives in its range). For the evidence and for mixtures see mixture.py.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from icl_jax.baselines.regression import least_squares
from icl_jax.tasks.priors import covariance_factor

Array = jax.Array


def gaussian_posterior(x_BxKxD, y_BxK, mean_D, cov_DxD, noise_std: float) -> Array:
    """Posterior mean prediction of y_k from the k examples before it (k = 0: x_0·μ), float32,
    x_BxKxD, y_BxK -> yhat_BxK. mean_D and cov_DxD are concrete (numpy) arrays."""
    mean = np.asarray(mean_D, np.float64)
    factor = covariance_factor(cov_DxD)
    if factor.shape[1] == 0:  # Σ = 0: w = μ is known
        return jnp.einsum("bkd,d->bk", jnp.asarray(x_BxKxD, jnp.float32), jnp.asarray(mean, jnp.float32))
    return _whitened(jnp.asarray(x_BxKxD, jnp.float32), jnp.asarray(y_BxK, jnp.float32),
                     jnp.asarray(mean, jnp.float32), jnp.asarray(factor, jnp.float32), float(noise_std) ** 2)


@functools.partial(jax.jit, static_argnames=("ridge",))
def _whitened(x_BxKxD, y_BxK, mean_D, factor_DxR, ridge: float):
    prior_mean_BxK = x_BxKxD @ mean_D
    x_white = jnp.einsum("bkd,dr->bkr", x_BxKxD, factor_DxR, precision=jax.lax.Precision.HIGHEST)
    return prior_mean_BxK + least_squares(x_white, y_BxK - prior_mean_BxK, ridge=ridge)
