"""Baselines for Fourier-series prompts (tasks/fourier.py), every prefix at once.

In the Fourier features φ(x) (2N_max+1 columns, frequency n owning columns 2n-1, 2n) a series
with N frequencies is a Gaussian-linear model: w ~ N(0, I/N) on the first 2N+1 columns, zero
after. So
  * fixed N: the exact posterior is the Gaussian posterior on those columns; noiseless, the
    min-norm least-squares fit (identified from 2N+1 points);
  * N ~ U{1..N_max}: the Bayesian model average over N, one mixture component per N
    (mixture.py: float64, evidences by orthogonal updates, noiseless limits: a component that
    interpolates more of the prompt exactly outranks a larger one, so the smallest consistent
    N wins once it is identified).
`least_squares_features` is least squares on the features of a given number of frequencies
per prompt (the true N: an oracle for the mixture; N_max: the unregularized fit).
Legend: B prompts, K points, F = 2 N_max + 1 features, C components (values of N).
"""

from __future__ import annotations

import math

import numpy as np

from icl_jax.baselines import mixture
from icl_jax.tasks import fourier as fourier_tasks

# Noiseless consistency: a feature fit at cond(Φ) ~ 1e6 (clustered points) leaves ~1e-10 of the
# label scale on the true N in float64, while a too-small N leaves the dropped terms, ~1/√N of
# the scale; 1e-8 sits between with margin on both sides (the default 1e-12 rejects the truth).
CONSISTENCY_TOL = 1e-8


def feature_prompts(x_BxKx1, max_frequency: int, half_period: float) -> np.ndarray:
    """φ(x) in float64: B×K×F."""
    return fourier_tasks.features(np.asarray(x_BxKx1, np.float64)[..., 0], max_frequency, half_period, np)


def components(max_frequency: int, orders) -> mixture.GaussianComponents:
    """One component per N in `orders`, prior weight 1/len(orders): w ~ N(0, I/N) on the
    first 2N+1 feature columns (a dense factor with zero columns past them)."""
    orders = np.asarray(orders)
    F = 2 * max_frequency + 1
    keep_CxF = fourier_tasks.frequency_of_column(max_frequency)[None] <= orders[:, None]
    factor_CxFxF = np.eye(F)[None] * (keep_CxF / np.sqrt(orders)[:, None])[:, None, :]
    return mixture.GaussianComponents(np.full(len(orders), -math.log(len(orders))), np.zeros((len(orders), F)),
                                      factor_CxDxR=factor_CxFxF, chunk=2)


def posterior(x_BxKx1, y_BxK, max_frequency: int, half_period: float, *, mixture_over_n: bool,
              noise_std: float = 0.0, true_n_B=None, with_weights: bool = False) -> mixture.MixturePosterior:
    """The exact posterior mean at every k (for the mixture also the posterior weight of the
    true N when true_n_B is given, and the entropy over N). w_BxKxF: posterior mean of the
    coefficients in feature order."""
    orders = np.arange(1, max_frequency + 1) if mixture_over_n else np.array([max_frequency])
    true_index = None
    if true_n_B is not None:
        true_index = [np.asarray(true_n_B).astype(np.int64) - 1 if mixture_over_n else np.zeros(len(true_n_B), int)]
    return mixture.mixture_posterior(feature_prompts(x_BxKx1, max_frequency, half_period), y_BxK,
                                     [components(max_frequency, orders)], noise_std, true_index_FxB=true_index,
                                     with_weights=with_weights,
                                     consistency_tol=None if noise_std else CONSISTENCY_TOL)


def least_squares_features(x_BxKx1, y_BxK, n_B, max_frequency: int, half_period: float, *,
                           with_weights: bool = False):
    """Min-norm least squares on the features up to frequency n_B[b] (per prompt), every k:
    yhat_BxK, or with_weights the fitted coefficients w_BxKxF (feature order) as well.

    In float64 through the mixture solver (one component, identity prior, σ = 0: its posterior
    mean is the min-norm interpolant, and zeroed columns stay out of the fit): features
    rounded to float32 would perturb the square fit at k = 2N+1, whose condition number
    reaches 1e6 on clustered points, by O(0.1)."""
    phi = feature_prompts(x_BxKx1, max_frequency, half_period)
    keep_BxF = fourier_tasks.frequency_of_column(max_frequency)[None] <= np.asarray(n_B)[:, None]
    F = phi.shape[-1]
    identity = mixture.GaussianComponents(np.zeros(1), np.zeros((1, F)), factor_CxDxR=np.eye(F)[None])
    fit = mixture.mixture_posterior(phi * keep_BxF[:, None, :], y_BxK, [identity], 0.0,
                                    consistency_tol=CONSISTENCY_TOL, with_weights=with_weights)
    return (fit.yhat_BxK, fit.w_BxKxD) if with_weights else fit.yhat_BxK


def label_mean(x_BxKx1, y_BxK) -> np.ndarray:
    """The mean of the labels seen so far (0 at k = 0): the best constant, i.e. the fit of
    frequency 0 alone. (The linear family's `averaging`, x·mean(x_i y_i), assumes x ~ N(0, I);
    on x ~ U[-L, L] it scales with x² and scores ~50 at L = 5.)"""
    y = np.asarray(y_BxK, np.float64)
    total = np.concatenate([np.zeros_like(y[:, :1]), np.cumsum(y, axis=1)[:, :-1]], axis=1)
    return total / np.maximum(np.arange(y.shape[1]), 1)
