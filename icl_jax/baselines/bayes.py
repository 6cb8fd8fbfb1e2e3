"""The exact Bayes predictor (posterior mean) of each task class of icl_jax/tasks, and what it
reports beside its predictions (DESIGN.md §3-4).

| class            | posterior                                   | solver                        |
|------------------|---------------------------------------------|-------------------------------|
| linear           | Gaussian N(0, I), noise σ                   | gaussian_posterior (ridge σ²) |
| sparse_linear    | mixture over the C(d, s) supports           | mixture.py                    |
| gaussian_mixture | mixture of N(±scale·e_i, I)                 | mixture.py                    |
| task_pool        | discrete posterior over the M pool vectors  | mixture.py (Σ = 0)            |
| sign_vector      | uniform over {±1}^d                         | enumeration.py                |

Where the exact posterior is out of reach for `evaluate` (more than MAX_SUPPORTS supports,
sign vectors past d = 20, or past d = 16 with noise) the result is the clearly named proxy "lmmse": the Gaussian posterior with the class's
own prior mean and covariance, i.e. the best predictor that is linear in y.
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import ml_collections
import numpy as np

from icl_jax.baselines import enumeration, mixture
from icl_jax.baselines.gaussian_posterior import gaussian_posterior
from icl_jax.tasks import linear as linear_tasks

MAX_SUPPORTS = 200_000  # C(d, s) above this: ~3 minutes at d = 20 scale; use the proxy
MAX_NOISY_SIGN_DIMS = 16  # noisy sign vectors: 2^16 hypotheses ~ 50 s for 1280 prompts (2^20: ~13 min)


class Bayes(NamedTuple):
    name: str  # "bayes" (exact) or "lmmse" (the proxy)
    yhat_BxK: np.ndarray
    w_BxKxD: np.ndarray | None  # posterior mean of w (when asked for)
    true_weight_BxK: np.ndarray | None  # posterior weight of the component that made the prompt
    entropy_BxK: np.ndarray | None  # entropy of the component posterior, nats
    component_weights_BxKxC: np.ndarray | None  # every component's weight (few components only)


def supports(n_dims: int, sparsity: int) -> np.ndarray:
    """All C(n_dims, sparsity) supports, lexicographic, C x sparsity."""
    return np.array(list(itertools.combinations(range(n_dims), sparsity)), np.int32).reshape(-1, sparsity)


def support_index(w_BxD: np.ndarray, n_dims: int, sparsity: int) -> np.ndarray:
    """The lexicographic rank of each w's support (-1 if w does not have exactly `sparsity`
    nonzeros), the inverse of `supports`."""
    out = np.full(len(w_BxD), -1, np.int64)
    for b, w in enumerate(np.asarray(w_BxD)):
        s = np.flatnonzero(w)
        if len(s) != sparsity:
            continue
        rank, prev = 0, -1
        for j, c in enumerate(s):  # combinations before this one, position by position
            for v in range(prev + 1, c):
                rank += math.comb(n_dims - v - 1, sparsity - j - 1)
            prev = c
        out[b] = rank
    return out


def prior_moments(t: ml_collections.ConfigDict) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of the class's prior on w (full dimension)."""
    d = t.n_dims
    if t.name == "linear" or t.name == "sign_vector":
        return np.zeros(d), np.eye(d)
    if t.name == "sparse_linear":
        return np.zeros(d), np.eye(d) * t.sparsity / d
    if t.name == "task_pool":
        pool = linear_tasks.pool_weights(t.pool_size, t.pool_seed, d).astype(np.float64)
        return pool.mean(0), np.cov(pool.T, bias=True).reshape(d, d)
    centers = linear_tasks.mixture_centers(t.mixture_components, t.mixture_scale, d).astype(np.float64)
    mean = centers.mean(0)
    return mean, np.eye(d) + (centers - mean).T @ (centers - mean) / len(centers)


def mixture_family(t: ml_collections.ConfigDict):
    """The components of a mixture class (None for linear and sign_vector)."""
    d = t.n_dims
    if t.name == "sparse_linear":
        sup = supports(d, t.sparsity)
        return mixture.GaussianComponents(np.full(len(sup), -math.log(len(sup))), np.zeros((len(sup), d)),
                                          features_CxR=sup)
    if t.name == "task_pool":
        pool = linear_tasks.pool_weights(t.pool_size, t.pool_seed, d).astype(np.float64)
        return mixture.PointComponents(np.full(len(pool), -math.log(len(pool))), pool)
    if t.name == "gaussian_mixture":
        centers = linear_tasks.mixture_centers(t.mixture_components, t.mixture_scale, d).astype(np.float64)
        C = len(centers)
        return mixture.GaussianComponents(np.full(C, -math.log(C)), centers,
                                          features_CxR=np.tile(np.arange(d), (C, 1)))
    return None


