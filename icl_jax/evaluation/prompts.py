"""The evaluation set: prompts drawn from derive(eval.seed, EVAL_DATA), at full dimension and
length, identical for every predictor and every checkpoint of a run."""

from __future__ import annotations

import jax
import ml_collections
import numpy as np

from icl_jax import rng, tasks


def eval_prompts(config: ml_collections.ConfigDict, num_prompts: int) -> tasks.Prompts:
    task = tasks.get_task(config.task, config.data)
    if getattr(task, "host_fed", False):  # examples of a data set's held-out split (tasks/images.py)
        return task.eval_prompts(config.eval.seed, num_prompts)
    sample = jax.jit(lambda key: task.sample(key, num_prompts))
    prompts = sample(rng.derive(config.eval.seed, rng.EVAL_DATA))
    return tasks.Prompts(*(np.asarray(a) for a in prompts))


def exact_labels(task: tasks.RegressionTask, x_NxKxD: np.ndarray, y_NxK: np.ndarray,
                 w_NxP: np.ndarray) -> np.ndarray:
    """float64 labels for scoring and for the baselines. Noiseless classes: the task's labels
    recomputed in float64 from its parameters, because the sampled float32 labels carry ~1e-7
    relative rounding and an exact noiseless posterior decides consistency (or which Fourier
    order interpolates) far below that (baselines/precision.py). Noisy classes: the sampled
    labels (the noise is far above the rounding)."""
    if task.noise_std:
        return np.asarray(y_NxK, np.float64)
    return np.asarray(task.labels(np.asarray(x_NxKxD, np.float64), np.asarray(w_NxP, np.float64), xp=np))
