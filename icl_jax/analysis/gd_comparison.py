"""Did the model learn gradient descent? The model against GD from w = 0 with the best step size
(von Oswald et al. 2023): GD takes as many steps as a linear-attention model has layers (one
for a transformer), its step size per k from a line search on prompts of the prior.

Per k: ½·MSE of the model, of GD and of the GD construction (models/linear_attention.py with
the step size of the last k), the squared prediction difference model − GD (normalized by
E[y²]), and the sensitivities ∂ŷ_k/∂x_k (GD's is its w_k): their squared difference and cosine.
Legend: N prompts, K points, D input width, G step sizes on the line-search grid.
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from icl_jax.analysis import common
from icl_jax.baselines import gradient_descent
from icl_jax.evaluation import compare, predictors, statistics
from icl_jax.models import linear_attention

LINE_SEARCH_PROMPTS = 2048
GRID_SIZE = 161
SENSITIVITY_PROMPTS = 512  # prompts whose Jacobians are taken (K backward passes each)


def best_step_sizes(task, seed: int, n_steps: int) -> np.ndarray:
    """eta_K: per k, the step size with the lowest MSE on prior prompts (a finer grid than
    evaluate's, over as many prompts as LINE_SEARCH_PROMPTS)."""
    x_t, y_t = predictors.tuning_prompts(task, seed, LINE_SEARCH_PROMPTS)
    return gradient_descent.tune_step_sizes(x_t, y_t, n_steps, grid_size=GRID_SIZE)


def sensitivities(graphdef, params, x_NxKxD: np.ndarray, y_NxK: np.ndarray, batch: int = 64) -> np.ndarray:
    """s_NxKxD = ∂ŷ_k/∂x_k: how the prediction at k moves with its own query (not with x_k as
    an example for later k, which a gradient of Σ_k ŷ_k would mix in)."""

    @jax.jit
    def diagonal(params, x_BxKxD, y_BxK):
        def one(x_KxD, y_K):
            yhat = lambda x: nnx.merge(graphdef, params)(x[None], y_K[None])[0]
            return jnp.einsum("kkd->kd", jax.jacrev(yhat)(x_KxD))

        return jax.vmap(one)(x_BxKxD, y_BxK)

    return np.concatenate([np.asarray(diagonal(params, x_NxKxD[i:i + batch], y_NxK[i:i + batch]))
                           for i in range(0, len(x_NxKxD), batch)])


def cosine(a_NxKxD: np.ndarray, b_NxKxD: np.ndarray) -> np.ndarray:
    """cos per (prompt, k); 0 where either vector is zero (k = 0: nothing seen)."""
    a, b = np.asarray(a_NxKxD, np.float64), np.asarray(b_NxKxD, np.float64)
    norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return np.where(norms > 0, (a * b).sum(-1) / np.where(norms > 0, norms, 1.0), 0.0)


def analyze(run: common.Run, num_prompts: int, ks: list[int] | None = None):
    x, y, w, y_exact = common.linear_eval_set(run, "gd", num_prompts)
    config, task = run.config, run.task
    n_steps = config.model.n_layer if run.kind == "linear_attention" else 1
    eta_K = best_step_sizes(task, config.eval.seed, n_steps)

    yhat = {"model": run.predict(x, y),
            "gd": np.asarray(gradient_descent.gradient_descent(x, y_exact, eta_K, n_steps))}
    construction = linear_attention.LinearAttentionModel(task.n_dims, n_steps, 1, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(construction)
    nnx.replace_by_pure_dict(state, linear_attention.gradient_descent_params(task.n_dims, n_steps, 1, float(eta_K[-1])))
    yhat["construction"] = np.asarray(jax.jit(lambda s, x, y: nnx.merge(graphdef, s)(x, y))(state, x, y))
    half_mse = {name: (0.5 * statistics.squared_errors(p, y_exact).mean(0)).tolist() for name, p in yhat.items()}

    n_sens = min(num_prompts, SENSITIVITY_PROMPTS)
    s_model = sensitivities(run.graphdef, run.params, x[:n_sens], y[:n_sens])
    s_gd = np.asarray(gradient_descent.gradient_descent_weights(x[:n_sens], y_exact[:n_sens], eta_K, n_steps))
    counts = statistics.resample_counts(num_prompts, config.eval.bootstrap_samples, config.eval.seed)
    difference = compare.prediction_differences({"model": yhat["model"], "gd": yhat["gd"]}, task.normalizer, counts)
    last = task.n_points - 1
    result = {
        "step": run.step, "k": list(range(task.n_points)), "gd_steps": n_steps, "num_prompts": num_prompts,
        "sensitivity_prompts": n_sens, "step_size_per_k": eta_K.tolist(), "half_mse": half_mse,
        "prediction_difference": difference["model|gd"],
        "sensitivity_squared_difference": ((s_model - s_gd) ** 2).sum(-1).mean(0).tolist(),
        "sensitivity_cosine": cosine(s_model, s_gd).mean(0).tolist(),
        "at_last_k": {"k": last, "step_size": float(eta_K[last]),
                      "half_mse_model": half_mse["model"][last], "half_mse_gd": half_mse["gd"][last],
                      "half_mse_construction": half_mse["construction"][last],
                      "sensitivity_cosine": float(cosine(s_model, s_gd).mean(0)[last]),
                      "prediction_difference": difference["model|gd"]["mean"][last]},
    }
    return result, _plot(result, task)


def _plot(result: dict, task):
    fig, (loss_ax, cos_ax) = common.figure(2)
    k = result["k"]
    for name, curve in result["half_mse"].items():
        style = dict(lw=2.5, color="black") if name == "model" else dict(ls="--" if name == "construction" else "-")
        loss_ax.plot(k, curve, label=name, **style)
    loss_ax.set(xlabel="in-context examples k", ylabel="½·MSE", title=f"{task.name} d={task.n_dims}: model vs "
                f"{result['gd_steps']}-step GD (best η per k)")
    loss_ax.legend(fontsize=8)
    cos_ax.plot(k[1:], result["sensitivity_cosine"][1:], marker="o")
    cos_ax.set(xlabel="in-context examples k", ylabel="cos(∂ŷ/∂x_q model, GD)", ylim=(min(0.0, *result["sensitivity_cosine"][1:]), 1.02),
               title=f"step {result['step']}")
    for ax in (loss_ax, cos_ax):
        ax.grid(alpha=0.3)
    return fig


