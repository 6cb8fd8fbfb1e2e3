"""evaluate(workdir): score a saved checkpoint and every baseline on the same seeded prompts.

Writes WORKDIR/eval/step_<N>.json (curves, and the family scorer's extras: for the linear
family the exact posterior's component weights, prediction differences, the weight probe),
step_<N>.png (figure) and step_<N>_errors.npz (per-prompt errors, for paired comparisons);
where the run's config sets wandb.project, the curves also go to the run's W&B run.
The JSON's "model" entry says what was scored: kind, size keys, parameters and the floats
per prompt it holds about the context (models.state_size).
"""

from __future__ import annotations

import pathlib

import jax
import numpy as np

from icl_jax import config as config_lib
from icl_jax import files, models, run_model, tasks, wandb_writer
from icl_jax.errors import UserError
from icl_jax.evaluation import linear_scoring, plot, predictors, prompts, scorers, statistics


def evaluate(workdir: str | pathlib.Path, step: int | None = None, num_prompts: int | None = None,
             verbose: bool = True, probe_prompts: int = linear_scoring.PROBE_PROMPTS) -> dict:
    workdir = pathlib.Path(workdir)
    config = config_lib.validate(files.load_run_config(workdir))
    num_prompts = config.eval.num_prompts if num_prompts is None else num_prompts
    if num_prompts < 2:
        raise UserError(f"--num_prompts must be at least 2 (for the bootstrap), got {num_prompts}")
    step, graphdef, params = run_model.restore_params(config, workdir, step)
    task = tasks.get_task(config.task, config.data)
    x_NxKxD, y_NxK, w_NxD = prompts.eval_prompts(config, num_prompts)

    model = predictors.model_predictor(graphdef, params, config.eval.batch_size)
    counts_RxN = statistics.resample_counts(num_prompts, config.eval.bootstrap_samples, config.eval.seed)
    scores = scorers.for_family(task.family)(config, task, model, x_NxKxD, y_NxK, w_NxD, counts_RxN, probe_prompts)
    errors = scores.errors
    result = {
        "task": task.name, "n_dims": task.n_dims, "step": step, "num_prompts": num_prompts,
        "normalizer": task.normalizer, "k": list(range(task.n_points)),
        "curves": {name: statistics.curve(e, counts_RxN) for name, e in errors.items()},
        "raw_curves": {name: (e.mean(axis=0) * task.normalizer).tolist() for name, e in errors.items()},
        "seconds": scores.seconds, "task_config": config.task.to_dict(), "eval_seed": config.eval.seed,
        "model": model_entry(config, params, task.n_points),
        **scores.report,
    }
    if jax.process_index() != 0:  # in a multi-process job every process scores, one writes
        return result
    out = workdir / "eval"
    files.write_json(out / f"step_{step}.json", result)
    plot.plot_curves(result, out / f"step_{step}.png")
    files.write_npz(out / f"step_{step}_errors.npz", {n: e.astype(np.float32) for n, e in errors.items()})
    wandb_writer.log_evaluation(config, workdir, result)  # where the run's config sets wandb.project
    if verbose:
        print(f"model: {models.describe(config.model, params, config.task.n_dims, task.n_points)}")
        print(format_table(result))
        if "fresh_tasks" in result:  # task_pool: the same predictors on new tasks w ~ N(0, I)
            print(format_table({**result, **result["fresh_tasks"], "task": f"{result['task']}, fresh tasks w ~ N(0, I)"}))
        print(f"wrote {out / f'step_{step}.json'} and .png")
    return result


def model_entry(config, params, n_points: int) -> dict:
    """What was scored: the model's kind and size keys (0 where the kind has no such key:
    n_head of an LSTM, n_embd of linear attention), its parameter count, and the floats per
    prompt it holds about the context when it reads the last query of an n_points prompt."""
    m = config.model
    return {"kind": m.kind, "size": m.size, "n_layer": int(m.n_layer), "n_head": int(m.n_head),
            "n_embd": int(m.n_embd), "parameters": models.param_count(params),
            "state_floats": models.state_size(m, config.task.n_dims, n_points)}


def format_table(result: dict, max_rows: int = 12) -> str:
    k = result["k"]
    rows = sorted(set(np.linspace(0, len(k) - 1, min(max_rows, len(k))).round().astype(int).tolist()))
    names = list(result["curves"])
    lines = [f"{result.get('metric', 'loss')}, {result['task']} d={result['n_dims']}, step {result['step']}, "
             f"{result['num_prompts']} prompts",
             "   k  " + "".join(f"{n[:13]:>14}" for n in names)]
    for i in rows:
        lines.append(f"{k[i]:>4}  " + "".join(f"{result['curves'][n]['mean'][i]:>14.4f}" for n in names))
    return "\n".join(lines)
