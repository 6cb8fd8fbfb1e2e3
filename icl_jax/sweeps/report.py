"""One table and one plot over a sweep's runs: every run's latest evaluation at one k.

Runs are the directories of WORKDIR holding a config.json, and every run a grid of the sweep
named (WORKDIR/sweeps/*.json, written by icl_jax.sweep): a run named there without a
directory is reported missing, never skipped silently. The columns that tell runs apart are
the config keys whose values differ between them (found from the configs, so runs made by
hand count too). The plot puts the metric against one of those keys (the x key), with the
mean and the range over the runs that differ only in their seed, and the baselines, scored on
the same prompts, as dashed lines.

A metric is a path into evaluate's JSON naming a dict of curves: `curves` (the default, the
family's main metric), `accuracy` (Boolean and image classes), `fresh_tasks.curves`
(task_pool: tasks outside the pool), `pool_tasks.accuracy` (images: the training pool's tasks).
"""

from __future__ import annotations

import csv
import dataclasses
import fnmatch
import io
import json
import pathlib
import re

import numpy as np

from icl_jax import files
from icl_jax.errors import UserError
from icl_jax.sweeps import runs as runs_lib

MISSING = "missing (no run directory)"
REPLICATE_KEYS = ("seed",)  # runs differing only here are one point of the plot, seeds averaged


@dataclasses.dataclass
class RunResult:
    name: str
    status: str  # runs_lib.Status value, or MISSING
    flat: dict | None = None  # the run's config, flattened; None when missing
    checkpoint: int | None = None  # latest checkpoint step
    eval_step: int | None = None  # step of the latest evaluation
    values: dict = dataclasses.field(default_factory=dict)  # predictor -> metric at k
    note: str = ""  # why an evaluated run has no values (its evaluation lacks the metric)
    label: str = ""  # the evaluation's own name for the metric, where it gives one

    @property
    def finished(self) -> bool:
        return self.status == runs_lib.Status.FINISHED.value


def expected_runs(workdir: pathlib.Path) -> list[str]:
    names = []  # the newest grid's order first: a grown grid lists old and new runs in its order
    for grid in sorted((workdir / "sweeps").glob("*.json"), key=lambda p: -p.stat().st_mtime_ns):
        names += json.loads(grid.read_text())["runs"]
    return list(dict.fromkeys(names))


def latest_eval(run_dir: pathlib.Path) -> tuple[int, dict] | tuple[None, None]:
    steps = [int(m.group(1)) for p in (run_dir / "eval").glob("step_*.json")
             if (m := re.fullmatch(r"step_(\d+)\.json", p.name))]
    if not steps:
        return None, None
    return max(steps), json.loads((run_dir / "eval" / f"step_{max(steps)}.json").read_text())


def metric_curves(result: dict, metric: str, where: str) -> dict:
    node = result
    for part in metric.split("."):
        if not isinstance(node, dict) or part not in node:
            raise UserError(f"{where} has no {metric!r} (it has: {', '.join(_curve_paths(result))})")
        node = node[part]
    if not isinstance(node, dict) or not all(isinstance(c, (dict, list)) for c in node.values()):
        raise UserError(f"{metric!r} in {where} is not a set of curves; try one of: {', '.join(_curve_paths(result))}")
    return node


def metric_label(result: dict, metric: str) -> str:
    """The evaluation's own name for `metric` ("metric" beside its curves), else the path."""
    parts = metric.split(".")
    if len(parts) == 1 and metric != "curves":
        return metric
    node = result
    for part in parts[:-1]:
        node = node.get(part, {})
    if "metric" not in node:
        return metric
    return node["metric"] + ("" if metric == "curves" else f" ({metric})")


def _curve_paths(result: dict, prefix: str = "") -> list[str]:
    """Paths in an evaluation JSON to dicts of curves (predictor -> {"mean": [...]})."""
    paths = []
    for key, value in result.items():
        if not isinstance(value, dict):
            continue
        if value and all(isinstance(c, dict) and "mean" in c for c in value.values()):
            paths.append(prefix + key)
        else:
            paths += _curve_paths(value, f"{prefix}{key}.")
    return paths


def _value_at(curve, k: int) -> float:
    values = curve["mean"] if isinstance(curve, dict) else curve
    return float(values[k])


