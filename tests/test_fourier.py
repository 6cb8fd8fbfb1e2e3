"""Fourier-series prompts, their exact posterior (against numpy least squares and a
brute-force numpy model average) and the spectrum tool."""

import math

import jax
import numpy as np
import pytest

from icl_jax import config as config_lib
from icl_jax import curriculum, tasks
from icl_jax.baselines import fourier as fourier_baselines
from icl_jax.errors import UserError
from icl_jax.evaluation import regression_scoring, spectrum, statistics
from icl_jax.tasks import fourier as fourier_tasks

pytestmark = pytest.mark.timeout(300)
L = 5.0


def _task_config(name="fourier", N=3, K=12, noise=0.0):
    c = config_lib.default_config()
    c.task.name, c.task.n_dims, c.task.n_points = name, 1, K
    c.task.fourier_max_frequency, c.task.fourier_half_period, c.task.noise_std = N, L, noise
    return c


def _sample(name="fourier", N=3, K=12, B=16, noise=0.0, seed=0, active=None):
    task = tasks.get_task(_task_config(name, N, K, noise).task)
    p = task.sample(jax.random.key(seed), B, active)
    return task, *(np.asarray(a) for a in p)


def _exact(x, w, N):
    """f(x) = a_0 + Σ_{n ≤ N} a_n cos(nπx/L) + b_n sin(nπx/L) in float64, written out here from
    the documented layout of w: [a_0, a_1, b_1, a_2, b_2, ..., a_N, b_N, N]."""
    x, w = x[..., 0].astype(np.float64), w.astype(np.float64)
    f = np.repeat(w[:, :1], x.shape[1], axis=1)
    for n in range(1, N + 1):
        f += w[:, 2 * n - 1, None] * np.cos(n * np.pi * x / L) + w[:, 2 * n, None] * np.sin(n * np.pi * x / L)
    return f


def test_sampler_statistics():
    task, x, y, w = _sample("fourier", N=10, K=41, B=4000)
    assert x.shape == (4000, 41, 1) and w.shape == (4000, 22)
    assert -L <= x.min() and x.max() < L
    assert np.all(w[:, -1] == 10)
    # E[y²] = 1 + 1/N: a_0 and the 2N other coefficients have variance 1/N, E[cos²] = E[sin²] = 1/2
    assert task.normalizer == pytest.approx(1.1)
    assert np.mean(y**2) == pytest.approx(1.1, rel=0.03)
    assert np.var(w[:, :21] * np.sqrt(10)) == pytest.approx(1.0, rel=0.03)
    np.testing.assert_allclose(y, _exact(x, w, 10), atol=2e-5)

    mix, x, y, w = _sample("fourier_mixture", N=10, K=11, B=20000, seed=1)
    counts = np.bincount(w[:, -1].astype(int), minlength=11)[1:]
    assert counts.min() > 0.9 * 2000 and counts.max() < 1.1 * 2000  # N ~ U{1..10}
    assert mix.normalizer == pytest.approx(np.mean(1 + 1 / np.arange(1, 11)))
    assert np.mean(y**2) == pytest.approx(mix.normalizer, rel=0.03)
    freq = fourier_tasks.frequency_of_column(10)
    assert np.all(w[:, :21][freq[None] > w[:, -1:]] == 0)  # no coefficient past the prompt's N


def test_frequency_curriculum():
    c = _task_config("fourier", N=10, K=41)
    c.curriculum.dims_start, c.curriculum.dims_increment, c.curriculum.interval = 1, 1, 100
    config_lib.validate(c)
    assert [int(curriculum.active_dims(c, s)) for s in (0, 150, 5000)] == [1, 2, 10]
    _, _, y, w = _sample("fourier", N=10, K=41, B=2000, active=2)
    assert np.all(w[:, 5:21] == 0) and np.all(w[:, -1] == 2)
    assert np.mean(y**2) == pytest.approx(1.5, rel=0.05)  # N = 2 active: 1 + 1/2
    c.curriculum.dims_start = 11
    with pytest.raises(UserError, match="fourier_max_frequency"):
        config_lib.validate(c)
    c = _task_config()
    c.task.n_dims = 2
    with pytest.raises(UserError, match="n_dims must be 1"):
        config_lib.validate(c)


