"""The Fourier posteriors stay exact on ill-conditioned prompts: inputs clustered in a part of
the period, where a too-small N fits the labels to 1e-9 and the feature matrix's condition
number reaches 1e13. References: the true labels once N is identified, and numpy's SVD
least squares (independent of the library's factorization) before."""

import numpy as np
import pytest

from icl_jax.baselines import fourier as fourier_baselines
from icl_jax.tasks import fourier as fourier_tasks

pytestmark = pytest.mark.timeout(300)
L = 5.0


def _clustered_prompts(N: int, K: int, width: float, B: int, seed: int):
    """B prompts of the N-frequency class whose K inputs lie in one interval of `width` (of
    the period 2L), float32 inputs as the sampler makes them, labels exact in float64."""
    rng = np.random.default_rng(seed)
    start = rng.uniform(-L, L - width, (B, 1))
    x = (start + width * rng.uniform(0, 1, (B, K))).astype(np.float32).astype(np.float64)
    coef = np.concatenate([rng.normal(size=(B, 2 * N + 1)) / np.sqrt(N), np.full((B, 1), N)], axis=1)
    return x[..., None], fourier_tasks.labels(x, coef, N, L, np)


def _min_norm_prediction(phi_BxKxF, y_BxK, k: int, columns: int) -> np.ndarray:
    return np.array([phi[k, :columns] @ np.linalg.lstsq(phi[:k, :columns], y[:k], rcond=None)[0]
                     for phi, y in zip(phi_BxKxF, y_BxK)])


def _fit_quality(phi_BxKxF, y_BxK, k: int, columns: int):
    """numpy's least squares with `columns` features on the first k labels: its relative
    residual and its normwise backward error in units of float64's roundoff."""
    relative, backward = [], []
    for phi, y in zip(phi_BxKxF, y_BxK):
        A, b = phi[:k, :columns], y[:k]
        coef = np.linalg.lstsq(A, b, rcond=None)[0]
        r = np.linalg.norm(A @ coef - b)
        relative.append(r / np.linalg.norm(b))
        backward.append(r / (np.linalg.norm(A, 2) * np.linalg.norm(coef) + np.linalg.norm(b)) / np.finfo(float).eps)
    return np.array(relative), np.array(backward)


@pytest.mark.parametrize("width", [1.5, 2.0])
def test_mixture_over_n_does_not_take_a_smaller_n_that_nearly_fits(width):
    """N ~ U{1..5}, prompts of the largest N on clustered inputs. With 2N points, N - 1 has one
    row more than columns and fits them to 1e-13..1e-8 (rounding leaves 1e-16 on the true
    N). Where float64 can tell (the too-small fit's backward error is far above roundoff)
    the posterior must give N all the weight and predict its min-norm interpolant; once N
    is identified, the label itself. (Below that, no float64 computation can tell N - 1
    from N: docs/baselines.md.)"""
    N, B = 5, 48
    F = 2 * N + 1
    x, y = _clustered_prompts(N, F + 3, width, B, seed=int(10 * width))
    phi = fourier_baselines.feature_prompts(x, N, L)
    relative, backward = _fit_quality(phi, y, F - 1, F - 2)
    trap = (relative < 1e-8) & (backward > 1000)  # a residual threshold of 1e-8 takes N - 1 here
    assert trap.sum() >= 5
    r = fourier_baselines.posterior(x[trap], y[trap], N, L, mixture_over_n=True, true_n_B=np.full(trap.sum(), N))
    np.testing.assert_allclose(r.true_weight_BxK[:, F - 1:], 1.0, atol=1e-12)
    np.testing.assert_allclose(r.yhat_BxK[:, F - 1], _min_norm_prediction(phi[trap], y[trap], F - 1, F),
                               atol=1e-3, rtol=1e-3)
    np.testing.assert_allclose(r.yhat_BxK[:, F + 1:], y[trap][:, F + 1:], atol=1e-6)


