"""Accelerator switches of the model agree with the plain float32 path."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from icl_jax import models, tasks
from icl_jax.errors import UserError
from icl_jax.models import transformer
from icl_jax.training import loop
from tests.conftest import small_config

pytestmark = pytest.mark.timeout(300)


def _model_and_batch(**model):
    c = small_config()
    c.model.n_layer = 3
    c.model.update(model)
    graphdef, params = nnx.split(transformer.build(c.model, c.task.n_dims, tasks.label_classes(c.task), jax.random.key(0)), nnx.Param)
    x = jax.random.normal(jax.random.key(1), (8, c.task.n_points, c.task.n_dims))
    y = jax.random.normal(jax.random.key(2), (8, c.task.n_points))
    return graphdef, nnx.to_pure_dict(params), x, y


def _loss_and_grads(graphdef, params, x, y):
    def loss(p):
        return jnp.mean((nnx.merge(graphdef, p)(x, y) - y) ** 2)

    return jax.jit(jax.value_and_grad(loss))(params)


def _flat(tree):
    return np.concatenate([np.ravel(np.asarray(a, np.float64)) for a in jax.tree.leaves(tree)])


def test_bfloat16_compute_keeps_float32_parameters_and_agrees():
    graphdef, params, x, y = _model_and_batch()
    bf16_graphdef, bf16_params, _, _ = _model_and_batch(compute_dtype="bfloat16")
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(bf16_params))
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(bf16_params)))
    out = nnx.merge(graphdef, params)(x, y)
    out_bf16 = nnx.merge(bf16_graphdef, params)(x, y)
    assert out_bf16.dtype == jnp.float32
    np.testing.assert_allclose(out_bf16, out, atol=3e-2 * float(jnp.abs(out).max()))
    assert not np.array_equal(out_bf16, out)  # the switch really changes the arithmetic
    (_, g), (_, g_bf16) = _loss_and_grads(graphdef, params, x, y), _loss_and_grads(bf16_graphdef, params, x, y)
    a, b = _flat(g), _flat(g_bf16)
    assert np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b) > 0.99


def test_remat_gives_the_same_gradients():
    graphdef, params, x, y = _model_and_batch()
    remat_graphdef, _, _, _ = _model_and_batch(remat=True)
    (l1, g1), (l2, g2) = _loss_and_grads(graphdef, params, x, y), _loss_and_grads(remat_graphdef, params, x, y)
    np.testing.assert_allclose(l1, l2, rtol=1e-6)
    np.testing.assert_allclose(_flat(g1), _flat(g2), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("compute_dtype", ["float32", "bfloat16"])
def test_einsum_attention_equals_dot_product_attention(compute_dtype):
    """The CPU default (heads-major einsums) and jax.nn.dot_product_attention share parameters
    and agree in outputs and gradients."""
    graphdef, params, x, y = _model_and_batch(attention_impl="einsum", compute_dtype=compute_dtype)
    xla_graphdef, _, _, _ = _model_and_batch(attention_impl="xla", compute_dtype=compute_dtype)
    tolerance = 1e-5 if compute_dtype == "float32" else 3e-3
    out, out_xla = nnx.merge(graphdef, params)(x, y), nnx.merge(xla_graphdef, params)(x, y)
    np.testing.assert_allclose(out, out_xla, atol=tolerance * float(jnp.abs(out_xla).max()))
    (l1, g1), (l2, g2) = _loss_and_grads(graphdef, params, x, y), _loss_and_grads(xla_graphdef, params, x, y)
    np.testing.assert_allclose(l1, l2, rtol=tolerance)
    a, b = _flat(g1), _flat(g2)
    np.testing.assert_allclose(a, b, atol=tolerance * np.abs(b).max())


@pytest.mark.parametrize("remat", [False, True])
def test_scan_over_layers_equals_the_unrolled_stack(remat):
    graphdef, params, x, y = _model_and_batch()
    scan_graphdef, scan_params, _, _ = _model_and_batch(scan_layers=True, remat=remat)
    blocks = params["blocks"]
    stacked = dict(params, blocks=jax.tree.map(lambda *layers: jnp.stack(layers), *[blocks[i] for i in range(3)]))
    assert jax.tree.structure(stacked) == jax.tree.structure(scan_params)
    (l1, g1), (l2, g2) = _loss_and_grads(graphdef, params, x, y), _loss_and_grads(scan_graphdef, stacked, x, y)
    np.testing.assert_allclose(l1, l2, rtol=1e-5)
    g1 = dict(g1, blocks=jax.tree.map(lambda *layers: jnp.stack(layers), *[g1["blocks"][i] for i in range(3)]))
    np.testing.assert_allclose(_flat(g1), _flat(g2), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("model,reason", [
    (dict(attention_impl="cpu_kernel", n_embd=48),
     "attention_impl='cpu_kernel' cannot run: its head width must be a multiple of 16, got 24"),
    (dict(attention_impl="cpu_kernel", compute_dtype="bfloat16"),
     "attention_impl='cpu_kernel' cannot run: it takes float32 only, the compute dtype is bfloat16"),
    (dict(dense_impl="cpu_kernel", n_embd=40), "dense_impl='cpu_kernel' cannot run: its width must be a multiple of 16, got 40"),
    (dict(dense_impl="cpu_kernel", compute_dtype="bfloat16"),
     "dense_impl='cpu_kernel' cannot run: it takes float32 only, the compute dtype is bfloat16"),
    (dict(attention_impl="cudnn"), "attention_impl='cudnn' cannot run: it runs on GPU only"),
    (dict(dense_impl="fused"), "dense_impl must be one of auto, cpu_kernel, xla, got 'fused'"),
])
def test_a_choice_that_cannot_run_is_refused_when_the_model_is_built(model, reason):
    """The facts each implementation needs are in the config: an explicit choice that cannot
    run stops models.build itself (before any call or trace), with the key and the reason.
    No C++ compiler is needed to refuse these."""
    if jax.default_backend() == "gpu" and model.get("attention_impl") == "cudnn":
        pytest.skip("cuDNN can run here")
    c = small_config()
    c.model.update(model)
    with pytest.raises(UserError, match=re.escape(f"model.{reason}")):
        models.build(c.model, c.task.n_dims, tasks.label_classes(c.task))


def test_training_runs_with_every_switch_on(tmp_path):
    c = small_config()
    c.model.update(compute_dtype="bfloat16", remat=True, scan_layers=True, attention_impl="xla")
    c.train.steps = 20
    state = loop.train(c, tmp_path)
    assert int(state["step"]) == 20
    assert all(np.all(np.isfinite(np.asarray(a))) for a in jax.tree.leaves(state["params"]))