def _numpy_least_squares(phi_BxKxF, y_BxK, n_B):
    B, K, _ = phi_BxKxF.shape
    out = np.zeros((B, K))
    for b in range(B):
        cols = 2 * n_B[b] + 1
        for k in range(1, K):
            coef = np.linalg.lstsq(phi_BxKxF[b, :k, :cols], y_BxK[b, :k], rcond=None)[0]
            out[b, k] = phi_BxKxF[b, k, :cols] @ coef
    return out


def test_posterior_and_least_squares_match_numpy_on_features():
    _, x, _, w = _sample("fourier_mixture", N=3, K=12, B=16, seed=2)  # shapes shared: one compile
    y = _exact(x, w, 3)
    phi = fourier_baselines.feature_prompts(x, 3, L)
    n = w[:, -1].astype(int)
    got = fourier_baselines.least_squares_features(x, y, n, 3, L)
    np.testing.assert_allclose(got, _numpy_least_squares(phi, y, n), atol=1e-7)
    # fixed N = N_max: the exact posterior is the min-norm fit on all 2N+1 features,
    # identified (error 0) once k > 2N+1
    full = np.full(len(x), 3)
    posterior = fourier_baselines.posterior(x, y, 3, L, mixture_over_n=False).yhat_BxK
    np.testing.assert_allclose(posterior, _numpy_least_squares(phi, y, full), atol=1e-7)
    np.testing.assert_allclose(posterior[:, 8:], y[:, 8:], atol=1e-8)


def _numpy_model_average(phi_BxKxF, y_BxK, N_max, sigma):
    """Brute force: per N the Gaussian evidence N(y; 0, Φ Φᵀ/N + σ²I) and posterior mean."""
    B, K, _ = phi_BxKxF.shape
    out = np.zeros((B, K))
    for b in range(B):
        for k in range(K):
            logw, preds = [], []
            for N in range(1, N_max + 1):
                A, q = phi_BxKxF[b, :k, :2 * N + 1], phi_BxKxF[b, k, :2 * N + 1]
                S = A @ A.T / N + sigma**2 * np.eye(k)
                sol = np.linalg.solve(S, y_BxK[b, :k]) if k else np.zeros(0)
                logdet = np.linalg.slogdet(S)[1] if k else 0.0
                logw.append(-0.5 * (logdet + y_BxK[b, :k] @ sol + k * math.log(2 * math.pi)))
                preds.append(q @ A.T @ sol / N if k else 0.0)
            logw = np.array(logw)
            beta = np.exp(logw - logw.max())
            out[b, k] = beta @ np.array(preds) / beta.sum()
    return out


def test_model_average_matches_brute_force_with_noise():
    sigma = 0.3
    _, x, y, w = _sample("fourier_mixture", N=3, K=10, B=6, noise=sigma, seed=3)
    phi = fourier_baselines.feature_prompts(x, 3, L)
    got = fourier_baselines.posterior(x, y, 3, L, mixture_over_n=True, noise_std=sigma).yhat_BxK
    np.testing.assert_allclose(got, _numpy_model_average(phi, y.astype(np.float64), 3, sigma), atol=1e-8)


def test_noiseless_model_average_identifies_n():
    """σ = 0 is a limit: once 2N+2 points are seen the smallest interpolating N takes all the
    weight and the error is exactly 0 (a jittered solver would leave an error there)."""
    task, x, _, w = _sample("fourier_mixture", N=3, K=12, B=16, seed=4)
    y = _exact(x, w, 3)
    n = w[:, -1].astype(int)
    r = fourier_baselines.posterior(x, y, 3, L, mixture_over_n=True, true_n_B=n)
    k = np.arange(12)
    identified = k[None, :] >= 2 * n[:, None] + 2
    assert np.all(r.true_weight_BxK[identified] > 1 - 1e-9)
    assert np.max(np.abs(r.yhat_BxK - y)[identified]) < 1e-8
    error = np.mean((r.yhat_BxK - y) ** 2, 0) / task.normalizer
    ls_max = fourier_baselines.least_squares_features(x, y, np.full(16, 3), 3, L)
    ls_error = np.mean((ls_max - y) ** 2, 0) / task.normalizer
    assert error[1:7].sum() < ls_error[1:7].sum()  # the prior over N helps before identification


