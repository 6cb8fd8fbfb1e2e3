"""Independent float64 references for the Bayes baselines, in numpy/scipy only.

Deliberately a different route from the library: the library works in feature space (Gram-
Schmidt and Givens rotations, one row at a time); these work with the k x k kernel of every
prefix (eigendecompositions, explicit multivariate normal densities), prompt-batched.
Definitions (docs/baselines.md): posterior weight of component c given the first k examples is
proportional to α_c N(y_<k; X μ_c, X Σ_c Xᵀ + σ² I). For σ = 0 it is the limit σ → 0: a
component whose kernel has rank r explains k - r examples exactly; among the components whose
degenerate examples all fit (residual over its predictive scale within tol·max|y|), those with
the most exactly explained examples win, then α_c times the pseudo-determinant density.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.special import logsumexp

RANK_TOL = 1e-12  # kernel eigenvalues below this fraction of the largest are zero


def _sqrt_factor(cov):
    ev, V = np.linalg.eigh(np.asarray(cov, np.float64))
    keep = ev > 1e-12 * max(ev.max(), 0.0)
    return V[:, keep] * np.sqrt(ev[keep])


def component_terms(x_BxKxD, y_BxK, mean_D, cov_DxD, sigma, tol):
    """For every prompt and k: prediction of y_k, log evidence of y_<k (its finite part when
    σ = 0), number of exactly explained examples before k, and whether they all fit."""
    x = np.asarray(x_BxKxD, np.float64)
    y = np.asarray(y_BxK, np.float64)
    B, K, D = x.shape
    F = _sqrt_factor(cov_DxD)
    a = x @ F  # whitened inputs, prior v ~ N(0, I)
    t = y - x @ np.asarray(mean_D, np.float64)
    scale = np.abs(y).max(1)
    pred = np.zeros((B, K))
    logev = np.zeros((B, K))
    ndeg = np.zeros((B, K), int)
    ok = np.ones((B, K), bool)
    prev_rank = np.zeros(B, int)
    for k in range(K):
        A = a[:, :k]  # B x k x R
        if k == 0:
            pred[:, 0] = x[:, 0] @ mean_D
            continue
        S = A @ A.transpose(0, 2, 1)
        if sigma > 0:
            S = S + sigma**2 * np.eye(k)
            _, logdet = np.linalg.slogdet(S)
            alpha = np.linalg.solve(S, t[:, :k, None])[..., 0]
            logev[:, k] = -0.5 * (k * np.log(2 * np.pi) + logdet + (t[:, :k] * alpha).sum(1))
        else:
            ev, U = np.linalg.eigh(S)
            keep = ev > RANK_TOL * np.maximum(ev.max(1, keepdims=True), 1e-300)
            inv = np.where(keep, 1.0 / np.where(keep, ev, 1.0), 0.0)
            z = np.einsum("bkr,bk->br", U, t[:, :k])
            logev[:, k] = -0.5 * (keep.sum(1) * np.log(2 * np.pi) + np.where(keep, np.log(np.where(keep, ev, 1)), 0).sum(1)
                                  + (z**2 * inv).sum(1)) - 0.5 * (k - keep.sum(1)) * np.log(2 * np.pi)
            alpha = np.einsum("bkr,br->bk", U, z * inv)  # kernel pseudo-inverse times t
            rank = keep.sum(1)
            # row k-1 added no direction: it is a point mass given the rows before it
            deg = rank == prev_rank
            j = k - 1
            if j == 0:
                resid, c = t[:, 0], np.ones(B)
            else:
                # min-norm coefficients of row j in the earlier rows, from an SVD of those rows
                # themselves (a pseudo-inverse of their kernel would square the conditioning
                # and leave residuals above tol on consistent prompts)
                Aj_pinv = np.linalg.pinv(a[:, :j].transpose(0, 2, 1), rcond=np.sqrt(RANK_TOL))
                coef = np.einsum("bir,br->bi", Aj_pinv, a[:, j])
                resid = t[:, j] - np.einsum("bi,bi->b", coef, t[:, :j])
                c = 1 + (coef**2).sum(1)
            fits = np.abs(resid) / np.sqrt(c) <= tol * scale
            ndeg[:, k] = ndeg[:, k - 1] + deg
            ok[:, k] = ok[:, k - 1] & (~deg | fits)
            prev_rank = rank
        pred[:, k] = x[:, k] @ mean_D + np.einsum("br,bjr,bj->b", a[:, k], A, alpha)
    return pred, logev, ndeg, ok


def mixture_reference(x_BxKxD, y_BxK, components, sigma, tol=1e-12):
    """components: [(log_prior, mean_D, cov_DxD)]. Returns yhat_BxK and weights_BxKxC."""
    terms = [component_terms(x_BxKxD, y_BxK, m, S, sigma, tol) for _, m, S in components]
    log_prior = np.array([c[0] for c in components])
    pred = np.stack([t[0] for t in terms], -1)
    logw = np.stack([t[1] for t in terms], -1) + log_prior
    K = pred.shape[1]
    priority = np.where(np.stack([t[3] for t in terms], -1), K + 1, 0) + np.stack([t[2] for t in terms], -1)
    logw = np.where(priority == priority.max(-1, keepdims=True), logw, -np.inf)
    weights = np.exp(logw - logsumexp(logw, axis=-1, keepdims=True))
    return (weights * pred).sum(-1), weights


def sparse_components(n_dims, sparsity):
    sup = list(itertools.combinations(range(n_dims), sparsity))
    return [(-np.log(len(sup)), np.zeros(n_dims), np.diag(np.isin(np.arange(n_dims), s).astype(float))) for s in sup]


def sign_vector_reference(x_BxKxD, y_BxK, n_dims, sigma, tol=1e-12):
    """Brute force over all 2^d sign vectors (d <= ~12)."""
    x = np.asarray(x_BxKxD, np.float64)[..., :n_dims]
    y = np.asarray(y_BxK, np.float64)
    W = 1.0 - 2.0 * ((np.arange(2**n_dims)[:, None] >> np.arange(n_dims)) & 1)  # H x d
    pred = np.einsum("bkd,hd->bkh", x, W)
    r = y[..., None] - pred
    if sigma > 0:
        ll = np.concatenate([np.zeros_like(r[:, :1]), np.cumsum(-0.5 * (r / sigma) ** 2, 1)[:, :-1]], 1)
        w = np.exp(ll - logsumexp(ll, axis=-1, keepdims=True))
    else:
        bad = np.abs(r) > tol * np.abs(y).max(1)[:, None, None]
        alive = np.concatenate([np.zeros_like(bad[:, :1]), np.cumsum(bad, 1)[:, :-1]], 1) == 0
        none = ~alive.any(-1, keepdims=True)
        alive = alive | none  # nothing fits: all tie (uniform)
        w = alive / alive.sum(-1, keepdims=True)
    return (w * pred).sum(-1)
