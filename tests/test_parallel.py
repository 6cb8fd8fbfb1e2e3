"""Data parallelism on 8 fake CPU devices, and the multi-host path as 2 local processes."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from icl_jax import files
from icl_jax.checkpointing import Checkpoints
from icl_jax.evaluation import run
from icl_jax.training import loop


pytestmark = pytest.mark.timeout(400)
ROOT = pathlib.Path(__file__).resolve().parents[1]


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(extra)
    return env


@pytest.mark.timeout(900)
def test_on_eight_cpu_devices(tmp_path):
    """Every check of tests/multidevice_checks.py, in one process with 8 CPU devices (one JAX
    start and shared compilations instead of one process per check); the failure names each
    check that failed, with its traceback. One check alone:
    XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m tests.multidevice_checks DIR NAME"""
    r = subprocess.run([sys.executable, "-m", "tests.multidevice_checks", str(tmp_path)], cwd=ROOT,
                       env=_env(XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu"),
                       capture_output=True, text=True, timeout=840)
    results_file = tmp_path / "results.json"
    assert results_file.exists(), f"exit {r.returncode} before any check ended:\n{r.stderr[-4000:]}"
    results = json.loads(results_file.read_text())
    skipped = {name: outcome for name, outcome in results.items() if outcome.startswith("skipped: ")}
    failed = {name: outcome for name, outcome in results.items() if outcome != "ok" and name not in skipped}
    assert results and not failed, (
        f"{len(failed)} of {len(results)} checks failed: {', '.join(failed)}\n" +
        "\n".join(f"--- {name}:\n{outcome[-3000:]}" for name, outcome in failed.items()) +
        f"\n--- stdout:\n{r.stdout[-2000:]}\n--- stderr:\n{r.stderr[-3000:]}")
    assert r.returncode == 0, r.stderr[-4000:]
    if skipped:  # no compiler here, and ICL_JAX_REQUIRE_CPU_KERNEL unset (conftest.require_kernel's policy)
        pytest.skip(f"every check passed, but the C++ kernel parts of {', '.join(skipped)} did not run: " +
                    "; ".join(outcome.removeprefix("skipped: ") for outcome in skipped.values()))




@pytest.mark.slow
def test_two_processes_then_resume_and_evaluate_in_one(tmp_path):
    """launch/local.sh: 2 processes × 2 devices train 20 steps and save; this single process
    resumes to 40 and evaluates; both match a run that never left this process."""
    args = ["--config=configs/linear.py", "--config.task.n_dims=3", "--config.task.n_points=7",
            "--config.model.n_positions=7", "--config.model.n_layer=2", "--config.model.n_embd=32",
            "--config.train.batch_size=16", "--config.train.log_every=10", "--config.train.checkpoint_every=10",
            "--config.train.warmup_steps=5", "--config.train.schedule=constant", "--config.train.steps=20"]
    workdir = tmp_path / "multi"
    r = subprocess.run(["bash", "launch/local.sh", "2", "--devices_per_process=2", "--", sys.executable, "-m",
                        "icl_jax.train", *args, f"--workdir={workdir}"], cwd=ROOT, env=_env(),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]
    assert "on 4 device(s) × 2 process(es)" in r.stderr
    assert Checkpoints(workdir).all_steps() == [10, 20]
    assert len((workdir / "metrics.jsonl").read_text().splitlines()) == 2  # process 0 alone writes

    config = files.load_run_config(workdir)
    config.train.steps = 40
    resumed = loop.train(config, workdir)
    straight = loop.train(config, tmp_path / "single")
    for a, b in zip(jax.tree.leaves(resumed["params"]), jax.tree.leaves(straight["params"]), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=5e-5)
    multi_eval = run.evaluate(workdir, verbose=False)
    single_eval = run.evaluate(tmp_path / "single", verbose=False)
    np.testing.assert_allclose(multi_eval["curves"]["model"]["mean"], single_eval["curves"]["model"]["mean"],
                               rtol=1e-4)
    assert json.loads((workdir / "eval" / "step_40.json").read_text())["step"] == 40


def test_cluster_launchers_parse_and_explain_their_usage():
    for script in ("launch/tpu_pod.sh", "launch/slurm.sbatch", "launch/local.sh"):
        assert subprocess.run(["bash", "-n", script], cwd=ROOT).returncode == 0
    r = subprocess.run(["bash", "launch/tpu_pod.sh", "only-a-name"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "launch/tpu_pod.sh NAME ZONE ACCELERATOR BUCKET" in r.stderr
    r = subprocess.run(["bash", "launch/tpu_pod.sh", "n", "z", "v4-8", "not-a-bucket", "--", "--config=x"],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "BUCKET must look like gs://" in r.stderr


def test_local_launcher_rejects_bad_usage():
    r = subprocess.run(["bash", "launch/local.sh", "zero", "--", "true"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "N must be a positive integer" in r.stderr
    for args in (["2", "python"], ["2", "python", "-c", "pass"]):  # too few arguments; no "--"
        r = subprocess.run(["bash", "launch/local.sh", *args], cwd=ROOT, capture_output=True, text=True)
        assert r.returncode == 2, (args, r.returncode, r.stderr)
        assert "launch/local.sh N [--devices_per_process=D] -- python -m icl_jax.train" in r.stderr, (args, r.stderr)


def _launch(num_processes, workdir, *args):
    """launch/local.sh in its own session, so that a test can end the launcher and every process."""
    return subprocess.Popen(
        ["bash", "launch/local.sh", str(num_processes), "--", sys.executable, "-m", "icl_jax.train",
         "--config=configs/linear.py", "--config.model.n_layer=1", "--config.train.schedule=constant",
         "--config.train.log_every=20", *args, f"--workdir={workdir}"],
        cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _end_session(launcher):
    try:
        os.killpg(launcher.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    launcher.communicate()


def _wait_for(launcher, done, what):
    deadline = time.time() + 200
    while not done():
        if launcher.poll() is not None or time.time() > deadline:
            _end_session(launcher)
            pytest.fail(f"the run ended or never got to {what}")
        time.sleep(0.1)


def _metric_lines(workdir):
    metrics = workdir / "metrics.jsonl"
    return len(metrics.read_text().splitlines()) if metrics.exists() else 0


@pytest.mark.slow
def test_sigterm_to_a_multiprocess_run_saves_one_agreed_step_and_a_rerun_resumes(tmp_path):
    """JAX's runtime catches SIGTERM in every process; they agree on a step, save it together
    and exit 143 (stopped before train.steps); the same command on 2 processes resumes there."""
    workdir = tmp_path / "run"
    launcher = _launch(2, workdir, "--config.train.steps=100000", "--config.train.checkpoint_every=100000")
    try:
        _wait_for(launcher, lambda: _metric_lines(workdir) >= 2, "its second log line")
        launcher.send_signal(signal.SIGTERM)
        out, err = launcher.communicate(timeout=120)
    finally:
        _end_session(launcher)
    assert launcher.returncode == 128 + signal.SIGTERM, err[-3000:]
    steps = Checkpoints(workdir).all_steps()
    assert len(steps) == 1 and 40 <= steps[0] < 100000
    assert f"[process 0] preemption notice (SIGTERM) received: saved step {steps[0]}" in err

    launcher = _launch(2, workdir, f"--config.train.steps={steps[0] + 20}", "--config.train.checkpoint_every=100000")
    try:
        out, err = launcher.communicate(timeout=300)
    finally:
        _end_session(launcher)
    assert launcher.returncode == 0, err[-3000:]
    assert f"[process 0] resuming from checkpoint at step {steps[0]}" in err
    assert Checkpoints(workdir).all_steps() == [steps[0], steps[0] + 20]


def _process_pid(workdir, process_id):
    """The pid of the training process launch/local.sh started as process `process_id`."""
    for proc in pathlib.Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if b"icl_jax.train" in cmdline and f"--workdir={workdir}".encode() in cmdline \
                and f"ICL_JAX_PROCESS_ID={process_id}".encode() in environ:
            return int(proc.name)
    raise AssertionError(f"no process {process_id} of the run in {workdir}")


@pytest.mark.slow
def test_a_lost_peer_process_stops_the_survivor_at_once_in_one_line(tmp_path):
    """kill -9 of process 1 mid-run: process 0 sees its next collective fail, says in one line
    that a peer was lost and from which step a rerun continues, and exits 75 within seconds
    (before: 70-90 s, then an abort with status 134 and pages of traceback)."""
    workdir = tmp_path / "run"
    launcher = _launch(2, workdir, "--config.train.steps=100000", "--config.train.checkpoint_every=40")
    try:
        _wait_for(launcher, lambda: _metric_lines(workdir) >= 3 and any(
            p.name.isdigit() for p in (workdir / "checkpoints").glob("*")), "a checkpoint")
        killed_at = time.time()
        os.kill(_process_pid(workdir, 1), signal.SIGKILL)
        try:
            out, err = launcher.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail("the surviving process was still running 30 s after its peer was killed")
        seconds = time.time() - killed_at
    finally:
        _end_session(launcher)
    assert launcher.returncode == 75, (launcher.returncode, err[-3000:])  # process 0's status comes first
    resume_step = Checkpoints(workdir).latest_step()
    survivor = [line for line in err.splitlines() if line.startswith("[process 0]")]
    assert survivor[-1] == (f"[process 0] error: a peer process of this 2-process run was lost, so process 0 "
                            f"stops too; rerun the same command to continue from step {resume_step}"), err[-3000:]
    assert "Traceback" not in err and "Error dispatching" not in err, err[-3000:]
    assert seconds < 30
