"""The linear family's scorer: the model and every baseline on the same prompts, and collect what evaluate reports
beside the loss curves: the exact posterior's component weights, tuned hyperparameters, the
weight probe, and where least squares has no finite expected error; for a finite task pool also
the same scores on fresh tasks w ~ N(0, I) outside the pool (`fresh_tasks`)."""

from __future__ import annotations

import time
import ml_collections
import numpy as np

from icl_jax import tasks
from icl_jax.baselines import bayes
from icl_jax.evaluation import compare, predictors, prompts, statistics
from icl_jax.evaluation.scorers import Scores
from icl_jax.tasks import LinearTask, linear

PROBE_PROMPTS = 128  # prompts whose model w is probed (cost: see compare.py)
METRIC = "normalized squared error (zero predictor = 1)"
FRESH_DESCRIPTION = "w ~ N(0, I): tasks outside the pool"


def least_squares_unbounded_k(n_dims: int, n_points: int, noise_std: float) -> list[int]:
    """The k at which min-norm least squares has infinite expected error under label noise.

    With k Gaussian examples in d dimensions the noise enters through tr((XXᵀ)^-1) (k < d) or
    tr((XᵀX)^-1) (k > d), Wishart inverses with mean I/(d-k-1) and I/(k-d-1): infinite for
    k = d-1, d, d+1 (and at k = d itself). Noiseless labels: finite everywhere.
    """
    if not noise_std:
        return []
    return [k for k in (n_dims - 1, n_dims, n_dims + 1) if 1 <= k < n_points]


def _bayes_report(posterior: bayes.Bayes, counts_RxN) -> dict:
    out = {"name": posterior.name, "exact": posterior.name == "bayes"}
    if posterior.true_weight_BxK is not None:
        out["true_component_weight"] = statistics.curve(posterior.true_weight_BxK, counts_RxN)
    if posterior.entropy_BxK is not None:
        out["component_entropy_nats"] = np.asarray(posterior.entropy_BxK).mean(0).tolist()
    if posterior.component_weights_BxKxC is not None:
        out["component_weights"] = {str(c): posterior.component_weights_BxKxC[:, :, c].mean(0).tolist()
                                    for c in range(posterior.component_weights_BxKxC.shape[-1])}
    return out


def score(config: ml_collections.ConfigDict, task: LinearTask, model: predictors.Predictor,
          x_NxKxD: np.ndarray, y_NxK: np.ndarray, w_NxD: np.ndarray, counts_RxN: np.ndarray,
          probe_prompts: int = PROBE_PROMPTS) -> Scores:
    y_exact = prompts.exact_labels(task, x_NxKxD, y_NxK, w_NxD)
    predictions, seconds = {}, {}

    start = time.time()
    predictions["model"] = model(x_NxKxD, y_NxK)  # the model sees what it was trained on
    seconds["model"] = time.time() - start
    start = time.time()
    posterior = bayes.posterior(task, x_NxKxD, y_exact, w_true_BxD=w_NxD)
    predictions[posterior.name] = posterior.yhat_BxK
    seconds[posterior.name] = time.time() - start
    start = time.time()
    learners = predictors.all_baselines(task, config.eval.seed)
    seconds["baseline tuning"] = time.time() - start  # GD step sizes, Lasso penalties
    for name, learner in learners.items():
        start = time.time()
        predictions[name] = learner.predict(x_NxKxD, y_exact)
        seconds[name] = time.time() - start

    errors = statistics.normalized_squared_errors(predictions, y_exact, task.normalizer)

    start = time.time()
    probe = weight_probe(config, task, model, x_NxKxD[:probe_prompts], y_NxK[:probe_prompts],
                          y_exact[:probe_prompts], w_NxD[:probe_prompts], learners)
    seconds["weight probe"] = time.time() - start
    report = {
        "metric": METRIC,
        "bayes": _bayes_report(posterior, counts_RxN),
        "baseline_info": {name: b.info for name, b in learners.items() if b.info},
        "least_squares_unbounded_k": least_squares_unbounded_k(task.n_dims, task.n_points, task.noise_std),
        "prediction_differences": compare.prediction_differences(predictions, task.normalizer, counts_RxN),
        "weight_probe": probe,
    }
    if task.name == "task_pool":
        start = time.time()
        report["fresh_tasks"] = fresh_tasks(config, task, model, len(x_NxKxD), counts_RxN)
        seconds["fresh tasks"] = time.time() - start
    return Scores(errors, predictions, seconds, report)