def test_spectrum_of_a_pure_cosine_peaks_at_its_frequency():
    g = spectrum.grid(L, 32)
    assert len(g) == 32 and g[0] == -L and g[-1] < L
    p = spectrum.normalized(spectrum.power_from_grid(2.0 * np.cos(3 * np.pi * g / L)))
    assert np.argmax(p) == 3 and p[3] == pytest.approx(1.0)
    # Parseval: grid power equals coefficient power for any series below G/2
    coef = np.asarray(jax.random.normal(jax.random.key(5), (4, 2 * 7 + 1)))
    values = np.einsum("gf,bf->bg", fourier_tasks.features(g, 7, L, np), coef)
    np.testing.assert_allclose(spectrum.power_from_grid(values), spectrum.power_from_coefficients(coef, 17),
                               atol=1e-12)
    assert np.mean(values**2, 1) == pytest.approx(spectrum.power_from_grid(values).sum(1))


class _LabelMean:
    """A stand-in model: the mean of the labels seen so far."""

    def __call__(self, x, y):
        total = np.concatenate([np.zeros_like(y[:, :1]), np.cumsum(y, 1)[:, :-1]], 1)
        return total / np.maximum(np.arange(y.shape[1]), 1)


def test_scorer_and_spectra_on_the_mixture():
    task, x, y, w = _sample("fourier_mixture", N=3, K=12, B=16, seed=4)  # the shapes above: no recompile
    c = _task_config("fourier_mixture", N=3, K=12)
    scores = regression_scoring.score(c, task, _LabelMean(), x, y, w, statistics.resample_counts(16, 50, 0))
    assert set(scores.errors) == {"model", "bayes", "least_squares_true_N", "least_squares_max_N",
                                  "label_mean", "nearest_neighbors", "zero"}
    n = w[:, -1].astype(int)
    identified = np.arange(12)[None] >= 2 * n[:, None] + 2
    assert np.max(scores.errors["bayes"][identified]) < 1e-12
    assert np.max(scores.errors["least_squares_true_N"][identified]) < 1e-12
    assert scores.report["bayes"]["true_component_weight"]["mean"][-1] > 0.999

    result = spectrum.spectra(task, _LabelMean(), x, y, _exact(x, w, 3), w, [1, 11], 8)
    true = np.array(result["true_functions"])
    for name in ("bayes", "least_squares_true_N", "least_squares_max_N"):  # all identified at k = 11 > 2·3+1
        np.testing.assert_allclose(result["normalized_power"][name][1], true, atol=1e-9)
    # the label mean is a constant function: all its power at frequency 0
    np.testing.assert_allclose(result["normalized_power"]["model"][0], np.eye(5)[0], atol=1e-9)


def test_model_spectrum_of_an_oracle_is_the_true_spectrum():
    """A 'model' that answers every query with the prompt's true function: its grid spectrum
    must equal the coefficients' spectrum at every k (checks the probe layout and the DFT)."""
    _, x, y, w = _sample("fourier", N=3, K=8, B=5, seed=6)
    true_coef = {tuple(np.round(xb[:3, 0], 6)): wb for xb, wb in zip(x, w)}

    def oracle(x_MxLx1, y_MxL):
        coef = np.stack([true_coef[tuple(np.round(xm[:3, 0], 6))] for xm in x_MxLx1])
        return _exact(x_MxLx1, coef, 3)

    ks = [3, 5, 7]
    power = spectrum.model_power(oracle, x, y, ks, spectrum.grid(L, 16))
    want = spectrum.power_from_coefficients(w[:, :7], 9)
    for i in range(len(ks)):
        np.testing.assert_allclose(power[:, i], want, atol=1e-9)
