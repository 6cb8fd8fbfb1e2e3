"""The linear-regression baselines against independent float64 implementations.

Reference for least squares / ridge: a float64 SVD of every prefix (batched over prompts),
itself checked against numpy.linalg.lstsq and sklearn Ridge(fit_intercept=False) on a few
prompts, so the bulk comparison over 1280 prompts stays fast.
"""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest
from sklearn.linear_model import Ridge

from icl_jax import baselines

pytestmark = pytest.mark.timeout(120)

RIDGES = (0.0, 0.25, 1e-3)
NOISE = 0.5

# Per-prompt prediction tolerance, relative to the prompt's scale: |yhat - ref| <= tol *
# (rms(y of the prompt) + |ref|). Worst observed values below are for the seeds of these
# tests (1280 prompts per D; max cond(X_D) = 7.9e3 for D=5 and 3.5e4 for D=20).
# Everything runs in float64 (regression.py), so every k and every ridge is limited by the
# float32 rounding of the output (~6e-8): worst observed 5.1e-8 (ridge 0, D=20, noisy, k <= D),
# 4.8e-8 past k = D, 4.4e-8 for ridge. The float32 dd + Givens version before it: 1.6e-7
# (k <= D), 1.0e-5 (k > D), 4.7e-5 (ridge 1e-3).
# Per-k mean squared errors: the assertion's |mse - mse64| / (1e-4 mse64 + 1e-6 E[y^2]) is at
# most 3.8e-4 (2600x margin); where the MSE is above the floor the relative MSE error is
# <= 4e-7, and at k = D for noisy least squares <= 4e-8 (float32 LAPACK sgelsy: ~3e-3).
TOL = 1e-6


def _svd_reference(x_BxKxD, ys, ridges) -> dict[float, list[np.ndarray]]:
    """float64 yhat_BxK of every y in ys for every ridge: min-norm least squares (singular
    values below eps * max(k, D) * s_max dropped, numpy.linalg.lstsq's rcond) or ridge
    regression without intercept, on every prefix; yhat[:, 0] = 0."""
    x = x_BxKxD.astype(np.float64)
    B, K, D = x.shape
    out = {lam: [np.zeros((B, K)) for _ in ys] for lam in ridges}
    for k in range(1, K):
        u, s, vt = np.linalg.svd(x[:, :k], full_matrices=False)
        xv = np.einsum("bd,brd->br", x[:, k], vt)
        for lam in ridges:
            if lam == 0:
                keep = s > np.finfo(np.float64).eps * max(k, D) * s[:, :1]
                f = np.where(keep, 1.0 / np.where(keep, s, 1.0), 0.0)
            else:
                f = s / (s * s + lam)
            for o, y in zip(out[lam], ys):
                o[:, k] = np.einsum("br,bkr,bk->b", xv * f, u, y[:, :k].astype(np.float64))
    return out


def _gaussian_prompts(rng, B, K, D, noise):
    x = rng.standard_normal((B, K, D)).astype(np.float32)
    w = rng.standard_normal((B, D)).astype(np.float32)
    y = np.einsum("bkd,bd->bk", x, w) + noise * rng.standard_normal((B, K))
    return x, y.astype(np.float32)


def _least_squares(x, y, ridge=0.0) -> np.ndarray:
    return np.asarray(baselines.least_squares(x, y, ridge=ridge))


def _relative_error(yhat, ref, y):
    scale_Bx1 = np.sqrt(np.mean(np.asarray(y, np.float64) ** 2, axis=1, keepdims=True))
    return np.abs(yhat - ref) / (scale_Bx1 + np.abs(ref))


@pytest.fixture(scope="module", params=[5, 20], ids=lambda d: f"D{d}")
def gaussian_case(request):
    """1280 prompts x ~ N(0, I), w ~ N(0, I), K = 2D + 1; noiseless and noisy y on the same
    x, with float64 references for every ridge."""
    D = request.param
    rng = np.random.default_rng(D)
    x, y_clean = _gaussian_prompts(rng, 1280, 2 * D + 1, D, 0.0)
    y_noisy = (y_clean + NOISE * rng.standard_normal(y_clean.shape)).astype(np.float32)
    return x, {"clean": y_clean, "noisy": y_noisy}, _svd_reference(x, [y_clean, y_noisy], RIDGES)


