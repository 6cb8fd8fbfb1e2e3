"""Boolean function classes (docs/function_classes.md; Bhattamishra et al. 2024): x ∈ {±1}^n, labels ±1,
logistic loss on every position. The class is the config argument (default conjunction):
conjunction, teach_conjunction, disjunction, sparse_disjunction, cnf, dnf, majority,
threshold, int_halfspace, parity, sparse_parity, nearest_neighbour.

Laptop default (n=8 bits, 21 points, tiny model, 5000 steps, logistic loss):
  python -m icl_jax.train --config=configs/boolean.py:conjunction --workdir=runs/conjunction
  python -m icl_jax.evaluate --workdir=runs/conjunction
  evaluate reports the error rate (1 − accuracy) per k for the model and the baselines
  (the exact posterior by enumeration of the 3^8 conjunctions, elimination, 1-/3-NN,
  averaging, majority class, an MLP trained in context), accuracy and logistic loss.
  measured (1280 prompts, error at k = 5 / 20): model 0.22 / 0.039, exact posterior
  0.20 / 0.016, elimination 0.31 / 0.018, in-context MLP 0.28 / 0.083, 1-NN 0.28 / 0.16,
  averaging 0.29 / 0.20, majority class 0.43 / 0.40.

Reference (n=28, 40 points, standard model 12/8/256, Adam 1e-4, batch 64):
  python -m icl_jax.train --config=configs/boolean.py:conjunction,standard --workdir=runs/conjunction_standard
  elimination (measured on the evaluation prompts' distribution): accuracy 0.75 at k = 10
  and 0.993 at k = 39 (the literature: ≈0.77 and ≈0.99); Bhattamishra et al. report the
  transformer close to elimination (not run here: hours on CPU). 3^28 conjunctions are too
  many to enumerate, so there is no `bayes` curve at this size and elimination is the
  reference learner.
Other classes: configs/boolean.py:parity (laptop) or :sparse_parity,standard; model sizes:
append ',tiny' or ',small'.
"""

from icl_jax import config as config_lib
from icl_jax.errors import UserError
from icl_jax.tasks import boolean

LAPTOP_BITS, LAPTOP_POINTS, LAPTOP_STEPS = 8, 21, 5000

# The table of Bhattamishra et al. 2024 (docs/reproductions.md), 3000 steps a class on a laptop:
#   python -m icl_jax.sweep --config=configs/boolean.py:table --workdir=runs/boolean_table --sweep="train.steps=[3000]"
#   python -m icl_jax.report --workdir=runs/boolean_table --metric=accuracy --x=task.name
SWEEPS = {"table": {"task.name": ["conjunction", "disjunction", "cnf", "dnf", "majority", "threshold",
                                  "int_halfspace", "sparse_parity", "parity"]}}


def _laptop(c):
    config_lib.laptop(c, n_dims=LAPTOP_BITS, steps=LAPTOP_STEPS)
    c.task.n_points = c.model.n_positions = LAPTOP_POINTS
    c.task.nn_labelled_points = 5


def get_config(arg: str | None = None):
    words = [w for w in (arg or "").split(",") if w]
    names = [w for w in words if w in boolean.NAMES]
    if len(names) > 1:
        raise UserError(f"configs/boolean.py takes one class, got {names}")
    c = config_lib.default_config()
    c.task.name = names[0] if names else "conjunction"
    c.task.n_dims, c.task.n_points = 28, 40
    c.curriculum.interval = 0  # no dimension curriculum for Boolean inputs
    return config_lib.apply_arg(c, ",".join(w for w in words if w not in boolean.NAMES), _laptop)
