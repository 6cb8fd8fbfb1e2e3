import json
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from icl_jax import config as config_lib, parallel, tasks
from icl_jax.checkpointing import Checkpoints
from icl_jax.errors import NonFiniteLoss, UserError
from icl_jax.training import loop, optimizer, step as step_lib
from tests.conftest import small_config

pytestmark = pytest.mark.timeout(300)


def _leaves_equal(a, b) -> bool:
    return all(np.array_equal(np.asarray(u), np.asarray(v)) for u, v in
               zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def test_train_step_is_one_adam_step_on_the_masked_mse_of_the_step_batch():
    """Golden test: the jitted step equals an independent recomputation of one update."""
    c = small_config()
    task, tx, mesh = tasks.get_task(c.task), optimizer.make_optimizer(c.train), parallel.make_mesh()
    spec = step_lib.state_spec(c, tx, mesh)
    graphdef, state = spec.graphdef, spec.init()
    params0 = jax.tree.map(np.array, state["params"])
    from flax import nnx
    from icl_jax import rng

    prompts = task.sample(rng.derive(c.seed, rng.TRAIN_DATA, 0), c.train.batch_size)

    def loss(p):
        yhat = nnx.merge(graphdef, p)(prompts.x_BxKxD, prompts.y_BxK)
        return jnp.mean((yhat - prompts.y_BxK) ** 2)

    expected_loss, grads = jax.value_and_grad(loss)(params0)
    updates, _ = tx.update(grads, tx.init(params0), params0)
    expected = optax.apply_updates(params0, updates)
    new_state, metrics = step_lib.make_train_step(c, spec, task, tx, mesh)(state)
    np.testing.assert_allclose(metrics["loss"], expected_loss, rtol=1e-5)
    for u, v in zip(jax.tree.leaves(new_state["params"]), jax.tree.leaves(expected)):
        np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-7)
    assert int(new_state["step"]) == 1 and int(new_state["nonfinite_step"]) == -1


def test_batch_splits_average_to_the_whole_batch_step():
    """Parts differentiated independently give the batch's loss and Adam update."""
    results = []
    for splits in (1, 4):
        c = small_config()
        c.train.batch_splits = splits
        task, tx, mesh = tasks.get_task(c.task), optimizer.make_optimizer(c.train), parallel.make_mesh()
        spec = step_lib.state_spec(c, tx, mesh)
        results.append(step_lib.make_train_step(c, spec, task, tx, mesh)(spec.init()))
    (whole, whole_metrics), (split, split_metrics) = results
    np.testing.assert_allclose(split_metrics["loss"], whole_metrics["loss"], rtol=1e-6)
    for u, v in zip(jax.tree.leaves(split["params"]), jax.tree.leaves(whole["params"]), strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-7)


def test_batch_splits_auto_and_refused_values():
    c = small_config()  # 16 prompts
    assert step_lib.batch_splits(c) == (2 if jax.default_backend() == "cpu" else 1)
    c.train.batch_size = 6
    assert step_lib.batch_splits(c, n_shards=2) == 1  # 3 prompts per device: no halves
    c.train.batch_splits = 2
    with pytest.raises(UserError, match=r"train.batch_splits=2 does not divide the 3 prompts of each device's batch"):
        step_lib.batch_splits(c, n_shards=2)
    c.train.batch_splits = -1
    with pytest.raises(UserError, match="train.batch_splits must be >= 0"):
        config_lib.validate(c)


