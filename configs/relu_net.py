"""Two-layer ReLU networks: y = √(2/h) relu(x W1) W2, W1, W2 ~ N(0, 1), h = 100, x ~ N(0, I_d),
so E[y²] = d and the normalized loss is error/d (tasks/nonlinear.py; Garg et al. 2022).
Baselines: a 2-layer net trained in context by Adam, least squares, 3-NN, averaging, zero.

Laptop default (2 CPU cores, a few minutes): d=4, 17 points, tiny model:
  python -m icl_jax.train --config=configs/relu_net.py --workdir=runs/relu_net
  python -m icl_jax.evaluate --workdir=runs/relu_net
  expected: the model below least squares, 3-NN, averaging and zero at every k ≥ 1, and near
  the in-context net. Measured (6k steps, 1280 prompts), k = 4 / 10 / 16: model 0.51 / 0.25 /
  0.14, neural_net 0.57 / 0.24 / 0.09, least squares 0.89 at k = 10 (no finite mean at
  k = 3..5), 3-NN 0.75 / 0.46 / 0.32.
Reference (Garg et al.: d=20, h=100, 101 points, standard model, curriculum 5→20 dims and
26→101 points):
  python -m icl_jax.train --config=configs/relu_net.py:standard --workdir=runs/relu_net_standard
  expected: the model at or below the in-context-trained net and well below least squares.
"""

from icl_jax import config as config_lib


def _laptop(c):
    config_lib.laptop(c, n_dims=4, steps=6000)
    c.task.n_points = c.model.n_positions = 17


def get_config(arg: str | None = None):
    c = config_lib.default_config()
    c.task.name, c.task.n_dims, c.task.n_points, c.task.relu_hidden = "relu_net", 20, 101, 100
    c.model.n_positions = 101
    c.curriculum.points_start, c.curriculum.points_increment = 26, 5
    return config_lib.apply_arg(c, arg, _laptop)
