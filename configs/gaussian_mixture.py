"""Gaussian mixture of linear regressions: w ~ ½N(3e_1, I) + ½N(−3e_1, I), noiseless.

Laptop default (d=5, 11 points, tiny model):
  python -m icl_jax.train --config=configs/gaussian_mixture.py --workdir=runs/mixture
  python -m icl_jax.evaluate --workdir=runs/mixture
  expected: at k = 0 every unbiased predictor scores 1 (the mixture mean is 0); the model
  drops faster than least squares once a few examples tell the component.
Reference sizes (d=10, 21 points, standard model, curriculum from 5 dims, 500k steps):
  python -m icl_jax.train --config=configs/gaussian_mixture.py:standard --workdir=runs/mixture_standard
  expected (docs/reference_results.md): tracks the mixture posterior up to k = d.
"""

from icl_jax import config as config_lib


def get_config(arg: str | None = None):
    c = config_lib.default_config()
    c.task.name, c.task.mixture_components, c.task.mixture_scale = "gaussian_mixture", 2, 3.0
    c.task.n_dims, c.task.n_points = 10, 21
    return config_lib.apply_arg(c, arg, lambda c: config_lib.laptop(c, n_dims=5, steps=6000))
