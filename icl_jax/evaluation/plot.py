"""The learning-curve figure: the family's error metric against the number of in-context examples.

A scorer may set, in its report: "metric" (the y label), "plot_ylim" and "plot_reference"
(a horizontal line: the trivial predictor's level, 1 for normalized squared error)."""

from __future__ import annotations

import io
import pathlib

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from icl_jax import files  # noqa: E402


def plot_curves(result: dict, path: str | pathlib.Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    k = result["k"]
    unbounded = set(result.get("least_squares_unbounded_k", []))
    for name, c in result["curves"].items():
        style = dict(lw=2.5, color="black", zorder=10) if name == "model" else dict(lw=1.5)
        if name == "ridge":
            style["ls"] = "--"  # coincides with least squares on noiseless tasks
        if name in ("bayes", "lmmse"):
            style.update(color="dimgray", ls=(0, (1, 1)), lw=2.0, zorder=9)  # the floor
        mean = np.array(c["mean"], dtype=float)
        if name == "least_squares" and unbounded:
            # infinite expected error there: a sample mean of a heavy tail, not a curve point
            bad = np.isin(k, sorted(unbounded))
            ax.plot(np.array(k)[bad], np.clip(mean[bad], None, 1.45), "x", color="red", zorder=11,
                    label="least squares: unbounded E[error]")
            mean[bad] = np.nan
        (line,) = ax.plot(k, mean, label=name, **style)
        ax.fill_between(k, c["ci_low"], c["ci_high"], alpha=0.15, color=line.get_color())
    ax.axhline(result.get("plot_reference", 1.0), color="gray", lw=0.8, ls=":")
    ax.set_xlabel("in-context examples k")
    ax.set_ylabel(result.get("metric", "normalized squared error"))
    ax.set_ylim(*result.get("plot_ylim", (-0.05, 1.5)))
    ax.set_title(f"{result['task']} (d={result['n_dims']}), step {result['step']}, {result['num_prompts']} prompts")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    write_png(fig, path, dpi=110)


def write_png(fig, path: str | pathlib.Path, dpi: int) -> None:
    """Lays out, renders and closes `fig`, then writes it atomically (never half a PNG)."""
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    files.write_atomic(path, buffer.getvalue())