def has_exact_posterior(t: ml_collections.ConfigDict) -> bool:
    if t.name == "sparse_linear":
        return math.comb(t.n_dims, t.sparsity) <= MAX_SUPPORTS
    if t.name == "sign_vector":  # noisy: every hypothesis at every k, ~2^d * 0.7 ms / 1280 prompts
        return t.n_dims <= (enumeration.MAX_DIMS if not t.noise_std else MAX_NOISY_SIGN_DIMS)
    return True


def true_component(t: ml_collections.ConfigDict, w_BxD: np.ndarray) -> np.ndarray:
    """Index of the component that generated each prompt's w: its support, its pool member, its
    sign pattern. (Gaussian mixtures: the latent component is not a function of w; see
    `posterior`, which weighs components by their responsibility for w instead.)"""
    w = np.asarray(w_BxD, np.float64)
    if t.name == "sparse_linear":
        return support_index(w, t.n_dims, t.sparsity)
    if t.name == "task_pool":
        pool = linear_tasks.pool_weights(t.pool_size, t.pool_seed, t.n_dims).astype(np.float64)
        index = np.empty(len(w), np.int64)
        for start in range(0, len(w), 256):  # nearest member (the sampled w is one of them)
            dist = ((w[start:start + 256, None, :] - pool[None]) ** 2).sum(-1)
            index[start:start + 256] = dist.argmin(1)
        return index
    if t.name == "sign_vector":
        return enumeration.hypothesis_index(w)
    raise ValueError(f"no discrete component for task {t.name!r}")


def posterior(t: ml_collections.ConfigDict, x_BxKxD, y_BxK, *, w_true_BxD=None,
              with_weights: bool = False) -> Bayes:
    """The exact posterior-mean predictor of class t on these prompts (or the lmmse proxy,
    see module docstring). w_true_BxD (the prompts' task parameters) adds the posterior
    weight of the true component."""
    sigma = float(t.noise_std)
    if not has_exact_posterior(t):
        mean, cov = prior_moments(t)
        return Bayes("lmmse", np.asarray(gaussian_posterior(x_BxKxD, y_BxK, mean, cov, sigma)), None, None, None, None)
    if t.name == "linear":
        yhat = np.asarray(gaussian_posterior(x_BxKxD, y_BxK, np.zeros(t.n_dims), np.eye(t.n_dims), sigma))
        w = None
        if with_weights:  # the same posterior from the float64 solver, which also gives w
            family = mixture.GaussianComponents(np.zeros(1), np.zeros((1, t.n_dims)),
                                                features_CxR=np.arange(t.n_dims)[None])
            w = mixture.mixture_posterior(x_BxKxD, y_BxK, [family], sigma, with_weights=True).w_BxKxD
        return Bayes("bayes", yhat, w, None, None, None)
    if t.name == "sign_vector":
        r = enumeration.sign_vector_posterior(x_BxKxD, y_BxK, t.n_dims, sigma, true_w_BxD=w_true_BxD,
                                              with_weights=with_weights)
        return Bayes("bayes", r.yhat_BxK, r.w_BxKxD, r.true_weight_BxK, r.entropy_BxK, None)
    family = mixture_family(t)
    if t.name == "gaussian_mixture":
        r = mixture.mixture_posterior(x_BxKxD, y_BxK, [family], sigma, with_weights=with_weights)
        beta = mixture.component_posterior(x_BxKxD, y_BxK, family, sigma)
        true_weight = None
        if w_true_BxD is not None:  # E[β of the generating component | w] = sum_c p(c | w) β_c
            d2 = ((np.asarray(w_true_BxD, np.float64)[:, None] - family.mean_CxD[None]) ** 2).sum(-1)
            resp = np.exp(-0.5 * (d2 - d2.min(1, keepdims=True)))
            resp /= resp.sum(1, keepdims=True)
            true_weight = np.einsum("bkc,bc->bk", beta, resp)
        return Bayes("bayes", r.yhat_BxK, r.w_BxKxD, true_weight, r.entropy_BxK, beta)
    true_index = None if w_true_BxD is None else [true_component(t, w_true_BxD)]
    r = mixture.mixture_posterior(x_BxKxD, y_BxK, [family], sigma, true_index_FxB=true_index,
                                  with_weights=with_weights)
    return Bayes("bayes", r.yhat_BxK, r.w_BxKxD, r.true_weight_BxK, r.entropy_BxK, None)
