"""The linear-regression family: y = x·w (+ σ·ε), x ~ N(0, I_d) (or U(−½, ½)^d:
task.x_distribution), w drawn per prompt.

Classes differ only in the prior over w (docs/function_classes.md): each class is one entry
of _CLASSES, a function of the config that returns the prior's float64 description
(tasks/priors.py: what the exact posterior and the normalizer read) and the jitted sampler
that draws w from it. Everything is sampled inside the jitted step; `active_dims` may be
traced (the dimension curriculum): coordinates at or past it are zero in x, and sparse
supports are drawn among the active ones.
Legend: B prompts, K points per prompt, D = task.n_dims, M pool size, C mixture components,
R covariance rank.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from icl_jax import rng
from icl_jax.errors import UserError
from icl_jax.tasks import priors
from icl_jax.tasks.base import Prompts

# Sub-streams of one prompt key.
_X, _W, _NOISE, _CHOICE = 0, 1, 2, 3


# A weight prior: (key, batch, active_mask_D) -> w_BxD.
WeightPrior = Callable[[jax.Array, int, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class LinearTask:
    name: str
    n_dims: int
    n_points: int
    noise_std: float
    prior: priors.Prior  # what w's prior is, for the exact posterior (baselines/bayes.py)
    weight_sampler: WeightPrior  # draws w from `prior` inside the jitted step
    x_distribution: str = "gaussian"  # or "uniform": x ~ U(−½, ½)^D, E[xxᵀ] = I/12
    family = "linear"
    loss = "squared"
    label_classes = 0

    @property
    def normalizer(self) -> float:
        """E[y²] at full dimension: the zero predictor's loss, so normalized zero = 1."""
        x_second_moment = 1 / 12 if self.x_distribution == "uniform" else 1.0
        return self.prior.second_moment * x_second_moment + self.noise_std**2

    def labels(self, x_BxKxD, w_BxD, xp=jnp):
        """The noiseless labels x·w (`xp`: np in float64 for exact labels)."""
        return xp.einsum("bkd,bd->bk", x_BxKxD, w_BxD)

    def sample(self, key: jax.Array, batch_size: int, active_dims=None) -> Prompts:
        active = self.n_dims if active_dims is None else active_dims
        mask_D = (jnp.arange(self.n_dims) < active).astype(jnp.float32)
        shape, x_key = (batch_size, self.n_points, self.n_dims), jax.random.fold_in(key, _X)
        if self.x_distribution == "uniform":
            x = jax.random.uniform(x_key, shape, minval=-0.5, maxval=0.5)
        else:
            x = jax.random.normal(x_key, shape)
        x = x * mask_D
        w = self.weight_sampler(jax.random.fold_in(key, _W), batch_size, mask_D)
        y = self.labels(x, w)
        if self.noise_std:
            noise = jax.random.normal(jax.random.fold_in(key, _NOISE), y.shape)
            y = y + self.noise_std * noise
        return Prompts(x, y, w)


def gaussian_prior(key, batch_size, mask_D):
    return jax.random.normal(key, (batch_size, mask_D.shape[0]))


def sign_prior(key, batch_size, mask_D):
    return jax.random.rademacher(key, (batch_size, mask_D.shape[0]), dtype=jnp.float32)


def sparse_prior(sparsity: int) -> WeightPrior:
    def prior(key, batch_size, mask_D):
        n_dims = mask_D.shape[0]
        # A uniform random subset of the active coordinates: the `sparsity` largest of
        # i.i.d. uniform scores, inactive coordinates pushed below every active one.
        scores = jax.random.uniform(jax.random.fold_in(key, _CHOICE), (batch_size, n_dims))
        scores = jnp.where(mask_D > 0, scores, -1.0)
        threshold = jax.lax.top_k(scores, sparsity)[0][:, -1:]
        support = (scores >= threshold).astype(jnp.float32)
        return jax.random.normal(key, (batch_size, n_dims)) * support

    return prior


def pool_member(pool_seed: int, index, n_dims: int) -> jax.Array:
    """Member `index` of the pool: a pure function of (pool_seed, index), so a pool of any
    size costs nothing to hold and every consumer (training, evaluation, the discrete
    posterior) sees the same M vectors."""
    return jax.random.normal(rng.derive(pool_seed, rng.TASK_POOL, index), (n_dims,))


def pool_prior(pool_size: int, pool_seed: int) -> WeightPrior:
    def prior(key, batch_size, mask_D):
        index_B = jax.random.randint(key, (batch_size,), 0, pool_size)
        return jax.vmap(lambda i: pool_member(pool_seed, i, mask_D.shape[0]))(index_B)

    return prior


@functools.lru_cache(maxsize=8)
def pool_weights(pool_size: int, pool_seed: int, n_dims: int) -> np.ndarray:
    """The whole pool, M×D, materialised (for the pool's exact moments and its posterior)."""
    members = jax.jit(jax.vmap(lambda i: pool_member(pool_seed, i, n_dims)))(jnp.arange(pool_size))
    return np.asarray(members)


