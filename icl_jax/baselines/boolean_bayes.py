"""The exact Bayes predictor of each Boolean class, where one is computable.

A class names the kind of its exact posterior (task.exact_posterior, tasks/boolean_classes.py);
SOLVERS below is the one map from each kind to the code that computes it:
  enumeration: the class's hypotheses with their prior, the inputs' likelihood under the
    minority rewrite included (boolean_enumeration.py), up to MAX_HYPOTHESES hypotheses
    (conjunction n ≤ 11, majority n ≤ 17, ...; none for conjunction at n = 28 or cnf/dnf past
    n = 3, where the classic learners are the reference);
  GF(2) elimination: parities under the uniform prior over all 2^n subsets, any n
    (boolean_gf2.py);
  the nearest-neighbour rule: the class's own rule (below).
A class without one (teach_conjunction) says why.
Legend: B prompts, K points, D bits.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from icl_jax.baselines import boolean_enumeration as enumeration
from icl_jax.baselines import boolean_gf2
from icl_jax.tasks.boolean import BooleanTask
from icl_jax.tasks.boolean_classes import ExactPosterior


class BooleanBayes(NamedTuple):
    p_plus_BxK: np.ndarray | None  # P(y_k = +1 | examples before k, x_k); None: not available
    method: str  # how it was computed, or why there is none


@jax.jit
def nearest_neighbour_posterior(x_BxKxD, y_BxK, labelled_points):
    """The nearest-neighbour class's rule is known, so Bayes follows it: from k = m on, the
    label of the nearest earlier point (earliest among equals); before, the label of an
    earlier exact copy, else a coin flip (0)."""
    x = jnp.asarray(x_BxKxD, jnp.float32)
    B, K, D = x.shape
    sim = jnp.einsum("bkd,bjd->bkj", x, x)
    earlier = jnp.arange(K)[None, :] < jnp.arange(K)[:, None]
    masked = jnp.where(earlier, sim, -jnp.inf)
    nearest = jnp.argmax(masked, axis=-1)
    known = (jnp.arange(K) >= labelled_points)[None] | (jnp.max(masked, axis=-1) >= D)
    known = known & (jnp.arange(K) > 0)[None]
    return jnp.where(known, jnp.take_along_axis(jnp.asarray(y_BxK, jnp.float32), nearest, axis=1), 0.0)


def _enumeration(task: BooleanTask, x_BxKxD, y_BxK) -> np.ndarray:
    return enumeration.posterior_plus(task, x_BxKxD, y_BxK)


def _gf2_elimination(task: BooleanTask, x_BxKxD, y_BxK) -> np.ndarray:
    return (1 + np.asarray(boolean_gf2.parity_posterior(x_BxKxD, y_BxK))) / 2


def _nearest_neighbour_rule(task: BooleanTask, x_BxKxD, y_BxK) -> np.ndarray:
    return (1 + np.asarray(nearest_neighbour_posterior(x_BxKxD, y_BxK, task.nn_labelled_points))) / 2


# kind -> (task, x, y) -> P(y_k = +1 | examples before k, x_k)
SOLVERS: dict[ExactPosterior, Callable[..., np.ndarray]] = {
    ExactPosterior.ENUMERATION: _enumeration,
    ExactPosterior.GF2_ELIMINATION: _gf2_elimination,
    ExactPosterior.NEAREST_NEIGHBOUR_RULE: _nearest_neighbour_rule,
}


def available(task: BooleanTask) -> str | None:
    """The method for this class and size, or None."""
    kind = task.exact_posterior
    if kind is ExactPosterior.ENUMERATION:
        return f"enumeration of {task.hypothesis_count()} hypotheses" if enumeration.enumerable(task) else None
    return None if kind is None else kind.value


def _why_not(task: BooleanTask) -> str:
    if task.exact_posterior is None:
        return task.no_exact_posterior
    return f"{task.hypothesis_count()} hypotheses exceed the enumeration limit {enumeration.MAX_HYPOTHESES}"


def posterior(task: BooleanTask, x_BxKxD, y_BxK) -> BooleanBayes:
    method = available(task)
    if method is None:
        return BooleanBayes(None, _why_not(task))
    p = SOLVERS[task.exact_posterior](task, x_BxKxD, y_BxK)
    return BooleanBayes(np.asarray(p, np.float64), method)
