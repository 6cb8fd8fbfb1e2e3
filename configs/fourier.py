"""Fourier series on one period: x ~ U[-L, L], f(x) = a_0 + Σ_{n≤N} a_n cos(nπx/L) + b_n sin(nπx/L),
coefficients N(0, 1/N) (tasks/fourier.py). The exact posterior is least squares on the 2N+1
Fourier features (identified from 2N+1 points); `--config.task.name=fourier_mixture` draws
N ~ U{1..N_max} per prompt, and the posterior becomes the Bayesian model average over N.

Laptop default (2 CPU cores, a few minutes): N=3, L=5, 15 points, tiny model:
  python -m icl_jax.train --config=configs/fourier.py --workdir=runs/fourier
  python -m icl_jax.evaluate --workdir=runs/fourier
  python -m icl_jax.analyze --what=spectrum --workdir=runs/fourier  # power per frequency vs prompt length
  expected: the model well below 3-NN, the label mean and zero from k ≈ 3 on, above the
  posterior (= least squares on the 7 features, 0 from k = 7). Measured (10k steps, 1280
  prompts), k = 5 / 10 / 14: model 0.47 / 0.31 / 0.19, posterior 0.24 / 0 / 0, 3-NN 0.88 /
  0.54 / 0.41, zero ≈ 1; the spectrum shows the model's bias to low frequencies.
Reference (Ahuja et al. 2023, "In-context learning through the Bayesian prism": L=5, N=10,
41 points, standard model, frequency curriculum 1→10 by one every 2000 steps, 11→41 points):
  python -m icl_jax.train --config=configs/fourier.py:standard --workdir=runs/fourier_standard
  expected (docs/reference_results.md): after 2N+1 = 21 points the model's error matches least squares on
  the features; with fourier_mixture it tracks the model average and shows a low-frequency
  bias at short prompts.
"""

from icl_jax import config as config_lib


def _laptop(c):
    config_lib.laptop(c, n_dims=1, steps=10000)
    c.task.fourier_max_frequency = 3
    c.task.n_points = c.model.n_positions = 15


def get_config(arg: str | None = None):
    c = config_lib.default_config()
    c.task.name, c.task.n_dims, c.task.n_points = "fourier", 1, 41
    c.task.fourier_max_frequency, c.task.fourier_half_period = 10, 5.0
    c.curriculum.dims_start, c.curriculum.dims_increment = 1, 1  # active frequencies
    return config_lib.apply_arg(c, arg, _laptop)
