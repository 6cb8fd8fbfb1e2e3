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


def _golden_config(splits: int = 0):
    """Step 0 with a non-zero rate (constant, no warm-up) and a curriculum that trains on the
    first 4 of 7 positions with 2 of 3 dimensions."""
    c = small_config()
    c.train.schedule, c.train.warmup_steps, c.train.learning_rate, c.train.batch_splits = "constant", 0, 1e-3, splits
    c.curriculum.interval, c.curriculum.points_start, c.curriculum.dims_start = 10, 4, 2
    return c


def _adam_moments(opt_state):
    """(count, mu, nu) of the one Adam state in an optax state."""
    (adam,) = [s for s in jax.tree.leaves(opt_state, is_leaf=lambda s: hasattr(s, "mu")) if hasattr(s, "mu")]
    return int(adam.count), adam.mu, adam.nu


def _f64(tree) -> list[np.ndarray]:
    return [np.asarray(a, np.float64) for a in jax.tree.leaves(tree)]


def test_train_step_is_one_adam_step_on_the_masked_mse_of_the_step_batch():
    """Golden test, everything written out here: the step's loss is the MSE over the first 4
    positions of derive(seed, TRAIN_DATA, 0)'s prompts (2 active dimensions); its gradient
    (Adam's first moment after one step is (1 − β1)·g) is that loss's, itself checked by a
    central difference; the parameters move by Adam's first step, −lr·m̂/(√v̂ + ε)."""
    from flax import nnx
    from icl_jax import rng

    c = _golden_config()
    task, tx, mesh = tasks.get_task(c.task), optimizer.make_optimizer(c.train), parallel.make_mesh()
    spec = step_lib.state_spec(c, tx, mesh)
    graphdef, state = spec.graphdef, spec.init()
    params0 = jax.tree.map(np.array, state["params"])
    prompts = task.sample(rng.derive(c.seed, rng.TRAIN_DATA, 0), c.train.batch_size, 2)
    x, y = np.asarray(prompts.x_BxKxD), np.asarray(prompts.y_BxK)
    assert np.all(x[..., 2] == 0) and np.all(x[..., :2] != 0)

    predict = jax.jit(lambda p: nnx.merge(graphdef, p)(x, y))
    grad = jax.jit(jax.grad(lambda p: jnp.mean((predict(p)[:, :4] - y[:, :4]) ** 2)))
    loss64 = lambda p: np.mean((np.asarray(predict(p), np.float64)[:, :4] - y[:, :4]) ** 2)
    g = _f64(grad(params0))
    # the reference gradient against the loss itself: the derivative along g/|g| is |g|
    norm, eps = np.sqrt(sum(np.sum(a**2) for a in g)), 1e-2
    shifted = lambda sign: jax.tree.unflatten(jax.tree.structure(params0), [
        (p + sign * eps * a / norm).astype(np.float32) for p, a in zip(_f64(params0), g)])
    assert (loss64(shifted(1)) - loss64(shifted(-1))) / (2 * eps) == pytest.approx(norm, rel=1e-2)

    new_state, metrics = step_lib.make_train_step(c, spec, task, tx, mesh)(state)
    assert float(metrics["loss"]) == pytest.approx(loss64(params0), rel=1e-5)
    count, mu, nu = _adam_moments(new_state["opt_state"])
    assert count == 1 and int(new_state["step"]) == 1 and int(new_state["nonfinite_step"]) == -1
    scale = max(np.abs(a).max() for a in g)
    for m, v, a in zip(_f64(mu), _f64(nu), g, strict=True):
        np.testing.assert_allclose(m / 0.1, a, rtol=1e-4, atol=1e-6 * scale)
        np.testing.assert_allclose(v / 0.001, a**2, rtol=1e-3, atol=1e-6 * scale**2)
    for p1, p0, m, v in zip(_f64(new_state["params"]), _f64(params0), _f64(mu), _f64(nu), strict=True):
        m_hat, v_hat = m / (1 - 0.9), v / (1 - 0.999)
        np.testing.assert_allclose(p1 - p0, -1e-3 * m_hat / (np.sqrt(v_hat) + 1e-8), rtol=0, atol=2e-7)
    # Adam's first step moves every parameter with a clear gradient by ≈ lr
    moved = np.concatenate([np.abs(p1 - p0)[np.abs(a) > 1e-4 * scale].ravel()
                            for p1, p0, a in zip(_f64(new_state["params"]), _f64(params0), g)])
    np.testing.assert_allclose(moved, 1e-3, rtol=1e-3)


def test_batch_splits_average_to_the_whole_batch_step():
    """Parts differentiated independently give the batch's loss, gradient (Adam's first
    moment: Adam's first step alone is ≈ lr·sign(g), blind to the gradient's scale) and
    update, at a non-zero rate."""
    results = []
    for splits in (1, 4):
        c = _golden_config(splits)
        task, tx, mesh = tasks.get_task(c.task), optimizer.make_optimizer(c.train), parallel.make_mesh()
        spec = step_lib.state_spec(c, tx, mesh)
        results.append(step_lib.make_train_step(c, spec, task, tx, mesh)(spec.init()))
    (whole, whole_metrics), (split, split_metrics) = results
    np.testing.assert_allclose(split_metrics["loss"], whole_metrics["loss"], rtol=1e-6)
    (_, whole_mu, _), (_, split_mu, _) = _adam_moments(whole["opt_state"]), _adam_moments(split["opt_state"])
    scale = max(float(np.abs(a).max()) for a in jax.tree.leaves(whole_mu))
    for u, v in zip(jax.tree.leaves(split_mu), jax.tree.leaves(whole_mu), strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-6 * scale)
    # where the gradient is clear of rounding (not e.g. the attention's key biases, whose
    # gradient is 0 up to rounding that Adam scales up to ±lr)
    for u, v, m in zip(jax.tree.leaves(split["params"]), jax.tree.leaves(whole["params"]), jax.tree.leaves(whole_mu),
                       strict=True):
        clear = np.abs(np.asarray(m)) > 1e-4 * scale
        np.testing.assert_allclose(np.asarray(u)[clear], np.asarray(v)[clear], rtol=0, atol=2e-7)
    assert max(float(np.abs(np.asarray(u) - np.asarray(v)).max()) for u, v in
               zip(jax.tree.leaves(whole["params"]), jax.tree.leaves(spec.init()["params"]))) > 0.9e-3


def test_the_step_takes_how_its_prompts_are_made():
    """One builder for both sources: a step handed the sampled path's own step-0 prompts as a
    host input (PromptSource) makes the same update as the step that samples them."""
    c = _golden_config()
    task, tx, mesh = tasks.get_task(c.task), optimizer.make_optimizer(c.train), parallel.make_mesh()
    spec = step_lib.state_spec(c, tx, mesh)
    prompts = jax.jit(lambda: step_lib.sample_batch(c, task, 0, parallel.batch_sharding(mesh)))()
    given = step_lib.PromptSource(lambda key, step, prompts: prompts, n_inputs=1)
    sampled_state, sampled_metrics = step_lib.make_train_step(c, spec, task, tx, mesh)(spec.init())
    given_state, given_metrics = step_lib.make_train_step(c, spec, task, tx, mesh, given)(spec.init(), prompts)
    assert float(given_metrics["loss"]) == pytest.approx(float(sampled_metrics["loss"]), rel=1e-6)
    for u, v in zip(jax.tree.leaves(given_state), jax.tree.leaves(sampled_state), strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-6, atol=1e-9)


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
