"""Depth-4 decision trees: every internal node splits on x_j > 0, j uniform over the d
coordinates, leaves N(0, 1), x ~ N(0, I_d), so E[y²] = 1 (tasks/nonlinear.py; Garg et al. 2022).
Baselines: greedy depth-limited regression trees (scikit-learn's CART, fitted per prompt and
prefix), a 2-layer net trained in context, least squares, 3-NN, averaging, zero.

Laptop default (2 CPU cores, a few minutes): d=4, depth 4, 25 points, tiny model, 4000 steps:
  python -m icl_jax.train --config=configs/decision_tree.py --workdir=runs/decision_tree
  python -m icl_jax.evaluate --workdir=runs/decision_tree
  expected: the model below every baseline from a few examples on. Measured (4k steps, 512
  prompts), k = 4 / 11 / 24: model 0.80 / 0.55 / 0.51, greedy_tree 1.46 / 0.91 / 0.76, 3-NN
  0.92 / 0.83 / 0.58, least squares 1.27 / 0.87 (k = 11 / 24), neural_net above 1.
Reference (Garg et al.: d=20, depth 4, 101 points, standard model, curriculum 5→20 dims and
26→101 points):
  python -m icl_jax.train --config=configs/decision_tree.py:standard --workdir=runs/tree_standard
  expected: the model well below greedy trees, 3-NN and least squares at every k.
"""

from icl_jax import config as config_lib


def _laptop(c):
    config_lib.laptop(c, n_dims=4, steps=4000)
    c.task.n_points = c.model.n_positions = 25


def get_config(arg: str | None = None):
    c = config_lib.default_config()
    c.task.name, c.task.n_dims, c.task.n_points, c.task.tree_depth = "decision_tree", 20, 101, 4
    c.model.n_positions = 101
    c.curriculum.points_start, c.curriculum.points_increment = 26, 5
    return config_lib.apply_arg(c, arg, _laptop)
