"""--what=state, over several runs of one task: the model's error at k = 2d against the floats
it holds about the context when it reads the query (models.state_size: a recurrent model's
fixed state, a transformer's key-value cache at the last position).

Exact least squares in d dimensions needs about d²/2 + d numbers (XᵀX and Xᵀy); a model whose
state is smaller cannot be exact, so across kinds and widths the error at k = 2d is read
against the state size, with that reference marked when every run is of the linear family.

k counts the examples before the query, as evaluate's curves do (index k of curves[...]);
where the prompt has fewer than 2d + 1 points the last k is used, and each row says which.
The error is the one evaluate reports as the model's curve, on evaluate's prompts
(evaluation/prompts.py): squared error / task.normalizer with the float64 labels of
prompts.exact_labels for the regression families, the 0-1 error (a logit of exactly 0 counts
as wrong) for Boolean and image tasks; the mean over prompts with the bootstrap interval of
statistics.curve.

Unlike the other analyses it takes several run directories and writes one pair of files,
OUT/state.{json,png} (OUT defaults to DIR1/analysis).
"""

from __future__ import annotations

import pathlib

import numpy as np

from icl_jax import config as config_lib
from icl_jax import files, losses
from icl_jax.analysis import common
from icl_jax.errors import UserError
from icl_jax.evaluation import prompts, statistics
from icl_jax.evaluation import run as eval_run

REGRESSION_FAMILIES = ("linear", "fourier", "nonlinear")
METRICS = {"regression": "normalized squared error (zero predictor = 1)", "boolean": "error rate (1 − accuracy)",
           "images": "0-1 error (1 − accuracy)"}


def target_k(n_dims: int, n_points: int) -> int:
    """2d, or the last k of a prompt too short for it."""
    return min(2 * n_dims, n_points - 1)


def reference_floats(n_dims: int) -> float:
    """d²/2 + d: XᵀX (symmetric, about d²/2 numbers) and Xᵀy, what exact least squares needs."""
    return n_dims**2 / 2 + n_dims


def metric(family: str) -> str:
    return METRICS["regression" if family in REGRESSION_FAMILIES else family]


def model_errors(run: common.Run, x_NxKxD: np.ndarray, y_NxK: np.ndarray, w_NxP: np.ndarray) -> np.ndarray:
    """The model's per-prompt errors N×K, as the family's scorer computes the model's curve."""
    task, family = run.task, run.task.family
    out = run.predict(x_NxKxD, y_NxK)  # the model sees the labels as sampled
    if family in REGRESSION_FAMILIES:
        y_exact = prompts.exact_labels(task, x_NxKxD, y_NxK, w_NxP)
        return statistics.normalized_squared_errors({"model": out}, y_exact, task.normalizer)["model"]
    if family == "boolean":
        y = np.asarray(y_NxK, np.float64)
        return 1 - np.asarray(losses.correct("logistic", np.asarray(out, np.float64), y), np.float64)
    if family == "images":
        scores = np.asarray(out, np.float64)
        if not np.all(np.isfinite(scores)):
            raise RuntimeError("model produced non-finite scores on the evaluation prompts")
        return (scores.argmax(axis=-1) != np.asarray(y_NxK, np.int32)).astype(np.float64)
    raise UserError(f"--what=state has no error measure for the {family!r} family of task {task.name!r}")


def row(run: common.Run, num_prompts: int | None) -> dict:
    """One run: what its model is (evaluate's "model" entry) and its error at k = 2d."""
    config, task = run.config, run.task
    n = config.eval.num_prompts if num_prompts is None else num_prompts
    if n < 2:
        raise UserError(f"--num_prompts must be at least 2 (for the bootstrap), got {n}")
    x, y, w = prompts.eval_prompts(config, n)
    k = target_k(task.n_dims, task.n_points)
    errors_NxK = model_errors(run, x, y, w)
    counts_RxN = statistics.resample_counts(n, config.eval.bootstrap_samples, config.eval.seed)
    curve = statistics.curve(errors_NxK[:, k:k + 1], counts_RxN)
    return {"workdir": str(run.workdir), "step": run.step,
            **eval_run.model_entry(config, run.params, task.n_points),
            "k": k, "k_is_2d": k == 2 * task.n_dims, "error": curve["mean"][0],
            "ci_low": curve["ci_low"][0], "ci_high": curve["ci_high"][0],
            "num_prompts": n, "eval_seed": config.eval.seed, "n_points": task.n_points}


