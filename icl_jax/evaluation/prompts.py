"""The evaluation set: prompts drawn from derive(eval.seed, EVAL_DATA), at full dimension and
length, identical for every predictor and every checkpoint of a run."""

from __future__ import annotations

import jax
import ml_collections
import numpy as np

from icl_jax import rng, tasks


def eval_prompts(config: ml_collections.ConfigDict, num_prompts: int) -> tasks.Prompts:
    task = tasks.get_task(config.task)
    sample = jax.jit(lambda key: task.sample(key, num_prompts))
    prompts = sample(rng.derive(config.eval.seed, rng.EVAL_DATA))
    return tasks.Prompts(*(np.asarray(a) for a in prompts))