def gather(workdir: pathlib.Path, metric: str = "curves", k: int | None = None,
           predictors: list[str] | None = None) -> list[RunResult]:
    """Every run's status and, where evaluated, each predictor's metric at k (default: each
    run's last position); `predictors`: shell patterns of the curves kept (default: all)."""
    workdir = pathlib.Path(workdir)
    if not workdir.is_dir():
        raise UserError(f"{workdir} does not exist")
    found = sorted(p.name for p in workdir.iterdir() if (p / "config.json").is_file())
    results = []
    for name in list(dict.fromkeys(expected_runs(workdir) + found)):
        run_dir = workdir / name
        if not (run_dir / "config.json").is_file():
            results.append(RunResult(name, MISSING))
            continue
        flat = files.flat_config(files.with_schema_defaults(json.loads((run_dir / "config.json").read_text())))
        state, checkpoint = runs_lib.status(run_dir, flat["train.steps"])
        result = RunResult(name, state.value, flat, checkpoint)
        result.eval_step, evaluation = latest_eval(run_dir)
        if evaluation is not None:
            at = len(evaluation["k"]) - 1 if k is None else k
            if not 0 <= at < len(evaluation["k"]):
                raise UserError(f"--k={k}: run {name} has k = 0..{len(evaluation['k']) - 1}")
            result.label = metric_label(evaluation, metric)
            where = f"{run_dir}/eval/step_{result.eval_step}.json"
            try:
                curves = metric_curves(evaluation, metric, where)
            except UserError as e:  # e.g. pool_tasks of a run without a task pool
                result.note, curves = str(e), {}
            result.values = {p: _value_at(c, at) for p, c in curves.items()
                             if not predictors or any(fnmatch.fnmatchcase(p, pattern) for pattern in predictors)}
        results.append(result)
    if predictors and not any(r.values for r in results):
        raise UserError(f"--predictors={','.join(predictors)} matches no curve of {metric!r}")
    if not any(r.values for r in results) and any(r.note for r in results):
        raise UserError(next(r.note for r in results if r.note))
    if not any(r.values for r in results):
        raise UserError(f"no evaluated run in {workdir} (runs found: {len(found)}; "
                        f"evaluate them with python -m icl_jax.evaluate --workdir=RUN)")
    return results


def varying_keys(results: list[RunResult]) -> list[str]:
    """Config keys (that change training) whose values differ between the runs found."""
    flats = [r.flat for r in results if r.flat is not None]
    keys = dict.fromkeys(k for f in flats for k in f if not files.is_resumable(k))
    return [k for k in keys if len({json.dumps(f.get(k)) for f in flats}) > 1]


def pick_x(keys: list[str], results: list[RunResult], asked: str | None) -> str | None:
    if asked:
        if asked not in keys:
            raise UserError(f"--x={asked}: not a key that differs between the runs ({', '.join(keys) or 'none'})")
        return asked
    candidates = [k for k in keys if k not in REPLICATE_KEYS]
    distinct = {k: len({json.dumps(r.flat[k]) for r in results if r.flat}) for k in candidates}
    return max(candidates, key=lambda k: distinct[k]) if candidates else None


def series(results: list[RunResult], x_key: str | None, keys: list[str]) -> list[dict]:
    """Finished runs grouped into lines: one per setting of the keys other than x and the
    replicate keys; per x value, each predictor's mean, min and max over replicates."""
    group_keys = [k for k in keys if k != x_key and k not in REPLICATE_KEYS]
    lines: dict[str, dict] = {}
    for r in results:
        if not (r.finished and r.values):
            continue
        label = ", ".join(f"{k}={r.flat[k]}" for k in group_keys)
        x = r.flat[x_key] if x_key else 0
        lines.setdefault(label, {}).setdefault(json.dumps(x), []).append(r)
    out = []
    for label, by_x in lines.items():
        xs = sorted(by_x, key=lambda s: _sort_key(json.loads(s))) if _numeric(by_x) else list(by_x)  # else run order
        predictors = list(dict.fromkeys(p for s in xs for r in by_x[s] for p in r.values))
        line = {"label": label, "x": [json.loads(s) for s in xs], "runs": [len(by_x[s]) for s in xs]}
        for p in predictors:
            vals = [[r.values[p] for r in by_x[s] if p in r.values] for s in xs]
            line[p] = {"mean": [float(np.mean(v)) if v else None for v in vals],
                       "min": [float(np.min(v)) if v else None for v in vals],
                       "max": [float(np.max(v)) if v else None for v in vals]}
        out.append(line)
    return out


def _numeric(by_x) -> bool:
    return all(isinstance(x := json.loads(s), (int, float)) and not isinstance(x, bool) for s in by_x)


def _sort_key(x):
    return (0, x, "") if isinstance(x, (int, float)) and not isinstance(x, bool) else (1, 0, str(x))


