"""Sweeps (icl_jax/sweeps/, python -m icl_jax.sweep) and their report (python -m icl_jax.report).

The end-to-end test runs a real six-run sweep through the command line, stops it with SIGINT
while the third run trains, reruns the same command and checks that finished runs were not
touched, the stopped one resumed from its checkpoint and every run finished; the report tests
read that sweep."""

import csv
import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from icl_jax import config as config_lib
from icl_jax.errors import UserError
from icl_jax.sweeps import grid, report
from icl_jax.sweeps import runs as runs_lib

CONFIG_FILE = textwrap.dedent('''
    from icl_jax import config as config_lib

    SWEEPS = {"grid": {"task.n_dims": [2, 3], "seed": [0, 1, 2]},
              "pairs": [{"task.n_dims": 2, "seed": 5}, {"task.n_dims": 3, "seed": 6}]}

    def get_config(arg=None):
        c = config_lib.default_config()
        config_lib.laptop(c, n_dims=3, steps=120)
        c.model.n_layer, c.model.n_head, c.model.n_embd = 2, 2, 32
        c.train.batch_size, c.train.log_every, c.train.checkpoint_every, c.train.warmup_steps = 16, 20, 20, 5
        c.eval.num_prompts, c.eval.batch_size, c.eval.bootstrap_samples = 32, 32, 50
        if arg == "long":
            c.task.n_points = c.model.n_positions = 9
        return c
''')


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> pathlib.Path:
    path = tmp_path_factory.mktemp("configs") / "small.py"
    path.write_text(CONFIG_FILE)
    return path


def _sweep_cli(*args, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "icl_jax.sweep", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kwargs)


def _cli(module: str, *args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=timeout)


# --- the grid ---------------------------------------------------------------------------------

def test_axes_parse_literals_and_bare_words():
    assert grid.parse_axis("task.pool_size=[16, 256]") == ("task.pool_size", [16, 256])
    assert grid.parse_axis("train.learning_rate=[1e-3,3e-4]") == ("train.learning_rate", [1e-3, 3e-4])
    assert grid.parse_axis("task.name=[parity,majority]") == ("task.name", ["parity", "majority"])
    assert grid.parse_axis("task.eval_datasets=['a,b', '']") == ("task.eval_datasets", ["a,b", ""])
    assert grid.parse_axis("seed=3") == ("seed", [3])
    for bad, says in (("task.pool_sie=[1]", "task.pool_size"), ("seed", r"KEY=\[v1"), ("seed=[]", "no values"),
                      ("seed=[1,1]", "twice")):
        with pytest.raises(UserError, match=says):
            grid.parse_axis(bad)


