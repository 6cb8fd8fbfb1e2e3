"""anisotropic_linear: w ~ N(0, Σ), Σ = diag(λ), λ_i ∝ i^(−α) with trace d, x ~ N(0, I).

Its sampler against Σ, and its exact posterior (evaluate's Bayes path, bayes.posterior)
against the Gaussian posterior mean written out here in float64 numpy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from icl_jax import config as config_lib
from icl_jax import rng, tasks
from icl_jax.baselines import bayes
from icl_jax.errors import UserError
from icl_jax.evaluation import prompts
from tests.conftest import small_config

pytestmark = pytest.mark.timeout(300)


def _task(decay=1.0, n_dims=6, n_points=13, **keys):
    c = small_config(name="anisotropic_linear", n_dims=n_dims, n_points=n_points, weight_spectrum_decay=decay, **keys)
    return tasks.get_task(c.task)


def _spectrum(n_dims: int, decay: float) -> np.ndarray:
    lam = 1.0 / np.arange(1, n_dims + 1) ** decay
    return lam * n_dims / lam.sum()


def _posterior_mean_w(x_BxKxD, y_BxK, cov_DxD, sigma: float) -> np.ndarray:
    """E[w | first k examples] = Σ Xᵀ (X Σ Xᵀ + σ² I)⁺ y for every prompt and k (k = 0: the prior
    mean 0). The pseudo-inverse covers σ = 0 past k = d, where X Σ Xᵀ is singular and the
    formula still gives the unique interpolant."""
    x, y = np.asarray(x_BxKxD, np.float64), np.asarray(y_BxK, np.float64)
    B, K, D = x.shape
    out = np.zeros((B, K, D))
    for b in range(B):
        for k in range(1, K):
            X = x[b, :k]
            out[b, k] = cov_DxD @ X.T @ np.linalg.pinv(X @ cov_DxD @ X.T + sigma**2 * np.eye(k), rcond=1e-13) @ y[b, :k]
    return out


def test_sampled_weights_have_covariance_sigma():
    task = _task(decay=1.5, n_dims=5)
    lam = _spectrum(5, 1.5)
    np.testing.assert_allclose(task.prior.cov_DxD, np.diag(lam), rtol=1e-12)
    assert task.normalizer == pytest.approx(5.0)  # trace Σ = d, as for linear
    n = 200_000
    w = np.asarray(jax.jit(lambda key: task.sample(key, n).w_BxD)(jax.random.key(0)), np.float64)
    centred = w - w.mean(0)
    cov = centred.T @ centred / n
    products = centred[:, :, None] * centred[:, None, :]
    stderr = products.std(0) / np.sqrt(n)
    assert np.all(np.abs(cov - np.diag(lam)) < 5 * stderr + 1e-12), (cov, lam)
    assert np.all(np.abs(w.mean(0)) < 5 * np.sqrt(lam / n))


def test_decay_zero_is_the_isotropic_class():
    iso, linear = _task(decay=0.0), tasks.get_task(small_config(name="linear", n_dims=6, n_points=13).task)
    np.testing.assert_array_equal(iso.prior.cov_DxD, np.eye(6))
    a, b = iso.sample(jax.random.key(3), 32), linear.sample(jax.random.key(3), 32)
    for u, v in zip(a, b):
        np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-6)


def test_curriculum_zeroes_inactive_weights_and_keeps_the_marginal():
    task = _task(decay=1.0, n_dims=6)
    p = jax.jit(lambda key, active: task.sample(key, 100_000, active))(jax.random.key(1), jnp.int32(3))
    x, w = np.asarray(p.x_BxKxD), np.asarray(p.w_BxD, np.float64)
    assert np.all(x[..., 3:] == 0) and np.all(w[:, 3:] == 0)
    np.testing.assert_allclose(w[:, :3].var(0), _spectrum(6, 1.0)[:3], rtol=0.03)


@pytest.mark.parametrize("sigma", [0.0, 0.4])
def test_exact_posterior_is_the_gaussian_posterior_mean(sigma):
    """Through evaluate's Bayes path: float64 labels (prompts.exact_labels), bayes.posterior."""
    task = _task(decay=1.0, n_dims=6, n_points=13, noise_std=sigma)
    p = task.sample(rng.derive(3, rng.EVAL_DATA), 6)
    x, y32, w = (np.asarray(a) for a in p)
    y = prompts.exact_labels(task, x, y32, w)
    post = bayes.posterior(task, x, y, with_weights=True)
    assert post.name == "bayes"
    want_w = _posterior_mean_w(x, y, np.diag(_spectrum(6, 1.0)), sigma)
    np.testing.assert_allclose(post.w_BxKxD, want_w, atol=1e-8 * np.abs(want_w).max())
    want_yhat = np.einsum("bkd,bkd->bk", x.astype(np.float64), want_w)
    np.testing.assert_allclose(post.yhat_BxK, want_yhat, atol=1e-4 * np.abs(y).max())
    if sigma == 0.0:  # d examples identify w
        np.testing.assert_allclose(post.w_BxKxD[:, 7:], np.broadcast_to(w[:, None], (6, 6, 6)), atol=1e-5)


def test_posterior_at_full_dimension_is_right_on_curriculum_prompts():
    """Prompts drawn with 3 of 6 dimensions active: the full-dimension posterior equals the
    3-dimensional one with Σ restricted to the active block."""
    task = _task(decay=2.0, n_dims=6, n_points=9, noise_std=0.3)
    p = jax.jit(lambda key: task.sample(key, 5, 3))(jax.random.key(4))
    x, y = np.asarray(p.x_BxKxD), np.asarray(p.y_BxK, np.float64)
    post = bayes.posterior(task, x, y, with_weights=True)
    want_w = _posterior_mean_w(x[..., :3], y, np.diag(_spectrum(6, 2.0)[:3]), 0.3)
    np.testing.assert_allclose(post.w_BxKxD[..., :3], want_w, atol=1e-10)
    np.testing.assert_allclose(post.w_BxKxD[..., 3:], 0.0, atol=1e-12)


@pytest.mark.parametrize("decay", [-0.5, float("nan"), float("inf")])
def test_bad_decay_is_refused_naming_the_key(decay):
    c = small_config(name="anisotropic_linear", weight_spectrum_decay=decay)
    with pytest.raises(UserError, match="task.weight_spectrum_decay"):
        config_lib.validate(c)


def test_decay_is_a_key_of_the_linear_family_only():
    c = small_config(name="relu_net", weight_spectrum_decay=2.0)
    with pytest.raises(UserError, match="task.weight_spectrum_decay=2.0 belongs to the linear family"):
        config_lib.validate(c)
