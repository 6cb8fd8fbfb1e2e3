"""What a Fourier-series predictor has learned, as a power spectrum per prompt length.

For a prompt's first k examples, a predictor defines a function of the query x. Its normalized
power at frequency n (the share of its mean square over one period carried by frequency n:
a_0² at n = 0, (a_n² + b_n²)/2 for n ≥ 1, divided by the sum over n) is read off
  * the model: its answers on a grid of G points of the period [-L, L) (no duplicated
    endpoint), every (prompt, k, grid point) sequence in one batched forward pass, and a real
    DFT (exact for frequencies below G/2);
  * least squares with the true N, with N_max, and the exact posterior (the Bayesian model
    average over N for fourier_mixture): their coefficient vectors (baselines/fourier.py).
A low-frequency bias shows as the model's power shifted to small n at small k.
`python -m icl_jax.analyze --what=spectrum --workdir=DIR` (analysis/spectrum.py) writes
DIR/eval/spectrum_step_<N>.{json,png}.
Legend: N prompts, Kp probed lengths, G grid points, M frequencies, F = 2 N_max + 1 features.
"""

from __future__ import annotations

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from icl_jax.baselines import fourier as fourier_baselines  # noqa: E402
from icl_jax.evaluation import compare  # noqa: E402


def grid(half_period: float, n_grid: int) -> np.ndarray:
    """G points -L + 2L g/G: one period, the endpoint L (= -L) left out."""
    return -half_period + 2 * half_period * np.arange(n_grid) / n_grid


def power_from_grid(values_xG: np.ndarray) -> np.ndarray:
    """Power per frequency n = 0..G//2 of a function sampled on `grid` (the last axis): the
    mean square over the period splits exactly into these (Parseval)."""
    G = values_xG.shape[-1]
    c = np.fft.rfft(np.asarray(values_xG, np.float64), axis=-1) / G
    power = np.abs(c) ** 2
    power[..., 1:(G + 1) // 2] *= 2  # ±n both carry c_n; the Nyquist term (even G) has no twin
    return power


def power_from_coefficients(coef_xF: np.ndarray, n_frequencies: int) -> np.ndarray:
    """Power per frequency n = 0..n_frequencies-1 of a series with coefficients in feature
    order [a_0, a_1, b_1, ...] (frequencies past the series get 0)."""
    coef = np.asarray(coef_xF, np.float64)
    n_max = (coef.shape[-1] - 1) // 2
    pairs = coef[..., 1:].reshape(coef.shape[:-1] + (n_max, 2))
    power = np.concatenate([coef[..., :1] ** 2, (pairs**2).sum(-1) / 2], axis=-1)
    out = np.zeros(coef.shape[:-1] + (max(n_frequencies, n_max + 1),))
    out[..., :n_max + 1] = power
    return out[..., :n_frequencies]


def normalized(power_xM: np.ndarray) -> np.ndarray:
    total = power_xM.sum(-1, keepdims=True)
    return np.where(total > 0, power_xM / np.where(total > 0, total, 1.0), 0.0)


def default_ks(max_frequency: int, n_points: int) -> list[int]:
    """A few lengths around the identification point 2N+1 (N = N_max)."""
    N = max_frequency
    return sorted({k for k in (1, 2, N, 2 * N, 2 * N + 1, 3 * N, n_points - 1) if 1 <= k < n_points})


def model_power(model, x_NxKx1, y_NxK, ks: list[int], grid_G: np.ndarray) -> np.ndarray:
    """power_NxKpxM of the model's answers on the grid after each k of ks."""
    probe = compare.probe_prompts(x_NxKx1, y_NxK, ks, grid_G[:, None].astype(np.float32))
    answers = np.asarray(model(probe.x_MxLxD, probe.y_MxL), np.float64)
    answers = answers.reshape(len(x_NxKx1), len(ks), len(grid_G), -1)
    values_NxKpxG = np.stack([answers[:, i, :, k] for i, k in enumerate(ks)], axis=1)
    return power_from_grid(values_NxKpxG)


def spectra(task, model, x_NxKx1, y_NxK, y_exact_NxK, w_NxP, ks: list[int], n_grid: int) -> dict:
    """The JSON-ready spectra (mean normalized power per k and frequency) of the model (fed
    the labels as sampled, y_NxK), the baselines (fed float64 exact labels) and the true
    functions."""
    N, L = task.max_frequency, task.half_period
    if n_grid <= 2 * N:
        raise ValueError(f"the grid needs more than 2·N_max = {2 * N} points to resolve frequency N_max, got {n_grid}")
    M = n_grid // 2 + 1
    true_n = np.asarray(w_NxP[:, -1]).round().astype(np.int64)
    power = {"model": model_power(model, x_NxKx1, y_NxK, ks, grid(L, n_grid))}
    posterior = fourier_baselines.posterior(x_NxKx1, y_exact_NxK, N, L, mixture_over_n=task.mixture,
                                            noise_std=task.noise_std, with_weights=True)
    power["bayes"] = power_from_coefficients(posterior.w_BxKxD[:, ks], M)
    for name, n_B in (("least_squares_true_N", true_n), ("least_squares_max_N", np.full(len(true_n), N))):
        _, w = fourier_baselines.least_squares_features(x_NxKx1, y_exact_NxK, n_B, N, L, with_weights=True)
        power[name] = power_from_coefficients(w[:, ks], M)
    true_power = normalized(power_from_coefficients(np.asarray(w_NxP)[:, :2 * N + 1], M)).mean(0)
    return {"k": ks, "frequency": list(range(M)), "grid_points": n_grid, "num_prompts": len(x_NxKx1),
            "max_frequency": N, "half_period": L, "task": task.name,
            "normalized_power": {name: normalized(p).mean(0).tolist() for name, p in power.items()},
            "true_functions": true_power.tolist()}


def figure(result: dict):
    """One panel per k: every predictor's mean normalized power against frequency."""
    ks = result["k"]
    cols = min(4, len(ks))
    rows = -(-len(ks) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False, sharey=True)
    freq = np.array(result["frequency"])
    for i, k in enumerate(ks):
        ax = axes[i // cols][i % cols]
        for name, p in result["normalized_power"].items():
            style = dict(lw=2.2, color="black", zorder=10) if name == "model" else dict(lw=1.2)
            if name == "bayes":
                style.update(color="dimgray", ls=(0, (1, 1)), lw=2.0)
            ax.plot(freq, p[i], marker=".", label=name, **style)
        ax.plot(freq, result["true_functions"], color="tab:green", lw=0.8, ls="--", label="true functions")
        ax.axvline(result["max_frequency"], color="gray", lw=0.6, ls=":")
        ax.set_title(f"k = {k}", fontsize=9)
        ax.set_xlabel("frequency n", fontsize=8)
        ax.grid(alpha=0.3)
    for j in range(len(ks), rows * cols):
        axes[j // cols][j % cols].axis("off")
    axes[0][0].set_ylabel("normalized power")
    axes[0][0].legend(fontsize=6)
    fig.suptitle(f"{result['task']} (N={result['max_frequency']}), step {result.get('step')}, "
                 f"{result['num_prompts']} prompts", fontsize=10)
    return fig
