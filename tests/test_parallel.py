"""Data parallelism on 8 fake CPU devices, and the multi-host path as 2 local processes."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from icl_jax import files
from icl_jax.checkpointing import Checkpoints
from icl_jax.evaluation import run
from icl_jax.training import loop


pytestmark = pytest.mark.timeout(400)
ROOT = pathlib.Path(__file__).resolve().parents[1]
CHECKS = ["sharded_equals_single", "batch_is_sharded", "fsdp_equals_replicated",
          "checkpoints_move_between_topologies", "split_batch_stays_on_its_devices", "indivisible_batch_is_refused"]


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(extra)
    return env


@pytest.mark.parametrize("check", CHECKS)
def test_on_eight_cpu_devices(check, tmp_path):
    r = subprocess.run([sys.executable, "-m", "tests.multidevice_checks", check, str(tmp_path)], cwd=ROOT,
                       env=_env(XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu"),
                       capture_output=True, text=True, timeout=360)
    assert r.returncode == 0 and f"{check}: ok" in r.stdout, r.stderr[-4000:]




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
    r = subprocess.run(["bash", "launch/local.sh", "2", "python"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "Usage" in r.stderr or "launch/local.sh N" in r.stderr


@pytest.mark.slow
def test_sigterm_to_a_multiprocess_run_saves_one_agreed_step(tmp_path):
    """JAX's runtime catches SIGTERM in every process; they agree on a step, save it together
    and exit cleanly."""
    import signal
    import time

    workdir = tmp_path / "run"
    launcher = subprocess.Popen(
        ["bash", "launch/local.sh", "2", "--", sys.executable, "-m", "icl_jax.train", "--config=configs/linear.py",
         "--config.model.n_layer=1", "--config.train.steps=100000", "--config.train.log_every=20",
         f"--workdir={workdir}"], cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics, deadline = workdir / "metrics.jsonl", time.time() + 200
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 2):
        assert launcher.poll() is None and time.time() < deadline, launcher.communicate()
        time.sleep(0.1)
    launcher.send_signal(signal.SIGTERM)
    out, err = launcher.communicate(timeout=120)
    assert launcher.returncode == 0, err[-3000:]
    steps = Checkpoints(workdir).all_steps()
    assert len(steps) == 1 and 40 <= steps[0] < 100000
    assert f"[process 0] preemption notice (SIGTERM) received: saved step {steps[0]}" in err
