import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from icl_jax import config as config_lib
from icl_jax import models, tasks
from icl_jax.kernels.cpu import build
from icl_jax.models import attention, tokens, transformer
from tests.conftest import require_kernel

pytestmark = pytest.mark.timeout(120)


def test_interleave_layout():
    x = jnp.arange(2 * 3 * 2, dtype=jnp.float32).reshape(2, 3, 2) + 1
    y = -jnp.arange(2 * 3, dtype=jnp.float32).reshape(2, 3) - 1
    z = tokens.interleave(x, y)
    assert z.shape == (2, 6, 2)
    np.testing.assert_array_equal(z[:, 0::2], x)
    np.testing.assert_array_equal(z[:, 1::2, 0], y)
    np.testing.assert_array_equal(z[:, 1::2, 1], 0.0)
    out = jnp.arange(6.0)[None]
    np.testing.assert_array_equal(tokens.predictions_at_x(out), [[0.0, 2.0, 4.0]])


def test_standard_model_has_9_53M_parameters():
    config = config_lib.validate(config_lib.default_config())  # the reference sizes
    abstract = nnx.state(nnx.eval_shape(lambda: transformer.build(config.model, config.task.n_dims, tasks.label_classes(config.task))), nnx.Param)
    count = models.param_count(abstract)
    assert abs(count - 9.53e6) / 9.53e6 < 0.005, count
    assert count == 9_534_977  # 12 × 789,760 per block + read-in, 202 positions, final LN, read-out


@pytest.mark.parametrize("preset,expected", [("tiny", 3), ("small", 6)])
def test_presets(preset, expected):
    config = config_lib.default_config()
    config_lib.apply_model_preset(config, preset)
    config_lib.validate(config)
    model = nnx.eval_shape(lambda: transformer.build(config.model, config.task.n_dims, tasks.label_classes(config.task)))
    assert len(model.blocks) == expected


def test_prediction_k_ignores_everything_after_x_k(tiny_config):
    """Causality: ∂ŷ_k/∂(y_j, j ≥ k) = 0 and ∂ŷ_k/∂(x_j, j > k) = 0, and ŷ_k does depend on
    earlier examples (so the test can fail)."""
    model = transformer.build(tiny_config.model, tiny_config.task.n_dims, tasks.label_classes(tiny_config.task), jax.random.key(0))
    k_points, d = tiny_config.task.n_points, tiny_config.task.n_dims
    x = jax.random.normal(jax.random.key(1), (1, k_points, d))
    y = jax.random.normal(jax.random.key(2), (1, k_points))
    graphdef, params = nnx.split(model)
    k = 3

    def yhat_k(x, y):
        return nnx.merge(graphdef, params)(x, y)[0, k]

    gx, gy = jax.grad(yhat_k, argnums=(0, 1))(x, y)
    assert np.all(np.asarray(gx[0, k + 1:]) == 0) and np.all(np.asarray(gy[0, k:]) == 0)
    assert np.abs(np.asarray(gy[0, :k])).sum() > 0 and np.abs(np.asarray(gx[0, k])).sum() > 0


def test_too_long_prompt_is_rejected(tiny_config):
    model = transformer.build(tiny_config.model, tiny_config.task.n_dims, tasks.label_classes(tiny_config.task), jax.random.key(0))
    n = tiny_config.model.n_positions + 1
    with pytest.raises(ValueError, match="positions"):
        model(jnp.zeros((1, n, tiny_config.task.n_dims)), jnp.zeros((1, n)))