def check_same_task(workdirs: list) -> None:
    """Refuses runs of different tasks or dimensions, naming the first two that differ (from
    their configs alone: before any checkpoint is read)."""
    seen = []
    for workdir in workdirs:
        t = config_lib.validate(files.load_run_config(workdir)).task
        seen.append((workdir, t.name, t.n_dims))
        first = seen[0]
        if seen[-1][1:] != first[1:]:
            raise UserError(f"--what=state compares runs of one task and dimension: {first[0]} is "
                            f"{first[1]} d={first[2]}, {workdir} is {t.name} d={t.n_dims}")


def analyze(workdirs: list[str | pathlib.Path], step: int | None = None, num_prompts: int | None = None):
    """(result, figure) over the runs in `workdirs`, each at checkpoint `step` (default: its latest)."""
    if not workdirs:
        raise UserError("--what=state needs at least one run directory")
    check_same_task(workdirs)
    rows = []
    for workdir in workdirs:  # one run's parameters in memory at a time
        run = common.load(workdir, step)
        rows.append(row(run, num_prompts))
    task = run.task  # every run's (check_same_task)
    result = {"task": task.name, "family": task.family, "n_dims": task.n_dims, "k_target": 2 * task.n_dims,
              "metric": metric(task.family), "rows": rows}
    if task.family == "linear":  # one task, so every run is of the linear family
        result["reference_state_floats"] = reference_floats(task.n_dims)
        result["reference"] = "d²/2 + d: XᵀX and Xᵀy, what exact least squares needs"
    short = [r["workdir"] for r in rows if not r["k_is_2d"]]
    if short:
        result["note"] = f"prompts shorter than 2d + 1 points, scored at their last k: {', '.join(short)}"
    return result, figure(result)


def figure(result: dict):
    fig, (ax,) = common.figure(1, width=7.0, height=4.8)
    kinds = list(dict.fromkeys(r["kind"] for r in result["rows"]))
    markers = "osD^v<>ph*"
    for i, kind in enumerate(kinds):
        rows = [r for r in result["rows"] if r["kind"] == kind]
        ax.errorbar([r["state_floats"] for r in rows], [r["error"] for r in rows],
                    yerr=[[r["error"] - r["ci_low"] for r in rows], [r["ci_high"] - r["error"] for r in rows]],
                    fmt=markers[i % len(markers)], color=f"C{i}", label=kind, capsize=2, ms=7)
        for r in rows:
            ax.annotate(width_label(r), (r["state_floats"], r["error"]), textcoords="offset points",
                        xytext=(5, 5), fontsize=8, color=f"C{i}")
    if "reference_state_floats" in result:
        ax.axvline(result["reference_state_floats"], color="gray", ls="--", lw=1,
                   label=f"d²/2 + d = {result['reference_state_floats']:g}")
    ax.set_xscale("log")
    ks = sorted({r["k"] for r in result["rows"]})
    k_text = f"k = 2d = {result['k_target']}" if ks == [result["k_target"]] else f"k = {', '.join(map(str, ks))}"
    ax.set(xlabel="state: floats per prompt about the context", ylabel=result["metric"],
           title=f"{result['task']} d={result['n_dims']}: model error at {k_text} against state size")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return fig


def width_label(r: dict) -> str:
    """The point's label: the model width (linear attention has none: its depth)."""
    return str(r["n_embd"]) if r["n_embd"] else f"{r['n_layer']} layers"


def table(result: dict) -> str:
    head = f"{result['metric']} at k = 2d = {result['k_target']}, {result['task']} d={result['n_dims']}"
    if "reference_state_floats" in result:
        head += f"; d²/2 + d = {result['reference_state_floats']:g}"
    lines = [head, f"{'kind':<17}{'size':<9}{'L×E/H':>12}{'parameters':>12}{'state':>11}{'k':>5}"
                   f"{'error':>10}{'90% interval':>20}  run"]
    for r in result["rows"]:
        shape = f"{r['n_layer']}×{r['n_embd']}" if r["n_embd"] else f"{r['n_layer']}×-"
        shape += f"/{r['n_head']}" if r["n_head"] else ""
        k = f"{r['k']}" + ("" if r["k_is_2d"] else "*")
        interval = f"[{r['ci_low']:.4f}, {r['ci_high']:.4f}]"
        lines.append(f"{r['kind']:<17}{r['size']:<9}{shape:>12}{r['parameters']:>12,}{r['state_floats']:>11,}{k:>5}"
                     f"{r['error']:>10.4f}{interval:>20}  {r['workdir']} "
                     f"(step {r['step']})")
    if any(not r["k_is_2d"] for r in result["rows"]):
        lines.append("* the prompt is shorter than 2d + 1 points: the error at its last k")
    return "\n".join(lines)
