"""Sign-vector regression: w uniform on {±1}^d, noiseless.

Laptop default (d=5, 11 points, tiny model):
  python -m icl_jax.train --config=configs/sign_vector.py --workdir=runs/sign_vector
  python -m icl_jax.evaluate --workdir=runs/sign_vector
  expected: below least squares for k < d (the prior is finite: one example already narrows
  2^d hypotheses).
Reference (d=20, 41 points, standard model, curriculum, 500k steps):
  python -m icl_jax.train --config=configs/sign_vector.py:standard --workdir=runs/sign_vector_standard
  expected (docs/reference_results.md): ≈0.30 at k = 10, below L∞ minimisation (0.32).
"""

from icl_jax import config as config_lib


def get_config(arg: str | None = None):
    c = config_lib.default_config()
    c.task.name = "sign_vector"
    return config_lib.apply_arg(c, arg, lambda c: config_lib.laptop(c, n_dims=5, steps=6000))
