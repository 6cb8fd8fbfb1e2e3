"""The exact Bayes predictor (posterior mean) of each linear-family class, and what it
reports beside its predictions (docs/function_classes.md, docs/baselines.md).

The solver is chosen by the type of the task's prior description (tasks/priors.py), never by
the class's name: a new class whose prior is one of these types needs no code here.

| prior (classes)                            | posterior                          | solver                        |
|--------------------------------------------|------------------------------------|-------------------------------|
| GaussianPrior (linear, anisotropic_linear) | Gaussian N(μ, Σ), noise σ          | gaussian_posterior (ridge σ²) |
| SparsePrior (sparse_linear)                | mixture over the C(d, s) supports  | mixture.py                    |
| GaussianMixturePrior (gaussian_mixture)    | mixture of N(μ_c, I)               | mixture.py                    |
| PointPrior (task_pool)                     | discrete over the M pool vectors   | mixture.py (Σ = 0)            |
| SignPrior (sign_vector)                    | uniform over {±1}^d                | enumeration.py                |

Where the exact posterior is out of reach for `evaluate` (more than MAX_SUPPORTS supports,
sign vectors past d = 20, or past d = 16 with noise: each solver's `within_reach`) the result
is the clearly named proxy "lmmse": the Gaussian posterior with the prior's own mean and
covariance, i.e. the best predictor that is linear in y.
Legend: B prompts, K points, D input width, C components.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import numpy as np

from icl_jax.baselines import enumeration, mixture
from icl_jax.baselines.gaussian_posterior import gaussian_posterior
from icl_jax.tasks import LinearTask, priors

MAX_SUPPORTS = 200_000  # C(d, s) above this: minutes per evaluation (benchmarks/README.md); use the proxy
MAX_NOISY_SIGN_DIMS = 16  # noisy sign vectors: every hypothesis at every k (benchmarks/README.md)


class Bayes(NamedTuple):
    name: str  # "bayes" (exact) or "lmmse" (the proxy)
    yhat_BxK: np.ndarray
    w_BxKxD: np.ndarray | None  # posterior mean of w (when asked for)
    true_weight_BxK: np.ndarray | None  # posterior weight of the component that made the prompt
    entropy_BxK: np.ndarray | None  # entropy of the component posterior, nats
    component_weights_BxKxC: np.ndarray | None  # every component's weight (few components only)


def _uniform_log_prior(n: int) -> np.ndarray:
    return np.full(n, -math.log(n))


def _gaussian(prior: priors.GaussianPrior, x, y, sigma: float, w_true, with_weights: bool) -> Bayes:
    yhat = np.asarray(gaussian_posterior(x, y, prior.mean_D, prior.cov_DxD, sigma))
    w = None
    if with_weights:  # the same posterior from the float64 solver, which also gives w
        d = len(prior.mean_D)
        if np.array_equal(prior.cov_DxD, np.eye(d)):  # Σ = I: a gather, no arithmetic, in the solver
            shape = dict(features_CxR=np.arange(d)[None])
        else:
            shape = dict(factor_CxDxR=priors.covariance_factor(prior.cov_DxD)[None])
        family = mixture.GaussianComponents(np.zeros(1), np.asarray(prior.mean_D, np.float64)[None], **shape)
        w = mixture.mixture_posterior(x, y, [family], sigma, with_weights=True).w_BxKxD
    return Bayes("bayes", yhat, w, None, None, None)


def _sparse(prior: priors.SparsePrior, x, y, sigma: float, w_true, with_weights: bool) -> Bayes:
    sup = prior.supports_CxS()
    family = mixture.GaussianComponents(_uniform_log_prior(len(sup)), np.zeros((len(sup), prior.n_dims)),
                                        features_CxR=sup)
    return _one_family(family, prior, x, y, sigma, w_true, with_weights)


def _points(prior: priors.PointPrior, x, y, sigma: float, w_true, with_weights: bool) -> Bayes:
    family = mixture.PointComponents(_uniform_log_prior(prior.n_components), prior.points_MxD)
    return _one_family(family, prior, x, y, sigma, w_true, with_weights)


def _one_family(family, prior, x, y, sigma: float, w_true, with_weights: bool) -> Bayes:
    true_index = None if w_true is None else [prior.component_of(w_true)]
    r = mixture.mixture_posterior(x, y, [family], sigma, true_index_FxB=true_index, with_weights=with_weights)
    return Bayes("bayes", r.yhat_BxK, r.w_BxKxD, r.true_weight_BxK, r.entropy_BxK, None)


def _gaussian_mixture(prior: priors.GaussianMixturePrior, x, y, sigma: float, w_true, with_weights: bool) -> Bayes:
    C, d = prior.means_CxD.shape
    family = mixture.GaussianComponents(_uniform_log_prior(C), prior.means_CxD,
                                        features_CxR=np.tile(np.arange(d), (C, 1)))
    r = mixture.mixture_posterior(x, y, [family], sigma, with_weights=with_weights)
    beta_BxKxC = mixture.component_posterior(x, y, family, sigma)
    true_weight = None
    if w_true is not None:  # the latent component is not a function of w: E[β_c | w] = sum_c p(c | w) β_c
        true_weight = np.einsum("bkc,bc->bk", beta_BxKxC, prior.responsibilities_BxC(w_true))
    return Bayes("bayes", r.yhat_BxK, r.w_BxKxD, true_weight, r.entropy_BxK, beta_BxKxC)


def _sign_vectors(prior: priors.SignPrior, x, y, sigma: float, w_true, with_weights: bool) -> Bayes:
    r = enumeration.sign_vector_posterior(x, y, prior.n_dims, sigma, true_w_BxD=w_true, with_weights=with_weights)
    return Bayes("bayes", r.yhat_BxK, r.w_BxKxD, r.true_weight_BxK, r.entropy_BxK, None)


class ExactSolver(NamedTuple):
    posterior: Callable[..., Bayes]  # (prior, x_BxKxD, y_BxK, σ, w_true_BxD | None, with_weights)
    within_reach: Callable[[priors.Prior, float], bool] = lambda prior, sigma: True  # what evaluate can afford


def _signs_within_reach(prior: priors.SignPrior, sigma: float) -> bool:
    # noiseless: one example leaves a handful of candidates; noisy: every hypothesis at every k
    return prior.n_dims <= (MAX_NOISY_SIGN_DIMS if sigma else enumeration.MAX_DIMS)


# prior type -> its exact solver: the one place a new kind of prior is added
SOLVERS: dict[type, ExactSolver] = {
    priors.GaussianPrior: ExactSolver(_gaussian),
    priors.SparsePrior: ExactSolver(_sparse, lambda prior, sigma: prior.n_components <= MAX_SUPPORTS),
    priors.GaussianMixturePrior: ExactSolver(_gaussian_mixture),
    priors.PointPrior: ExactSolver(_points),
    priors.SignPrior: ExactSolver(_sign_vectors, _signs_within_reach),
}


def has_exact_posterior(task: LinearTask) -> bool:
    return SOLVERS[type(task.prior)].within_reach(task.prior, float(task.noise_std))


def posterior(task: LinearTask, x_BxKxD, y_BxK, *, w_true_BxD=None, with_weights: bool = False) -> Bayes:
    """The exact posterior-mean predictor of the task's class on these prompts (or the lmmse
    proxy, see module docstring). w_true_BxD (the prompts' task parameters) adds the posterior
    weight of the true component."""
    sigma = float(task.noise_std)
    if not has_exact_posterior(task):
        mean, cov = task.prior.moments()
        return Bayes("lmmse", np.asarray(gaussian_posterior(x_BxKxD, y_BxK, mean, cov, sigma)), None, None, None, None)
    return SOLVERS[type(task.prior)].posterior(task.prior, x_BxKxD, y_BxK, sigma, w_true_BxD, with_weights)