def test_reference_matches_lstsq_and_sklearn():
    rng = np.random.default_rng(0)
    x, y = _gaussian_prompts(rng, 6, 11, 5, NOISE)
    refs = _svd_reference(x, [y], RIDGES)
    X, Y = x.astype(np.float64), y.astype(np.float64)
    for b in range(len(x)):
        for k in range(1, x.shape[1]):
            w = np.linalg.lstsq(X[b, :k], Y[b, :k], rcond=None)[0]
            np.testing.assert_allclose(refs[0.0][0][b, k], X[b, k] @ w, rtol=1e-9, atol=1e-9)
            for lam in RIDGES[1:]:
                m = Ridge(alpha=lam, fit_intercept=False).fit(X[b, :k], Y[b, :k])
                pred = m.predict(X[b, k][None])[0]
                np.testing.assert_allclose(refs[lam][0][b, k], pred, rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("ridge", RIDGES)
def test_matches_float64_every_k(gaussian_case, ridge):
    x, ys, refs = gaussian_case
    D = x.shape[2]
    for (name, y), ref in zip(ys.items(), refs[ridge]):
        yhat = _least_squares(x, y, ridge)
        assert np.isfinite(yhat).all()
        assert (yhat[:, 0] == 0.0).all(), "no examples: exactly 0"
        # per-k mean squared error vs the true y, the quantity the curves plot; k = D - 1,
        # D, D + 1 included (k = D dominated by the worst-conditioned prompts).
        mse_K = np.mean((yhat.astype(np.float64) - y) ** 2, axis=0)
        ref_K = np.mean((ref - y) ** 2, axis=0)
        floor = 1e-6 * np.mean(np.asarray(y, np.float64) ** 2)  # exactly-zero noiseless errors
        np.testing.assert_array_less(np.abs(mse_K - ref_K), 1e-4 * ref_K + floor, err_msg=name)
        rel = _relative_error(yhat, ref, y)
        assert rel[:, : D + 1].max() <= TOL, (name, rel[:, : D + 1].max())  # k <= D
        assert rel[:, D + 1:].max() <= TOL, (name, rel[:, D + 1:].max())


def test_noiseless_interpolates_from_k_equal_d(gaussian_case):
    x, ys, _ = gaussian_case
    y = ys["clean"]
    D = x.shape[2]
    mse_K = np.mean((_least_squares(x, y) - y.astype(np.float64)) ** 2, axis=0)
    assert mse_K[D:].max() <= 1e-6 * np.mean(y.astype(np.float64) ** 2), mse_K[D:]
    assert mse_K[D - 1] > 1e-2  # sanity: one short of D the solution is not determined


def test_ill_conditioned_square_prompts_are_exact():
    """cond(X_D) = 1e2..1e6 on purpose: float32 solvers miss the k = D prediction by
    ~cond * 6e-8 (up to 6e-2), and float64 normal equations by ~cond^2 * 1e-16 (1e-4); the
    float64 Gram-Schmidt must not (observed 5.6e-8). Past k = D the covariance recursion
    starts from cond(X_D): ~cond^2 * 1e-16 (observed 4.0e-5, where cond(X_{k>D}) stays ~1e6:
    one more row lifts one singular value only)."""
    rng = np.random.default_rng(1)
    B, D = 64, 20
    u, _ = np.linalg.qr(rng.standard_normal((B, D, D)))
    v, _ = np.linalg.qr(rng.standard_normal((B, D, D)))
    s = np.logspace(0, -np.linspace(2, 6, B)[:, None], D, axis=-1)[:, 0]  # BxD
    square = np.einsum("bij,bj,bkj->bik", u, s, v)
    x = np.concatenate([square, rng.standard_normal((B, D + 1, D))], axis=1).astype(np.float32)
    y = rng.standard_normal((B, 2 * D + 1)).astype(np.float32)
    ref = _svd_reference(x, [y], [0.0])[0.0][0]
    yhat = _least_squares(x, y)
    rel = _relative_error(yhat, ref, y)
    assert rel[:, : D + 1].max() <= TOL, rel[:, : D + 1].max()
    assert rel[:, D + 1:].max() <= 1e-3, rel[:, D + 1:].max()
    assert np.isfinite(yhat).all()


def _rank_deficient_batch(rng, B, K, D):
    """Groups of prompts: duplicated rows, all-zero rows, a row that is an exact multiple of
    an earlier one, zeroed trailing coordinates (dimension curriculum, 5 active), all zero."""
    x, y = _gaussian_prompts(rng, 5 * B, K, D, NOISE)
    g = [slice(i * B, (i + 1) * B) for i in range(5)]
    x[g[0], 3] = x[g[0], 1]
    x[g[0], 7] = x[g[0], 2]
    x[g[0], 8] = x[g[0], 2]
    x[g[1], 0] = 0.0
    x[g[1], 4] = 0.0
    x[g[2], 6] = 2.0 * x[g[2], 5]
    x[g[3], :, 5:] = 0.0
    x[g[4]] = 0.0
    return x, y


@pytest.mark.parametrize("ridge", [0.0, 0.25])
@pytest.mark.parametrize("K, D", [(41, 20), (20, 20), (10, 20), (7, 1), (3, 5)])
def test_rank_deficient_and_odd_shapes(K, D, ridge):
    """No NaN/inf ever, and still the float64 (min-norm) answer. A batch with a dependent row
    among rows 0..D-1 of any prompt runs the general path (one slot per row); observed
    4.3e-8 (the float32 recursion before: 5.4e-6)."""
    rng = np.random.default_rng(K * 100 + D)
    if K > 8:
        x, y = _rank_deficient_batch(rng, 16, K, D)
    else:  # short prompts: an all-zero row, a duplicated row
        x, y = _gaussian_prompts(rng, 64, K, D, NOISE)
        x[:16, 1] = 0.0
        x[16:32, 2] = x[16:32, 0]
    yhat = _least_squares(x, y, ridge)
    assert np.isfinite(yhat).all()
    assert (yhat[:, 0] == 0.0).all()
    ref = _svd_reference(x, [y], [ridge])[ridge][0]
    assert _relative_error(yhat, ref, y).max() <= TOL


@pytest.mark.parametrize("ridge", [0.0, 0.25])
def test_zeroed_trailing_coordinates_equal_active_least_squares(ridge):
    """Curriculum: D = 20 with only the first 5 coordinates active must equal the fit on
    the 5 active coordinates."""
    rng = np.random.default_rng(7)
    x5, y = _gaussian_prompts(rng, 256, 41, 5, NOISE)
    x = np.concatenate([x5, np.zeros((256, 41, 15), np.float32)], axis=-1)
    ref = _svd_reference(x5, [y], [ridge])[ridge][0]
    yhat = _least_squares(x, y, ridge)
    rel = _relative_error(yhat, ref, y)
    assert rel.max() <= TOL, rel.max()  # observed 4.4e-8 (ridge 0), 4.1e-8 (ridge 0.25)
    active_only = _least_squares(x5, y, ridge)  # ridge 0: the fast path, D = 5
    assert _relative_error(yhat, active_only, y).max() <= TOL


def test_jit_with_bound_ridge_like_the_evaluator():
    rng = np.random.default_rng(3)
    x, y = _gaussian_prompts(rng, 8, 9, 4, NOISE)
    fn = jax.jit(functools.partial(baselines.least_squares, ridge=0.25))
    np.testing.assert_allclose(np.asarray(fn(x, y)), _least_squares(x, y, 0.25), rtol=1e-6)
    with pytest.raises(ValueError):
        baselines.least_squares(x, y, ridge=-1.0)


def test_one_degenerate_prompt_switches_the_batch_to_the_general_path_unchanged():
    """100 prompts (not a multiple of the 64-prompt chunks): the generic batch runs the fast
    path; a duplicated row in one prompt sends the whole batch through the general path,
    which must give the other prompts the same answers (both are float64: observed 1.7e-8)."""
    rng = np.random.default_rng(8)
    x, y = _gaussian_prompts(rng, 100, 41, 20, NOISE)
    fast = _least_squares(x, y)
    x_deg = x.copy()
    x_deg[-1, 4] = x_deg[-1, 2]
    general = _least_squares(x_deg, y)
    assert _relative_error(general[:-1], fast[:-1], y[:-1]).max() <= TOL
    ref = _svd_reference(x_deg[-1:], [y[-1:]], [0.0])[0.0][0]
    assert _relative_error(general[-1:], ref, y[-1:]).max() <= TOL


def test_float64_stays_inside():
    """x64 is scoped to the call: float32 out, and float32 for whatever the caller does next,
    also when the caller jits it (as evaluate does)."""
    x, y = _gaussian_prompts(np.random.default_rng(9), 4, 6, 3, NOISE)
    for fn in (baselines.least_squares, jax.jit(lambda x, y: baselines.least_squares(x, y) * 2.0)):
        assert fn(x, y).dtype == np.float32
        assert jax.numpy.ones(2).dtype == np.float32


# ----------------------------------------------------------------------------------------
# averaging, nearest neighbours, zero
# ----------------------------------------------------------------------------------------
def test_averaging_matches_numpy_loop():
    rng = np.random.default_rng(4)
    x, y = _gaussian_prompts(rng, 64, 21, 5, NOISE)
    X, Y = x.astype(np.float64), y.astype(np.float64)
    ref = np.zeros(y.shape)
    for b in range(len(x)):
        for k in range(1, x.shape[1]):
            ref[b, k] = X[b, k] @ (X[b, :k].T @ Y[b, :k] / k)
    yhat = np.asarray(baselines.averaging(x, y))
    assert (yhat[:, 0] == 0.0).all()
    np.testing.assert_allclose(yhat, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n_neighbors", [1, 3, 5])
def test_nearest_neighbors_matches_numpy_loop(n_neighbors):
    rng = np.random.default_rng(5)
    x, y = _gaussian_prompts(rng, 64, 21, 5, NOISE)
    X, Y = x.astype(np.float64), y.astype(np.float64)
    ref = np.zeros(y.shape)
    for b in range(len(x)):
        for k in range(1, x.shape[1]):
            dist = np.sum((X[b, :k] - X[b, k]) ** 2, axis=-1)
            nearest = np.argsort(dist, kind="stable")[:n_neighbors]  # ties: lower index
            ref[b, k] = Y[b, nearest].mean()
    yhat = np.asarray(baselines.nearest_neighbors(x, y, n_neighbors=n_neighbors))
    assert (yhat[:, 0] == 0.0).all()
    np.testing.assert_allclose(yhat, ref, rtol=1e-6, atol=1e-6)


def test_nearest_neighbors_ties_lowest_index_wins():
    x = np.array([[[0.0], [1.0], [-1.0], [0.0], [1.0]]], np.float32)
    y = np.array([[5.0, 1.0, 2.0, 0.0, 0.0]], np.float32)
    # k=2: x=-1, nearest of {0: d=1, 1: d=4} -> 5; k=3: x=0, d = (0, 1, 1): 0 then tie 1 vs 2
    # -> index 1; k=4: x=1, d = (1, 0, 4, 1): index 1, then tie 0 vs 3 -> index 0.
    np.testing.assert_allclose(
        np.asarray(baselines.nearest_neighbors(x, y, n_neighbors=2)), [[0, 5, 3, 3, 3]])
    np.testing.assert_allclose(  # more neighbours than points: all earlier points
        np.asarray(baselines.nearest_neighbors(x, y, n_neighbors=10)), [[0, 5, 3, 8 / 3, 2]])


def test_zero():
    x = np.ones((2, 3, 4), np.float32)
    y = np.ones((2, 3), np.float32)
    yhat = np.asarray(baselines.zero(x, y))
    assert yhat.shape == (2, 3) and yhat.dtype == np.float32 and not yhat.any()
