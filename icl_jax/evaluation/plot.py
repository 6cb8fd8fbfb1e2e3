"""The learning-curve figure: normalized loss against the number of in-context examples."""

from __future__ import annotations

import io
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from icl_jax import files  # noqa: E402


def plot_curves(result: dict, path: str | pathlib.Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    k = result["k"]
    for name, c in result["curves"].items():
        style = dict(lw=2.5, color="black", zorder=10) if name == "model" else dict(lw=1.5)
        if name == "ridge":
            style["ls"] = "--"  # coincides with least squares on noiseless tasks
        (line,) = ax.plot(k, c["mean"], label=name, **style)
        ax.fill_between(k, c["ci_low"], c["ci_high"], alpha=0.15, color=line.get_color())
    ax.axhline(1.0, color="gray", lw=0.8, ls=":")
    ax.set_xlabel("in-context examples k")
    ax.set_ylabel("normalized squared error")
    ax.set_ylim(-0.05, 1.5)
    ax.set_title(f"{result['task']} (d={result['n_dims']}), step {result['step']}, {result['num_prompts']} prompts")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    files.write_atomic(path, buffer.getvalue())
