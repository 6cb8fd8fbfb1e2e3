"""The exact Bayes predictor of each Boolean class, where one is computable.

| class | exact posterior |
|---|---|
| parity (uniform over the 2^n subsets) | GF(2) elimination, any n (boolean_gf2.py) |
| nearest_neighbour | the class's own rule (boolean_enumeration.py) |
| any other class with <= MAX_HYPOTHESES hypotheses (conjunction n ≤ 11, majority n ≤ 17, ...) | enumeration |
| the rest (conjunction at n = 28, cnf/dnf past n = 3, teach_conjunction) | none: the classic learners only |

Enumeration includes the inputs' likelihood under the minority rewrite (boolean_enumeration.py).

teach_conjunction has no entry on purpose: its first two examples are always positive and
reveal the function outright (the relevant bits are where they agree), so its Bayes error is
0 at every k; elimination is the learner the teaching set is for.
Legend: B prompts, K points, D bits.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from icl_jax.baselines import boolean_enumeration as enumeration
from icl_jax.baselines import boolean_gf2
from icl_jax.tasks.boolean import BooleanTask


class BooleanBayes(NamedTuple):
    p_plus_BxK: np.ndarray | None  # P(y_k = +1 | examples before k, x_k); None: not available
    method: str  # how it was computed, or why there is none


def available(task: BooleanTask) -> str | None:
    """The method for this class and size, or None."""
    if task.name == "parity":
        return "GF(2) elimination"
    if task.name == "nearest_neighbour":
        return "the class's nearest-neighbour rule"
    count = enumeration.hypothesis_count(task)
    if count is not None and count <= enumeration.MAX_HYPOTHESES:
        return f"enumeration of {count} hypotheses"
    return None


def posterior(task: BooleanTask, x_BxKxD, y_BxK) -> BooleanBayes:
    method = available(task)
    if method is None:
        count = enumeration.hypothesis_count(task)
        why = (f"{count} hypotheses exceed the enumeration limit {enumeration.MAX_HYPOTHESES}" if count
               else "none: the teaching set's first two examples reveal the conjunction (module docstring)")
        return BooleanBayes(None, why)
    if task.name == "parity":
        p = (1 + np.asarray(boolean_gf2.parity_posterior(x_BxKxD, y_BxK))) / 2
    elif task.name == "nearest_neighbour":
        p = (1 + np.asarray(enumeration.nearest_neighbour_posterior(x_BxKxD, y_BxK, task.nn_labelled_points))) / 2
    else:
        p = enumeration.posterior_plus(task, x_BxKxD, y_BxK)
    return BooleanBayes(np.asarray(p, np.float64), method)
