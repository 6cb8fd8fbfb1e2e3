"""Baselines for Fourier-series prompts (tasks/fourier.py), every prefix at once.

In the Fourier features φ(x) (2N_max+1 columns, frequency n owning columns 2n-1, 2n) a series
with N frequencies is a Gaussian-linear model on the first 2N+1 columns, w ~ N(0, I/N). The
models for different N are nested (a smaller one's columns are a prefix of a larger one's),
and nested_features.py gives their exact posteriors from a fresh orthogonal factorization of
every prefix:
  * fixed N: the Gaussian posterior on those columns; noiseless, the min-norm least-squares
    fit (identified from 2N+1 points);
  * N ~ U{1..N_max}: the Bayesian model average over N (noiseless: a model that explains more
    of the prompt exactly outranks a larger one, so the smallest consistent N wins once it is
    identified; consistency is decided by the fit's backward error, docs/baselines.md).
`least_squares_features` is least squares on the features of a given number of frequencies
per prompt (the true N: an oracle for the mixture; N_max: the unregularized fit).
Legend: B prompts, K points, F = 2 N_max + 1 features.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from icl_jax.baselines import nested_features
from icl_jax.tasks import fourier as fourier_tasks


class FourierPosterior(NamedTuple):
    yhat_BxK: np.ndarray  # the Bayes prediction of y_k from the k examples before it
    w_BxKxD: np.ndarray | None  # posterior mean of the coefficients (feature order), when asked for
    true_weight_BxK: np.ndarray | None  # posterior probability of the prompt's own N, when given
    entropy_BxK: np.ndarray  # entropy of the posterior over N (nats)


def feature_prompts(x_BxKx1, max_frequency: int, half_period: float) -> np.ndarray:
    """φ(x) in float64: B×K×F."""
    return fourier_tasks.features(np.asarray(x_BxKx1, np.float64)[..., 0], max_frequency, half_period, np)


def posterior(x_BxKx1, y_BxK, max_frequency: int, half_period: float, *, mixture_over_n: bool,
              noise_std: float = 0.0, true_n_B=None, with_weights: bool = False) -> FourierPosterior:
    """The exact posterior mean at every k (for the mixture also the posterior weight of the
    true N when true_n_B is given, and the entropy over N)."""
    orders = np.arange(1, max_frequency + 1) if mixture_over_n else np.array([max_frequency])
    fit = nested_features.posterior(feature_prompts(x_BxKx1, max_frequency, half_period), y_BxK,
                                    columns_C=2 * orders + 1, log_prior_C=np.full(len(orders), -math.log(len(orders))),
                                    prior_var_C=1.0 / orders, noise_std=noise_std, with_weights=with_weights)
    true_weight = None
    if true_n_B is not None:
        index_B = np.asarray(true_n_B).astype(np.int64) - 1 if mixture_over_n else np.zeros(len(true_n_B), int)
        true_weight = np.take_along_axis(fit.weight_BxKxC, index_B[:, None, None], axis=2)[..., 0]
    return FourierPosterior(fit.yhat_BxK, fit.w_BxKxF, true_weight, fit.entropy_BxK)


def least_squares_features(x_BxKx1, y_BxK, n_B, max_frequency: int, half_period: float, *,
                           with_weights: bool = False):
    """Min-norm least squares on the features up to frequency n_B[b] (per prompt), every k:
    yhat_BxK, or with_weights the fitted coefficients w_BxKxF (feature order) as well.

    The noiseless posterior of one model with an isotropic prior is the min-norm
    interpolant, so this is nested_features with one model per group of prompts sharing N,
    in float64: features rounded to float32 would perturb the square fit at k = 2N+1, whose
    condition number reaches 1e6 on clustered points, by O(0.1)."""
    phi = feature_prompts(x_BxKx1, max_frequency, half_period)
    n_B = np.asarray(n_B).astype(np.int64)
    y = np.asarray(y_BxK, np.float64)
    yhat = np.zeros(y.shape)
    w = np.zeros(phi.shape) if with_weights else None
    for n in np.unique(n_B):
        rows = n_B == n
        fit = nested_features.posterior(phi[rows], y[rows], columns_C=[2 * n + 1], log_prior_C=[0.0],
                                        prior_var_C=[1.0], with_weights=with_weights)
        yhat[rows] = fit.yhat_BxK
        if with_weights:
            w[rows] = fit.w_BxKxF
    return (yhat, w) if with_weights else yhat


def label_mean(x_BxKx1, y_BxK) -> np.ndarray:
    """The mean of the labels seen so far (0 at k = 0): the best constant, i.e. the fit of
    frequency 0 alone. (The linear family's `averaging`, x·mean(x_i y_i), assumes x ~ N(0, I);
    on x ~ U[-L, L] it scales with x² and scores ~50 at L = 5.)"""
    y = np.asarray(y_BxK, np.float64)
    total = np.concatenate([np.zeros_like(y[:, :1]), np.cumsum(y, axis=1)[:, :-1]], axis=1)
    return total / np.maximum(np.arange(y.shape[1]), 1)
