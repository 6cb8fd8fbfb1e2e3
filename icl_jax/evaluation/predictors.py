"""Everything `evaluate` scores, as functions (x_NxKxD, y_NxK) -> yhat_NxK on the same prompts."""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from icl_jax import baselines, rng
from icl_jax.baselines import gradient_descent, lasso, mixture
from icl_jax.tasks import LinearTask, priors

Predictor = Callable[[np.ndarray, np.ndarray], np.ndarray]


def model_predictor(graphdef: nnx.GraphDef, params, batch_size: int) -> Predictor:
    @jax.jit
    def forward(params, x_BxKxD, y_BxK):
        return nnx.merge(graphdef, params)(x_BxKxD, y_BxK)

    def predict(x_NxKxD, y_NxK):
        n = x_NxKxD.shape[0]
        pad = -n % batch_size  # one compiled shape: the last batch is padded, then cut
        x = np.concatenate([x_NxKxD, np.zeros((pad,) + x_NxKxD.shape[1:], x_NxKxD.dtype)])
        y = np.concatenate([y_NxK, np.zeros((pad,) + y_NxK.shape[1:], y_NxK.dtype)])
        out = [np.asarray(forward(params, x[i:i + batch_size], y[i:i + batch_size]))
               for i in range(0, n + pad, batch_size)]
        return np.concatenate(out)[:n]

    return predict


def _jitted(fn, **static) -> Predictor:
    compiled = jax.jit(functools.partial(fn, **static))
    return lambda x, y: np.asarray(compiled(jnp.asarray(x), jnp.asarray(y)))


def linear_baselines(task: LinearTask) -> dict[str, Predictor]:
    """The classic learners of the linear family. Each is its own jit, called one after the
    other: two LAPACK-style solver chains in one jitted function can deadlock on CPU."""
    return {
        "least_squares": _jitted(baselines.least_squares),
        "ridge": _jitted(baselines.least_squares, ridge=float(task.noise_std) ** 2),
        "averaging": _jitted(baselines.averaging),
        "nearest_neighbors": _jitted(baselines.nearest_neighbors, n_neighbors=3),
        "zero": _jitted(baselines.zero),
    }


# ----------------------------------------------------------------------------------------
# Beyond the classic five: the exact posterior, tuned gradient descent, the Lasso, and every
# linear-in-the-query predictor's own w (for the weight probe).
# ----------------------------------------------------------------------------------------
GD_STEPS = (1, 10)  # one step, and "many"
LASSO_ALPHAS = np.geomspace(1e-3, 1.0, 7)
TUNING_PROMPTS = 256


@dataclasses.dataclass
class Baseline:
    predict: Predictor
    weights: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None  # w_NxKxD, every k
    info: dict = dataclasses.field(default_factory=dict)  # what was tuned / how it converged


def tuning_prompts(task: LinearTask, seed: int, num: int = TUNING_PROMPTS):
    """Prompts from the class's prior on their own stream (never the evaluation prompts)."""
    p = jax.jit(lambda key: task.sample(key, num))(rng.derive(seed, rng.BASELINE_TUNING))
    return np.asarray(p.x_BxKxD), np.asarray(p.y_BxK)


def gaussian_weights(task: LinearTask, noise_std: float):
    """w of least squares (noise 0: min-norm) or ridge (λ = noise²) at every k: the posterior
    mean of a N(0, I) prior (whatever the task's prior), from the float64 solver."""
    d = task.n_dims
    family = mixture.GaussianComponents(np.zeros(1), np.zeros((1, d)), features_CxR=np.arange(d)[None])
    return lambda x, y: mixture.mixture_posterior(x, y, [family], noise_std, with_weights=True).w_BxKxD


def _averaging_weights(x, y):
    xy = np.asarray(x, np.float64) * np.asarray(y, np.float64)[..., None]
    total = np.concatenate([np.zeros_like(xy[:, :1]), np.cumsum(xy, axis=1)[:, :-1]], axis=1)
    return total / np.maximum(np.arange(x.shape[1]), 1)[None, :, None]


def all_baselines(task: LinearTask, tuning_seed: int) -> dict[str, Baseline]:
    """The classic learners (linear_baselines), gradient descent `gd_t` (t = 1 and 10 steps from
    w = 0, the step of each prompt η_k / λ_max(G_k), its own curvature, with η_k ∈ (0, 2) tuned
    per k on prior prompts: see baselines/gradient_descent.py), and for sparse classes the Lasso
    with α tuned per k. Not the exact posterior, which evaluate runs itself (it reports more
    than predictions)."""
    sigma = float(task.noise_std)
    classic = linear_baselines(task)
    out = {name: Baseline(fn) for name, fn in classic.items()}
    out["least_squares"].weights = gaussian_weights(task, 0.0)
    out["ridge"].weights = gaussian_weights(task, sigma)
    out["averaging"].weights = _averaging_weights
    out["zero"].weights = lambda x, y: np.zeros(x.shape)
    x_t, y_t = tuning_prompts(task, tuning_seed)
    for steps in GD_STEPS:  # step η_k / λ_max(G_k) of each prompt: no prompt can diverge
        eta = gradient_descent.tune_step_sizes(x_t, y_t, steps, normalized=True)
        out[f"gd_{steps}"] = Baseline(
            lambda x, y, eta=eta, steps=steps: np.asarray(
                gradient_descent.normalized_gradient_descent(x, y, eta, steps)),
            lambda x, y, eta=eta, steps=steps: np.asarray(
                gradient_descent.normalized_gradient_descent_weights(x, y, eta, steps)),
            {"step_size_per_k": eta.tolist(), "steps": steps,
             "step_rule": "step_size_per_k[k] / largest eigenvalue of the prompt's X_k^T X_k / k"})
    if isinstance(task.prior, priors.SparsePrior):  # the Lasso's own setting
        G = len(LASSO_ALPHAS)  # every penalty in one call: copies of the tuning prompts
        alpha_grid = np.repeat(LASSO_ALPHAS, len(x_t))[:, None] * np.ones(x_t.shape[1])
        fit = lasso.lasso(np.tile(x_t, (G, 1, 1)), np.tile(y_t, (G, 1)), alpha_grid)
        mse = ((fit.yhat_BxK - np.tile(y_t, (G, 1))) ** 2).reshape(G, len(x_t), -1).mean(1)
        alpha = LASSO_ALPHAS[np.argmin(mse, axis=0)]
        learner = Baseline(None, None, {"alpha_per_k": alpha.tolist(), "alpha_grid": LASSO_ALPHAS.tolist()})

        def fit(x, y, learner=learner, alpha=alpha):
            result = lasso.lasso(x, y, alpha)
            learner.info["converged_fraction_per_k"] = result.converged_BxK.mean(0).tolist()
            return result

        learner.predict = lambda x, y: fit(x, y).yhat_BxK
        learner.weights = lambda x, y: fit(x, y).w_BxKxD
        out["lasso"] = learner
    return out