def test_a_split_that_does_not_divide_is_refused_before_anything_is_written(tmp_path):
    c = small_config()  # 16 prompts
    c.train.batch_splits = 3
    with pytest.raises(UserError, match="train.batch_splits=3 does not divide the 16 prompts"):
        loop.train(c, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_few_steps_lower_the_loss_on_held_out_prompts(tmp_path):
    c = small_config()
    c.train.steps, c.train.learning_rate, c.train.schedule = 150, 3e-3, "constant"
    task, tx = tasks.get_task(c.task), optimizer.make_optimizer(c.train)
    spec = step_lib.state_spec(c, tx, parallel.make_mesh())
    graphdef, init = spec.graphdef, spec.init
    held_out = task.sample(jax.random.key(123), 512)
    from flax import nnx

    def held_out_loss(params):
        yhat = nnx.merge(graphdef, params)(held_out.x_BxKxD, held_out.y_BxK)
        return float(jnp.mean((yhat - held_out.y_BxK) ** 2))

    before = held_out_loss(init()["params"])
    after = held_out_loss(loop.train(c, tmp_path)["params"])
    assert after < 0.9 * before, (before, after)


def test_interrupted_and_resumed_equals_uninterrupted(tmp_path, monkeypatch):
    c = small_config()
    straight = loop.train(c, tmp_path / "straight")

    real = step_lib.make_train_step

    def interrupting(*args):
        step = real(*args)

        def wrapped(state):
            new_state, metrics = step(state)
            if int(new_state["step"]) == 13:  # a preemption between checkpoints
                os.kill(os.getpid(), signal.SIGTERM)
            return new_state, metrics

        return wrapped

    monkeypatch.setattr(step_lib, "make_train_step", interrupting)
    stopped = loop.train(c, tmp_path / "resumed")
    assert int(stopped["step"]) == 13
    assert 13 in Checkpoints(tmp_path / "resumed").all_steps()
    monkeypatch.setattr(step_lib, "make_train_step", real)
    resumed = loop.train(c, tmp_path / "resumed")
    assert int(resumed["step"]) == c.train.steps
    assert _leaves_equal(straight["params"], resumed["params"])
    assert _leaves_equal(straight["opt_state"], resumed["opt_state"])
    steps = [json.loads(line)["step"] for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [10, 20, 30, 40]


def test_run_directory_contents(tmp_path):
    c = small_config()
    loop.train(c, tmp_path)
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == list(range(10, c.train.steps + 1, 10))
    assert all(np.isfinite(r["loss"]) and r["steps_per_sec"] > 0 for r in lines)
    assert json.loads((tmp_path / "config.json").read_text()) == c.to_dict()
    assert "jax" in json.loads((tmp_path / "versions.json").read_text())
    assert list(tmp_path.glob("events.out.tfevents.*"))
    # keep_last=3 newest plus multiples of keep_every
    assert Checkpoints(tmp_path).all_steps() == [20, 40]


def test_more_steps_resume_only_when_the_schedule_does_not_depend_on_them(tmp_path):
    c = small_config()  # cosine decay over train.steps
    loop.train(c, tmp_path / "cosine")
    c.train.steps = 50
    with pytest.raises(UserError, match="train.steps: 40 -> 50"):
        loop.train(c, tmp_path / "cosine")
    c = small_config()
    c.train.schedule = "constant"
    loop.train(c, tmp_path / "constant")
    c.train.steps = 50
    assert int(loop.train(c, tmp_path / "constant")["step"]) == 50


def test_retention_keeps_the_last_few_and_every_mth(tmp_path):
    c = small_config()
    c.train.steps, c.train.checkpoint_every, c.train.keep_last, c.train.keep_every = 60, 5, 2, 25
    c.train.log_every = 60
    loop.train(c, tmp_path)
    assert Checkpoints(tmp_path).all_steps() == [25, 50, 55, 60]


def test_a_different_config_in_the_same_workdir_is_refused(tmp_path):
    c = small_config()
    loop.train(c, tmp_path)
    before = (tmp_path / "config.json").read_text()
    c.model.n_embd = 64
    with pytest.raises(UserError, match="model.n_embd: 32 -> 64"):
        loop.train(c, tmp_path)
    assert (tmp_path / "config.json").read_text() == before
    c.model.n_embd, c.train.batch_splits = 32, 4  # how, not what, it trains: accepted
    assert int(loop.train(c, tmp_path)["step"]) == c.train.steps
    assert json.loads((tmp_path / "config.json").read_text())["train"]["batch_splits"] == 4


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    c = small_config()
    c.train.steps = 60
    exploding = lambda train: optax.adam(optax.piecewise_constant_schedule(1e-3, {25: 1e35}))
    monkeypatch.setattr(optimizer, "make_optimizer", exploding)
    with pytest.raises(NonFiniteLoss, match=r"non-finite at step 2[5-9].*last good checkpoint is step 20"):
        loop.train(c, tmp_path)
    checkpoints = Checkpoints(tmp_path)
    assert checkpoints.all_steps() == [20]
    spec = step_lib.state_spec(c, exploding(c.train), parallel.make_mesh())
    _, state = checkpoints.restore(None, like=spec.abstract)
    assert all(np.all(np.isfinite(np.asarray(p))) for p in jax.tree.leaves(state["params"]))
