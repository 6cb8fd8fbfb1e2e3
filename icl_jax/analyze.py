"""python -m icl_jax.analyze --workdir=DIR --what=NAME [--step=N] [--num_prompts=2048] [--k=5,10] [--grid=G]
python -m icl_jax.analyze --what=state --workdir=DIR1,DIR2,... [--out=DIR] [--step=N] [--num_prompts=N]

Which algorithm did the model learn (icl_jax/analysis/): NAME is one of gd, similarity,
probes, shift, attention, learning_curve, spectrum, state, or all. Writes DIR/analysis/NAME_step_<N>.{json,png}
(learning_curve: over every kept checkpoint; spectrum: DIR/eval/spectrum_step_<N>.{json,png})
and prints the headline numbers.

state compares runs of one task and dimension (one run works too): per run its model's kind,
size, parameters and state size (floats per prompt it holds about the context) against the
model's error at k = 2d; writes OUT/state.{json,png} (--out, default DIR1/analysis) and
prints the table. --step applies to every run (default: each run's latest checkpoint).
"""

import importlib
import json
import pathlib

from absl import app, flags

from icl_jax import cli, compilation_cache
from icl_jax.analysis import ANALYSES
from icl_jax.errors import UserError

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory written by icl_jax.train "
                                "(--what=state: one or more, comma-separated).")
_WHAT = flags.DEFINE_string("what", None, f"Analysis: {', '.join(ANALYSES)}, or all.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
_NUM_PROMPTS = flags.DEFINE_integer("num_prompts", None, "Prompts (default: config.eval.num_prompts).")
_K = flags.DEFINE_list("k", None, "Numbers of in-context examples for tables and probes (default: d/2, d, 2d).")
_OUT = flags.DEFINE_string("out", None, "--what=state: folder for state.json and .png (default: DIR1/analysis).")
_GRID = flags.DEFINE_integer("grid", None, "--what=spectrum: grid points per period (default: 4·N_max, at least 16).")
flags.mark_flags_as_required(["workdir", "what"])


def _headline(result: dict) -> str:
    """The analysis' summary entry when it has one, else the top-level scalars."""
    for key in ("at_last_k", "summary"):
        if key in result:
            return json.dumps(result[key], indent=1)[:4000]
    return json.dumps({k: v for k, v in result.items() if isinstance(v, (int, float, str))})


def _num_prompts(run) -> int:
    num_prompts = run.config.eval.num_prompts if _NUM_PROMPTS.value is None else _NUM_PROMPTS.value
    if num_prompts < 2:
        raise UserError(f"--num_prompts must be at least 2, got {num_prompts}")
    return num_prompts


@cli.reports_user_errors
def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    names = list(ANALYSES) if _WHAT.value == "all" else [_WHAT.value]
    unknown = [n for n in names if n not in ANALYSES]
    if unknown:
        raise UserError(f"unknown --what={_WHAT.value!r}; known: {', '.join(ANALYSES)}, all")
    try:
        ks = None if _K.value is None else [int(k) for k in _K.value]
    except ValueError:
        raise UserError(f"--k must be comma-separated integers, got {','.join(_K.value)!r}") from None
    workdirs = [w for w in _WORKDIR.value.split(",") if w]
    if not workdirs:
        raise UserError("--workdir names no run directory")
    if len(workdirs) > 1 and names != ["state"]:
        raise UserError(f"several run directories (--workdir={_WORKDIR.value}) go with --what=state only")
    if _OUT.value is not None and "state" not in names:
        raise UserError("--out goes with --what=state only (the other analyses write under DIR)")
    if names == ["state"] and ks is not None:
        raise UserError("--k does not apply to --what=state: it scores each run at k = 2d")
    from icl_jax.analysis import common  # late: keeps `--help` fast

    compilation_cache.enable()

    run = None
    for name in names:
        module = importlib.import_module(ANALYSES[name])
        if name == "state":  # several runs, one pair of files
            try:
                result, fig = module.analyze(workdirs, _STEP.value, _NUM_PROMPTS.value)
            except UserError as e:
                if len(names) == 1:
                    raise
                print(f"{name}: skipped ({e})", flush=True)
                continue
            out = pathlib.Path(_OUT.value) if _OUT.value else pathlib.Path(workdirs[0]) / "analysis"
            paths = common.write(out, "state", result, fig, folder="")
            print(f"{name}:\n{module.table(result)}\nwrote {paths[0]} and .png", flush=True)
            continue
        if name == "learning_curve":  # every checkpoint, not one
            result, fig = module.analyze(workdirs[0], _NUM_PROMPTS.value, ks)
            stem = name
        else:
            run = common.load(workdirs[0], _STEP.value) if run is None else run
            if ks is not None:
                ks = common.check_ks(ks, run.task.n_points)
            if name == "spectrum":  # its own knobs: a smaller default prompt count, and the grid
                options = dict(num_prompts=_NUM_PROMPTS.value, n_grid=_GRID.value)
            else:
                options = dict(num_prompts=_num_prompts(run))
            try:
                result, fig = module.analyze(run, ks=ks, **options)
            except UserError as e:
                if len(names) == 1:
                    raise
                print(f"{name}: skipped ({e})", flush=True)  # --what=all: not every analysis fits every run
                continue
            stem = f"{name}_step_{run.step}"
        # The spectrum goes to DIR/eval/, beside evaluate's curves of the same prompts.
        paths = common.write(workdirs[0], stem, result, fig, "eval" if name == "spectrum" else "analysis")
        headline = module.headline(result) if name == "spectrum" else _headline(result)
        print(f"{name}: {headline}\nwrote {paths[0]} and .png", flush=True)


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