def table_rows(results: list[RunResult], keys: list[str]) -> tuple[list[str], list[list]]:
    predictors = list(dict.fromkeys(p for r in results for p in r.values))
    header = ["run", "status", "checkpoint", "eval_step"] + keys + predictors
    rows = [[r.name, r.status, r.checkpoint, r.eval_step] + [r.flat.get(k) if r.flat else None for k in keys]
            + [r.values.get(p) for p in predictors] for r in results]
    return header, rows


def format_table(header: list[str], rows: list[list]) -> str:
    def cell(v):
        return "" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)

    cells = [header] + [[cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells)


def problems(results: list[RunResult]) -> list[str]:
    """One line per run that is not finished (missing, not started, unfinished, unevaluated)
    or whose evaluation lacks the metric."""
    out = []
    for r in results:
        if r.note:
            out.append(f"{r.name}: {r.note}")
        if r.finished:
            continue
        detail = f" (checkpoint {r.checkpoint} of {r.flat['train.steps']})" if r.flat and r.checkpoint else ""
        shown = f"; latest evaluation at step {r.eval_step} is in the table, not the plot" if r.eval_step else ""
        out.append(f"{r.name}: {r.status}{detail}{shown}")
    return out


def write(results: list[RunResult], out: pathlib.Path, stem: str, metric: str, k: int | None,
          x_key: str | None, keys: list[str], metric_label: str, header: list[str], rows: list[list]) -> dict:
    """OUT/<stem>.csv (the table: `table_rows`), .json (the table, the plot's series, what is
    not in the plot) and .png."""
    buffer = io.StringIO()
    csv.writer(buffer).writerows([header] + rows)
    files.write_atomic(out / f"{stem}.csv", buffer.getvalue())
    lines = series(results, x_key, keys)
    summary = {"metric": metric, "metric_label": metric_label, "k": "last" if k is None else k, "x": x_key,
               "varying_keys": keys, "runs": [dict(zip(header, row)) for row in rows],
               "series": lines, "not_in_plot": problems(results)}
    files.write_json(out / f"{stem}.json", summary)
    _plot(lines, x_key, metric_label, k, out / f"{stem}.png")
    return summary


def _plot(lines: list[dict], x_key: str | None, metric_label: str, k: int | None, path: pathlib.Path) -> None:
    from icl_jax.evaluation import plot  # late: the table needs no matplotlib; plot selects Agg

    plt = plot.plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for ln in lines for x in ln["x"])
    for line in lines:
        xs = line["x"] if numeric else list(range(len(line["x"])))
        tag = f" ({line['label']})" if len(lines) > 1 and line["label"] else ""
        for name in [p for p in line if isinstance(line[p], dict)]:
            mean = np.array([np.nan if v is None else v for v in line[name]["mean"]], float)
            if name == "model":
                (drawn,) = ax.plot(xs, mean, "o-" if numeric else "o", ms=8, lw=2.5, label=f"model{tag}", zorder=10)
                low = [np.nan if v is None else v for v in line[name]["min"]]
                high = [np.nan if v is None else v for v in line[name]["max"]]
                if numeric:
                    ax.fill_between(xs, low, high, alpha=0.2, color=drawn.get_color())
                else:
                    ax.vlines(xs, low, high, lw=6, alpha=0.3, color=drawn.get_color())
            elif numeric:
                ax.plot(xs, mean, ls="--", lw=1.2, label=f"{name}{tag}")
            else:  # categories (task.name, model.kind): no line between them
                ax.plot(xs, mean, "_", ms=14, mew=2, label=f"{name}{tag}")
    model_values = [v for ln in lines if "model" in ln for v in ln["model"]["max"] if v is not None]
    model_top = max(model_values, default=0.0)
    if model_top > 0 and ax.get_ylim()[1] > 3 * model_top:
        # a baseline far above the model (least squares at k = d) is cut off
        shown = [v for ln in lines for p in ln if isinstance(ln[p], dict) for v in ln[p]["mean"]
                 if v is not None and v <= 2 * model_top]
        low = min(shown)
        ax.set_ylim(low - 0.05 * (2 * model_top - low), 2 * model_top)
    if numeric and lines:
        every_x = [x for ln in lines for x in ln["x"]]
        if min(every_x) > 0 and max(every_x) / min(every_x) >= 16:
            ax.set_xscale("log", base=2)
    elif lines:
        ax.set_xticks(range(len(lines[0]["x"])), [str(x) for x in lines[0]["x"]], rotation=30)
    ax.set_xlabel(x_key or "run")
    ax.set_ylabel(f"{metric_label} at k = {'last' if k is None else k}", fontsize=8)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    plot.write_png(fig, path, dpi=120)
