"""Comparing predictors: prediction differences, the weight probe, least squares' unbounded k."""

from __future__ import annotations

import numpy as np
import pytest

from icl_jax import baselines
from icl_jax.evaluation import compare, linear_scoring, predictors, statistics
from tests.conftest import small_config

pytestmark = pytest.mark.timeout(120)


def _prompts(seed, B=48, K=13, D=4, noise=0.3):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, K, D)).astype(np.float32)
    w = rng.standard_normal((B, D))
    y = (np.einsum("bkd,bd->bk", x, w) + noise * rng.standard_normal((B, K))).astype(np.float32)
    return x, y, w


def test_probe_recovers_the_weights_of_a_linear_predictor():
    """Ridge predictions (float32, regression.py) probed on fresh queries give back ridge's w
    as computed independently by the float64 posterior solver."""
    x, y, _ = _prompts(0)
    t = small_config(n_dims=4, n_points=13, noise_std=0.5).task
    ks = compare.probe_ks(4, 13)
    assert ks == [2, 4, 8]
    q = compare.probe_queries(seed=3, n_probes=8, n_dims=4)
    probe = compare.probe_prompts(x, y, ks, q)
    assert probe.x_MxLxD.shape == (48 * 3 * 8, 9, 4)
    answers = np.asarray(baselines.least_squares(probe.x_MxLxD, probe.y_MxL, ridge=0.25))
    w, r2 = compare.implied_weights(answers, ks, q)
    w_ridge = predictors.gaussian_weights(t, 0.5)(x, y)[:, ks]
    np.testing.assert_allclose(w, w_ridge, atol=2e-5)
    assert r2.min() > 1 - 1e-9
    agreement = compare.weight_agreement(w, {"ridge": w_ridge, "negated": -w_ridge}, normalizer=4.25)
    np.testing.assert_allclose(agreement["ridge"]["cosine"], 1.0, atol=1e-6)
    np.testing.assert_allclose(agreement["negated"]["cosine"], -1.0, atol=1e-6)
    assert max(agreement["ridge"]["squared_error"]) < 1e-8


def test_probe_sees_a_nonlinear_predictor():
    x, y, _ = _prompts(1)
    ks, q = [4, 8], compare.probe_queries(seed=3, n_probes=8, n_dims=4)
    probe = compare.probe_prompts(x, y, ks, q)
    answers = np.asarray(baselines.nearest_neighbors(probe.x_MxLxD, probe.y_MxL, n_neighbors=1))
    _, r2 = compare.implied_weights(answers, ks, q)
    assert r2.mean() < 0.9  # a nearest-neighbour answer is not x·w


def test_prediction_differences():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((30, 5)), rng.standard_normal((30, 5))
    counts = statistics.resample_counts(30, 50, seed=0)
    diffs = compare.prediction_differences({"a": a, "b": b, "a_again": a.copy()}, normalizer=2.0, counts_RxN=counts)
    assert sorted(diffs) == ["a|a_again", "a|b", "b|a_again"]  # each unordered pair once, in input order
    np.testing.assert_allclose(diffs["a|b"]["mean"], ((a - b) ** 2).mean(0) / 2.0)
    assert max(diffs["a|a_again"]["mean"]) == 0.0


def test_least_squares_is_marked_where_its_expected_error_is_infinite():
    assert linear_scoring.least_squares_unbounded_k(20, 41, 0.5) == [19, 20, 21]
    assert linear_scoring.least_squares_unbounded_k(20, 41, 0.0) == []
    assert linear_scoring.least_squares_unbounded_k(3, 4, 0.1) == [2, 3]
    assert linear_scoring.least_squares_unbounded_k(1, 5, 0.1) == [1, 2]


def test_least_squares_noise_error_follows_the_wishart_mean_off_the_marked_k():
    """The closed form behind the marks: for k > d + 1 the expected squared error of least
    squares on a fresh x is σ²(1 + d/(k-d-1)) (k < d - 1: noise σ²(1 + k/(d-k-1)) plus the
    unexplained signal); Monte-Carlo agrees, and at k = d the sample mean is far larger."""
    rng = np.random.default_rng(3)
    B, D, sigma = 20000, 5, 0.5
    x = rng.standard_normal((B, 12, D)).astype(np.float32)
    y = (sigma * rng.standard_normal((B, 12))).astype(np.float32)  # w = 0: only noise
    err = np.mean((np.asarray(baselines.least_squares(x, y), np.float64) - y) ** 2, 0)
    for k in (D + 3, D + 5, D + 6):
        assert err[k] == pytest.approx(sigma**2 * (1 + D / (k - D - 1)), rel=0.05)
    for k in (1, 2):
        assert err[k] == pytest.approx(sigma**2 * (1 + k / (D - k - 1)), rel=0.05)
    assert err[D] > 10 * err[D + 3]
