"""Sparse linear regression: w has s = 3 nonzeros N(0, 1) on a uniform support of the d coordinates.

Laptop default (d=5, s=2, 11 points, tiny model):
  python -m icl_jax.train --config=configs/sparse_linear.py --workdir=runs/sparse_linear
  python -m icl_jax.evaluate --workdir=runs/sparse_linear
  expected: the model beats least squares below k = d (it exploits sparsity).
Reference (Garg et al. 2022: d=20, s=3, 41 points, standard model, curriculum, 500k steps):
  python -m icl_jax.train --config=configs/sparse_linear.py:standard --workdir=runs/sparse_standard
  expected: error well below least squares for k < d, close to the sparse posterior.
"""

from icl_jax import config as config_lib


def _laptop(c):
    config_lib.laptop(c, n_dims=5, steps=6000)
    c.task.sparsity = 2


def get_config(arg: str | None = None):
    c = config_lib.default_config()
    c.task.name, c.task.sparsity = "sparse_linear", 3
    return config_lib.apply_arg(c, arg, _laptop)