def _numpy_gpt2_block(p, h_BxTxE, n_head):
    """A GPT-2 block written out in float64 numpy from the parameters: the meaning of the
    fused qkv kernel's columns (q | k | v, each head-major H×F), the 1/√F scale, the causal
    mask and the tanh GELU."""
    def ln(x, g, b):
        m = x.mean(-1, keepdims=True)
        return (x - m) / np.sqrt(((x - m) ** 2).mean(-1, keepdims=True) + 1e-5) * g + b

    b, t, e = h_BxTxE.shape
    f = e // n_head
    qkv = ln(h_BxTxE, p["ln_1"]["scale"], p["ln_1"]["bias"]) @ p["qkv"]["kernel"] + p["qkv"]["bias"]
    q, k, v = (qkv[..., j * e:(j + 1) * e].reshape(b, t, n_head, f) for j in range(3))
    logits = np.einsum("bqhf,bkhf->bhqk", q, k) / np.sqrt(f)
    logits = np.where(np.tril(np.ones((t, t), bool)), logits, -np.inf)
    w = np.exp(logits - logits.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    attended = np.einsum("bhqk,bkhf->bqhf", w, v).reshape(b, t, e)
    h = h_BxTxE + attended @ p["attn_out"]["kernel"] + p["attn_out"]["bias"]
    u = ln(h, p["ln_2"]["scale"], p["ln_2"]["bias"]) @ p["mlp_in"]["kernel"] + p["mlp_in"]["bias"]
    gelu = 0.5 * u * (1 + np.tanh(np.sqrt(2 / np.pi) * (u + 0.044715 * u ** 3)))
    return h + gelu @ p["mlp_out"]["kernel"] + p["mlp_out"]["bias"]


@pytest.mark.parametrize("attention_impl", ["einsum", "xla", "cpu_kernel"])
def test_block_is_the_gpt2_block(tiny_config, attention_impl):
    if attention_impl == "cpu_kernel":
        require_kernel("causal_attention_cpu")  # skips where it cannot be built, unless CI requires it
    tiny_config.model.attention_impl = attention_impl
    model = transformer.build(tiny_config.model, tiny_config.task.n_dims, tasks.label_classes(tiny_config.task), jax.random.key(0))
    block = model.blocks[0]
    g = np.random.default_rng(0)
    state = nnx.state(block, nnx.Param)
    params = jax.tree.map(  # biases and LN parameters moved off their initial 0 and 1
        lambda a: np.asarray(a, np.float32) + 0.1 * g.standard_normal(a.shape).astype(np.float32),
        nnx.to_pure_dict(state))
    nnx.replace_by_pure_dict(state, jax.tree.map(jnp.asarray, params))
    nnx.update(block, state)
    params = jax.tree.map(lambda a: a.astype(np.float64), params)
    h = g.standard_normal((3, 8, tiny_config.model.n_embd)).astype(np.float32)
    expected = _numpy_gpt2_block(params, h.astype(np.float64), tiny_config.model.n_head)
    np.testing.assert_allclose(np.asarray(jax.jit(lambda x: block(x))(h)), expected, rtol=1e-4, atol=1e-4)
    # the last block's form: the same block, its output at every second token alone
    at_x = np.asarray(jax.jit(lambda x: block(x, 2))(h))
    np.testing.assert_allclose(at_x, expected[:, ::2], rtol=1e-4, atol=1e-4)


def test_attention_of_every_second_query_is_those_rows_of_full_attention():
    """Fewer queries than keys: query i at position 2i, causal still; values and gradients are
    the full attention's rows."""
    q, k, v = (jax.random.normal(jax.random.key(i), (2, 3, 10, 4)) for i in range(3))
    do = jax.random.normal(jax.random.key(3), (2, 3, 5, 4))
    full = lambda q, k, v: attention.causal_attention(q, k, v)[:, :, ::2]
    rows = lambda q, k, v: attention.causal_attention(q[:, :, ::2], k, v)
    (out_full, vjp_full), (out_rows, vjp_rows) = jax.vjp(full, q, k, v), jax.vjp(rows, q, k, v)
    np.testing.assert_allclose(out_rows, out_full, rtol=1e-5, atol=1e-6)
    for g_rows, g_full in zip(vjp_rows(do), vjp_full(do)):
        np.testing.assert_allclose(g_rows, g_full, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(attention.causal_mask(2, 4), [[1, 0, 0, 0], [1, 1, 1, 0]])
    with pytest.raises(ValueError, match="3 queries are not every n-th of 10 tokens"):
        attention.causal_attention(q[:, :, :3], k, v)


@pytest.mark.parametrize("switches", [dict(attention_impl="einsum"), dict(attention_impl="xla"),
                                      dict(attention_impl="cpu_kernel"),
                                      dict(scan_layers=True, remat=True), dict(label_classes=3)])
def test_last_block_at_the_x_tokens_alone_trains_as_the_whole_model(switches):
    """model(x, y) computes its last block at the x tokens only; trace() runs every block on
    every token and reads the x tokens. Outputs and parameter gradients agree."""
    if switches.get("attention_impl") == "cpu_kernel":
        require_kernel("causal_attention_cpu")  # skips where it cannot be built, unless CI requires it
    model = transformer.Transformer(4, 6, 32, 2, 2, rngs=nnx.Rngs(params=0), **switches)
    x = jax.random.normal(jax.random.key(1), (3, 6, 4))
    y = jax.random.randint(jax.random.key(2), (3, 6), 0, 3).astype(jnp.float32)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    loss = lambda p, run: jnp.sum(run(nnx.merge(graphdef, p, rest)) ** 2)
    whole, whole_grad = jax.value_and_grad(loss)(params, lambda m: m.trace(x, y).yhat_BxK)
    at_x, at_x_grad = jax.jit(jax.value_and_grad(loss), static_argnums=1)(params, lambda m: m(x, y))
    np.testing.assert_allclose(at_x, whole, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(at_x_grad), jax.tree.leaves(whole_grad)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_kernels_are_built_with_the_model_and_its_trace_compiles_nothing(monkeypatch, capfd):
    """models/ops.py builds and registers the C++ kernels a model takes when the model is
    built; tracing and compiling its train step then starts no C++ compiler and prints nothing."""
    for name in ("causal_attention_cpu", "dense_grad_cpu", "layer_norm_cpu"):
        require_kernel(name)
    build._load_once.cache_clear()  # as in a fresh process: nothing loaded or registered yet
    build._register_once.cache_clear()
    looked_up = []
    library_path = build.library_path
    monkeypatch.setattr(build, "library_path", lambda name: looked_up.append(name) or library_path(name))
    model = transformer.Transformer(3, 9, 64, 2, 2, rngs=nnx.Rngs(params=0))
    assert sorted(looked_up) == ["causal_attention_cpu", "dense_grad_cpu", "layer_norm_cpu"]
    looked_up.clear()
    capfd.readouterr()
    graphdef, params = nnx.split(model, nnx.Param)
    x, y = jnp.ones((2, 9, 3)), jnp.ones((2, 9))
    loss = lambda p: jnp.sum(nnx.merge(graphdef, p)(x, y) ** 2)
    hlo = jax.jit(jax.grad(loss)).lower(params).compile().as_text()
    assert looked_up == [] and capfd.readouterr() == ("", "")
    for target in ("icl_causal_attention_cpu_forward", "icl_dense_weight_grad_cpu", "icl_normalize_cpu"):
        assert f'custom_call_target="{target}"' in hlo
