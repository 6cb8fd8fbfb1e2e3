"""--what=spectrum, for a Fourier-series run (task fourier or fourier_mixture): the normalized
power per frequency of the model's learned function after k examples, beside least squares
with the true N, with N_max, and the exact posterior (the computation: evaluation/spectrum.py).

Unlike the other analyses it writes beside evaluate's files, DIR/eval/spectrum_step_<N>.{json,png},
and has its own knobs: the grid (--grid) and a smaller default prompt count, because it costs
num_prompts × |k| × G model sequences where evaluate's learning curves need one per prompt.
"""

from __future__ import annotations

from icl_jax.analysis import common
from icl_jax.errors import UserError
from icl_jax.evaluation import prompts, spectrum

DEFAULT_NUM_PROMPTS = 128


def check(task, num_prompts: int, n_grid: int | None) -> int:
    """The grid size to use; refuses a run of another family or impossible knobs."""
    if task.family != "fourier":
        raise UserError(f"the spectrum is defined for Fourier-series runs, this run's task is {task.name!r}")
    n_grid = max(16, 4 * task.max_frequency) if n_grid is None else n_grid
    if n_grid <= 2 * task.max_frequency or num_prompts < 1:
        raise UserError(f"--grid must exceed 2·N_max = {2 * task.max_frequency} and --num_prompts be >= 1")
    return n_grid


def analyze(run: common.Run, num_prompts: int | None, ks: list[int] | None, n_grid: int | None = None):
    """(result, figure) on the first num_prompts evaluation prompts (default 128); ks default to
    a few lengths around the identification point 2·N_max + 1."""
    num_prompts = DEFAULT_NUM_PROMPTS if num_prompts is None else num_prompts
    task = run.task
    n_grid = check(task, num_prompts, n_grid)
    ks = spectrum.default_ks(task.max_frequency, task.n_points) if ks is None else ks
    x, y, w = prompts.eval_prompts(run.config, num_prompts)
    y_exact = prompts.exact_labels(task, x, y, w)
    result = spectrum.spectra(task, run.predict, x, y, y_exact, w, ks, n_grid)
    result["step"] = run.step
    return result, spectrum.figure(result)


def headline(result: dict) -> str:
    """Mean frequency (Σ n·power) per k: one number per predictor that shows a low-frequency bias."""
    names = list(result["normalized_power"])
    freq = result["frequency"]
    lines = [f"mean frequency Σ n·p(n) of the normalized spectrum, {result['task']} N={result['max_frequency']}, "
             f"step {result['step']}, {result['num_prompts']} prompts",
             "   k  " + "".join(f"{n[:20]:>22}" for n in names)]
    for i, k in enumerate(result["k"]):
        means = [sum(f * p for f, p in zip(freq, result["normalized_power"][n][i])) for n in names]
        lines.append(f"{k:>4}  " + "".join(f"{m:>22.3f}" for m in means))
    true_mean = sum(f * p for f, p in zip(freq, result["true_functions"]))
    lines.append(f"true functions: {true_mean:.3f}")
    return "\n".join(lines)
