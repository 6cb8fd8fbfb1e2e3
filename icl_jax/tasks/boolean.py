"""The Boolean family (docs/function_classes.md): x ∈ {±1}^n, labels ±1, a function drawn per
prompt; its entry in the task registry (tasks/__init__.py).

Each class is a small class in boolean_classes.py that knows its prior, labels, inputs,
hypothesis set, exact posterior and the learners made for it; labels are in
boolean_functions.py, priors in boolean_priors.py, non-uniform inputs in boolean_inputs.py.
Sampled inside the jitted step, vectorized, no Python loop over prompts or points.
"""

from __future__ import annotations

from icl_jax.tasks.boolean_classes import CLASSES, BooleanTask

NAMES = tuple(CLASSES)
FAMILY = "boolean"
# The keys of config.task this family reads besides name, n_dims and n_points (x ∈ {±1}^n_dims,
# labels ±1, logistic loss; noiseless).
CONFIG_KEYS = {
    "literal_prob": 0.3,  # conjunction-like, threshold: P(variable is a literal); majority: P(in subset)
    "minority_prob": 0.3,  # conjunction-like: P(an example is rewritten into the minority class)
    "clause_literal_prob": 0.2,  # cnf/dnf: literal probability per clause (term) and variable
    "clauses": 3,  # cnf/dnf: clauses (terms)
    "sparse_disjunction_size": 4,  # sparse_disjunction: positive literals
    "parity_size": 2,  # sparse_parity: k relevant bits among n_dims
    "integer_bound": 3,  # int_halfspace: weights in [-b, b]; threshold: offset in {-b..b-1} + 1/2
    "nn_labelled_points": 10,  # nearest_neighbour: leading points with coin-flip labels
}


# ---- the family's registry entry (tasks/__init__.py) ----
def check_config(t) -> None:
    from icl_jax.errors import UserError

    for key in ("literal_prob", "minority_prob", "clause_literal_prob"):
        if not 0.0 <= t[key] <= 1.0:
            raise UserError(f"task.{key} must lie in [0, 1], got {t[key]}")
    if t.clauses < 1:
        raise UserError(f"task.clauses must be >= 1, got {t.clauses}")
    if t.name == "sparse_disjunction" and not 1 <= t.sparse_disjunction_size <= t.n_dims:
        raise UserError(f"task.sparse_disjunction_size={t.sparse_disjunction_size} must lie in "
                        f"[1, task.n_dims={t.n_dims}]")
    if t.name == "sparse_parity" and not 1 <= t.parity_size <= t.n_dims:
        raise UserError(f"task.parity_size={t.parity_size} must lie in [1, task.n_dims={t.n_dims}]")
    if t.integer_bound < 1:
        raise UserError(f"task.integer_bound must be >= 1, got {t.integer_bound}")
    if t.name == "nearest_neighbour" and not 1 <= t.nn_labelled_points <= t.n_points:
        raise UserError(f"task.nn_labelled_points={t.nn_labelled_points} must lie in [1, task.n_points={t.n_points}]")
    if t.noise_std:
        raise UserError("task.noise_std must be 0 for Boolean classes (labels are noiseless ±1)")


def label_classes(t) -> int:
    return CLASSES[t.name].label_classes


def make(t) -> BooleanTask:
    return CLASSES[t.name](t.n_dims, t.n_points, float(t.literal_prob), float(t.minority_prob),
                           float(t.clause_literal_prob), t.clauses, t.sparse_disjunction_size, t.parity_size,
                           t.integer_bound, t.nn_labelled_points)