def fresh_task_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The run's config with the pool's prior replaced by the one it was drawn from: class
    `linear` (w ~ N(0, I_d)) with the run's n_dims, n_points, noise_std and x_distribution;
    the pool's own keys back at their defaults, which `linear` does not read."""
    fresh = config.copy_and_resolve_references()
    fresh.task.name = "linear"
    for key in ("pool_size", "pool_seed"):
        fresh.task[key] = linear.CONFIG_KEYS[key]
    tasks.check_task_config(fresh.task)
    return fresh


def fresh_tasks(config: ml_collections.ConfigDict, pool_task: LinearTask, model: predictors.Predictor,
                num_prompts: int, counts_RxN: np.ndarray) -> dict:
    """A task-pool run on tasks it never saw (Raventós et al. 2023): as many prompts as the
    pool-task evaluation, drawn as prompts.eval_prompts draws them (the same key, so the same
    x and noise; only w differs) from the linear class. Scored for the model; `dmmse`, the
    pool's exact (discrete) posterior, the Bayes predictor of the training prior and wrong
    here; `ridge`, the exact posterior of w ~ N(0, I) (λ = σ²), the Bayes predictor here;
    and least squares. Curves in the format of the top-level ones, bootstrapped with the same
    counts (the prompts are as many)."""
    fresh_config = fresh_task_config(config)
    task = tasks.get_task(fresh_config.task, fresh_config.data)
    x_NxKxD, y_NxK, w_NxD = prompts.eval_prompts(fresh_config, num_prompts)
    y_exact = prompts.exact_labels(task, x_NxKxD, y_NxK, w_NxD)
    predictions = {
        "model": model(x_NxKxD, y_NxK),
        # the pool's discrete posterior: w_true None, no pool member made these prompts
        "dmmse": bayes.posterior(pool_task, x_NxKxD, y_exact).yhat_BxK,
        "ridge": bayes.posterior(task, x_NxKxD, y_exact).yhat_BxK,  # Gaussian prior: exact, never the proxy
        "least_squares": predictors.linear_baselines(task)["least_squares"](x_NxKxD, y_exact),
    }
    # E[y²] of the fresh prompts, d·E[x²] + σ², so that zero scores 1 here as on the pool. It is
    # not the pool's normalizer (the pool's own mean |w_m|², not d): the two sets of curves agree
    # only up to that ratio (1 ± about sqrt(2/(M d))); multiply by the normalizers to compare raw.
    errors = statistics.normalized_squared_errors(predictions, y_exact, task.normalizer)
    return {"metric": METRIC,
            "curves": {name: statistics.curve(e, counts_RxN) for name, e in errors.items()},
            "normalizer": task.normalizer,
            "description": FRESH_DESCRIPTION}


def weight_probe(config, task: LinearTask, model, x, y, y_exact, w_true, learners) -> dict:
    ks = compare.probe_ks(task.n_dims, task.n_points)
    q_PxD = compare.probe_queries(config.eval.seed, 2 * task.n_dims, task.n_dims)
    probe = compare.probe_prompts(x, y, ks, q_PxD)
    w_model, r2 = compare.implied_weights(model(probe.x_MxLxD, probe.y_MxL), ks, q_PxD)
    others = {name: b.weights(x, y_exact)[:, ks] for name, b in learners.items() if b.weights is not None}
    posterior = bayes.posterior(task, x, y_exact, with_weights=True)
    if posterior.w_BxKxD is not None:
        others[posterior.name] = posterior.w_BxKxD[:, ks]
    others["true_w"] = np.repeat(np.asarray(w_true)[:, None], len(ks), axis=1)
    return {"k": ks, "num_prompts": len(x), "n_probes": len(q_PxD),
            "model_linearity_r2": r2.mean(0).tolist(),
            "agreement": compare.weight_agreement(w_model, others, task.normalizer)}
