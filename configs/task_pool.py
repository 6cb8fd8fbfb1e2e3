"""Finite task pool (task diversity): M weight vectors drawn once from task.pool_seed; each
prompt uses one of them uniformly; noise σ² = 0.25 (Raventós et al. 2023: d = 8, 16 points).

Laptop default (d=5, 11 points, M = 64, tiny model):
  python -m icl_jax.train --config=configs/task_pool.py --workdir=runs/task_pool
  python -m icl_jax.evaluate --workdir=runs/task_pool
  expected: with few tasks the model does better than ridge on the pool's own tasks (it
  memorises the pool). The transition over the pool size (docs/reproductions.md):
  python -m icl_jax.sweep --config=configs/task_pool.py:diversity --workdir=runs/pool
  python -m icl_jax.report --workdir=runs/pool --metric=fresh_tasks.curves --k=5
  measured: the model is dMMSE up to M = 8 (as bad on fresh tasks: 2.93 at M = 1) and
  ridge-like from M = 32 (0.35-0.41 on fresh tasks, ridge 0.30, dMMSE 0.78 at M = 32).
Reference sizes (d=8, 16 points, M = 2^10, standard model, no curriculum, 500k steps):
  python -m icl_jax.train --config=configs/task_pool.py:standard --workdir=runs/pool_1024
  expected (docs/reference_results.md): past roughly 2^14 tasks the model follows ridge, not the pool's
  discrete posterior.
"""

from icl_jax import config as config_lib


# python -m icl_jax.sweep --config=configs/task_pool.py:diversity --workdir=runs/pool, then
# python -m icl_jax.report --workdir=runs/pool --metric=fresh_tasks.curves --k=5
# (docs/reproductions.md: the task-diversity transition of Raventós et al. 2023).
SWEEPS = {"diversity": {"task.pool_size": [1, 2, 4, 8, 16, 32, 64, 256, 1024, 4096, 16384]}}


def _laptop(c):
    config_lib.laptop(c, n_dims=5, steps=6000)
    c.task.pool_size = 64


def get_config(arg: str | None = None):
    c = config_lib.default_config()
    c.task.name, c.task.noise_std, c.task.pool_size = "task_pool", 0.5, 2**10
    c.task.n_dims, c.task.n_points = 8, 16
    c.curriculum.interval = 0
    return config_lib.apply_arg(c, arg, _laptop)