def mixture_centers(n_components: int, scale: float, n_dims: int) -> np.ndarray:
    """C×D centres: component c sits at scale·(−1)^c·e_{c//2} (C=2: ±scale·e_1)."""
    centers = np.zeros((n_components, n_dims), np.float32)
    for c in range(n_components):
        centers[c, c // 2] = scale * (-1.0) ** c
    return centers


def mixture_prior(n_components: int, scale: float, n_dims: int) -> WeightPrior:
    centers_CxD = jnp.asarray(mixture_centers(n_components, scale, n_dims))

    def prior(key, batch_size, mask_D):
        component_B = jax.random.randint(jax.random.fold_in(key, _CHOICE), (batch_size,), 0, n_components)
        return centers_CxD[component_B] + jax.random.normal(key, (batch_size, n_dims))

    return prior


def gaussian_sampler(prior: priors.GaussianPrior) -> WeightPrior:
    """w = (μ + F z) ⊙ mask with F Fᵀ = Σ: inactive coordinates are zero and the active ones
    are N(μ_a, Σ_aa), the marginal, which is the prior the exact posterior of the prompt (whose
    x is zero off the active coordinates) needs."""
    mean_D = jnp.asarray(prior.mean_D, jnp.float32)
    factor_DxR = jnp.asarray(prior.factor_DxR(), jnp.float32)

    def sample(key, batch_size, mask_D):
        z_BxR = jax.random.normal(key, (batch_size, factor_DxR.shape[1]))
        return (mean_D + z_BxR @ factor_DxR.T) * mask_D

    return sample


def power_law_spectrum(n_dims: int, decay: float) -> np.ndarray:
    """λ_i ∝ i^(−decay), i = 1..d, scaled to sum to d (E|w|² = d, as for `linear`); decay 0
    gives the identity."""
    spectrum = np.arange(1, n_dims + 1, dtype=np.float64) ** -float(decay)
    return spectrum * (n_dims / spectrum.sum())


# ---- the classes: name -> (prior description, sampler), both from config.task ----
def _linear(t):
    # gaussian_prior rather than gaussian_sampler: the same N(0, I) draw, never masked (x is
    # zero off the active coordinates anyway), as every run so far has sampled it.
    return priors.GaussianPrior(np.zeros(t.n_dims), np.eye(t.n_dims)), gaussian_prior


def _anisotropic_linear(t):
    # Diagonal: a rotated Σ is the same problem in rotated coordinates, since x ~ N(0, I) is
    # rotation invariant (the dims curriculum aside); the axes keep λ_i readable per coordinate.
    prior = priors.GaussianPrior(np.zeros(t.n_dims), np.diag(power_law_spectrum(t.n_dims, t.weight_spectrum_decay)))
    return prior, gaussian_sampler(prior)


def _sparse_linear(t):
    return priors.SparsePrior(t.n_dims, t.sparsity), sparse_prior(t.sparsity)


def _sign_vector(t):
    return priors.SignPrior(t.n_dims), sign_prior


def _task_pool(t):
    pool = pool_weights(t.pool_size, t.pool_seed, t.n_dims).astype(np.float64)
    return priors.PointPrior(pool), pool_prior(t.pool_size, t.pool_seed)


def _gaussian_mixture(t):
    centers = mixture_centers(t.mixture_components, t.mixture_scale, t.n_dims).astype(np.float64)
    return priors.GaussianMixturePrior(centers), mixture_prior(t.mixture_components, t.mixture_scale, t.n_dims)


_CLASSES = {
    "linear": _linear,
    "sparse_linear": _sparse_linear,
    "sign_vector": _sign_vector,
    "task_pool": _task_pool,
    "gaussian_mixture": _gaussian_mixture,
    "anisotropic_linear": _anisotropic_linear,
}


# ---- the family's registry entry (tasks/__init__.py) ----
NAMES = tuple(_CLASSES)
FAMILY = "linear"
# The keys of config.task this family reads besides name, n_dims and n_points, with their
# defaults (icl_jax/config.py puts every family's keys under config.task).
CONFIG_KEYS = {
    "noise_std": 0.0,  # label noise σ, any class of the family
    # "gaussian": x ~ N(0, I), or "uniform": x ~ U(−½, ½)^d, the setting of the
    # gradient-descent construction (configs/linear_attention.py).
    "x_distribution": "gaussian",
    "sparsity": 3,  # sparse_linear: nonzeros in w
    "pool_size": 1024,  # task_pool: M
    "pool_seed": 1,  # task_pool: the pool is a function of this seed alone
    "mixture_components": 2,  # gaussian_mixture: C components, equal weights
    "mixture_scale": 3.0,  # gaussian_mixture: component c centred at ±scale·e_{c//2}
    "weight_spectrum_decay": 1.0,  # anisotropic_linear: α in Σ = diag(λ), λ_i ∝ i^(−α), trace d
}


def check_config(t) -> None:
    if t.get("x_distribution", "gaussian") not in ("gaussian", "uniform"):
        raise UserError(f"task.x_distribution must be 'gaussian' or 'uniform', got {t.x_distribution!r}")
    if t.noise_std < 0:
        raise UserError(f"task.noise_std must be >= 0, got {t.noise_std}")
    if t.name == "sparse_linear" and not 1 <= t.sparsity <= t.n_dims:
        raise UserError(f"task.sparsity={t.sparsity} must lie in [1, task.n_dims={t.n_dims}]")
    if t.name == "task_pool" and not 1 <= t.pool_size < 2**31:
        raise UserError(f"task.pool_size must lie in [1, 2^31), got {t.pool_size}")
    if t.name == "gaussian_mixture" and not 1 <= t.mixture_components <= 2 * t.n_dims:
        raise UserError(
            f"task.mixture_components={t.mixture_components} must lie in [1, 2·task.n_dims]"
        )
    if t.name == "anisotropic_linear" and not 0 <= t.weight_spectrum_decay < math.inf:
        raise UserError(f"task.weight_spectrum_decay must be a finite number >= 0 (0: isotropic), "
                        f"got {t.weight_spectrum_decay}")


def label_classes(t) -> int:
    return 0


def make(t) -> LinearTask:
    prior, sampler = _CLASSES[t.name](t)
    return LinearTask(t.name, t.n_dims, t.n_points, float(t.noise_std), prior, sampler,
                      t.get("x_distribution", "gaussian"))
