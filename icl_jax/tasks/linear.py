"""The linear-regression family: y = x·w (+ σ·ε), x ~ N(0, I_d) (or U(−½, ½)^d:
task.x_distribution), w drawn per prompt.

Classes differ only in the prior over w (DESIGN.md §3). Everything is sampled inside the
jitted step; `active_dims` may be traced (the dimension curriculum): coordinates at or past
it are zero in x, and sparse supports are drawn among the active ones.
Legend: B prompts, K points per prompt, D = task.n_dims, M pool size, C mixture components.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from icl_jax import rng
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
    weight_prior: WeightPrior
    weight_second_moment: float  # E|w|² over the prior, all D coordinates active
    x_distribution: str = "gaussian"  # or "uniform": x ~ U(−½, ½)^D, E[xxᵀ] = I/12
    family = "linear"
    loss = "squared"
    label_classes = 0

    @property
    def normalizer(self) -> float:
        """E[y²] at full dimension: the zero predictor's loss, so normalized zero = 1."""
        x_second_moment = 1 / 12 if self.x_distribution == "uniform" else 1.0
        return self.weight_second_moment * x_second_moment + self.noise_std**2

    def sample(self, key: jax.Array, batch_size: int, active_dims=None) -> Prompts:
        active = self.n_dims if active_dims is None else active_dims
        mask_D = (jnp.arange(self.n_dims) < active).astype(jnp.float32)
        shape, x_key = (batch_size, self.n_points, self.n_dims), jax.random.fold_in(key, _X)
        if self.x_distribution == "uniform":
            x = jax.random.uniform(x_key, shape, minval=-0.5, maxval=0.5)
        else:
            x = jax.random.normal(x_key, shape)
        x = x * mask_D
        w = self.weight_prior(jax.random.fold_in(key, _W), batch_size, mask_D)
        y = jnp.einsum("bkd,bd->bk", x, w)
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


# ---- the family's registry entry (tasks/__init__.py) ----
NAMES = ("linear", "sparse_linear", "sign_vector", "task_pool", "gaussian_mixture")


def check_config(t) -> None:
    from icl_jax.errors import UserError

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


def label_classes(t) -> int:
    return 0


def make(t) -> LinearTask:
    d = t.n_dims
    if t.name == "linear":
        prior, moment = gaussian_prior, float(d)
    elif t.name == "sparse_linear":
        prior, moment = sparse_prior(t.sparsity), float(t.sparsity)
    elif t.name == "sign_vector":
        prior, moment = sign_prior, float(d)
    elif t.name == "task_pool":
        prior = pool_prior(t.pool_size, t.pool_seed)
        pool = pool_weights(t.pool_size, t.pool_seed, d).astype(np.float64)
        moment = float(np.mean(np.sum(pool**2, axis=1)))  # exact for this pool, not the prior's d
    else:  # gaussian_mixture
        prior = mixture_prior(t.mixture_components, t.mixture_scale, d)
        centers = mixture_centers(t.mixture_components, t.mixture_scale, d)
        moment = float(d + np.mean(np.sum(centers.astype(np.float64) ** 2, axis=1)))
    return LinearTask(t.name, d, t.n_points, float(t.noise_std), prior, moment, t.get("x_distribution", "gaussian"))
