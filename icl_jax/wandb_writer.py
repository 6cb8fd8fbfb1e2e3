"""The optional Weights & Biases writer: one W&B run per run directory.

Off unless the run's config sets `wandb.project` (and `wandb.mode` is not "disabled");
`wandb` is imported only then. The W&B run id is made once and kept in
WORKDIR/wandb_run.json, so training, a resumed training and `evaluate` all log into the same
W&B run (resume="allow"). Its files go under WORKDIR/wandb (offline runs are uploaded later
with `wandb sync`). Only process 0 logs.

Training's metrics arrive through training/metrics_writer.py, evaluation's curves through
`log_evaluation`; this module sits outside training/ and evaluation/ so that both may use it
(evaluation imports nothing of training/).
"""

from __future__ import annotations

import importlib.util
import json
import pathlib
import secrets
import string

import jax
import ml_collections

from icl_jax import files
from icl_jax.errors import UserError

RUN_FILE = "wandb_run.json"  # {"id": the W&B run id of this run directory}
_ID_CHARS = string.ascii_lowercase + string.digits


def enabled(config: ml_collections.ConfigDict) -> bool:
    """Whether this run logs to W&B (on any process; only process 0 does the logging)."""
    return bool(config.wandb.project) and config.wandb.mode != "disabled"


def require_package(config: ml_collections.ConfigDict) -> None:
    """Raises UserError when the run logs to W&B and the package is missing (without
    importing it): called before training starts, on every process, so all stop alike."""
    if enabled(config) and importlib.util.find_spec("wandb") is None:
        raise UserError(f"wandb.project={config.wandb.project!r} asks for Weights & Biases logging, "
                        f"but the wandb package is not installed: pip install -e \".[wandb]\" "
                        f"(or set --config.wandb.project='' to log without it)")


def run_id(workdir: str | pathlib.Path) -> str:
    """The W&B run id of `workdir`: read from WORKDIR/wandb_run.json, made and saved the first time."""
    path = pathlib.Path(workdir) / RUN_FILE
    if path.exists():
        return json.loads(path.read_text())["id"]
    new = "".join(secrets.choice(_ID_CHARS) for _ in range(12))
    files.write_json(path, {"id": new})
    return new


def start(config: ml_collections.ConfigDict, workdir: str | pathlib.Path):
    """Starts (or resumes) the W&B run of `workdir` and returns it; None where this run does
    not log to W&B or this is not process 0. The caller finishes it (`run.finish()`)."""
    require_package(config)
    if not enabled(config) or jax.process_index() != 0:
        return None
    import wandb  # late: only runs that log to W&B need it

    workdir = pathlib.Path(workdir).resolve()
    w = config.wandb
    try:
        return wandb.init(project=w.project, entity=w.entity or None, group=w.group or None, mode=w.mode,
                          id=run_id(workdir), resume="allow", name=workdir.name, dir=str(workdir),
                          config=config.to_dict(), allow_val_change=True)
    except wandb.errors.Error as e:  # not logged in, no network, an unknown entity...
        raise UserError(f"cannot start the W&B run of {workdir} (wandb.project={w.project!r}): {e} "
                        f"(log in with `wandb login`, or set wandb.mode=offline to log locally and "
                        f"`wandb sync` later)") from None


def log_evaluation(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, result: dict) -> None:
    """Logs one evaluation (an eval/step_<N>.json `result`) into the run's W&B run: the curve
    of every predictor (model and baselines) per k, as a line plot under eval/step_<N> and as
    a table under eval/curves (columns step, predictor, k, value), and summary scalars
    eval/<predictor>_at_k<last>."""
    run = start(config, workdir)
    if run is None:
        return
    import wandb

    try:
        step, k = int(result["step"]), [int(i) for i in result["k"]]
        curves = {name: [float(v) for v in c["mean"]] for name, c in result["curves"].items()}
        table = wandb.Table(columns=["step", "predictor", "k", "value"],
                            data=[[step, name, ki, v] for name, ys in curves.items() for ki, v in zip(k, ys)])
        metric = result.get("metric", "loss")
        plot = wandb.plot.line_series(xs=k, ys=list(curves.values()), keys=list(curves),
                                      title=f"{metric}, step {step}", xname="k")
        # One table key for every evaluation (its step column tells them apart; W&B can show
        # them concatenated); the plot's own data goes to eval/step_<N>_table. No step=: a W&B
        # run's steps only grow, and an earlier checkpoint may be evaluated last.
        run.log({f"eval/step_{step}": plot, "eval/curves": table})
        run.summary.update({"eval/step": step, "eval/metric": metric,
                            **{f"eval/{name}_at_k{k[-1]}": ys[-1] for name, ys in curves.items()}})
    finally:
        run.finish()
