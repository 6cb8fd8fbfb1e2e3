"""The real preemption path: SIGTERM or SIGINT (Ctrl-C) to a training process, then the same
command again. A stopped run exits 128 + the signal (143, 130), never 0: `train && evaluate`
must not go on to evaluate a half-trained run, and a scheduler must see it was preempted."""

import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from icl_jax import files, parallel
from icl_jax.checkpointing import Checkpoints
from icl_jax.training import optimizer, step as step_lib

pytestmark = [pytest.mark.timeout(400), pytest.mark.slow]
ROOT = pathlib.Path(__file__).resolve().parents[1]
ARGS = ["--config=configs/linear.py", "--config.task.n_dims=3", "--config.task.n_points=7",
        "--config.model.n_positions=7", "--config.model.n_layer=2", "--config.model.n_embd=32",
        "--config.train.batch_size=16", "--config.train.steps=400", "--config.train.log_every=20",
        "--config.train.checkpoint_every=1000"]


def _train(workdir, *extra, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "icl_jax.train", *ARGS, *extra, f"--workdir={workdir}"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def _wait_for_metrics(process, metrics, lines=2):
    deadline = time.time() + 200
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= lines):
        if process.poll() is not None or time.time() > deadline:
            process.kill()
            pytest.fail(f"the run ended or never logged: {process.communicate()[1][-3000:]}")
        time.sleep(0.05)


def _final_params(workdir):
    config = files.load_run_config(workdir)
    spec = step_lib.state_spec(config, optimizer.make_optimizer(config.train), parallel.make_mesh())
    step, state = Checkpoints(workdir).restore(None, like=spec.abstract)
    return step, state["params"]


def test_sigterm_saves_and_the_resumed_run_is_bit_identical(tmp_path):
    straight = _train(tmp_path / "straight")
    interrupted = _train(tmp_path / "interrupted")
    _wait_for_metrics(interrupted, tmp_path / "interrupted" / "metrics.jsonl")
    interrupted.send_signal(signal.SIGTERM)
    out, err = interrupted.communicate(timeout=120)
    assert interrupted.returncode == 128 + signal.SIGTERM, err  # 143: stopped early, not finished
    assert "SIGTERM received: saved step" in err
    stopped_at = Checkpoints(tmp_path / "interrupted").all_steps()
    assert len(stopped_at) == 1 and 40 <= stopped_at[0] < 400, stopped_at

    resumed = _train(tmp_path / "interrupted")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert f"resuming from checkpoint at step {stopped_at[0]}" in err
    straight.communicate(timeout=300)
    assert straight.returncode == 0

    step_a, params_a = _final_params(tmp_path / "straight")
    step_b, params_b = _final_params(tmp_path / "interrupted")
    assert step_a == step_b == 400
    for a, b in zip(jax.tree.leaves(params_a), jax.tree.leaves(params_b), strict=True):
        np.testing.assert_array_equal(a, b)


def test_sigint_saves_exits_130_and_the_rerun_finishes(tmp_path):
    """Ctrl-C: the run saves the step it reached and exits 130, so `train && evaluate` stops
    there; the same command resumes from that step and exits 0 at train.steps."""
    constant = "--config.train.schedule=constant"  # then train.steps may change on resume
    run = _train(tmp_path, constant, "--config.train.steps=100000")
    try:
        _wait_for_metrics(run, tmp_path / "metrics.jsonl")
        run.send_signal(signal.SIGINT)
        out, err = run.communicate(timeout=120)
    finally:
        run.kill()
    assert run.returncode == 128 + signal.SIGINT, err[-3000:]
    assert "SIGINT received: saved step" in err and "Traceback" not in err, err[-3000:]
    stopped_at = Checkpoints(tmp_path).all_steps()
    assert len(stopped_at) == 1 and 40 <= stopped_at[0] < 100000, stopped_at

    resumed = _train(tmp_path, constant, f"--config.train.steps={stopped_at[0] + 20}")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-3000:]
    assert f"resuming from checkpoint at step {stopped_at[0]}" in err
    assert Checkpoints(tmp_path).all_steps()[-1] == stopped_at[0] + 20
