"""Gradient descent and the Lasso on every prefix, against float64 numpy loops and scikit-learn."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.linear_model import Lasso

from icl_jax import baselines
from icl_jax.baselines.gradient_descent import gradient_descent, gradient_descent_weights, tune_step_sizes
from icl_jax.baselines.lasso import lasso

pytestmark = pytest.mark.timeout(180)


def _sparse_prompts(rng, B, K, D, s, noise):
    x = rng.standard_normal((B, K, D)).astype(np.float32)
    w = np.zeros((B, D))
    for b in range(B):
        w[b, rng.choice(D, s, replace=False)] = rng.standard_normal(s)
    y = np.einsum("bkd,bd->bk", x.astype(np.float64), w) + noise * rng.standard_normal((B, K))
    return x, y.astype(np.float32)


@pytest.mark.parametrize("n_steps", [1, 7])
def test_gradient_descent_matches_numpy_loop(n_steps):
    rng = np.random.default_rng(n_steps)
    B, K, D = 16, 11, 5
    x = rng.standard_normal((B, K, D)).astype(np.float32)
    y = rng.standard_normal((B, K)).astype(np.float32)
    eta = np.linspace(0.05, 0.5, K)
    ref = np.zeros((B, K))
    for b in range(B):
        for k in range(1, K):
            X, Y, w = x[b, :k].astype(np.float64), y[b, :k].astype(np.float64), np.zeros(D)
            for _ in range(n_steps):
                w = w - eta[k] * X.T @ (X @ w - Y) / k
            ref[b, k] = x[b, k] @ w
    got = np.asarray(gradient_descent(x, y, eta, n_steps))
    assert (got[:, 0] == 0).all()
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    w = np.asarray(gradient_descent_weights(x, y, eta, n_steps))
    np.testing.assert_allclose(np.einsum("bkd,bkd->bk", x, w), got, atol=1e-5)


def test_one_step_with_unit_step_is_averaging():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 9, 4)).astype(np.float32)
    y = rng.standard_normal((8, 9)).astype(np.float32)
    np.testing.assert_allclose(gradient_descent(x, y, 1.0, 1), baselines.averaging(x, y), atol=1e-5)


def test_step_size_tuned_per_k_does_not_diverge_where_one_tuned_at_the_last_k_does():
    """DESIGN.md §4: the curvature of the k-example loss is ~d/k for k << d. One step size tuned
    at the last k exceeds 2/curvature at small k, and 20 steps of it blow up there."""
    rng = np.random.default_rng(1)
    D, K, steps = 20, 41, 20
    x = rng.standard_normal((512, K, D)).astype(np.float32)
    y = np.einsum("bkd,bd->bk", x, rng.standard_normal((512, D)).astype(np.float32))
    eta = tune_step_sizes(x[:256], y[:256], steps)
    assert eta[0] == 0 and eta[2] < eta[-1] / 3  # smaller steps where the loss is steeper
    mse = lambda e: np.mean((np.asarray(gradient_descent(x[256:], y[256:], e, steps), np.float64) - y[256:]) ** 2, 0)
    per_k, last_k = mse(eta), mse(np.full(K, eta[-1]))
    zero_k = np.mean(np.asarray(y[256:], np.float64) ** 2, 0)
    assert np.all(per_k[1:] <= 1.1 * zero_k[1:])  # tuned per k: never (much) worse than 0
    assert per_k[-1] < 0.01 * zero_k[-1]
    last_k = np.where(np.isfinite(last_k), last_k, np.inf)
    assert np.all(last_k[1:5] > 100 * zero_k[1:5])  # the last k's step size: diverges


@pytest.mark.parametrize("alpha", [0.01, 0.1])
@pytest.mark.parametrize("noise", [0.0, 0.1])
def test_lasso_matches_scikit_learn(alpha, noise):
    """Every prefix k of every prompt, d = 20 (k = d-1, d, d+1 included): the same objective
    as sklearn's Lasso(fit_intercept=False), solved by coordinate descent plus the homotopy
    finish; all converged, predictions within 1e-6 (relative to the prompt's scale)."""
    rng = np.random.default_rng(int(alpha * 100) + int(noise * 10))
    B, K, D = 24, 41, 20
    x, y = _sparse_prompts(rng, B, K, D, 3, noise)
    fit = lasso(x, y, alpha)
    assert fit.converged_BxK.all() and np.isfinite(fit.yhat_BxK).all()
    ref = np.zeros((B, K))
    for b in range(B):
        for k in range(1, K):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # sklearn's own convergence warnings at k < d
                model = Lasso(alpha=alpha, fit_intercept=False, tol=1e-14, max_iter=1_000_000)
                model.fit(x[b, :k].astype(np.float64), y[b, :k].astype(np.float64))
            ref[b, k] = x[b, k].astype(np.float64) @ model.coef_
    scale = np.sqrt(np.mean(y.astype(np.float64) ** 2, 1, keepdims=True))
    assert (np.abs(fit.yhat_BxK - ref) / (scale + np.abs(ref))).max() <= 1e-6
    mse, mse_ref = (np.mean((p - y) ** 2, 0) for p in (fit.yhat_BxK, ref))
    np.testing.assert_array_less(np.abs(mse - mse_ref)[1:], 1e-4 * mse_ref[1:] + 1e-9)


def test_lasso_rank_deficient_and_k0():
    rng = np.random.default_rng(2)
    x, y = _sparse_prompts(rng, 8, 9, 6, 2, 0.1)
    x[:2, 1] = 0.0
    x[2:4, 3] = x[2:4, 1]
    x[4:6, :, 4:] = 0.0
    x[6] = 0.0
    y[6] = 0.0
    fit = lasso(x, y, np.linspace(0.01, 0.2, 9))
    assert np.isfinite(fit.yhat_BxK).all() and (fit.yhat_BxK[:, 0] == 0).all() and fit.converged_BxK.all()
    assert (fit.w_BxKxD[4:6, :, 4:] == 0).all()  # inactive coordinates get no weight
