"""The exact Bayes baselines against the independent float64 references of bayes_reference.py,
and the numerical traps of docs/baselines.md."""

from __future__ import annotations

import fractions
import itertools
import math

import numpy as np
import pytest

from icl_jax import tasks
from icl_jax.baselines import bayes, enumeration, least_squares, mixture
from icl_jax.baselines.gaussian_posterior import gaussian_posterior
from tests import bayes_reference as ref
from icl_jax.tasks import linear as linear_tasks
from icl_jax.tasks import priors
from tests.conftest import small_config

pytestmark = pytest.mark.timeout(240)


def _prompts(rng, B, K, D, w_BxD, sigma, f64_labels=True):
    x = rng.standard_normal((B, K, D)).astype(np.float32)
    y = np.einsum("bkd,bd->bk", x.astype(np.float64), w_BxD) + sigma * rng.standard_normal((B, K))
    return x, (y if f64_labels else y.astype(np.float32))


def _rel(yhat, yref, y):
    scale = np.sqrt(np.mean(np.asarray(y, np.float64) ** 2, axis=1, keepdims=True))
    return np.abs(np.asarray(yhat, np.float64) - yref) / np.maximum(scale + np.abs(yref), 1e-300)


def _assert_mse_close(yhat, yref, y, rel=1e-4):
    """Per-k mean squared error within `rel` of the reference's, at every k (a floor of 1e-6
    E[y^2] for the exactly-zero noiseless errors)."""
    y = np.asarray(y, np.float64)
    mse = np.mean((np.asarray(yhat, np.float64) - y) ** 2, axis=0)
    mse_ref = np.mean((yref - y) ** 2, axis=0)
    np.testing.assert_array_less(np.abs(mse - mse_ref), rel * mse_ref + 1e-6 * np.mean(y**2))


# ----------------------------------------------------------------------------------------
# the Gaussian-linear posterior (least_squares on whitened data)
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("sigma", [0.0, 0.5])
@pytest.mark.parametrize("D, prior", [(5, "isotropic"), (5, "full"), (5, "singular"), (20, "full"), (20, "singular")])
def test_gaussian_posterior_matches_float64(D, prior, sigma):
    """Any μ, Σ (singular included), σ; every k including d-1, d, d+1 (isotropic d = 20 is
    least squares / ridge itself: test_baselines_linear.py). Observed: the per-k MSE
    criterion below is at most 0.005 of its bound; per prompt <= 8e-5 relative (float32 labels
    minus x·μ, amplified by cond(X) at k = d)."""
    rng = np.random.default_rng(D + 7 * len(prior) + int(10 * sigma))
    B, K = (512 if D == 5 else 128), 2 * D + 1
    A = rng.standard_normal((D, D))
    cov = {"isotropic": np.eye(D), "full": A @ A.T / D + 0.1 * np.eye(D),
           "singular": np.diag(np.r_[np.ones(D - 2), 0.0, 0.0])}[prior]
    mu = np.zeros(D) if prior == "isotropic" else rng.standard_normal(D)
    F = ref._sqrt_factor(cov)
    w = mu + rng.standard_normal((B, F.shape[1])) @ F.T
    x, y = _prompts(rng, B, K, D, w, sigma, f64_labels=False)
    yref = ref.component_terms(x, y, mu, cov, sigma, 1e-12)[0]
    yhat = np.asarray(gaussian_posterior(x, y, mu, cov, sigma))
    assert np.isfinite(yhat).all()
    _assert_mse_close(yhat, yref, y)
    assert _rel(yhat, yref, y).max() <= 5e-4


def test_gaussian_posterior_with_zero_covariance_is_the_prior_mean():
    rng = np.random.default_rng(0)
    x, y = _prompts(rng, 4, 6, 3, rng.standard_normal((4, 3)), 0.1)
    mu = np.array([1.0, -2.0, 0.5])
    np.testing.assert_allclose(gaussian_posterior(x, y, mu, np.zeros((3, 3)), 0.1), x @ mu, rtol=1e-6)


