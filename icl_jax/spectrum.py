"""python -m icl_jax.spectrum --workdir=DIR [--step=N] [--num_prompts=128] [--grid=G]

For a Fourier-series run (task fourier or fourier_mixture): the normalized power per frequency
of the model's learned function after k examples, beside least squares with the true N, with
N_max, and the exact posterior (evaluation/spectrum.py). Writes
DIR/eval/spectrum_step_<N>.{json,png} on the evaluation prompts' stream.

A tool of its own rather than a part of `evaluate`: it costs num_prompts × |k| × G model
sequences (evaluate's learning curves need one per prompt) and has its own knobs.
"""

from absl import app, flags

from icl_jax import cli, compilation_cache

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory of a fourier or fourier_mixture run.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
_NUM_PROMPTS = flags.DEFINE_integer("num_prompts", 128, "Prompts whose spectra are averaged.")
_GRID = flags.DEFINE_integer("grid", None, "Grid points per period (default: 4·N_max, at least 16).")
flags.mark_flag_as_required("workdir")


def run(workdir: str, step: int | None = None, num_prompts: int = 128, n_grid: int | None = None,
        verbose: bool = True) -> dict:
    import pathlib

    from icl_jax import config as config_lib
    from icl_jax import files, tasks
    from icl_jax.errors import UserError
    from icl_jax.evaluation import predictors, prompts, regression_scoring, run as run_lib, spectrum

    workdir = pathlib.Path(workdir)
    config = config_lib.validate(files.load_run_config(workdir))
    task = tasks.get_task(config.task)
    if task.family != "fourier":
        raise UserError(f"the spectrum is defined for Fourier-series runs, this run's task is {task.name!r}")
    n_grid = max(16, 4 * task.max_frequency) if n_grid is None else n_grid
    if n_grid <= 2 * task.max_frequency or num_prompts < 1:
        raise UserError(f"--grid must exceed 2·N_max = {2 * task.max_frequency} and --num_prompts be >= 1")
    step, graphdef, params = run_lib.restore_params(config, workdir, step)
    x, y, w = prompts.eval_prompts(config, num_prompts)
    model = predictors.model_predictor(graphdef, params, config.eval.batch_size)
    y_exact = regression_scoring.exact_labels(task, x, y, w)
    result = spectrum.spectra(task, model, x, y, y_exact, w, spectrum.default_ks(task.max_frequency, task.n_points),
                              n_grid)
    result["step"] = step
    out = workdir / "eval"
    files.write_json(out / f"spectrum_step_{step}.json", result)
    spectrum.plot(result, out / f"spectrum_step_{step}.png")
    if verbose:
        print(format_table(result))
        print(f"wrote {out / f'spectrum_step_{step}.json'} and .png")
    return result


def format_table(result: dict) -> str:
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


@cli.reports_user_errors
def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    compilation_cache.enable()
    run(_WORKDIR.value, _STEP.value, _NUM_PROMPTS.value, _GRID.value)


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
