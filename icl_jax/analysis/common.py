"""What every analysis starts from: a restored checkpoint with its config and task, the model as a
batched numpy predictor and tracer, and where results go (DIR/analysis/).

Legend: N prompts, K points, D input width, E state width, H heads, T tokens.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import pathlib
from typing import Any

import jax
import matplotlib
import ml_collections
import numpy as np
from flax import nnx

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from icl_jax import config as config_lib  # noqa: E402
from icl_jax import files, run_model, tasks  # noqa: E402
from icl_jax.errors import UserError  # noqa: E402
from icl_jax.evaluation import predictors, prompts  # noqa: E402
from icl_jax.models.trace import Trace  # noqa: E402


@dataclasses.dataclass
class Run:
    workdir: pathlib.Path
    config: ml_collections.ConfigDict
    task: Any  # tasks.Task
    step: int
    graphdef: nnx.GraphDef
    params: Any

    @property
    def kind(self) -> str:
        return self.config.model.get("kind", "transformer")

    def model(self):
        return nnx.merge(self.graphdef, self.params)

    # One jitted function each, made once per run: a new jax.jit per call would compile per call.
    @functools.cached_property
    def predict(self) -> predictors.Predictor:
        """(x_NxKxD, y_NxK) -> yhat_NxK in batches of eval.batch_size."""
        return predictors.model_predictor(self.graphdef, self.params, self.config.eval.batch_size)

    @functools.cached_property
    def _trace_jit(self):
        graphdef = self.graphdef
        return jax.jit(lambda params, x, y: nnx.merge(graphdef, params).trace(x, y))

    def trace(self, x_NxKxD: np.ndarray, y_NxK: np.ndarray) -> Trace:
        """model.trace in batches of eval.batch_size, as numpy arrays."""
        batch = self.config.eval.batch_size
        parts = [jax.tree.map(np.asarray, self._trace_jit(self.params, x_NxKxD[i:i + batch], y_NxK[i:i + batch]))
                 for i in range(0, len(x_NxKxD), batch)]
        return jax.tree.map(lambda *a: np.concatenate(a), *parts)


def load(workdir: str | pathlib.Path, step: int | None = None) -> Run:
    workdir = pathlib.Path(workdir)
    config = config_lib.validate(files.load_run_config(workdir))
    step, graphdef, params = run_model.restore_params(config, workdir, step)
    return Run(workdir, config, tasks.get_task(config.task, config.data), step, graphdef, params)


def require_linear(run: Run, what: str) -> None:
    if run.task.family != "linear":
        raise UserError(f"--what={what} compares with the linear family's baselines; "
                        f"{run.task.name} is in the {run.task.family!r} family")


def linear_eval_set(run: Run, what: str, num_prompts: int):
    """(x_NxKxD, y_NxK, w_NxD, y_exact_NxK): evaluate's prompts of a linear-family run, with
    the float64 labels the baselines are fitted to (evaluation/prompts.py)."""
    require_linear(run, what)
    x, y, w = prompts.eval_prompts(run.config, num_prompts)
    return x, y, w, prompts.exact_labels(run.task, x, y, w)


def default_ks(run: Run) -> list[int]:
    """d/2, d and 2d examples, those that fit in the prompt (as evaluate's weight probe)."""
    from icl_jax.evaluation import compare

    return compare.probe_ks(run.task.n_dims, run.task.n_points)


def check_ks(ks: list[int], n_points: int) -> list[int]:
    bad = [k for k in ks if not 0 <= k < n_points]
    if bad:
        raise UserError(f"--k values {bad} are outside the prompt: k must lie in [0, {n_points - 1}]")
    return sorted(set(ks))


def figure(n_panels: int, width: float = 5.0, height: float = 3.8):
    fig, axes = plt.subplots(1, n_panels, figsize=(width * n_panels, height), squeeze=False)
    return fig, axes[0]


def blank_figure(width: float, height: float):
    """A figure to add a grid of subplots to."""
    return plt.figure(figsize=(width, height))


def png_bytes(fig) -> bytes:
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def write(run_dir: pathlib.Path, stem: str, result: dict, fig, folder: str = "analysis") -> list[pathlib.Path]:
    """RUN_DIR/<folder>/<stem>.{json,png}: the result and its figure."""
    out = pathlib.Path(run_dir) / folder
    paths = [out / f"{stem}.json", out / f"{stem}.png"]
    files.write_json(paths[0], result)
    files.write_atomic(paths[1], png_bytes(fig))
    return paths
