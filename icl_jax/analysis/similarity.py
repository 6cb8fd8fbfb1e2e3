"""Which known algorithm does the model behave like? Its predictions against every baseline's
on the same prompts (E[(ŷ_model − ŷ_b)²] / E[y²] per k), and the w implied by its answers to
probe queries (evaluation/compare.py's weight probe) against each baseline's w.

Baselines: evaluate's learners (least squares, ridge at the task's λ = σ², averaging, 3-NN,
zero, GD with 1 and 10 steps tuned per k), ridge at RIDGE_LAMBDAS, 1-NN, and the exact posterior.
Legend: N prompts, K points.
"""

from __future__ import annotations

import numpy as np

from icl_jax import baselines
from icl_jax.analysis import common
from icl_jax.baselines import bayes
from icl_jax.evaluation import linear_scoring, predictors, statistics

RIDGE_LAMBDAS = (0.1, 1.0, 10.0)


def learners(task, seed: int) -> dict[str, predictors.Baseline]:
    out = predictors.all_baselines(task, seed)
    for lam in RIDGE_LAMBDAS:
        out[f"ridge_{lam:g}"] = predictors.Baseline(
            lambda x, y, lam=lam: np.asarray(baselines.least_squares(x, y, ridge=lam)),
            predictors.gaussian_weights(task, float(np.sqrt(lam))))  # ridge λ = posterior noise σ²
    out["nearest_neighbor_1"] = predictors.Baseline(
        lambda x, y: np.asarray(baselines.nearest_neighbors(x, y, n_neighbors=1)))
    return out


def analyze(run: common.Run, num_prompts: int, ks: list[int] | None = None):
    x, y, w, y_exact = common.linear_eval_set(run, "similarity", num_prompts)
    config, task = run.config, run.task
    ks = common.default_ks(run) if ks is None else ks
    yhat_model = run.predict(x, y)
    found = learners(task, config.eval.seed)
    yhat = {name: b.predict(x, y_exact) for name, b in found.items()}
    posterior = bayes.posterior(task, x, y_exact)
    yhat[posterior.name] = posterior.yhat_BxK

    counts = statistics.resample_counts(num_prompts, config.eval.bootstrap_samples, config.eval.seed)
    difference = {name: statistics.curve(statistics.squared_errors(yhat_model, p) / task.normalizer, counts)
                  for name, p in yhat.items()}
    n_probe = min(num_prompts, linear_scoring.PROBE_PROMPTS)
    probe = linear_scoring.weight_probe(config, task, run.predict, x[:n_probe], y[:n_probe], y_exact[:n_probe],
                                         w[:n_probe], found)
    table = {name: {f"k={k}": curve["mean"][k] for k in ks} for name, curve in difference.items()}
    weights = {name: {f"k={k}": {"cosine": a["cosine"][i], "squared_error": a["squared_error"][i]}
                      for i, k in enumerate(probe["k"])} for name, a in probe["agreement"].items()}
    closest = {f"k={k}": min(table, key=lambda n: table[n][f"k={k}"]) for k in ks}
    result = {"step": run.step, "k": list(range(task.n_points)), "num_prompts": num_prompts,
              "prediction_difference": difference, "weight_probe": probe,
              "table": {"prediction_difference": table, "closest": closest, "implied_weights": weights},
              "summary": {f"k={k}": {n: round(table[n][f"k={k}"], 4)
                                     for n in sorted(table, key=lambda n: table[n][f"k={k}"])[:4]} for k in ks}}
    return result, _plot(result, task)


def _plot(result: dict, task):
    fig, (diff_ax, cos_ax) = common.figure(2, width=6.0)
    k = np.array(result["k"])
    for name, curve in result["prediction_difference"].items():
        diff_ax.plot(k[1:], np.maximum(curve["mean"][1:], 1e-8), label=name)
    diff_ax.set(yscale="log", xlabel="in-context examples k", ylabel="E[(ŷ_model − ŷ_b)²] / E[y²]",
                title=f"{task.name} d={task.n_dims}, step {result['step']}")
    diff_ax.legend(fontsize=7, ncol=2)
    probe = result["weight_probe"]
    names = list(probe["agreement"])
    for i, pk in enumerate(probe["k"]):
        cos_ax.bar(np.arange(len(names)) + 0.8 * i / len(probe["k"]),
                   [probe["agreement"][n]["cosine"][i] for n in names], width=0.8 / len(probe["k"]), label=f"k={pk}")
    cos_ax.set_xticks(np.arange(len(names)) + 0.4 - 0.4 / len(probe["k"]), names, rotation=60, fontsize=7)
    cos_ax.set(ylabel="cos(w_model, w_b)", title="implied weights (probe)")
    cos_ax.legend(fontsize=7)
    for ax in (diff_ax, cos_ax):
        ax.grid(alpha=0.3)
    return fig
