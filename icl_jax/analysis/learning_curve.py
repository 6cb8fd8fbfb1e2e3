"""Loss against training step: every kept checkpoint of a run scored by `evaluate`, read back
from DIR/eval/step_<N>.json where it is already on disk (with the same number of prompts),
so that the moment in-context learning appears (a phase change) shows at the chosen k.
"""

from __future__ import annotations

import json
import pathlib


from icl_jax import config as config_lib
from icl_jax import files
from icl_jax.analysis import common
from icl_jax.checkpointing import Checkpoints
from icl_jax.errors import UserError
from icl_jax.evaluation import compare, run as eval_run


def evaluation(workdir: pathlib.Path, step: int, num_prompts: int | None) -> tuple[dict, bool]:
    """(eval result of `step`, whether it was computed now)."""
    path = workdir / "eval" / f"step_{step}.json"
    if path.exists():
        result = json.loads(path.read_text())
        if num_prompts is None or result.get("num_prompts") == num_prompts:
            return result, False
    return eval_run.evaluate(workdir, step, num_prompts, verbose=False), True


def analyze(workdir: str | pathlib.Path, num_prompts: int | None, ks: list[int] | None = None):
    workdir = pathlib.Path(workdir)
    config = config_lib.validate(files.load_run_config(workdir))
    checkpoints = Checkpoints(workdir, read_only=True)
    try:
        steps = checkpoints.all_steps()
    finally:
        checkpoints.close()
    if not steps:
        raise UserError(f"no checkpoint in {workdir / 'checkpoints'}: nothing to put on a learning curve")
    t = config.task
    ks = common.check_ks(compare.probe_ks(t.n_dims, t.n_points) if ks is None else ks, t.n_points)
    by_step, computed = {}, []
    for step in steps:
        by_step[step], fresh = evaluation(workdir, step, num_prompts)
        if fresh:
            computed.append(step)
    last = by_step[steps[-1]]
    model = {f"k={k}": [by_step[s]["curves"]["model"]["mean"][k] for s in steps] for k in ks}
    result = {"steps": steps, "k": ks, "metric": last.get("metric", "normalized squared error"),
              "model": model, "evaluated_now": computed,
              "baselines_at_last_step": {name: {f"k={k}": c["mean"][k] for k in ks}
                                         for name, c in last["curves"].items() if name != "model"},
              "summary": {f"k={k}": {"first": model[f"k={k}"][0], "last": model[f"k={k}"][-1]}
                          for k in ks}}
    return result, _plot(result, t)


def _plot(result: dict, task_config):
    fig, (ax,) = common.figure(1, width=7.0, height=4.5)
    for k in result["k"]:
        (line,) = ax.plot(result["steps"], result["model"][f"k={k}"], marker="o", label=f"model, k={k}")
        for name in ("least_squares", "bayes"):
            if name in result["baselines_at_last_step"]:
                ax.axhline(result["baselines_at_last_step"][name][f"k={k}"], color=line.get_color(), ls=":", lw=1)
    ax.set(xlabel="training step", ylabel=result["metric"],
           title=f"{task_config.name} d={task_config.n_dims}: model at chosen k over checkpoints (dotted: least squares / bayes)")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


