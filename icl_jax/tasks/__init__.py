"""Task registry: a task config (config.task) to a sampler with its normalizer."""

from __future__ import annotations

import ml_collections
import numpy as np

from icl_jax.errors import UserError
from icl_jax.tasks import linear
from icl_jax.tasks.linear import LinearTask, Prompts

TASK_NAMES = ("linear", "sparse_linear", "sign_vector", "task_pool", "gaussian_mixture")


def check_task_config(t: ml_collections.ConfigDict) -> None:
    if t.name not in TASK_NAMES:
        raise UserError(f"unknown task.name {t.name!r}; known tasks: {', '.join(TASK_NAMES)}")
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


def get_task(t: ml_collections.ConfigDict) -> LinearTask:
    check_task_config(t)
    d = t.n_dims
    if t.name == "linear":
        prior, moment = linear.gaussian_prior, float(d)
    elif t.name == "sparse_linear":
        prior, moment = linear.sparse_prior(t.sparsity), float(t.sparsity)
    elif t.name == "sign_vector":
        prior, moment = linear.sign_prior, float(d)
    elif t.name == "task_pool":
        prior = linear.pool_prior(t.pool_size, t.pool_seed)
        pool = linear.pool_weights(t.pool_size, t.pool_seed, d).astype(np.float64)
        moment = float(np.mean(np.sum(pool**2, axis=1)))  # exact for this pool, not the prior's d
    else:  # gaussian_mixture
        prior = linear.mixture_prior(t.mixture_components, t.mixture_scale, d)
        centers = linear.mixture_centers(t.mixture_components, t.mixture_scale, d)
        moment = float(d + np.mean(np.sum(centers.astype(np.float64) ** 2, axis=1)))
    return LinearTask(t.name, d, t.n_points, float(t.noise_std), prior, moment)


__all__ = ["TASK_NAMES", "LinearTask", "Prompts", "check_task_config", "get_task"]
