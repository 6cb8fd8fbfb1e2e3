"""Everything `evaluate` scores, as functions (x_NxKxD, y_NxK) -> yhat_NxK on the same prompts."""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from icl_jax import baselines

Predictor = Callable[[np.ndarray, np.ndarray], np.ndarray]


def model_predictor(graphdef: nnx.GraphDef, params, batch_size: int) -> Predictor:
    @jax.jit
    def forward(params, x_BxKxD, y_BxK):
        return nnx.merge(graphdef, params)(x_BxKxD, y_BxK)

    def predict(x_NxKxD, y_NxK):
        n = x_NxKxD.shape[0]
        pad = -n % batch_size  # one compiled shape: the last batch is padded, then cut
        x = np.concatenate([x_NxKxD, np.zeros((pad,) + x_NxKxD.shape[1:], x_NxKxD.dtype)])
        y = np.concatenate([y_NxK, np.zeros((pad,) + y_NxK.shape[1:], y_NxK.dtype)])
        out = [np.asarray(forward(params, x[i:i + batch_size], y[i:i + batch_size]))
               for i in range(0, n + pad, batch_size)]
        return np.concatenate(out)[:n]

    return predict


def _jitted(fn, **static) -> Predictor:
    compiled = jax.jit(functools.partial(fn, **static))
    return lambda x, y: np.asarray(compiled(jnp.asarray(x), jnp.asarray(y)))


def linear_baselines(task_config: ml_collections.ConfigDict) -> dict[str, Predictor]:
    """The classic learners of the linear family. Each is its own jit, called one after the
    other: two LAPACK-style solver chains in one jitted function can deadlock on CPU."""
    return {
        "least_squares": _jitted(baselines.least_squares),
        "ridge": _jitted(baselines.least_squares, ridge=float(task_config.noise_std) ** 2),
        "averaging": _jitted(baselines.averaging),
        "nearest_neighbors": _jitted(baselines.nearest_neighbors, n_neighbors=3),
        "zero": _jitted(baselines.zero),
    }