def test_product_order_last_axis_fastest_and_no_key_twice():
    points = grid.product([("a", [1, 2]), ("b", ["x", "y", "z"])])
    assert points == [{"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 1, "b": "z"},
                      {"a": 2, "b": "x"}, {"a": 2, "b": "y"}, {"a": 2, "b": "z"}]
    with pytest.raises(UserError, match="swept twice"):
        grid.product([("a", [1]), ("a", [2])])


@pytest.mark.parametrize("size", [1, 5, 6, 13])
@pytest.mark.parametrize("count", [1, 2, 3, 4, 7])
def test_shards_are_disjoint_cover_and_balance(size, count):
    items = list(range(size))
    shards = [grid.shard(items, i, count) for i in range(count)]
    flat = [x for s in shards for x in s]
    assert sorted(flat) == items and len(flat) == len(set(flat))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_shard_flag_and_slurm_array():
    assert grid.parse_shard("2/5", environ={}) == (2, 5)
    assert grid.parse_shard(None, environ={}) == (0, 1)
    slurm = {"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "1"}
    assert grid.parse_shard(None, environ=slurm) == (3, 4)
    assert grid.parse_shard("0/2", environ=slurm) == (0, 2)  # the flag wins
    for bad in ("3/3", "-1/2", "a/b", "1"):
        with pytest.raises(UserError, match="shard"):
            grid.parse_shard(bad, environ={})


def test_named_sweeps_of_a_config_file(config_file):
    source, points = grid.split_config_flag(f"{config_file}:grid")
    assert source.arg == "" and len(points) == 6 and points[0] == {"task.n_dims": 2, "seed": 0}
    source, points = grid.split_config_flag(f"{config_file}:long,pairs")
    assert source.arg == "long" and points == [{"task.n_dims": 2, "seed": 5}, {"task.n_dims": 3, "seed": 6}]
    assert grid.combine(points, [("train.steps", [10, 20])])[1] == {"task.n_dims": 2, "seed": 5, "train.steps": 20}
    with pytest.raises(UserError, match="name one"):
        grid.split_config_flag(f"{config_file}:grid,pairs")
    with pytest.raises(UserError, match="does not exist"):
        grid.split_config_flag("configs/nope.py")


# --- runs -------------------------------------------------------------------------------------

def test_run_names_follow_the_trained_config(config_file):
    source, _ = grid.split_config_flag(str(config_file))
    points = [{"task.n_dims": 2, "seed": 0}, {"task.n_dims": 3, "seed": 0}]
    a, b = runs_lib.make_runs(source, points)
    assert a.name.startswith("n_dims=2-") and b.name.startswith("n_dims=3-")  # the seed does not vary
    again = runs_lib.make_runs(source, points + [{"task.n_dims": 2, "seed": 0}])
    assert [r.name for r in again] == [a.name, b.name]  # the same point is the same run
    same = runs_lib.config_hash(runs_lib.resolve(source, {**points[0], "train.log_every": 7}))
    other = runs_lib.config_hash(runs_lib.resolve(source, {**points[0], "train.learning_rate": 3e-4}))
    assert same == a.name.rsplit("-", 1)[1] != other  # logging does not change the run; training does
    assert runs_lib.resolve(source, points[0]).to_dict() == config_lib.validate(_loaded(source, 2, 0)).to_dict()


def _loaded(source, n_dims, seed):
    c = source.load()
    c.task.n_dims, c.seed = n_dims, seed
    return c


def test_bad_points_name_the_key(config_file):
    source, _ = grid.split_config_flag(str(config_file))
    with pytest.raises(UserError, match="task.n_dims"):
        runs_lib.make_runs(source, [{"task.n_dims": "three"}])
    with pytest.raises(UserError, match="task.n_points"):
        runs_lib.make_runs(source, [{"task.n_points": 50}])  # longer than the model accepts
    with pytest.raises(UserError, match="unknown config key 'task.n_dim'"):
        runs_lib.make_runs(source, [{"task.n_dim": 3}])


def test_status_from_the_files(tmp_path):
    run = tmp_path / "r"
    assert runs_lib.status(run, 40) == (runs_lib.Status.NEW, None)
    (run / "checkpoints" / "20").mkdir(parents=True)
    (run / "checkpoints" / "40.orbax-checkpoint-tmp-123").mkdir()  # an unfinished save
    (run / "config.json").write_text("{}")
    assert runs_lib.status(run, 40) == (runs_lib.Status.UNFINISHED, 20)
    (run / "checkpoints" / "40").mkdir()
    assert runs_lib.status(run, 40) == (runs_lib.Status.UNEVALUATED, 40)
    (run / "eval").mkdir()
    (run / "eval" / "step_20.json").write_text("{}")
    assert runs_lib.status(run, 40)[0] is runs_lib.Status.UNEVALUATED
    (run / "eval" / "step_40.json").write_text("{}")
    assert runs_lib.status(run, 40) == (runs_lib.Status.FINISHED, 40)


def test_dry_run_shards_split_the_grid(config_file, tmp_path):
    def listed(*extra):
        out = _cli("icl_jax.sweep", f"--config={config_file}:grid", f"--workdir={tmp_path}", "--dry_run", *extra)
        assert out.returncode == 0, out.stdout + out.stderr
        return [line.split()[0] for line in out.stdout.splitlines()[1:]]

    every = listed()
    assert len(every) == 6 and all(line.startswith(("n_dims=", )) for line in every)
    shards = [listed(f"--shard={i}/4") for i in range(4)]
    assert sorted(sum(shards, [])) == sorted(every)
    assert len(set(sum(shards, []))) == 6
    bad = _cli("icl_jax.sweep", f"--config={config_file}", f"--workdir={tmp_path}", "--sweep=task.n_dim=[1,2]")
    assert bad.returncode != 0 and "task.n_dims" in bad.stderr
    assert not any(tmp_path.iterdir())  # nothing made for a bad sweep


# --- end to end: interrupted and rerun ---------------------------------------------------------

@pytest.fixture(scope="module")
def finished_sweep(config_file, tmp_path_factory):
    """The six-run sweep, two runs at once: stopped by SIGINT once two runs have finished and
    another has saved a checkpoint on its way, then rerun to the end."""
    workdir = tmp_path_factory.mktemp("sweep") / "grid_sweep"
    args = (f"--config={config_file}:grid", f"--workdir={workdir}", "--sweep=train.steps=[400]", "--parallel=2")
    first = _sweep_cli(*args)
    names = [line.split()[0] for line in _cli("icl_jax.sweep", *args, "--dry_run").stdout.splitlines()[1:]]

    def finished(name):
        return (workdir / name / "eval" / "step_400.json").exists()

    def midway(name):
        return any(0 < s < 400 for s in runs_lib.checkpoint_steps(workdir / name))

    deadline = time.time() + 400
    while time.time() < deadline and first.poll() is None:
        if sum(map(finished, names)) >= 2 and any(midway(n) for n in names if not finished(n)):
            break
        time.sleep(0.1)
    first.send_signal(signal.SIGINT)
    out1, _ = first.communicate(timeout=120)
    assert first.returncode == 130, out1
    done = [n for n in names if finished(n)]
    left = {n: {p.relative_to(workdir / n): p.stat().st_mtime_ns for p in (workdir / n).rglob("*")
                if p.is_file() and p.name != "sweep.log"} for n in done}
    stopped = {n: runs_lib.checkpoint_steps(workdir / n)[-1] for n in names if n not in done and midway(n)}
    second = _sweep_cli(*args)
    out2, _ = second.communicate(timeout=600)
    assert second.returncode == 0, out2
    return workdir, names, out1, out2, left, stopped


@pytest.mark.timeout(900)
def test_interrupted_sweep_completes_without_redoing_finished_runs(finished_sweep):
    workdir, names, out1, out2, left, stopped = finished_sweep
    assert "SIGINT: stopping" in out1 and "stopped during train" in out1
    assert 2 <= len(left) < 6 and stopped
    for name in left:
        assert f"{name}]: finished before, skipped" in out2
        now = {p.relative_to(workdir / name): p.stat().st_mtime_ns for p in (workdir / name).rglob("*")
               if p.is_file() and p.name != "sweep.log"}
        assert now == left[name]  # not one file of a finished run written again
    for name, step in stopped.items():  # stopped mid-way at a checkpoint, resumed there
        assert f"{name}]: train (resuming from step {step})" in out2
        assert f"resuming from checkpoint at step {step}" in (workdir / name / "sweep.log").read_text()
    for name in names:
        assert (workdir / name / "eval" / "step_400.json").exists()
        point = json.loads((workdir / name / runs_lib.POINT_FILE).read_text())
        assert json.loads((workdir / name / "config.json").read_text())["seed"] == point["point"]["seed"]
    assert f"{6 - len(left)} finished now, {len(left)} before, 0 failed" in out2


@pytest.mark.timeout(900)
def test_report_table_plot_and_missing_runs(finished_sweep, tmp_path):
    workdir, names, *_ = finished_sweep
    out = _cli("icl_jax.report", f"--workdir={workdir}", "--k=3", f"--out={tmp_path}")
    assert out.returncode == 0, out.stderr
    with open(tmp_path / "curves_k3.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["run"] for r in rows] == names and {r["status"] for r in rows} == {"finished"}
    for row in rows:  # the table holds each run's evaluation at k = 3, as evaluate wrote it
        evaluation = json.loads((workdir / row["run"] / "eval" / "step_400.json").read_text())
        assert float(row["model"]) == pytest.approx(evaluation["curves"]["model"]["mean"][3])
        assert float(row["least_squares"]) == pytest.approx(evaluation["curves"]["least_squares"]["mean"][3])
    summary = json.loads((tmp_path / "curves_k3.json").read_text())
    assert summary["x"] == "task.n_dims" and summary["varying_keys"] == ["seed", "task.n_dims"]
    (line,) = summary["series"]
    assert line["x"] == [2, 3] and line["runs"] == [3, 3]
    by_dims = {d: [float(r["model"]) for r in rows if r["task.n_dims"] == str(d)] for d in (2, 3)}
    assert line["model"]["mean"] == pytest.approx([sum(v) / 3 for v in by_dims.values()])
    assert line["model"]["max"] == pytest.approx([max(v) for v in by_dims.values()])
    assert (tmp_path / "curves_k3.png").stat().st_size > 10_000

    copy = tmp_path / "partial"  # a run gone, another never evaluated: named, not skipped
    subprocess.run(["cp", "-r", str(workdir), str(copy)], check=True)
    subprocess.run(["rm", "-r", str(copy / names[0])], check=True)
    (copy / names[1] / "eval" / "step_400.json").unlink()
    out = _cli("icl_jax.report", f"--workdir={copy}")
    assert out.returncode == 0, out.stderr
    assert f"not in the plot: {names[0]}: missing (no run directory)" in out.stdout
    assert f"not in the plot: {names[1]}: trained, not evaluated" in out.stdout
    bad = _cli("icl_jax.report", f"--workdir={workdir}", "--metric=accuracy")
    assert bad.returncode == 1 and "has no 'accuracy'" in bad.stderr and "curves" in bad.stderr
    # a metric some runs lack (pool_tasks of a run without a pool): those runs are named
    evaluation_path = copy / names[2] / "eval" / "step_400.json"
    evaluation = json.loads(evaluation_path.read_text())
    evaluation["pool_tasks"] = {"accuracy": evaluation["curves"]}
    evaluation_path.write_text(json.dumps(evaluation))
    out = _cli("icl_jax.report", f"--workdir={copy}", "--metric=pool_tasks.accuracy", "--k=2")
    assert out.returncode == 0, out.stderr
    assert f"not in the plot: {names[3]}: " in out.stdout and "has no 'pool_tasks.accuracy'" in out.stdout


def test_runs_logging_to_wandb_are_grouped_by_sweep(config_file):
    source, _ = grid.split_config_flag(str(config_file))
    plain, logged = runs_lib.make_runs(source, [{"seed": 1}, {"seed": 2, "wandb.project": "p"}], sweep_name="pool")
    assert "wandb.group" not in plain.point and plain.config.wandb.group == ""
    assert logged.point["wandb.group"] == "pool" and logged.config.wandb.group == "pool"
    assert "--config.wandb.group=pool" in logged.train_flags(source)
    own = runs_lib.make_runs(source, [{"wandb.project": "p", "wandb.group": "mine"}], sweep_name="pool")[0]
    assert own.config.wandb.group == "mine"
    # the group is a logging key: it does not change the run's directory
    assert logged.name.rsplit("-", 1)[1] == runs_lib.config_hash(runs_lib.resolve(source, {"seed": 2}))


def test_slurm_array_script_runs_its_shard(config_file, tmp_path):
    root = pathlib.Path(__file__).resolve().parents[1]
    script = root / "launch" / "slurm_sweep.sbatch"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    args = ["bash", str(script), f"--config={config_file}:grid", f"--workdir={tmp_path}", "--dry_run"]
    env = {**os.environ, "SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "0"}
    out = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "shard 1/3: 2 of them" in out.stdout
    env.pop("SLURM_ARRAY_TASK_ID")
    out = subprocess.run(args, capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 2 and "--array" in out.stderr


def test_the_sweep_process_never_starts_a_jax_backend():
    """It resolves every run's config but computes nothing: on a GPU a started backend would
    hold most of the device memory its runs need."""
    script = textwrap.dedent('''
        from icl_jax.sweeps import grid, report, runs
        for flag in ["configs/task_pool.py:diversity", "configs/boolean.py:table", "configs/images.py",
                     "configs/linear.py:curriculum", "configs/fourier.py", "configs/sparse_linear.py"]:
            source, points = grid.split_config_flag(flag)
            runs.make_runs(source, points)
        import jax._src.xla_bridge as xb
        print(xb.backends_are_initialized())
    ''')
    root = pathlib.Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=root)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_report_names_missing_unfinished_and_unevaluated_runs(config_file, tmp_path):
    from icl_jax import files
    from icl_jax.sweeps import execute

    source, _ = grid.split_config_flag(str(config_file))
    runs = runs_lib.make_runs(source, [{"seed": s, "task.n_dims": 2} for s in range(4)])
    execute.write_grid(tmp_path, source, runs, ["test"])
    curves = {"model": {"mean": [1.0, 0.5, 0.25]}, "zero": {"mean": [1.0, 1.0, 1.0]}}
    for i, run in enumerate(runs[:3]):
        run_dir = tmp_path / run.name
        files.write_json(run_dir / "config.json", run.config.to_dict())
        (run_dir / "checkpoints" / str(120 if i != 1 else 40)).mkdir(parents=True)
    for i, step in ((0, 120), (1, 40)):
        files.write_json(tmp_path / runs[i].name / "eval" / f"step_{step}.json",
                         {"k": [0, 1, 2], "curves": {n: {"mean": [v * (i + 1) for v in c["mean"]]}
                                                    for n, c in curves.items()}})
    results = report.gather(tmp_path, k=1)
    assert [r.status for r in results] == ["finished", "unfinished", "trained, not evaluated", report.MISSING]
    assert results[0].values == {"model": 0.5, "zero": 1.0} and results[1].values == {"model": 1.0, "zero": 2.0}
    lines = report.problems(results)
    assert len(lines) == 3 and lines[0].startswith(f"{runs[1].name}: unfinished (checkpoint 40 of 120)")
    assert "latest evaluation at step 40" in lines[0] and lines[2].startswith(f"{runs[3].name}: missing")
    (line,) = report.series(results, None, report.varying_keys(results))
    assert line["runs"] == [1] and line["model"]["mean"] == [0.5]  # only finished runs are averaged
    assert report.gather(tmp_path, k=1, predictors=["mo*"])[0].values == {"model": 0.5}
    with pytest.raises(UserError, match="k = 0..2"):
        report.gather(tmp_path, k=3)


def test_a_run_another_sweep_holds_is_left_alone(config_file, tmp_path):
    from icl_jax.sweeps import execute

    source, _ = grid.split_config_flag(str(config_file))
    (run,) = runs_lib.make_runs(source, [{"seed": 3}])
    (tmp_path / run.name).mkdir()
    held = execute._lock(tmp_path / run.name)  # as a second sweep process would hold it
    assert held is not None and execute._lock(tmp_path / run.name) is None
    lines = []
    outcome = execute.Sweep(source, [run], tmp_path, "s", parallel=1, echo=lines.append).run()
    assert outcome.busy == [run.name] and outcome.exit_status == 1 and not outcome.finished
    assert "another sweep is working on it" in lines[-1]
    assert not (tmp_path / run.name / "config.json").exists()  # nothing was started
    held.close()
    assert execute._lock(tmp_path / run.name) is not None


def test_a_grid_with_another_axis_keeps_the_runs_it_already_has(config_file, tmp_path):
    source, _ = grid.split_config_flag(str(config_file))
    first = runs_lib.make_runs(source, grid.product([("task.n_dims", [2, 3])]), workdir=tmp_path)
    (tmp_path / first[0].name).mkdir()
    (tmp_path / first[0].name / runs_lib.POINT_FILE).write_text("{}")
    wider = runs_lib.make_runs(source, grid.product([("task.n_dims", [2, 3]), ("seed", [0, 1])]), workdir=tmp_path)
    assert [r.name for r in wider][0] == first[0].name  # seed 0 is the default: the same config
    assert wider[1].name.startswith("n_dims=2+seed=1-") and wider[2].name.startswith("n_dims=3+seed=0-")
    assert runs_lib.make_runs(source, grid.product([("task.n_dims", [3, 2])]), workdir=tmp_path)[1].name == first[0].name


def test_run_names_have_no_commas(config_file):
    """analyze --workdir=A,B reads a list: a run directory's name must not hold a comma."""
    source, _ = grid.split_config_flag(str(config_file))
    runs = runs_lib.make_runs(source, grid.product([("task.n_dims", [2, 3]), ("seed", [0, 1]),
                                                    ("task.x_distribution", ["gaussian", "uniform"])]))
    assert all("," not in r.name and "/" not in r.name for r in runs)
    assert runs[1].name.startswith("n_dims=2+seed=0+x_distribution=uniform-")