def test_the_reported_prompt_keeps_its_true_n():
    """The prompt of the bug report: fourier_mixture, N_max = 10, L = 5, 43 points, prompt 209
    of one jitted sample(PRNGKey(14), 1280). Its N = 10, and N = 9 fits its first 20 labels
    to 6.9e-9; the exact prediction at k = 20 is -0.714 (48.7 with a 1e-8 threshold)."""
    import jax

    from icl_jax import config as config_lib
    from icl_jax import tasks

    c = config_lib.default_config()
    c.task.name, c.task.n_dims, c.task.n_points = "fourier_mixture", 1, 43
    c.task.fourier_max_frequency, c.task.fourier_half_period, c.task.noise_std = 10, L, 0.0
    task = tasks.get_task(c.task)
    p = jax.jit(lambda key: task.sample(key, 1280))(jax.random.PRNGKey(14))
    x, w = np.asarray(p.x_BxKxD)[209:210], np.asarray(p.w_BxD)[209:210].astype(np.float64)
    y = fourier_tasks.labels(x[..., 0].astype(np.float64), w, 10, L, np)
    phi = fourier_baselines.feature_prompts(x, 10, L)
    relative, _ = _fit_quality(phi, y, 20, 19)
    assert w[0, -1] == 10 and relative[0] < 1e-8  # the sampler still makes the reported prompt
    r = fourier_baselines.posterior(x, y, 10, L, mixture_over_n=True, true_n_B=[10])
    assert r.true_weight_BxK[0, 20] == pytest.approx(1.0)
    assert r.yhat_BxK[0, 20] == pytest.approx(_min_norm_prediction(phi, y, 20, 21)[0], abs=1e-6)
    assert r.yhat_BxK[0, 20] == pytest.approx(-0.714, abs=1e-3)


def test_fixed_n_posterior_is_exact_on_ill_conditioned_prompts():
    """The sampler's own fourier prompts (N = 10, L = 5, 43 points) whose 21×21 feature matrix
    has a condition number of 3e10 or more (about 1 in 100): from k = 2N+1 on the noiseless
    posterior is the interpolant, so it predicts the label; a fresh orthogonal factorization
    keeps that to float64's accuracy times the conditioning (updating one factorization row by
    row lost 0.03 at k = 22 on these prompts)."""
    import jax

    from icl_jax import config as config_lib
    from icl_jax import tasks

    c = config_lib.default_config()
    c.task.name, c.task.n_dims, c.task.n_points = "fourier", 1, 43
    c.task.fourier_max_frequency, c.task.fourier_half_period, c.task.noise_std = 10, L, 0.0
    task = tasks.get_task(c.task)
    p = jax.jit(lambda key: task.sample(key, 4000))(jax.random.PRNGKey(0))
    x, w = np.asarray(p.x_BxKxD), np.asarray(p.w_BxD).astype(np.float64)
    phi = fourier_baselines.feature_prompts(x, 10, L)
    ill = np.linalg.cond(phi[:, :21]) >= 2.8e10
    assert ill.sum() >= 10
    x, w, phi = x[ill], w[ill], phi[ill]
    y = fourier_tasks.labels(x[..., 0].astype(np.float64), w, 10, L, np)
    r = fourier_baselines.posterior(x, y, 10, L, mixture_over_n=False)
    error = np.abs(r.yhat_BxK - y).max(0)
    assert error[21] < 2e-3 and error[22] < 1e-5 and error[23] < 1e-7 and error[24:].max() < 1e-6
    # ... and before that it is least squares on the same features (numpy's, from an SVD)
    np.testing.assert_allclose(r.yhat_BxK[:, 15], _min_norm_prediction(phi, y, 15, 21), atol=1e-6)
    np.testing.assert_allclose(fourier_baselines.least_squares_features(x, y, np.full(len(x), 10), 10, L),
                               r.yhat_BxK, atol=1e-9)


def test_float32_labels_keep_the_true_n():
    """Labels rounded to float32 (the model's own prompts) leave 1e-8 residuals on the true N:
    the consistency test allows the labels' own rounding, so N is still identified."""
    N, B = 3, 32
    F = 2 * N + 1
    rng = np.random.default_rng(3)
    x = rng.uniform(-L, L, (B, 12)).astype(np.float32).astype(np.float64)
    coef = np.concatenate([rng.normal(size=(B, F)) / np.sqrt(N), np.full((B, 1), N)], axis=1)
    y32 = fourier_tasks.labels(x, coef, N, L, np).astype(np.float32)
    r = fourier_baselines.posterior(x[..., None], y32, 5, L, mixture_over_n=True, true_n_B=np.full(B, N))
    np.testing.assert_allclose(r.true_weight_BxK[:, F + 1:], 1.0, atol=1e-9)
    np.testing.assert_allclose(r.yhat_BxK[:, F + 1:], y32[:, F + 1:], atol=1e-4)
