"""python -m icl_jax.report --workdir=runs/pool [--metric=curves] [--k=N] [--x=KEY] [--predictors=P,...] [--out=DIR]

Gathers every run of a sweep (or any folder of run directories) into one table, each run's
latest evaluation at k (default: the last position), written as CSV and JSON, and a plot of the
metric against the swept key (mean and range over seeds, baselines dashed): OUT/<metric>_k<K>.{csv,json,png},
OUT defaulting to WORKDIR/report. Names the runs that are missing or unfinished. docs/sweeps.md.
"""

from absl import app, flags

from icl_jax import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "The sweep's directory (run directories inside it).")
_METRIC = flags.DEFINE_string("metric", "curves", "Path in evaluate's JSON to a set of curves: curves, accuracy, "
                              "fresh_tasks.curves (task_pool), pool_tasks.accuracy (images).")
_K = flags.DEFINE_integer("k", None, "In-context examples at which runs are compared (default: each run's last).")
_PREDICTORS = flags.DEFINE_list("predictors", None, "Curves to keep, shell patterns (default: all); "
                                "e.g. --metric=prediction_differences --predictors='model|*'.")
_X = flags.DEFINE_string("x", None, "Config key for the plot's x axis (default: the swept key with most values).")
_OUT = flags.DEFINE_string("out", None, "Output folder (default: WORKDIR/report).")
flags.mark_flags_as_required(["workdir"])


@cli.reports_user_errors
def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    import pathlib

    from icl_jax.sweeps import report

    workdir = pathlib.Path(_WORKDIR.value)
    results = report.gather(workdir, _METRIC.value, _K.value, _PREDICTORS.value)
    keys = report.varying_keys(results)
    x_key = report.pick_x(keys, results, _X.value)
    out = pathlib.Path(_OUT.value) if _OUT.value else workdir / "report"
    stem = f"{_METRIC.value.replace('.', '_')}_k{'last' if _K.value is None else _K.value}"
    label = next((r.label for r in results if r.label), _METRIC.value)
    header, rows = report.table_rows(results, keys)
    summary = report.write(results, out, stem, _METRIC.value, _K.value, x_key, keys, label, header, rows)
    print(f"{label} at k = {'last' if _K.value is None else _K.value}, {len(results)} runs, x = {x_key}")
    print(report.format_table(header, rows))
    for line in summary["not_in_plot"]:
        print(f"not in the plot: {line}")
    print(f"wrote {out / stem}.csv, .json and .png")


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
