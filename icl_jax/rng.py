"""Every random stream is derived from (seed, purpose, index), never carried between steps.

Resuming a run therefore needs no generator state: the batch of step N is a pure function of
(seed, N). Purposes are fixed integers so that adding one never shifts the others.
"""

import jax

PARAMS = 0  # model initialisation
TRAIN_DATA = 1  # the batch of a training step: inputs, task parameters, noise
TASK_POOL = 2  # members of a finite task pool (a function of task.pool_seed only)
EVAL_DATA = 3  # the evaluation prompts (root: eval.seed)
BOOTSTRAP = 4  # resampling for confidence intervals
BASELINE_TUNING = 5  # prior prompts on which baselines tune step sizes / penalties (evaluation)
PROBE = 6  # fresh probe queries of the weight probe (evaluation)


def derive(seed: int, purpose: int, index: int | jax.Array | None = None) -> jax.Array:
    """key = fold_in(fold_in(key(seed), purpose), index); index may be traced (the step)."""
    key = jax.random.fold_in(jax.random.key(seed), purpose)
    return key if index is None else jax.random.fold_in(key, index)
