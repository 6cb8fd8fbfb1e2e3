"""Which scorer evaluate runs for a task family, and what every scorer returns.

A scorer is score(config, task, model, x_NxKxD, y_NxK, w_NxD, counts_RxN, probe_prompts)
-> Scores: the model and every baseline of the family on the same prompts.
"""

from __future__ import annotations

import importlib
from typing import Callable, NamedTuple

import numpy as np


class Scores(NamedTuple):
    errors: dict[str, np.ndarray]  # name -> per-prompt error N×K in the family's metric
    predictions: dict[str, np.ndarray]  # name -> the predictor's output on the prompts
    seconds: dict[str, float]  # per predictor, plus any tuning or probing
    report: dict  # JSON-ready extras, merged into eval/step_N.json; "metric" names the errors


# family -> module holding `score` (imported on use: a family's baselines load only when needed)
_SCORER_MODULES = {
    "linear": "icl_jax.evaluation.linear_scoring",
    "fourier": "icl_jax.evaluation.regression_scoring",
    "nonlinear": "icl_jax.evaluation.regression_scoring",
    "images": "icl_jax.evaluation.images_scoring",
    "boolean": "icl_jax.evaluation.boolean_scoring",
}


def for_family(family: str) -> Callable[..., Scores]:
    if family not in _SCORER_MODULES:
        raise ValueError(f"no scorer for task family {family!r}; known: {sorted(_SCORER_MODULES)}")
    return importlib.import_module(_SCORER_MODULES[family]).score
