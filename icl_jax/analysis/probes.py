"""Linear probes of the hidden states: is a quantity linearly readable from the state at the
query position, layer by layer? A ridge readout with a bias (fitted in JAX on one half of the
prompts) maps the state after the read-in (layer 0) and after each block to a target; R² is
measured on the other, held-out half.

Targets at the query of k examples: the true w, the least-squares w of the k examples, and
Xᵀy = Σ_{i<k} y_i x_i (what one GD step from 0 computes); and two controls that say whether
the probe can see anything at all: the query x_k itself (linear in the state after the
read-in) and the model's own prediction ŷ_k (nearly linear in the last state).
Legend: N prompts, K points, D input width, E state width, L layers, T targets.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from icl_jax.analysis import common

RIDGE = 1e-3  # relative to the mean eigenvalue of the standardized features' Gram matrix


@jax.jit
def _fit_predict(h_train_NxE, t_train_NxT, h_test_MxE):
    mean, scale = h_train_NxE.mean(0), h_train_NxE.std(0) + 1e-6
    a = jnp.concatenate([(h_train_NxE - mean) / scale, jnp.ones_like(h_train_NxE[:, :1])], axis=1)
    b = jnp.concatenate([(h_test_MxE - mean) / scale, jnp.ones_like(h_test_MxE[:, :1])], axis=1)
    gram = a.T @ a
    penalty = RIDGE * jnp.trace(gram) / gram.shape[0] * jnp.eye(gram.shape[0]).at[-1, -1].set(0.0)
    coef = jnp.linalg.solve(gram + penalty, a.T @ t_train_NxT)
    return b @ coef


def probe_r2(h_train_NxE: np.ndarray, t_train_NxT: np.ndarray, h_test_MxE: np.ndarray, t_test_MxT: np.ndarray) -> float:
    """Held-out R² of the readout, over all target coordinates together: 1 − SSE / SST, SST
    around the training mean (0: no better than a constant; can be negative)."""
    f64 = lambda a: np.asarray(a, np.float64)
    pred = f64(_fit_predict(jnp.asarray(h_train_NxE, jnp.float32), jnp.asarray(t_train_NxT, jnp.float32),
                            jnp.asarray(h_test_MxE, jnp.float32)))
    sse = np.sum((pred - f64(t_test_MxT)) ** 2)
    sst = np.sum((f64(t_test_MxT) - f64(t_train_NxT).mean(0)) ** 2)
    return float(1 - sse / max(sst, 1e-300))


def targets(x_NxKxD, y_NxK, w_NxD, k: int, yhat_NxK=None) -> dict[str, np.ndarray]:
    x, y = np.asarray(x_NxKxD, np.float64), np.asarray(y_NxK, np.float64)
    least_squares_w = np.einsum("ndk,nk->nd", np.linalg.pinv(x[:, :k]), y[:, :k])  # min-norm, float64
    out = {"true_w": np.asarray(w_NxD, np.float64), "least_squares_w": least_squares_w,
           "xty": np.einsum("nkd,nk->nd", x[:, :k], y[:, :k]), "query_x": x[:, k]}
    if yhat_NxK is not None:
        out["prediction"] = np.asarray(yhat_NxK, np.float64)[:, k, None]
    return out


def analyze(run: common.Run, num_prompts: int, ks: list[int] | None = None):
    x, y, w, y_exact = common.linear_eval_set(run, "probes", num_prompts)
    task = run.task
    ks = common.default_ks(run) if ks is None else ks
    trace = run.trace(x, y)
    hidden = trace.hidden_BxKxE
    half = num_prompts // 2
    r2 = {}
    for k in ks:
        for name, t_NxT in targets(x, y_exact, w, k, trace.yhat_BxK).items():
            r2.setdefault(name, {})[f"k={k}"] = [probe_r2(h[:half, k], t_NxT[:half], h[half:, k], t_NxT[half:])
                                                for h in hidden]
    result = {"step": run.step, "layers": list(range(len(hidden))), "num_prompts": num_prompts,
              "train_prompts": half, "test_prompts": num_prompts - half, "r2": r2,
              "summary": {name: {kk: [round(v, 3) for v in vals] for kk, vals in by_k.items()}
                          for name, by_k in r2.items()}}
    return result, _plot(result, task, ks)


def _plot(result: dict, task, ks):
    fig, axes = common.figure(len(ks), width=4.2)
    for ax, k in zip(axes, ks):
        for name, by_k in result["r2"].items():
            ax.plot(result["layers"], by_k[f"k={k}"], marker="o", label=name)
        ax.set(xlabel="layer (0: after the read-in)", ylabel="held-out R²", ylim=(-0.1, 1.05),
               title=f"{task.name} d={task.n_dims}, k={k}, step {result['step']}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return fig
