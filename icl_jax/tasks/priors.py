"""What a linear-family class's prior over w is, in float64 numpy: the description that the
exact posterior (baselines/bayes.py picks its solver by the description's type), the LMMSE
proxy and the loss normalizer read. The jitted sampler that draws w is beside it in
tasks/linear.py; tests/test_tasks.py checks that the two agree.

Every description gives `moments()` (mean and covariance of w, all coordinates active) and
`second_moment` (E|w|²); a mixture over enumerable components gives `n_components`, and
`component_of(w)` where w alone says which component drew it.
Legend: D input width, C mixture components, S support size, M pool size, R factor rank.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Union

import numpy as np


def covariance_factor(cov_DxD: np.ndarray, rel_tol: float = 1e-12) -> np.ndarray:
    """F_DxR with F Fᵀ = cov (float64 eigendecomposition; eigenvalues below rel_tol · the
    largest dropped, so R is the rank)."""
    cov = np.asarray(cov_DxD, np.float64)
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1] or not np.allclose(cov, cov.T, rtol=1e-10, atol=1e-12):
        raise ValueError("cov_DxD must be a symmetric square matrix")
    eigenvalues, vectors = np.linalg.eigh(cov)
    if eigenvalues.min() < -1e-9 * max(eigenvalues.max(), 1e-300):
        raise ValueError(f"cov_DxD is not positive semi-definite (eigenvalue {eigenvalues.min():.3g})")
    keep = eigenvalues > rel_tol * max(eigenvalues.max(), 0.0)
    return vectors[:, keep] * np.sqrt(eigenvalues[keep])


@dataclasses.dataclass(frozen=True, eq=False)
class GaussianPrior:
    """w ~ N(mean_D, cov_DxD); cov may be singular (w then lives in its range)."""

    mean_D: np.ndarray
    cov_DxD: np.ndarray

    def moments(self) -> tuple[np.ndarray, np.ndarray]:
        return self.mean_D, self.cov_DxD

    @property
    def second_moment(self) -> float:
        return float(np.trace(self.cov_DxD) + self.mean_D @ self.mean_D)

    def factor_DxR(self) -> np.ndarray:
        """F with F Fᵀ = cov (so a singular cov is fine): w = mean + F z."""
        return covariance_factor(self.cov_DxD)


def supports(n_dims: int, sparsity: int) -> np.ndarray:
    """All C(n_dims, sparsity) supports, lexicographic, C x sparsity."""
    return np.array(list(itertools.combinations(range(n_dims), sparsity)), np.int32).reshape(-1, sparsity)


def support_index(w_BxD: np.ndarray, n_dims: int, sparsity: int) -> np.ndarray:
    """The lexicographic rank of each w's support (-1 if w does not have exactly `sparsity`
    nonzeros), the inverse of `supports`."""
    out = np.full(len(w_BxD), -1, np.int64)
    for b, w in enumerate(np.asarray(w_BxD)):
        s = np.flatnonzero(w)
        if len(s) != sparsity:
            continue
        rank, prev = 0, -1
        for j, c in enumerate(s):  # combinations before this one, position by position
            for v in range(prev + 1, c):
                rank += math.comb(n_dims - v - 1, sparsity - j - 1)
            prev = c
        out[b] = rank
    return out


@dataclasses.dataclass(frozen=True, eq=False)
class SparsePrior:
    """w is N(0, 1) on a uniform random support of `sparsity` coordinates, 0 elsewhere: a
    uniform mixture of C(d, s) Gaussians, one per support (in the order of `supports`). The
    supports are enumerated only when asked: past a few hundred thousand nobody should."""

    n_dims: int
    sparsity: int

    @property
    def n_components(self) -> int:
        return math.comb(self.n_dims, self.sparsity)

    def supports_CxS(self) -> np.ndarray:
        return supports(self.n_dims, self.sparsity)

    def moments(self) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros(self.n_dims), np.eye(self.n_dims) * self.sparsity / self.n_dims

    @property
    def second_moment(self) -> float:
        return float(self.sparsity)

    def component_of(self, w_BxD: np.ndarray) -> np.ndarray:
        return support_index(np.asarray(w_BxD, np.float64), self.n_dims, self.sparsity)


@dataclasses.dataclass(frozen=True, eq=False)
class GaussianMixturePrior:
    """w ~ (1/C) sum_c N(mean_c, I): equal weights, identity covariances."""

    means_CxD: np.ndarray

    @property
    def n_components(self) -> int:
        return len(self.means_CxD)

    def moments(self) -> tuple[np.ndarray, np.ndarray]:
        mean = self.means_CxD.mean(0)
        spread = self.means_CxD - mean
        return mean, np.eye(self.means_CxD.shape[1]) + spread.T @ spread / len(self.means_CxD)

    @property
    def second_moment(self) -> float:
        return float(self.means_CxD.shape[1] + np.mean(np.sum(self.means_CxD**2, axis=1)))

    def responsibilities_BxC(self, w_BxD: np.ndarray) -> np.ndarray:
        """p(c | w): the latent component is not a function of w, only this distribution is."""
        d2 = ((np.asarray(w_BxD, np.float64)[:, None] - self.means_CxD[None]) ** 2).sum(-1)
        resp = np.exp(-0.5 * (d2 - d2.min(1, keepdims=True)))
        return resp / resp.sum(1, keepdims=True)


@dataclasses.dataclass(frozen=True, eq=False)
class PointPrior:
    """w uniform over the M rows of points_MxD (a finite task pool)."""

    points_MxD: np.ndarray

    @property
    def n_components(self) -> int:
        return len(self.points_MxD)

    def moments(self) -> tuple[np.ndarray, np.ndarray]:
        d = self.points_MxD.shape[1]
        return self.points_MxD.mean(0), np.cov(self.points_MxD.T, bias=True).reshape(d, d)

    @property
    def second_moment(self) -> float:
        return float(np.mean(np.sum(self.points_MxD**2, axis=1)))  # exact for this pool, not its prior's d

    def component_of(self, w_BxD: np.ndarray) -> np.ndarray:
        """The nearest point (a sampled w is one of them)."""
        w = np.asarray(w_BxD, np.float64)
        index = np.empty(len(w), np.int64)
        for start in range(0, len(w), 256):  # memory: 256 x M x D at a time
            dist = ((w[start:start + 256, None, :] - self.points_MxD[None]) ** 2).sum(-1)
            index[start:start + 256] = dist.argmin(1)
        return index


@dataclasses.dataclass(frozen=True, eq=False)
class SignPrior:
    """w uniform on {±1}^d."""

    n_dims: int

    @property
    def n_components(self) -> int:
        return 2**self.n_dims

    def moments(self) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros(self.n_dims), np.eye(self.n_dims)

    @property
    def second_moment(self) -> float:
        return float(self.n_dims)


Prior = Union[GaussianPrior, SparsePrior, GaussianMixturePrior, PointPrior, SignPrior]
