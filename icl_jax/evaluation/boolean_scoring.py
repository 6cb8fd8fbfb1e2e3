"""The Boolean family's scorer: the model and every baseline on the same prompts, 0-1 errors
per prompt and k (the curves are error rates, 1 − accuracy), plus accuracy curves, the
logistic loss per k, and how often each predictor agrees with the model.

Ties: a baseline's score of exactly 0 means undecided (the exact posterior when half the
version space says +1, nearest neighbours with nothing seen yet); it is scored as a fair
coin flip, error 1/2 in expectation, which is what the randomized Bayes rule achieves. The
model's logit of exactly 0 counts as wrong (losses.correct); `model_zero_logits`
reports how often that happened.
Legend: N prompts, K points, D bits.
"""

from __future__ import annotations

import time

import jax
import ml_collections
import numpy as np

from icl_jax import losses
from icl_jax.baselines import boolean_bayes, boolean_learners, neural_net
from icl_jax.evaluation import predictors, statistics
from icl_jax.evaluation.scorers import Scores
from icl_jax.tasks.boolean import BooleanTask

# the in-context MLP: one hidden layer, full-batch Adam on the k seen examples
MLP = dict(hidden=32, steps=100, learning_rate=0.03, loss="logistic")


def zero_one_errors(yhat_NxK, y_NxK, tie_error: float) -> np.ndarray:
    """1 where sign(ŷ) ≠ y, `tie_error` where ŷ = 0."""
    sign = np.sign(np.asarray(yhat_NxK, np.float64))
    return np.where(sign == 0, tie_error, (sign != np.asarray(y_NxK)).astype(np.float64))


def learners(task: BooleanTask, seed: int) -> dict[str, predictors.Predictor]:
    """name -> (x, y) -> score: the learners the class names as made for it, then those that
    apply to any class."""
    out = dict(boolean_learners.FOR_CLASS[learner] for learner in task.class_learners)
    out["nn_1"] = lambda x, y: boolean_learners.nearest_neighbors_vote(x, y, n_neighbors=1)
    out["nn_3"] = lambda x, y: boolean_learners.nearest_neighbors_vote(x, y, n_neighbors=3)
    out["averaging"] = boolean_learners.averaging
    out["majority"] = boolean_learners.majority_class
    out["mlp_gd"] = lambda x, y: neural_net.fit_predict(x, y, seed=seed, **MLP)
    return out


def _accuracy(curve: dict) -> dict:
    return {"mean": [1 - v for v in curve["mean"]], "ci_low": [1 - v for v in curve["ci_high"]],
            "ci_high": [1 - v for v in curve["ci_low"]]}


def score(config: ml_collections.ConfigDict, task: BooleanTask, model: predictors.Predictor,
          x_NxKxD: np.ndarray, y_NxK: np.ndarray, w_NxD: np.ndarray, counts_RxN: np.ndarray,
          probe_prompts: int = 0) -> Scores:
    del w_NxD, probe_prompts  # no weight probe: the classes are not linear in x
    y = np.asarray(y_NxK, np.float64)
    predictions, seconds = {}, {}

    start = time.time()
    predictions["model"] = np.asarray(model(x_NxKxD, y_NxK), np.float64)
    seconds["model"] = time.time() - start
    start = time.time()
    bayes = boolean_bayes.posterior(task, x_NxKxD, y_NxK)
    if bayes.p_plus_BxK is not None:
        predictions["bayes"] = 2 * bayes.p_plus_BxK - 1
        seconds["bayes"] = time.time() - start
    for name, learner in learners(task, config.eval.seed).items():
        start = time.time()
        predictions[name] = np.asarray(jax.block_until_ready(learner(x_NxKxD, y_NxK)), np.float64)
        seconds[name] = time.time() - start

    model_correct = np.asarray(losses.correct("logistic", predictions["model"], y), np.float64)
    errors = {"model": 1 - model_correct}
    for name, yhat in predictions.items():
        if name != "model":
            errors[name] = zero_one_errors(yhat, y, tie_error=0.5)

    log_loss = {"model": np.logaddexp(0, -y * predictions["model"])}  # softplus(-y·logit)
    if bayes.p_plus_BxK is not None:
        p_true = np.where(y > 0, bayes.p_plus_BxK, 1 - bayes.p_plus_BxK)
        log_loss["bayes"] = -np.log(np.maximum(p_true, 1e-12))
    model_sign = np.sign(predictions["model"])
    report = {
        "metric": "error rate (1 − accuracy)",
        "plot_ylim": (-0.02, 0.7),
        "plot_reference": 0.5,  # a coin flip
        "accuracy": {name: _accuracy(statistics.curve(e, counts_RxN)) for name, e in errors.items()},
        "logistic_loss": {name: statistics.curve(v, counts_RxN) for name, v in log_loss.items()},
        "bayes": {"name": "bayes" if bayes.p_plus_BxK is not None else None,
                  "exact": bayes.p_plus_BxK is not None, "method": bayes.method},
        "agreement_with_model": {name: (np.sign(p) == model_sign).mean(0).tolist()
                                 for name, p in predictions.items() if name != "model"},
        "undecided_fraction": {name: (p == 0).mean(0).tolist() for name, p in predictions.items()},
        "model_zero_logits": int((predictions["model"] == 0).sum()),
        "positive_fraction": (y > 0).mean(0).tolist(),
        "ties": "a baseline's 0 (undecided) is scored as a coin flip, error 1/2; a model logit of 0 as wrong",
        "baseline_info": {"mlp_gd": dict(MLP), "bayes": bayes.method},
    }
    return Scores(errors, predictions, seconds, report)
