"""The real preemption path: SIGTERM to a training process, then the same command again."""

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


def _train(workdir, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "icl_jax.train", *ARGS, f"--workdir={workdir}"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def _final_params(workdir):
    config = files.load_run_config(workdir)
    spec = step_lib.state_spec(config, optimizer.make_optimizer(config.train), parallel.make_mesh())
    step, state = Checkpoints(workdir).restore(None, like=spec.abstract)
    return step, state["params"]


def test_sigterm_saves_and_the_resumed_run_is_bit_identical(tmp_path):
    straight = _train(tmp_path / "straight")
    interrupted = _train(tmp_path / "interrupted")
    metrics = tmp_path / "interrupted" / "metrics.jsonl"
    deadline = time.time() + 200
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 2):
        assert interrupted.poll() is None and time.time() < deadline, interrupted.communicate()
        time.sleep(0.05)
    interrupted.send_signal(signal.SIGTERM)
    out, err = interrupted.communicate(timeout=120)
    assert interrupted.returncode == 0, err
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
