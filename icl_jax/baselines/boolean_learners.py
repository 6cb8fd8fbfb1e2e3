"""Classic in-context learners for Boolean classes, every prefix of every prompt in one call.

Inputs x ∈ {±1}^n, labels ±1. Each returns yhat_BxK, a score whose sign is the predicted
label of x_k from the examples i < k; 0 means undecided (scored as a coin flip by
evaluation/boolean_scoring.py).
Legend: B prompts, K points, D = n bits.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp

from icl_jax.baselines import boolean_gf2, simple
from icl_jax.tasks.boolean_classes import ClassLearner

Array = jax.Array


def _exclusive_any(flags_BxKxD: Array) -> Array:
    """[b, k, d]: flags[b, i, d] for some i < k."""
    total = jnp.cumsum(flags_BxKxD.astype(jnp.int32), axis=1) - flags_BxKxD.astype(jnp.int32)
    return total > 0


@jax.jit
def conjunction_elimination(x_BxKxD: Array, y_BxK: Array) -> Array:
    """The elimination algorithm: the hypothesis is the conjunction of every literal true in
    all positive examples so far (the most specific consistent conjunction; before any
    positive example it holds all 2n literals, which no input satisfies, so it says -1).

    The query satisfies it iff for every bit i some earlier positive example had x_i equal to
    the query's x_i (that eliminated the literal the query's value would falsify)."""
    x = jnp.asarray(x_BxKxD)
    positive_BxKx1 = (jnp.asarray(y_BxK) > 0)[..., None]
    seen_plus = _exclusive_any(positive_BxKx1 & (x > 0))
    seen_minus = _exclusive_any(positive_BxKx1 & (x < 0))
    satisfied = jnp.all(jnp.where(x > 0, seen_plus, seen_minus), axis=-1)
    return jnp.where(satisfied, 1.0, -1.0)


@jax.jit
def disjunction_elimination(x_BxKxD: Array, y_BxK: Array) -> Array:
    """Elimination for disjunctions by De Morgan: ¬(l_1 ∨ ... ∨ l_m) = ¬l_1 ∧ ... ∧ ¬l_m, so
    the negative examples are the positive examples of a conjunction."""
    return -conjunction_elimination(x_BxKxD, -jnp.asarray(y_BxK))


@jax.jit
def majority_class(x_BxKxD: Array, y_BxK: Array) -> Array:
    """The label seen most often before k (0 on ties and at k = 0)."""
    del x_BxKxD
    y = jnp.asarray(y_BxK, jnp.float32)
    return jnp.sign(jnp.cumsum(y, axis=1) - y)


@functools.partial(jax.jit, static_argnames=("n_neighbors",))
def nearest_neighbors_vote(x_BxKxD: Array, y_BxK: Array, n_neighbors: int) -> Array:
    """Majority label of the n nearest earlier points (Hamming distance, the earlier point
    first among equals); a tied vote (k = 2 with 3 neighbours) goes to the nearest one."""
    votes = simple.nearest_neighbors(x_BxKxD, y_BxK, n_neighbors=n_neighbors)
    nearest = simple.nearest_neighbors(x_BxKxD, y_BxK, n_neighbors=1)
    return jnp.where(votes != 0, jnp.sign(votes), nearest)


@jax.jit
def averaging(x_BxKxD: Array, y_BxK: Array) -> Array:
    """x_k · (1/k) Σ_{i<k} y_i x_i: the field's averaging estimator as a linear classifier."""
    return simple.averaging(x_BxKxD, y_BxK)


# The learners a class names as made for it (task.class_learners), each under the name that
# evaluation reports it by: (x, y) -> yhat_BxK.
FOR_CLASS: dict[ClassLearner, tuple[str, Callable[[Array, Array], Array]]] = {
    ClassLearner.CONJUNCTION_ELIMINATION: ("elimination", conjunction_elimination),
    ClassLearner.DISJUNCTION_ELIMINATION: ("elimination", disjunction_elimination),
    ClassLearner.GF2_ELIMINATION: ("gf2_elimination", boolean_gf2.parity_posterior),
}
