"""The linear self-attention model, its gradient-descent construction, and the switches that
train it (model.kind, train.loss_positions, task.x_distribution)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from icl_jax import config as config_lib
from icl_jax import models, parallel, rng, run_model, tasks
from icl_jax.errors import UserError
from icl_jax.models import linear_attention
from icl_jax.training import loop, optimizer, step as step_lib
from tests.conftest import small_config

pytestmark = pytest.mark.timeout(240)


def _prompts(seed, B=8, K=9, D=4):
    g = np.random.default_rng(seed)
    x = g.uniform(-0.5, 0.5, (B, K, D)).astype(np.float32)
    w = g.standard_normal((B, D)).astype(np.float32)
    return x, np.einsum("bkd,bd->bk", x, w).astype(np.float32)


def _gd_model(n_dims, n_layer, n_head, eta):
    graphdef, state = nnx.split(linear_attention.LinearAttentionModel(n_dims, n_layer, n_head, rngs=nnx.Rngs(0)))
    nnx.replace_by_pure_dict(state, linear_attention.gradient_descent_params(n_dims, n_layer, n_head, eta))
    return nnx.merge(graphdef, state)


def _explicit_gd(x, y, eta, n_steps):
    """float64, per prompt and k: w ← w − η (1/k) Σ_{i<k} (x_i·w − y_i) x_i from 0; ŷ_k = x_k·w."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    out = np.zeros(y.shape)
    for b in range(x.shape[0]):
        for k in range(1, x.shape[1]):
            w = np.zeros(x.shape[-1])
            for _ in range(n_steps):
                w = w - eta * (x[b, :k].T @ (x[b, :k] @ w - y[b, :k])) / k
            out[b, k] = x[b, k] @ w
    return out


@pytest.mark.parametrize("n_layer,n_head", [(1, 1), (1, 2), (3, 1)])
def test_the_construction_is_gradient_descent_to_float32_precision(n_layer, n_head):
    x, y = _prompts(0)
    eta = 1.7
    got = np.asarray(_gd_model(4, n_layer, n_head, eta)(x, y), np.float64)
    want = _explicit_gd(x, y, eta, n_layer)
    assert np.abs(want).max() > 0.1  # a real signal, not zeros on both sides
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6 * np.abs(want).max())


def test_prediction_k_sees_only_earlier_examples_and_its_query():
    model = linear_attention.LinearAttentionModel(4, 2, 2, rngs=nnx.Rngs(3))
    x, y = (jnp.asarray(a) for a in _prompts(1, B=1))
    k = 4
    gx, gy = jax.grad(lambda x, y: model(x, y)[0, k], argnums=(0, 1))(x, y)
    assert np.all(np.asarray(gx[0, k + 1:]) == 0) and np.all(np.asarray(gy[0, k:]) == 0)
    assert np.abs(np.asarray(gy[0, :k])).sum() > 0 and np.abs(np.asarray(gx[0, k])).sum() > 0


def test_model_kind_selects_the_model_and_bad_combinations_are_rejected():
    c = small_config()
    assert type(nnx.eval_shape(lambda: models.build(c.model, c.task.n_dims, tasks.label_classes(c.task)))).__name__ == "Transformer"
    c.model.kind = "linear_attention"
    with pytest.raises(UserError, match="model.n_embd=32 does not apply to model.kind='linear_attention'"):
        config_lib.validate(c)  # it has no width: a width set for it would be ignored
    c.model.n_embd = 0
    config_lib.validate(c)
    assert isinstance(nnx.eval_shape(lambda: models.build(c.model, c.task.n_dims, tasks.label_classes(c.task))), linear_attention.LinearAttentionModel)
    c.model.kind = "rnn"
    with pytest.raises(UserError, match="model.kind"):
        config_lib.validate(c)
    c = small_config()
    c.train.loss_positions = "first"
    with pytest.raises(UserError, match="train.loss_positions"):
        config_lib.validate(c)
    c = small_config(x_distribution="laplace")
    with pytest.raises(UserError, match="task.x_distribution"):
        config_lib.validate(c)


def test_uniform_inputs_and_their_normalizer():
    c = small_config(n_dims=6, x_distribution="uniform")
    task = tasks.get_task(c.task)
    p = task.sample(jax.random.key(0), 4000)
    x = np.asarray(p.x_BxKxD)
    assert x.min() >= -0.5 and x.max() <= 0.5
    assert np.var(x) == pytest.approx(1 / 12, rel=0.02)
    assert task.normalizer == pytest.approx(6 / 12)
    assert np.mean(np.asarray(p.y_BxK) ** 2) == pytest.approx(task.normalizer, rel=0.05)


def test_loss_positions_last_scores_only_the_last_active_position():
    c = small_config()
    c.model.kind, c.train.loss_positions = "linear_attention", "last"
    task, tx = tasks.get_task(c.task), optimizer.make_optimizer(c.train)
    spec = step_lib.state_spec(c, tx, parallel.make_mesh())
    state = spec.init()
    params = jax.tree.map(np.array, state["params"])
    prompts = task.sample(rng.derive(c.seed, rng.TRAIN_DATA, 0), c.train.batch_size)
    yhat = np.asarray(nnx.merge(spec.graphdef, params)(prompts.x_BxKxD, prompts.y_BxK), np.float64)
    err = (yhat - np.asarray(prompts.y_BxK, np.float64)) ** 2
    mask = (np.arange(c.task.n_points) < 5).astype(np.float32)  # a curriculum at 5 active points
    _, metrics = jax.jit(step_lib.make_update(c, spec, tx))(state, prompts, jnp.asarray(mask))
    assert float(metrics["loss"]) == pytest.approx(err[:, 4].mean(), rel=1e-5)


def test_a_linear_attention_run_trains_and_restores_through_the_usual_paths(tmp_path):
    """loop.train and evaluate's restore_params take the model from config.model.kind."""
    c = small_config(x_distribution="uniform")
    c.model.kind, c.model.n_layer, c.model.n_head, c.model.n_embd = "linear_attention", 2, 1, 0
    c.train.loss_positions, c.train.steps = "last", 20
    state = loop.train(c, tmp_path)
    step, graphdef, params = run_model.restore_params(c, tmp_path, None)
    assert step == 20
    x, y = _prompts(2, K=c.task.n_points, D=c.task.n_dims)
    restored = np.asarray(nnx.merge(graphdef, params)(x, y))
    trained = np.asarray(nnx.merge(graphdef, jax.tree.map(np.asarray, state["params"]))(x, y))
    np.testing.assert_array_equal(restored, trained)
    assert not np.allclose(params["layers"][0]["value"], nnx.to_pure_dict(nnx.state(
        models.build(c.model, c.task.n_dims, tasks.label_classes(c.task), rng.derive(c.seed, rng.PARAMS))))["layers"][0]["value"])  # it did train
