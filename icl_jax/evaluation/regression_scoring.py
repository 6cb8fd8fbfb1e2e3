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

Each family is one entry of _FAMILIES: its learners, its exact posterior where it has one,
and what else its report says; within a family, the task says what differs (a mixture over N,
label noise, trees as targets). The power spectrum of Fourier predictors is an analysis
(`python -m icl_jax.analyze --what=spectrum`, evaluation/spectrum.py).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable

import ml_collections
import numpy as np

from icl_jax import baselines
from icl_jax.baselines import fourier as fourier_baselines
from icl_jax.baselines import nonlinear as nonlinear_baselines
from icl_jax.evaluation import compare, linear_scoring, prompts, statistics
from icl_jax.evaluation.scorers import Scores

Learner = Callable[[np.ndarray, np.ndarray], np.ndarray]

_CLASSIC = {"least_squares": baselines.least_squares, "averaging": baselines.averaging, "zero": baselines.zero,
            "nearest_neighbors": lambda x, y: baselines.nearest_neighbors(x, y, n_neighbors=3)}


def _classic(x, y, name: str) -> np.ndarray:
    return np.asarray(_CLASSIC[name](x, y))


def _simple(names: tuple[str, ...]) -> dict[str, Learner]:
    return {name: lambda x, y, name=name: _classic(x, y, name) for name in names}


def _fourier_learners(task, seed: int, w_NxP) -> tuple[dict[str, Learner], dict]:
    N, L, true_n_N = task.max_frequency, task.half_period, task.orders_B(w_NxP)
    learners: dict[str, Learner] = {}
    if task.mixture:
        learners["least_squares_true_N"] = (
            lambda x, y: fourier_baselines.least_squares_features(x, y, true_n_N, N, L))
    if task.mixture or task.noise_std:  # else identical to bayes
        learners["least_squares_max_N"] = (
            lambda x, y: fourier_baselines.least_squares_features(x, y, np.full(len(x), N), N, L))
    # averaging, x·mean(x_i y_i), assumes x ~ N(0, I): the label mean instead
    learners["label_mean"] = fourier_baselines.label_mean
    learners.update(_simple(("nearest_neighbors", "zero")))
    return learners, {"nearest_neighbors": {"n_neighbors": 3}}


def _fourier_bayes(task, x_NxKxD, y_exact_NxK, w_NxP, counts_RxN) -> tuple[np.ndarray, dict]:
    posterior = fourier_baselines.posterior(x_NxKxD, y_exact_NxK, task.max_frequency, task.half_period,
                                            mixture_over_n=task.mixture, noise_std=task.noise_std,
                                            true_n_B=task.orders_B(w_NxP))
    report = {"name": "bayes", "exact": True}
    if task.mixture:
        report["true_component_weight"] = statistics.curve(posterior.true_weight_BxK, counts_RxN)
        report["component_entropy_nats"] = np.asarray(posterior.entropy_BxK).mean(0).tolist()
    return posterior.yhat_BxK, report


def _nonlinear_learners(task, seed: int, w_NxP) -> tuple[dict[str, Learner], dict]:
    learners: dict[str, Learner] = {"neural_net": lambda x, y: nonlinear_baselines.trained_net(x, y, seed)}
    info: dict = {"neural_net": {"hidden": nonlinear_baselines.NET_HIDDEN, "steps": nonlinear_baselines.NET_STEPS,
                                 "learning_rate": nonlinear_baselines.NET_LEARNING_RATE,
                                 "optimizer": "full-batch Adam, fresh net per prompt and prefix"}}
    learners.update(_simple(("least_squares",)))
    if task.tree_depth is not None:
        if nonlinear_baselines.greedy_tree_available():
            learners["greedy_tree"] = lambda x, y: nonlinear_baselines.greedy_tree(x, y, task.tree_depth, seed)
            info["greedy_tree"] = {"implementation": "scikit-learn DecisionTreeRegressor (CART)",
                                   "max_depth": task.tree_depth}
        else:
            info["greedy_tree"] = {"skipped": "scikit-learn is not installed (pip install scikit-learn)"}
    learners.update(_simple(("nearest_neighbors", "averaging", "zero")))
    info["nearest_neighbors"] = {"n_neighbors": 3}
    return learners, info


def _nonlinear_report(task) -> dict:
    # the nonlinear misfit acts as label noise on least squares
    return {"least_squares_unbounded_k": linear_scoring.least_squares_unbounded_k(task.n_dims, task.n_points, 1.0)}


@dataclasses.dataclass(frozen=True)
class _Family:
    learners: Callable  # (task, seed, w_NxP) -> ({name: learner}, baseline_info): all but the exact posterior
    bayes: Callable | None = None  # (task, x, y_exact, w, counts) -> (yhat_NxK, report["bayes"])
    report: Callable = lambda task: {}  # (task) -> what else the report says


_FAMILIES = {
    "fourier": _Family(_fourier_learners, bayes=_fourier_bayes),
    "nonlinear": _Family(_nonlinear_learners, report=_nonlinear_report),
}


def score(config: ml_collections.ConfigDict, task, model, x_NxKxD: np.ndarray, y_NxK: np.ndarray,
          w_NxP: np.ndarray, counts_RxN: np.ndarray, probe_prompts: int = 0) -> Scores:
    del probe_prompts  # the weight probe is for linear classes
    family = _FAMILIES[task.family]
    y_exact = prompts.exact_labels(task, x_NxKxD, y_NxK, w_NxP)
    predictions, seconds, report = {}, {}, {"metric": "normalized squared error (zero predictor = 1)"}

    start = time.time()
    predictions["model"] = model(x_NxKxD, y_NxK)  # the model sees what it was trained on
    seconds["model"] = time.time() - start
    if family.bayes is not None:
        start = time.time()
        predictions["bayes"], report["bayes"] = family.bayes(task, x_NxKxD, y_exact, w_NxP, counts_RxN)
        seconds["bayes"] = time.time() - start
    learners, report["baseline_info"] = family.learners(task, config.eval.seed, w_NxP)
    for name, learner in learners.items():
        start = time.time()
        predictions[name] = np.asarray(learner(x_NxKxD, y_exact))
        seconds[name] = time.time() - start

    errors = statistics.normalized_squared_errors(predictions, y_exact, task.normalizer)
    report.update(family.report(task))
    report["prediction_differences"] = compare.prediction_differences(predictions, task.normalizer, counts_RxN)
    return Scores(errors, predictions, seconds, report)
