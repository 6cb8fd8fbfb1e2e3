"""Noisy linear regression: w ~ N(0, I_d), y = x·w + N(0, σ²), σ = 0.5.

Laptop default (d=5, 11 points, tiny model, a few minutes on 2 cores):
  python -m icl_jax.train --config=configs/noisy_linear.py --workdir=runs/noisy_linear
  python -m icl_jax.evaluate --workdir=runs/noisy_linear
  expected: the model follows ridge with λ = σ² (the Bayes posterior mean for this prior);
  least squares spikes near k = d, where its expected error is unbounded under noise.
Reference sizes (d=20, 41 points, standard model, curriculum, 500k steps):
  python -m icl_jax.train --config=configs/noisy_linear.py:standard --workdir=runs/noisy_linear_standard
"""

from icl_jax import config as config_lib


def get_config(arg: str | None = None):
    c = config_lib.default_config()
    c.task.name, c.task.noise_std = "linear", 0.5
    return config_lib.apply_arg(c, arg, lambda c: config_lib.laptop(c, n_dims=5, steps=6000))
