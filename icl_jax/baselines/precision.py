"""Float64 for the exact Bayes baselines, scoped to the call.

The posteriors decide things float32 cannot: whether a noiseless prompt is *consistent* with a
hypothesis (a residual of 1e-9 vs 1e-3), and log evidences summed over 40 steps whose
differences set the mixture weights. So they run in float64 under `jax.enable_x64`, which
is scoped: the rest of the program (model, training) keeps float32, and a function jitted
here is traced, cached and run with 64-bit types only inside the context.

Consequence for callers: these functions are called from Python (not under an outer
`jax.jit`), and take numpy or jax arrays of any float dtype.
"""

from __future__ import annotations

import functools
from typing import Callable, TypeVar

import jax
import numpy as np

F = TypeVar("F", bound=Callable)


def float64(fn: F) -> F:
    """Run `fn` with jax_enable_x64 on; array results come back as numpy (they outlive the
    context, and numpy arrays carry no 64-bit jax state into float32 code)."""

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with jax.enable_x64(True):
            out = fn(*args, **kwargs)
            return jax.tree.map(lambda a: np.asarray(a) if isinstance(a, jax.Array) else a, out)

    return wrapped  # type: ignore[return-value]


def consistency_tolerance(y_dtype) -> float:
    """Relative residual below which a noiseless degenerate step counts as consistent.

    The labels are only as exact as their dtype: float32 labels y = fl(x·w) carry ~1e-7
    relative rounding, so a tolerance tighter than that would reject the true hypothesis.
    Float64 labels (evaluate recomputes noiseless labels in float64) allow 1e-12: 20x above
    what the float64 solvers leave on a consistent hypothesis (~5e-14 of the label scale) and
    far below what a wrong one leaves (~1): a wrong sign vector among 2^20 then survives one
    example with probability ~1e-6 per prompt (at 1e-9 it was ~2e-3: a visible k = 1 error).
    """
    eps = float(np.finfo(np.dtype(y_dtype)).eps) if np.issubdtype(np.dtype(y_dtype), np.floating) else 1.0
    return max(64.0 * eps, 1e-12)
