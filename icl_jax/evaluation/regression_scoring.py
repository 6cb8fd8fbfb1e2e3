"""The scorer of the Fourier-series and nonlinear-regression families (tasks/fourier.py,
tasks/nonlinear.py): the model and the family's baselines on the same prompts, normalized
squared error as in the linear family (zero predictor = 1).

  fourier / fourier_mixture   bayes (exact posterior: least squares on the 2N+1 features, or
                              the model average over N), least squares on the features with
                              the true N (mixture only: for fixed N it is bayes) and with
                              N_max, the label mean, 3-NN, zero
  relu_net / decision_tree    the 2-layer net trained in context, least squares, 3-NN,
                              averaging, zero; greedy trees (scikit-learn) for decision_tree

Least squares on the raw x of a nonlinear class sees the misfit as label noise: its expected
error is infinite at k = d-1, d, d+1 (marked in the report and crossed out in the figure).

The power spectrum of Fourier predictors is a separate tool (evaluation/spectrum.py).
"""

from __future__ import annotations

import time
from typing import Callable

import ml_collections
import numpy as np

from icl_jax import baselines
from icl_jax.baselines import fourier as fourier_baselines
from icl_jax.baselines import nonlinear as nonlinear_baselines
from icl_jax.evaluation import compare, linear_scoring, statistics
from icl_jax.evaluation.scorers import Scores
from icl_jax.tasks import fourier as fourier_tasks

Learner = Callable[[np.ndarray, np.ndarray], np.ndarray]


def exact_labels(task, x_NxKxD: np.ndarray, y_NxK: np.ndarray, w_NxP: np.ndarray) -> np.ndarray:
    """float64 labels: noiseless labels recomputed from the task parameters (the exact
    Fourier posterior decides which N interpolates exactly, far below float32 rounding);
    noisy ones as sampled."""
    if task.noise_std:
        return np.asarray(y_NxK, np.float64)
    x, w = np.asarray(x_NxKxD, np.float64), np.asarray(w_NxP, np.float64)
    if task.family == "fourier":
        return fourier_tasks.labels(x[..., 0], w, task.max_frequency, task.half_period, np)
    return task.labels(x, w, xp=np)


_CLASSIC = {"least_squares": baselines.least_squares, "averaging": baselines.averaging, "zero": baselines.zero,
            "nearest_neighbors": lambda x, y: baselines.nearest_neighbors(x, y, n_neighbors=3)}


def _classic(x, y, name: str) -> np.ndarray:
    return np.asarray(_CLASSIC[name](x, y))


def _learners(task, seed: int, true_n_N) -> tuple[dict[str, Learner], dict]:
    """The family's baselines except the exact posterior, and what to report about them."""
    learners: dict[str, Learner] = {}
    info: dict = {}
    if task.family == "fourier":
        N, L = task.max_frequency, task.half_period
        if task.mixture:
            learners["least_squares_true_N"] = (
                lambda x, y: fourier_baselines.least_squares_features(x, y, true_n_N, N, L))
        if task.mixture or task.noise_std:  # else identical to bayes
            learners["least_squares_max_N"] = (
                lambda x, y: fourier_baselines.least_squares_features(x, y, np.full(len(x), N), N, L))
    else:
        learners["neural_net"] = lambda x, y: nonlinear_baselines.trained_net(x, y, seed)
        info["neural_net"] = {"hidden": nonlinear_baselines.NET_HIDDEN, "steps": nonlinear_baselines.NET_STEPS,
                              "learning_rate": nonlinear_baselines.NET_LEARNING_RATE,
                              "optimizer": "full-batch Adam, fresh net per prompt and prefix"}
        learners["least_squares"] = lambda x, y: _classic(x, y, "least_squares")
        if task.name == "decision_tree":
            if nonlinear_baselines.greedy_tree_available():
                learners["greedy_tree"] = lambda x, y: nonlinear_baselines.greedy_tree(x, y, task.depth, seed)
                info["greedy_tree"] = {"implementation": "scikit-learn DecisionTreeRegressor (CART)",
                                       "max_depth": task.depth}
            else:
                info["greedy_tree"] = {"skipped": "scikit-learn is not installed (pip install scikit-learn)"}
    simple = ("nearest_neighbors", "averaging", "zero")
    if task.family == "fourier":  # averaging, x·mean(x_i y_i), assumes x ~ N(0, I): the label mean instead
        learners["label_mean"] = fourier_baselines.label_mean
        simple = ("nearest_neighbors", "zero")
    for name in simple:
        learners[name] = lambda x, y, name=name: _classic(x, y, name)
    info["nearest_neighbors"] = {"n_neighbors": 3}
    return learners, info


def score(config: ml_collections.ConfigDict, task, model, x_NxKxD: np.ndarray, y_NxK: np.ndarray,
          w_NxP: np.ndarray, counts_RxN: np.ndarray, probe_prompts: int = 0) -> Scores:
    del probe_prompts  # the weight probe is for linear classes
    y_exact = exact_labels(task, x_NxKxD, y_NxK, w_NxP)
    predictions, seconds, report = {}, {}, {"metric": "normalized squared error (zero predictor = 1)"}

    start = time.time()
    predictions["model"] = model(x_NxKxD, y_NxK)  # the model sees what it was trained on
    seconds["model"] = time.time() - start
    true_n_N = None
    if task.family == "fourier":
        true_n_N = np.asarray(w_NxP[:, -1]).round().astype(np.int64)
        start = time.time()
        posterior = fourier_baselines.posterior(x_NxKxD, y_exact, task.max_frequency, task.half_period,
                                                mixture_over_n=task.mixture, noise_std=task.noise_std,
                                                true_n_B=true_n_N)
        predictions["bayes"] = posterior.yhat_BxK
        seconds["bayes"] = time.time() - start
        report["bayes"] = {"name": "bayes", "exact": True}
        if task.mixture:
            report["bayes"]["true_component_weight"] = statistics.curve(posterior.true_weight_BxK, counts_RxN)
            report["bayes"]["component_entropy_nats"] = np.asarray(posterior.entropy_BxK).mean(0).tolist()
    learners, report["baseline_info"] = _learners(task, config.eval.seed, true_n_N)
    for name, learner in learners.items():
        start = time.time()
        predictions[name] = np.asarray(learner(x_NxKxD, y_exact))
        seconds[name] = time.time() - start

    errors = statistics.normalized_squared_errors(predictions, y_exact, task.normalizer)
    if task.family == "nonlinear":  # the nonlinear misfit acts as label noise on least squares
        report["least_squares_unbounded_k"] = linear_scoring.least_squares_unbounded_k(task.n_dims, task.n_points, 1.0)
    report["prediction_differences"] = compare.prediction_differences(predictions, task.normalizer, counts_RxN)
    return Scores(errors, predictions, seconds, report)
