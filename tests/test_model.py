import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from icl_jax import config as config_lib
from icl_jax.models import tokens, transformer

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
    config = config_lib.default_config()  # the reference sizes
    abstract = nnx.state(nnx.eval_shape(lambda: transformer.build(config)), nnx.Param)
    count = transformer.param_count(abstract)
    assert abs(count - 9.53e6) / 9.53e6 < 0.005, count
    assert count == 9_534_977  # 12 × 789,760 per block + read-in, 202 positions, final LN, read-out


@pytest.mark.parametrize("preset,expected", [("tiny", 3), ("small", 6)])
def test_presets(preset, expected):
    config = config_lib.default_config()
    config_lib.apply_model_preset(config, preset)
    model = nnx.eval_shape(lambda: transformer.build(config))
    assert len(model.blocks) == expected


def test_prediction_k_ignores_everything_after_x_k(tiny_config):
    """Causality: ∂ŷ_k/∂(y_j, j ≥ k) = 0 and ∂ŷ_k/∂(x_j, j > k) = 0, and ŷ_k does depend on
    earlier examples (so the test can fail)."""
    model = transformer.build(tiny_config, jax.random.key(0))
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
    model = transformer.build(tiny_config, jax.random.key(0))
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


@pytest.mark.parametrize("attention_impl", ["einsum", "xla"])
def test_block_is_the_gpt2_block(tiny_config, attention_impl):
    tiny_config.model.attention_impl = attention_impl
    model = transformer.build(tiny_config, jax.random.key(0))
    block = model.blocks[0]
    g = np.random.default_rng(0)
    state = nnx.state(block, nnx.Param)
    params = jax.tree.map(  # biases and LN parameters moved off their initial 0 and 1
        lambda a: np.asarray(a, np.float32) + 0.1 * g.standard_normal(a.shape).astype(np.float32),
        nnx.to_pure_dict(state))
    nnx.replace_by_pure_dict(state, jax.tree.map(jnp.asarray, params))
    nnx.update(block, state)
    params = jax.tree.map(lambda a: a.astype(np.float64), params)
    h = g.standard_normal((3, 7, tiny_config.model.n_embd)).astype(np.float32)
    expected = _numpy_gpt2_block(params, h.astype(np.float64), tiny_config.model.n_head)
    np.testing.assert_allclose(np.asarray(jax.jit(lambda x: block(x))(h)), expected, rtol=1e-4, atol=1e-4)
