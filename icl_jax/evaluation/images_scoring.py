"""The image family's scorer: the model and the classification baselines on the same prompts
of the training data set's held-out split, then on each data set not seen in training.

`errors` are per-prompt 0-1 errors (1 − accuracy); the report adds accuracy curves,
cross-entropy per k (for the predictors that give probabilities), the same curves on pool
tasks when training used a finite number of tasks (memorization shows as pool accuracy far
above fresh-task accuracy), and per unseen data set.
Legend: N prompts, K points, D projected width, L classes, R bootstrap resamples.
"""

from __future__ import annotations

import functools
import time

import ml_collections
import numpy as np

from icl_jax.baselines import classification
from icl_jax.evaluation import predictors, statistics
from icl_jax.evaluation.scorers import Scores
from icl_jax.tasks.images import ImageTask

LOGREG_STEPS = 100


def baselines(n_classes: int) -> dict[str, predictors.Predictor]:
    return {
        "logistic_regression": functools.partial(classification.logistic_regression, n_classes=n_classes,
                                                 steps=LOGREG_STEPS),
        "nearest_neighbour": functools.partial(classification.nearest_neighbour, n_classes=n_classes),
        "majority": functools.partial(classification.majority, n_classes=n_classes),
    }


def _in_chunks(fn, x_NxKxD: np.ndarray, y_NxK: np.ndarray, size: int) -> np.ndarray:
    """fn over chunks of `size` prompts (one compiled shape; the last chunk padded, then cut):
    the nearest-neighbour distances alone are N×K×K×D."""
    out = []
    for start in range(0, len(x_NxKxD), size):
        x, y = x_NxKxD[start:start + size], y_NxK[start:start + size]
        pad = size - len(x)
        x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
        y = np.concatenate([y, np.zeros((pad,) + y.shape[1:], y.dtype)])
        out.append(np.asarray(fn(x, y))[:size - pad])
    return np.concatenate(out)


def _cross_entropy_NxK(log_probs_NxKxL: np.ndarray, y_NxK: np.ndarray) -> np.ndarray:
    return -np.take_along_axis(log_probs_NxKxL, y_NxK[..., None].astype(np.int64), axis=-1)[..., 0]


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def score_prompts(config: ml_collections.ConfigDict, task: ImageTask, model: predictors.Predictor,
                  x_NxKxD: np.ndarray, y_NxK: np.ndarray) -> tuple[dict, dict, dict, dict]:
    """(errors_NxK, predicted labels_NxK, cross-entropy per k, seconds) of every predictor."""
    x_NxKxD, y_NxK = np.asarray(x_NxKxD, np.float32), np.asarray(y_NxK, np.int32)
    errors, labels, cross_entropy, seconds = {}, {}, {}, {}
    learners = {"model": model, **{n: functools.partial(_in_chunks, b, size=config.eval.batch_size)
                                   for n, b in baselines(task.label_classes).items()}}
    for name, learner in learners.items():
        start = time.time()
        scores_NxKxL = np.asarray(learner(x_NxKxD, y_NxK), np.float64)
        seconds[name] = time.time() - start
        if not np.all(np.isfinite(scores_NxKxL)):
            raise RuntimeError(f"{name} produced non-finite scores on the evaluation prompts")
        labels[name] = scores_NxKxL.argmax(axis=-1)
        errors[name] = (labels[name] != y_NxK).astype(np.float64)
        if name in ("model", "logistic_regression"):  # scores that are (log-)probabilities
            log_probs = _log_softmax(scores_NxKxL)
            cross_entropy[name] = _cross_entropy_NxK(log_probs, y_NxK).mean(axis=0).tolist()
    return errors, labels, cross_entropy, seconds


def _accuracy_curves(errors: dict, counts_RxN: np.ndarray) -> dict:
    return {name: statistics.curve(1.0 - e, counts_RxN) for name, e in errors.items()}


def _other_set(config, task, model, counts_RxN, seconds: dict, label: str, **prompt_args) -> dict:
    start = time.time()
    p = task.eval_prompts(config.eval.seed, counts_RxN.shape[1], **prompt_args)
    errors, _, cross_entropy, _ = score_prompts(config, task, model, p.x_BxKxD, p.y_BxK)
    seconds[label] = time.time() - start
    return {"accuracy": _accuracy_curves(errors, counts_RxN), "cross_entropy": cross_entropy}


def score(config: ml_collections.ConfigDict, task: ImageTask, model: predictors.Predictor,
          x_NxKxD: np.ndarray, y_NxK: np.ndarray, w_NxD: np.ndarray, counts_RxN: np.ndarray,
          probe_prompts: int = 0) -> Scores:
    del w_NxD, probe_prompts  # the task index; no weight probe for classification
    errors, labels, cross_entropy, seconds = score_prompts(config, task, model, x_NxKxD, y_NxK)
    chance = 1.0 - 1.0 / task.label_classes
    report = {
        "metric": f"0-1 error (1 − accuracy; chance {chance:.2f})",
        "plot_reference": chance, "plot_ylim": (-0.02, 1.02),
        "dataset": task.dataset, "split": "test", "tasks": "fresh (projection, permutation) per prompt",
        "accuracy": _accuracy_curves(errors, counts_RxN),
        "cross_entropy": cross_entropy,
        "baseline_info": {"logistic_regression": {
            "steps": LOGREG_STEPS,
            "step_size": "1/(½λ + l2), λ the largest eigenvalue of the seen examples' [x, 1]ᵀ[x, 1]/k"}},
    }
    if task.num_tasks:
        report["pool_tasks"] = _other_set(config, task, model, counts_RxN, seconds, "pool tasks", from_pool=True)
    report["unseen_datasets"] = {name: _other_set(config, task, model, counts_RxN, seconds, name, dataset=name)
                                 for name in task.eval_datasets}
    return Scores(errors, labels, seconds, report)
