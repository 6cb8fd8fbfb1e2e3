"""python -m icl_jax.sweep --config=configs/task_pool.py --workdir=runs/pool \
       --sweep="task.pool_size=[16,256,4096]" --sweep="seed=[0,1,2]" [--shard=i/n] [--parallel=N]

Trains and evaluates every point of the Cartesian product of the --sweep axes (and of a
named sweep of the config file: --config=configs/task_pool.py:NAME), each an ordinary run
directory WORKDIR/<name>-<hash of its config>. Rerunning the same command skips finished runs
and resumes interrupted ones; a changed grid adds only its new runs. --shard=i/n (or a SLURM
job array's task) takes every n-th run; `python -m icl_jax.report --workdir=WORKDIR` gathers
the results. See docs/sweeps.md.
"""

import sys

from absl import app, flags

from icl_jax import cli
from icl_jax.errors import UserError

_CONFIG = flags.DEFINE_string("config", None, "Config file, configs/NAME.py[:ARG]; ARG may name one of the file's SWEEPS.")
_WORKDIR = flags.DEFINE_string("workdir", None, "The sweep's directory: one run directory per point inside it.")
_SWEEP = flags.DEFINE_multi_string("sweep", [], 'An axis, KEY=[v1,v2,...] (repeat the flag for more axes).')
_SHARD = flags.DEFINE_string("shard", None, "i/n: run only every n-th run from the i-th (default: the SLURM "
                             "array task when in one, else all).")
_PARALLEL = flags.DEFINE_integer("parallel", 0, "Runs at once on this machine, each on its share of the CPUs; "
                                  "0 = auto: 2 where runs compute on a CPU with 2+ cores, else 1.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "List this shard's runs and their status; run nothing.")
flags.mark_flags_as_required(["config", "workdir"])


@cli.reports_user_errors
def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    import pathlib

    from icl_jax.sweeps import execute, grid
    from icl_jax.sweeps import runs as runs_lib

    if _PARALLEL.value < 0:
        raise UserError(f"--parallel must be at least 1 (or 0: auto), got {_PARALLEL.value}")
    source, named = grid.split_config_flag(_CONFIG.value)
    points = grid.combine(named, [grid.parse_axis(a) for a in _SWEEP.value])
    workdir = pathlib.Path(_WORKDIR.value)
    every_run = runs_lib.make_runs(source, points, sweep_name=workdir.absolute().name, workdir=workdir)
    index, count = grid.parse_shard(_SHARD.value)
    mine = grid.shard(every_run, index, count)
    shard_text = f", shard {index}/{count}: {len(mine)} of them" if count > 1 else ""
    print(f"sweep {workdir}: {len(every_run)} runs{shard_text}", flush=True)
    if _DRY_RUN.value:
        for run in mine:
            state, step = runs_lib.status(workdir / run.name, run.steps)
            print(f"{run.name}  {state.value}{f' (step {step})' if step and state is runs_lib.Status.UNFINISHED else ''}")
        return 0
    execute.write_grid(workdir, source, every_run, sys.argv)
    parallel = _PARALLEL.value or execute.auto_parallel()
    outcome = execute.Sweep(source, mine, workdir, workdir.absolute().name, parallel,
                            echo=lambda line: print(line, flush=True)).run()
    print(f"sweep {workdir}: {len(outcome.finished)} finished now, {len(outcome.skipped)} before, "
          f"{len(outcome.failed)} failed, {len(outcome.stopped)} stopped"
          + (f", {len(outcome.busy)} busy in another sweep process" if outcome.busy else ""), flush=True)
    for name, why in outcome.failed:
        print(f"  failed: {name}: {why}", file=sys.stderr, flush=True)
    if outcome.exit_status == 0:
        print(f"report: python -m icl_jax.report --workdir={workdir}", flush=True)
    sys.exit(outcome.exit_status)


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
