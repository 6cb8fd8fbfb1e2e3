"""Every model kind through the usual path: train, evaluate, and a run stopped between
checkpoints resumes bit-identically (the 8-device restore of every kind is in
tests/multidevice_checks.py::every_kind_trained_on_eight_restores_on_one)."""

import os
import signal

import numpy as np
import pytest

from icl_jax import config as config_lib
from icl_jax.evaluation import run as evaluation
from icl_jax.training import loop, step as step_lib
from tests.conftest import small_config
from tests.test_training import _leaves_equal

pytestmark = pytest.mark.timeout(300)
KINDS = ("lstm", "gru", "mamba", "hybrid", "retnet")


def kind_config(kind: str, **task):
    """small_config with `kind` at a test width (16; heads 2 where it has heads)."""
    c = small_config(**task)
    c.model.kind, c.model.n_embd, c.model.n_layer = kind, 16, 2
    c.model.n_head = 2 if kind in ("hybrid", "retnet") else 0
    c.train.steps = 20
    return config_lib.validate(c)


def _stop_at(step_number: int, monkeypatch):
    """make_train_step whose step sends this process SIGTERM after step `step_number`."""
    real = step_lib.make_train_step

    def interrupting(*args):
        step = real(*args)

        def wrapped(state):
            new_state, metrics = step(state)
            if int(new_state["step"]) == step_number:
                os.kill(os.getpid(), signal.SIGTERM)
            return new_state, metrics

        return wrapped

    monkeypatch.setattr(step_lib, "make_train_step", interrupting)
    return real


@pytest.mark.parametrize("kind", KINDS)
def test_trains_evaluates_and_resumes_bit_identically(kind, tmp_path, monkeypatch):
    c = kind_config(kind)
    straight = loop.train(c, tmp_path / "straight")
    real = _stop_at(13, monkeypatch)
    assert int(loop.train(c, tmp_path / "resumed")["step"]) == 13
    monkeypatch.setattr(step_lib, "make_train_step", real)
    resumed = loop.train(c, tmp_path / "resumed")
    assert _leaves_equal(straight["params"], resumed["params"])
    assert _leaves_equal(straight["opt_state"], resumed["opt_state"])

    result = evaluation.evaluate(tmp_path / "straight", num_prompts=16, verbose=False, probe_prompts=16)
    model_curve = np.asarray(result["curves"]["model"]["mean"])
    assert model_curve.shape == (c.task.n_points,) and np.isfinite(model_curve).all()


def test_a_kind_with_label_classes_trains_on_a_boolean_class(tmp_path):
    """Logits read out per class, as the transformer's: a Boolean class trains and evaluates."""
    c = kind_config("mamba", name="conjunction")
    c.task.n_dims = 4
    loop.train(config_lib.validate(c), tmp_path)
    result = evaluation.evaluate(tmp_path, num_prompts=16, verbose=False, probe_prompts=16)
    assert np.isfinite(result["curves"]["model"]["mean"]).all()