# ----------------------------------------------------------------------------------------
# one mixture solver for every mixture class
# ----------------------------------------------------------------------------------------
def _gm(D, C, scale):
    centers = np.zeros((C, D))
    for c in range(C):
        centers[c, c // 2] = scale * (-1.0) ** c
    comps = [(-math.log(C), centers[c], np.eye(D)) for c in range(C)]
    family = mixture.GaussianComponents(np.full(C, -math.log(C)), centers, features_CxR=np.tile(np.arange(D), (C, 1)))
    return centers, comps, family


def _sample_gm(rng, B, centers):
    return centers[rng.integers(len(centers), size=B)] + rng.standard_normal((B, centers.shape[1]))


def _sample_sparse(rng, B, D, s):
    w = np.zeros((B, D))
    for b in range(B):
        w[b, rng.choice(D, s, replace=False)] = rng.standard_normal(s)
    return w


CASES = ["gm_d5", "gm_d20", "sparse_d5_s2", "sparse_d8_s3", "pool", "linear_plus_pool", "dense"]


def _case(name, rng):
    """(D, K, B, reference components, library families, sampler of w)."""
    if name.startswith("gm"):
        D = int(name.split("_d")[1])
        centers, comps, family = _gm(D, 2, 3.0)
        return D, 2 * D + 1, 32 if D == 20 else 128, comps, [family], lambda B: _sample_gm(rng, B, centers)
    if name.startswith("sparse"):
        D, s = int(name.split("_d")[1].split("_")[0]), int(name[-1])
        comps = ref.sparse_components(D, s)
        sup = priors.supports(D, s)
        family = mixture.GaussianComponents(np.full(len(sup), -math.log(len(sup))), np.zeros((len(sup), D)),
                                            features_CxR=sup)
        return D, 2 * D + 1, 64, comps, [family], lambda B: _sample_sparse(rng, B, D, s)
    D = 5
    pool = rng.standard_normal((32, D))
    if name == "pool":
        comps = [(-math.log(32), pool[m], np.zeros((D, D))) for m in range(32)]
        return D, 11, 128, comps, [mixture.PointComponents(np.full(32, -math.log(32)), pool, chunk=7)], \
            lambda B: pool[rng.integers(32, size=B)]
    if name == "linear_plus_pool":  # a mixture of classes: half N(0, I), half the pool
        comps = [(math.log(0.5), np.zeros(D), np.eye(D))] + [(math.log(0.5 / 32), pool[m], np.zeros((D, D)))
                                                            for m in range(32)]
        fams = [mixture.GaussianComponents(np.log([0.5]), np.zeros((1, D)), features_CxR=np.arange(D)[None]),
                mixture.PointComponents(np.full(32, math.log(0.5 / 32)), pool, chunk=5)]
        return D, 11, 128, comps, fams, lambda B: np.where(
            rng.random((B, 1)) < 0.5, pool[rng.integers(32, size=B)], rng.standard_normal((B, D)))
    # dense: two general components, one with a singular covariance
    A = rng.standard_normal((D, D))
    S1, S2 = A @ A.T / D, np.diag([2.0, 1.0, 0.5, 0.0, 1.0])
    mu1, mu2 = rng.standard_normal(D), rng.standard_normal(D)
    comps = [(math.log(0.3), mu1, S1), (math.log(0.7), mu2, S2)]
    F2 = np.concatenate([ref._sqrt_factor(S2), np.zeros((D, 1))], axis=1)  # rank 4: a zero column
    fam = mixture.GaussianComponents(np.log([0.3, 0.7]), np.stack([mu1, mu2]),
                                     factor_CxDxR=np.stack([ref._sqrt_factor(S1), F2]))
    return D, 11, 128, comps, [fam], lambda B: np.where(
        rng.random((B, 1)) < 0.3, mu1 + rng.standard_normal((B, D)) @ ref._sqrt_factor(S1).T,
        mu2 + rng.standard_normal((B, D)) * np.sqrt(np.diag(S2)))


@pytest.mark.parametrize("sigma", [0.0, 0.5])
@pytest.mark.parametrize("case", CASES)
def test_mixture_matches_float64(case, sigma):
    """Predictions at every k (d-1, d, d+1 included) and the posterior weights of every
    component, noisy and noiseless (the σ → 0 limit). Observed agreement ~1e-13."""
    rng = np.random.default_rng(CASES.index(case) * 10 + int(sigma * 10))
    D, K, B, comps, families, sample = _case(case, rng)
    x, y = _prompts(rng, B, K, D, sample(B), sigma)
    yref, weights_ref = ref.mixture_reference(x, y, comps, sigma)
    got = mixture.mixture_posterior(x, y, families, sigma)
    assert np.isfinite(got.yhat_BxK).all()
    assert _rel(got.yhat_BxK, yref, y).max() <= 1e-9
    _assert_mse_close(got.yhat_BxK, yref, y)
    # every family's posterior weight (per k): the sum of its components' reference weights
    sizes = [len(f.log_prior_C) if isinstance(f, mixture.GaussianComponents) else len(f.log_prior_M) for f in families]
    bounds = np.cumsum([0] + sizes)
    family_ref = np.stack([weights_ref[..., a:b].sum(-1) for a, b in zip(bounds[:-1], bounds[1:])], -1)
    np.testing.assert_allclose(got.family_weight_BxKxF, family_ref, atol=1e-9)
    if len(families) == 1 and sizes[0] <= 64 and D <= 8:  # (d = 20: one more 8 s compile)
        beta = mixture.component_posterior(x, y, families[0], sigma)
        np.testing.assert_allclose(beta, weights_ref, atol=1e-9)


def _rank_deficient(rng, B, K, D):
    """Groups of prompts: duplicated rows, zero rows, a multiple of an earlier row, inactive
    trailing coordinates (the curriculum), an all-zero prompt."""
    x = rng.standard_normal((B, K, D)).astype(np.float32)
    g = np.array_split(np.arange(B), 5)
    x[g[0], 3] = x[g[0], 1]
    x[g[0], 6] = x[g[0], 2]
    x[g[1], 0] = 0.0
    x[g[1], 4] = 0.0
    x[g[2], 5] = 2.0 * x[g[2], 2]
    x[g[3], :, D - 2:] = 0.0
    x[g[4]] = 0.0
    return x


@pytest.mark.parametrize("sigma", [0.0, 0.5])
@pytest.mark.parametrize("case", ["gm_d5", "sparse_d5_s2", "pool", "dense"])
def test_rank_deficient_prompts(case, sigma):
    """No NaN anywhere (k = 0 included), and still the reference's answer."""
    rng = np.random.default_rng(3)
    D, K, B, comps, families, sample = _case(case, rng)  # the shapes of test_mixture_matches_float64: no recompiling
    x = _rank_deficient(rng, B, K, D)
    y = np.einsum("bkd,bd->bk", x.astype(np.float64), sample(B)) + sigma * rng.standard_normal((B, K))
    got = mixture.mixture_posterior(x, y, families, sigma, with_weights=True)
    assert np.isfinite(got.yhat_BxK).all() and np.isfinite(got.w_BxKxD).all()
    assert np.isfinite(got.entropy_BxK).all()
    yref, _ = ref.mixture_reference(x, y, comps, sigma)
    assert _rel(got.yhat_BxK, yref, y).max() <= 1e-9


def test_posterior_mean_weights_give_the_predictions():
    rng = np.random.default_rng(4)
    D, K, B, _, families, sample = _case("sparse_d5_s2", rng)
    for sigma in (0.0, 0.5):
        x, y = _prompts(rng, B, K, D, sample(B), sigma)
        got = mixture.mixture_posterior(x, y, families, sigma, with_weights=True)
        np.testing.assert_allclose(np.einsum("bkd,bkd->bk", x, got.w_BxKxD), got.yhat_BxK, atol=1e-10)


# ----------------------------------------------------------------------------------------
# sign vectors: enumeration
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("sigma", [0.0, 0.5])
@pytest.mark.parametrize("D", [6, 10])
def test_sign_vectors_match_brute_force(D, sigma):
    rng = np.random.default_rng(D)
    B, K = 64, 2 * D + 1
    w = np.sign(rng.standard_normal((B, D)))
    for labels in ("float64", "float32"):
        x, y = _prompts(rng, B, K, D, w, sigma, f64_labels=labels == "float64")
        tol = enumeration.precision.consistency_tolerance(y.dtype)
        yref = ref.sign_vector_reference(x, y, D, sigma, tol)
        got = enumeration.sign_vector_posterior(x, y, D, sigma, true_w_BxD=w)
        assert _rel(got.yhat_BxK, yref, y).max() <= 1e-9
        np.testing.assert_allclose(got.true_weight_BxK[:, 0], 2.0**-D)
        # the full enumeration through the mixture solver is the same posterior
        dense = mixture.mixture_posterior(x, y, [enumeration.SignVectors(D, chunk=48)], sigma)
        assert _rel(dense.yhat_BxK, yref, y).max() <= 1e-9
    if sigma == 0.0:  # float32 labels admit several hypotheses: the shortcut must fall back
        few = enumeration.sign_vector_posterior(x, y, D, 0.0, max_candidates=1)
        assert _rel(few.yhat_BxK, yref, y).max() <= 1e-9


def test_one_example_identifies_a_sign_vector_unless_two_tie_exactly():
    """docs/baselines.md: with continuous inputs one example identifies w among the 2^20. Float32
    inputs are not continuous: in ~0.2% of prompts two sign vectors give bit-identical x_0·w
    (checked here with exact rational arithmetic), and there, and only there, the exact
    posterior at k = 1 is split."""
    rng = np.random.default_rng(20)
    B, K, D = 1280, 4, 20
    w = np.sign(rng.standard_normal((B, D)))
    x, y = _prompts(rng, B, K, D, w, 0.0)
    got = enumeration.sign_vector_posterior(x, y, D, 0.0, true_w_BxD=w)
    err = (got.yhat_BxK - y) ** 2
    assert err[:, 2:].max() < 1e-25
    split = np.flatnonzero(err[:, 1] > 0)
    assert len(split) < 0.01 * B
    for b in split:  # another sign vector with exactly the same x_0·w
        exact = [fractions.Fraction(float(v)) for v in x[b, 0]]
        target = sum(e * int(s) for e, s in zip(exact, w[b]))
        half = D // 2
        left = {}
        for signs in itertools.product((-1, 1), repeat=half):
            left.setdefault(sum(e * s for e, s in zip(exact[:half], signs)), []).append(signs)
        ties = sum(len(left.get(target - sum(e * s for e, s in zip(exact[half:], signs)), []))
                   for signs in itertools.product((-1, 1), repeat=D - half))
        assert ties >= 2, b
    assert (got.true_weight_BxK[np.setdiff1d(np.arange(B), split), 1] == 1.0).all()


# ----------------------------------------------------------------------------------------
# the traps: noiseless posteriors are limits
# ----------------------------------------------------------------------------------------
def test_noiseless_sparse_bayes_error_is_zero_from_k_s_plus_1():
    """d = 20, s = 3, all 1140 supports: exactly 0 from k = s + 1 on (a jittered solver leaves
    an error there), and clearly not before."""
    rng = np.random.default_rng(5)
    t = tasks.get_task(small_config(name="sparse_linear", n_dims=20, n_points=12, sparsity=3).task)
    w = _sample_sparse(rng, 256, 20, 3)
    x, y = _prompts(rng, 256, 12, 20, w, 0.0)
    post = bayes.posterior(t, x, y, w_true_BxD=w)
    mse = np.mean((post.yhat_BxK - y) ** 2, axis=0)
    assert mse[4:].max() < 1e-25  # float64 rounding of x·w: zero
    assert mse[3] > 0.1
    assert (post.true_weight_BxK[:, 4:] == 1.0).all()
    # float32 labels: consistency is judged at their precision (~1e-5 of the label scale), so
    # at k = s + 1, where one equation tests each support, a wrong support passes in ~1 prompt
    # in 1000; one more example rules it out. Hence evaluate's float64 labels.
    mse32 = np.mean((bayes.posterior(t, x, y.astype(np.float32)).yhat_BxK - y) ** 2, axis=0)
    assert mse32[4] < 5e-3 and mse32[5:].max() < 1e-10


@pytest.mark.parametrize("name", ["linear", "gaussian_mixture"])
def test_noiseless_posterior_is_least_squares_once_identified(name):
    """k >= d examples determine w: the posterior mean is the interpolant, i.e. least squares.
    Both solvers (least_squares, the mixture solver) agree."""
    rng = np.random.default_rng(6)
    D = 8
    t = tasks.get_task(small_config(name=name, n_dims=D, n_points=2 * D + 1).task)
    w = rng.standard_normal((256, D)) + (3.0 * np.eye(D)[0] * rng.choice([-1, 1], (256, 1)) if name != "linear" else 0)
    x, y = _prompts(rng, 256, 2 * D + 1, D, w, 0.0)
    post = bayes.posterior(t, x, y, with_weights=True)
    ls = np.asarray(least_squares(x, y))
    assert _rel(post.yhat_BxK[:, D:], ls[:, D:], y).max() <= 1e-5
    np.testing.assert_allclose(post.w_BxKxD[:, D + 1:], np.broadcast_to(w[:, None], (256, D, D)), atol=1e-7)
    assert np.mean((post.yhat_BxK[:, D - 1] - y[:, D - 1]) ** 2) > 1e-2  # one short of d: not yet


def test_mixture_weights_sum_to_one_and_concentrate():
    """Weights sum to one and the true component's weight grows with k. It tends to the
    component's responsibility for w, p(c | w) (once w is known that is all the data say),
    which is ~1 for well separated components and 0.95 on average for N(±3e_i, I), i = 1, 2."""
    rng = np.random.default_rng(7)
    D = 5
    for scale, plateau in ((3.0, 0.9), (8.0, 0.999)):
        centers, _, family = _gm(D, 4, scale)
        comp = rng.integers(4, size=512)
        w = centers[comp] + rng.standard_normal((512, D))
        d2 = ((w[:, None] - centers[None]) ** 2).sum(-1)
        resp = np.exp(-0.5 * (d2 - d2.min(1, keepdims=True)))
        resp /= resp.sum(1, keepdims=True)
        for sigma in (0.0, 0.5):
            x, y = _prompts(rng, 512, 11, D, w, sigma)
            beta = mixture.component_posterior(x, y, family, sigma)
            np.testing.assert_allclose(beta.sum(-1), 1.0, atol=1e-12)
            true = beta[np.arange(512), :, comp].mean(0)
            assert true[0] == pytest.approx(0.25)
            assert np.all(np.diff(true) > -0.01) and true[-1] > plateau, true
            if sigma == 0.0:  # k >= d: w is determined, the weights are exactly p(c | w)
                np.testing.assert_allclose(beta[:, D:], np.broadcast_to(resp[:, None], (512, 11 - D, 4)), atol=1e-9)
    c = small_config(name="task_pool", n_dims=D, n_points=11, pool_size=64, noise_std=0.5).task
    t = tasks.get_task(c)
    pool = linear_tasks.pool_weights(64, c.pool_seed, D).astype(np.float64)
    index = rng.integers(64, size=512)
    x, y = _prompts(rng, 512, 11, D, pool[index], 0.5)
    post = bayes.posterior(t, x, y, w_true_BxD=pool[index])
    np.testing.assert_array_equal(t.prior.component_of(pool[index]), index)
    assert post.true_weight_BxK[:, 0].mean() == pytest.approx(1 / 64)
    assert post.true_weight_BxK[:, -1].mean() > 0.9


def test_support_index_inverts_supports():
    sup = priors.supports(9, 3)
    w = np.zeros((len(sup), 9))
    np.put_along_axis(w, sup, 1.0, axis=1)
    np.testing.assert_array_equal(priors.support_index(w, 9, 3), np.arange(len(sup)))
    assert priors.support_index(np.ones((1, 9)), 9, 3)[0] == -1


def test_proxy_where_no_exact_posterior():
    t = tasks.get_task(small_config(name="sparse_linear", n_dims=40, n_points=5, sparsity=8).task)
    assert not bayes.has_exact_posterior(t)
    rng = np.random.default_rng(8)
    x, y = _prompts(rng, 8, 5, 40, _sample_sparse(rng, 8, 40, 8), 0.0)
    post = bayes.posterior(t, x, y)
    assert post.name == "lmmse" and np.isfinite(post.yhat_BxK).all()
    # the proxy is the Gaussian posterior with the class's covariance (s/d) I
    np.testing.assert_allclose(post.yhat_BxK, gaussian_posterior(x, y, np.zeros(40), np.eye(40) / 5, 0.0), rtol=1e-6)
