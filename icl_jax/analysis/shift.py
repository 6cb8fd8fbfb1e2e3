"""Out of distribution: the model and the baselines on the same shifted prompts (Garg et al. 2022).

Each shift transforms the run's own evaluation prompts (its w prior and base inputs), with
randomness from derive(eval.seed, EVAL_DATA, 1 + shift index) — a fixed stream per shift:
  skewed_covariance      x ← x Σ^{1/2}, Σ with eigenvalues ∝ 1/(i+1)², trace d, random eigenbasis
  half_subspace          x restricted to d/2 random coordinates per prompt (a random
                         subspace: exactly rank d/2 in float32, unlike a rotated one)
  orthant                the examples in one random orthant (s ⊙ |x|); the query unrestricted
  orthogonal_query       the query orthogonal to the k examples before it (same norm); k < d only
  query_repeats_input    the query equals one of the k examples before it (k ≥ 1)
  x_scale_c, w_scale_c   inputs or weights times c ∈ SCALES
  label_noise_s          examples' labels + N(0, s²); scored against the noiseless x·w
Errors are normalized by the training prompts' E[y²] (so the zero predictor scores c² under
x_scale_c: 9 at c = 3), and only at the k where the shift is defined (`valid_k`).

Predictors: the model, least squares, ridge (λ = σ²), averaging, 3-NN, zero, and one GD step
with η tuned per k on the training prior (not on the shift: the learner as it stands).

A shift that changes the query but not the examples is scored with one sequence per k: the
first k examples, the shifted query at position k, zeros after it (unseen by causal predictors).
Legend: N prompts, K points, D input width.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import numpy as np

from icl_jax import rng
from icl_jax.analysis import common
from icl_jax.baselines import gradient_descent
from icl_jax.evaluation import predictors, prompts, statistics

SCALES = (1 / 3, 1 / 2, 2.0, 3.0)
NOISE_STDS = (0.5, 1.0)


class Shifted(NamedTuple):
    x_NxKxD: np.ndarray  # the examples (and, without query_NxKxD, the queries at every k)
    y_NxK: np.ndarray  # labels the predictors see
    target_NxK: np.ndarray  # what the prediction at k is scored against
    query_NxKxD: np.ndarray | None = None  # the query of prefix k, where it is not x_k
    valid_k: tuple[int, int] | None = None  # [first, last) k where the shift is defined


def _labels(x, w):
    return np.einsum("nkd,nd->nk", np.asarray(x, np.float64), np.asarray(w, np.float64))


def skewed_covariance_root(key, n_dims: int) -> np.ndarray:
    """Σ^{1/2} = R diag(√λ) Rᵀ, λ_i ∝ 1/(i+1)², Σλ = d, R a random orthogonal matrix."""
    eigenvalues = 1.0 / np.arange(1, n_dims + 1) ** 2
    eigenvalues *= n_dims / eigenvalues.sum()
    r, _ = np.linalg.qr(np.asarray(jax.random.normal(key, (n_dims, n_dims)), np.float64))
    return (r * np.sqrt(eigenvalues)) @ r.T


def half_subspace_mask(key, n_prompts: int, n_dims: int) -> np.ndarray:
    """mask_NxD: 1 on d/2 coordinates drawn uniformly per prompt (at least one)."""
    scores = np.asarray(jax.random.uniform(key, (n_prompts, n_dims)))
    return (np.argsort(np.argsort(scores, axis=1), axis=1) < max(n_dims // 2, 1)).astype(np.float64)


def skewed_covariance(key, x, y, w):
    x = x @ skewed_covariance_root(key, x.shape[-1])
    return Shifted(x, _labels(x, w), _labels(x, w))


def half_subspace(key, x, y, w):
    x = x * half_subspace_mask(key, x.shape[0], x.shape[-1])[:, None]
    return Shifted(x, _labels(x, w), _labels(x, w))


def orthant(key, x, y, w):
    signs = np.asarray(jax.random.rademacher(key, (x.shape[0], 1, x.shape[-1])), np.float64)
    examples = signs * np.abs(x)
    return Shifted(examples, _labels(examples, w), _labels(x, w), query_NxKxD=x)


def orthogonal_query(key, x, y, w):
    """q_k = (x_k − its projection on span(x_0..x_{k−1})) rescaled to |x_k|."""
    n, k_points, d = x.shape
    query = np.zeros_like(x)
    query[:, 0] = x[:, 0]
    for k in range(1, min(k_points, d)):
        basis, _ = np.linalg.qr(np.swapaxes(x[:, :k], 1, 2))  # N×D×k, orthonormal columns
        residual = x[:, k] - np.einsum("ndk,nk->nd", basis, np.einsum("ndk,nd->nk", basis, x[:, k]))
        query[:, k] = residual * (np.linalg.norm(x[:, k], axis=-1) / np.linalg.norm(residual, axis=-1))[:, None]
    return Shifted(x, _labels(x, w), _labels(query, w), query_NxKxD=query, valid_k=(0, min(k_points, d)))


def query_repeats_input(key, x, y, w):
    n, k_points, _ = x.shape
    u = np.asarray(jax.random.uniform(key, (n, k_points)), np.float64)
    index_NxK = np.minimum((u * np.arange(k_points)).astype(int), np.maximum(np.arange(k_points) - 1, 0))
    query = np.take_along_axis(x, index_NxK[..., None], axis=1)
    return Shifted(x, _labels(x, w), _labels(query, w), query_NxKxD=query, valid_k=(1, k_points))


def _x_scale(c):
    return lambda key, x, y, w: Shifted(c * x, _labels(c * x, w), _labels(c * x, w))


def _w_scale(c):
    return lambda key, x, y, w: Shifted(x, _labels(x, c * w), _labels(x, c * w))


def _label_noise(s):
    def shift(key, x, y, w):
        clean = _labels(x, w)
        return Shifted(x, clean + s * np.asarray(jax.random.normal(key, clean.shape), np.float64), clean)

    return shift


SHIFTS: dict[str, Callable] = {
    "skewed_covariance": skewed_covariance, "half_subspace": half_subspace, "orthant": orthant,
    "orthogonal_query": orthogonal_query, "query_repeats_input": query_repeats_input,
    **{f"x_scale_{c:.3g}": _x_scale(c) for c in SCALES},
    **{f"w_scale_{c:.3g}": _w_scale(c) for c in SCALES},
    **{f"label_noise_{s:g}": _label_noise(s) for s in NOISE_STDS},
}


def shifted_prompts(config, num_prompts: int) -> dict[str, Shifted]:
    """Every shift of the run's evaluation prompts (noiseless labels: a task's own noise would
    blur what each shift does)."""
    x, y, w = prompts.eval_prompts(config, num_prompts)
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    return {name: shift(rng.derive(config.eval.seed, rng.EVAL_DATA, 1 + i), x, None, w)
            for i, (name, shift) in enumerate(SHIFTS.items())}


def per_k_sequences(x_NxKxD, y_NxK, query_NxKxD):
    """Sequence (n, k): examples 0..k−1 of prompt n, query_NxKxD[n, k] at position k, zeros after."""
    n, k_points, d = x_NxKxD.shape
    before_KxK = np.arange(k_points)[None, :] < np.arange(k_points)[:, None]  # [k, position]
    at_KxK = np.eye(k_points, dtype=bool)
    x_seq = np.where(before_KxK[None, :, :, None], x_NxKxD[:, None], 0.0)
    x_seq = np.where(at_KxK[None, :, :, None], query_NxKxD[:, :, None], x_seq)
    y_seq = np.where(before_KxK[None], y_NxK[:, None], 0.0)
    return x_seq.reshape(n * k_points, k_points, d).astype(np.float32), y_seq.reshape(n * k_points, k_points).astype(np.float32)


def predict_all(predict: Callable, s: Shifted) -> np.ndarray:
    """yhat_NxK of one predictor on a shifted set (one sequence per k where the query moved)."""
    if s.query_NxKxD is None:
        return np.asarray(predict(s.x_NxKxD.astype(np.float32), s.y_NxK.astype(np.float32)), np.float64)
    n, k_points = s.y_NxK.shape
    out = np.asarray(predict(*per_k_sequences(s.x_NxKxD, s.y_NxK, s.query_NxKxD)), np.float64)
    return out.reshape(n, k_points, k_points)[:, np.arange(k_points), np.arange(k_points)]


def analyze(run: common.Run, num_prompts: int, ks: list[int] | None = None):
    common.require_linear(run, "shift")
    config, task = run.config, run.task
    learners = predictors.linear_baselines(task)  # the classic five, and GD tuned on the prior
    x_t, y_t = predictors.tuning_prompts(task, config.eval.seed)
    eta_K = gradient_descent.tune_step_sizes(x_t, y_t, 1)
    learners["gd_1"] = lambda x, y: np.asarray(gradient_descent.gradient_descent(x, y, eta_K, 1))
    counts = statistics.resample_counts(num_prompts, config.eval.bootstrap_samples, config.eval.seed)
    shifts = {}
    for name, s in shifted_prompts(config, num_prompts).items():
        first, stop = s.valid_k or (0, task.n_points)
        curves = {}
        for predictor, predict in {"model": run.predict, **learners}.items():
            errors = statistics.squared_errors(predict_all(predict, s), s.target_NxK)[:, first:stop] / task.normalizer
            curves[predictor] = statistics.curve(errors, counts)
        shifts[name] = {"k": list(range(first, stop)), "curves": curves}
    ks = common.default_ks(run) if ks is None else ks
    table = {name: {p: {f"k={k}": c["mean"][k - r["k"][0]] for k in ks if k in r["k"]} for p, c in r["curves"].items()}
             for name, r in shifts.items()}
    result = {"step": run.step, "num_prompts": num_prompts, "normalizer": task.normalizer, "shifts": shifts,
              "table": {name: {p: v for p, v in t.items() if p in ("model", "least_squares", "zero")}
                        for name, t in table.items()}, "full_table": table}
    result["summary"] = {name: " ".join(f"{p} {v:.3g}" for p, v in (
        (p, c["mean"][-1]) for p, c in r["curves"].items() if p in ("model", "least_squares", "zero")))
        + f" (k={r['k'][-1]})" for name, r in shifts.items()}
    return result, _plot(result, task)


def _plot(result: dict, task):
    names = list(result["shifts"])
    cols = 5
    rows = -(-len(names) // cols)
    fig = common.blank_figure(3.4 * cols, 2.8 * rows)
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, i + 1)
        r = result["shifts"][name]
        for predictor in ("model", "least_squares", "ridge", "gd_1", "nearest_neighbors", "averaging", "zero"):
            if predictor in r["curves"]:
                style = dict(lw=2.2, color="black") if predictor == "model" else dict(lw=1.0)
                ax.plot(r["k"], r["curves"][predictor]["mean"], label=predictor, **style)
        ax.set_yscale("symlog", linthresh=0.1)
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
        if i == 0:
            ax.legend(fontsize=6)
    fig.suptitle(f"{task.name} d={task.n_dims}, step {result['step']}: normalized squared error under shift")
    return fig


