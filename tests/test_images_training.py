"""Image tasks end to end: host-fed training that resumes exactly (the sampler state travels
in the checkpoint), evaluate on the held-out split and on unseen data sets, with the digits
and with tfds mock data."""

import os
import signal

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from icl_jax.checkpointing import Checkpoints
from icl_jax.data.sampler import IndexSampler
from icl_jax.errors import UserError
from icl_jax.evaluation import run
from icl_jax.training import loop, step as step_lib
from tests.conftest import small_config

pytestmark = pytest.mark.timeout(300)


def _config(**task):
    c = small_config(name="images", **{"dataset": "digits", "image_size": 4, "n_dims": 16, "n_points": 7, **task})
    c.train.steps, c.train.batch_size, c.train.schedule = 6, 8, "constant"
    c.train.checkpoint_every, c.train.log_every = 100, 3
    c.eval.batch_size = 8
    return c


def _leaves_equal(a, b) -> bool:
    return all(np.array_equal(np.asarray(u), np.asarray(v)) for u, v in
               zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


@pytest.mark.slow
def test_interrupted_run_resumes_bit_identically_and_evaluate_scores_it(tmp_path, monkeypatch):
    c = _config()
    straight = loop.train(c, tmp_path / "straight")

    real = step_lib.make_train_step

    def interrupting(*args):
        step = real(*args)

        def wrapped(state, examples):
            new_state, metrics = step(state, examples)
            if int(new_state["step"]) == 2:  # between checkpoints, with batches prefetched
                os.kill(os.getpid(), signal.SIGTERM)
            return new_state, metrics

        return wrapped

    monkeypatch.setattr(step_lib, "make_train_step", interrupting)
    assert int(loop.train(c, tmp_path / "resumed")["step"]) == 2
    checkpoints = Checkpoints(tmp_path / "resumed", with_data=True)
    expected = IndexSampler(1438, seed=c.seed)  # the digits train split
    expected.take(2 * 8 * 7)
    assert checkpoints.restore_data(2) == expected.state()  # not the prefetched batches' state
    checkpoints.close()
    monkeypatch.setattr(step_lib, "make_train_step", real)
    resumed = loop.train(c, tmp_path / "resumed")
    assert _leaves_equal(straight["params"], resumed["params"])
    assert _leaves_equal(straight["opt_state"], resumed["opt_state"])

    result = run.evaluate(tmp_path / "resumed", num_prompts=8, verbose=False)
    assert set(result["curves"]) == {"model", "logistic_regression", "nearest_neighbour", "majority"}
    assert set(result["accuracy"]) == set(result["curves"]) and len(result["accuracy"]["model"]["mean"]) == 7
    for name, curve in result["curves"].items():
        np.testing.assert_allclose(curve["mean"], 1 - np.asarray(result["accuracy"][name]["mean"]))
    assert set(result["cross_entropy"]) == {"model", "logistic_regression"}
    assert (tmp_path / "resumed" / "eval" / "step_6.png").exists()


@pytest.mark.slow
def test_mock_tfds_training_and_evaluation_on_an_unseen_data_set(tmp_path):
    c = _config(dataset="mnist", eval_datasets="cifar10", num_tasks=4)
    c.train.steps = 2
    with tfds.testing.mock_data(num_examples=20):
        loop.train(c, tmp_path)
        result = run.evaluate(tmp_path, num_prompts=4, verbose=False)
    assert result["dataset"] == "mnist" and list(result["unseen_datasets"]) == ["cifar10"]
    unseen = result["unseen_datasets"]["cifar10"]  # 32×32×3 images: another input width
    assert set(unseen["accuracy"]) == {"model", "logistic_regression", "nearest_neighbour", "majority"}
    assert set(result["pool_tasks"]["accuracy"]) == set(unseen["accuracy"])


def test_training_on_a_data_set_that_is_not_prepared_stops_with_the_command(tmp_path):
    c = _config(dataset="mnist")
    c.data.data_dir = str(tmp_path / "tfds")
    with pytest.raises(UserError, match="tfds build mnist --data_dir=.* --file_format=array_record"):
        loop.train(c, tmp_path / "run")
