"""Linear regression, w ~ N(0, I_d), noiseless (Garg et al. 2022).

Laptop default (2 CPU cores, ~3 minutes), d=5, 11 points, tiny model:
  python -m icl_jax.train --config=configs/linear.py --workdir=runs/linear
  python -m icl_jax.evaluate --workdir=runs/linear
  expected: normalized loss of the model ≈ 1 - k/5 for k < 5 (like least squares) and
  ≤ 0.1 at the last position k = 10 (least squares 0, zero predictor 1).

Reference run (d=20, 41 points, 12 layers / 8 heads / width 256 = 9.53M parameters,
batch 64, Adam 1e-4, curriculum 5→20 dims and 11→41 points, 500k steps):
  python -m icl_jax.train --config=configs/linear.py:standard --workdir=runs/linear_standard
  expected (docs/reference_results.md): tracks least squares, (d-k)/d for k < d; ≈0.02 at k = d and
  ≈0.0005 at k = 2d.
Other model sizes: append ',tiny' or ',small' (e.g. configs/linear.py:standard,small).
"""

from icl_jax import config as config_lib


# Named sweeps (python -m icl_jax.sweep --config=configs/linear.py:NAME; docs/reproductions.md):
# depth: which learner the model is closest to as it gets deeper (Akyürek et al. 2023);
# curriculum: d = 10 with and without the dimension/length curriculum (Garg et al. 2022),
# every 500th step kept so `analyze --what=learning_curve` can draw both.
_D10 = {"task.n_dims": 10, "task.n_points": 21, "model.n_positions": 21, "train.steps": 6000,
        "train.checkpoint_every": 500, "train.keep_last": 12}
SWEEPS = {
    "depth": {"model.n_layer": [1, 2, 3, 4]},
    "curriculum": [{**_D10, "curriculum.interval": 0},
                   {**_D10, "curriculum.interval": 500, "curriculum.dims_start": 5, "curriculum.points_start": 11}],
}


def get_config(arg: str | None = None):
    c = config_lib.default_config()
    c.task.name = "linear"
    return config_lib.apply_arg(c, arg, lambda c: config_lib.laptop(c, n_dims=5, steps=10000))
