"""The CPU kernels of a block's dense sublayers (icl_jax/kernels/cpu): the dense layers' weight
and bias gradients (dense_grad_cpu.cc) and the layer norm (layer_norm_cpu.cc), against
float64 autodiff, under vmap, and in the model.

They need a C++ compiler: without one these tests skip, unless ICL_JAX_REQUIRE_CPU_KERNEL=1.
The 8-device checks (the kernels on each device's own tokens, FSDP) are in multidevice_checks.
"""


import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from icl_jax.errors import UserError
from icl_jax.kernels.cpu import dense_cpu, layer_norm_cpu
from icl_jax.models import transformer
from tests.conftest import require_kernel, run_without_compiler

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module", autouse=True)
def kernels_built():
    require_kernel("dense_grad_cpu")
    require_kernel("layer_norm_cpu")


def _loss(linear):
    return lambda x, w, b: jnp.sum(jnp.sin(linear(x, w, b)))


def _plain(x, w, b):
    return x @ w + b


@pytest.mark.parametrize("n,e,o", [
    (2624, 128, 384),  # the small model's qkv on one half batch
    (300, 512, 128),   # an MLP's way out; tokens past two 128-token chunks
    (129, 64, 192),    # tiny's qkv; one token past a chunk
    (7, 13, 64),       # rows past the 6-row blocks (13 = 2·6 + 1)
    (5, 5, 128),       # fewer rows than one block
    (1, 70, 64),       # a single token
])
def test_gradients_agree_with_float64_autodiff(n, e, o):
    keys = jax.random.split(jax.random.key(n + e + o), 3)
    x, w, b = (jax.random.normal(k, s) for k, s in zip(keys, ((n, e), (e, o), (o,))))
    w = w / e**0.5  # outputs of order 1, as in a model
    got = jax.jit(jax.value_and_grad(_loss(dense_cpu.linear), argnums=(0, 1, 2)))(x, w, b)
    with jax.enable_x64(True):
        want = jax.tree.map(np.asarray, jax.value_and_grad(_loss(_plain), argnums=(0, 1, 2))(
            *(np.asarray(a, np.float64) for a in (x, w, b))))
    np.testing.assert_allclose(got[0], want[0], rtol=1e-4)
    for g, ref in zip(got[1], want[1], strict=True):
        scale = np.abs(ref).max()
        np.testing.assert_allclose(np.asarray(g, np.float64) / scale, ref / scale, atol=1e-5)
    hlo = jax.jit(jax.grad(_loss(dense_cpu.linear), argnums=1)).lower(x, w, b).compile().as_text()
    assert 'custom_call_target="icl_dense_weight_grad_cpu"' in hlo


def test_threads_do_not_change_the_result():
    """Stripes of dw go to whichever thread is free: the numbers are the same every time."""
    x, dy = jax.random.normal(jax.random.key(0), (1000, 96)), jax.random.normal(jax.random.key(1), (1000, 512))
    grads = jax.jit(jax.vjp(lambda w, b: dense_cpu.linear(x, w, b), jnp.zeros((96, 512)), jnp.zeros(512))[1])
    first = grads(dy)
    for _ in range(10):
        for a, b in zip(first, grads(dy)):
            np.testing.assert_array_equal(a, b)


def test_vmap_gives_each_slice_its_gradients():
    x = jax.random.normal(jax.random.key(0), (3, 40, 16))
    w, b = jax.random.normal(jax.random.key(1), (16, 64)), jax.random.normal(jax.random.key(2), (64,))
    grad = jax.grad(_loss(dense_cpu.linear), argnums=(0, 1, 2))
    mapped = jax.jit(jax.vmap(grad, in_axes=(0, None, None)))(x, w, b)
    for i in range(3):
        for got, want in zip(mapped, jax.grad(_loss(_plain), argnums=(0, 1, 2))(x[i], w, b)):
            np.testing.assert_allclose(got[i], want, rtol=1e-5, atol=1e-5)


def _normalized(x, eps=1e-5):
    mean = x.mean(-1, keepdims=True)
    return (x - mean) / jnp.sqrt(((x - mean) ** 2).mean(-1, keepdims=True) + eps)


@pytest.mark.parametrize("n,e", [(2624, 128), (33, 512), (1, 16), (64, 48)])
def test_normalize_agrees_with_float64_autodiff(n, e):
    """Rows of width 16·k, past the 32-row chunks, offset far from zero (the variance is of
    the centred row)."""
    x = 100.0 + 3.0 * jax.random.normal(jax.random.key(n + e), (n, e))
    d_xhat = jax.random.normal(jax.random.key(1), (n, e))
    xhat, vjp = jax.vjp(lambda x: layer_norm_cpu.normalize(x, 1e-5), x)
    with jax.enable_x64(True):
        xhat64, vjp64 = jax.vjp(_normalized, np.asarray(x, np.float64))
        want = np.asarray(xhat64), np.asarray(vjp64(np.asarray(d_xhat, np.float64))[0])
    np.testing.assert_allclose(xhat, want[0], atol=3e-5)  # x's own rounding at 100: 4e-6 of σ = 3
    np.testing.assert_allclose(vjp(d_xhat)[0], want[1], atol=5e-5 * np.abs(want[1]).max())


def test_normalize_under_vmap():
    x = jax.random.normal(jax.random.key(0), (3, 10, 32))
    value_and_grad = jax.value_and_grad(lambda x: jnp.sum(jnp.sin(3 * layer_norm_cpu.normalize(x, 1e-5))))
    mapped = jax.jit(jax.vmap(value_and_grad))(x)
    for i in range(3):
        want = jax.value_and_grad(lambda x: jnp.sum(jnp.sin(3 * _normalized(x))))(x[i])
        np.testing.assert_allclose(mapped[0][i], want[0], rtol=1e-5)
        np.testing.assert_allclose(mapped[1][i], want[1], rtol=1e-4, atol=1e-5)


def test_model_takes_the_kernels_on_cpu_and_agrees_with_xla():
    """dense_impl "auto" takes the gradient kernel for every block layer whose output
    width is a multiple of 64 in float32 and the layer-norm kernel for widths 16·k (scale and
    shift folded into the next layer), and gives the XLA model's loss and gradients."""
    x = jax.random.normal(jax.random.key(1), (4, 9, 3))
    y = jax.random.normal(jax.random.key(2), (4, 9))

    def run(impl, n_embd=64, **kw):
        model = transformer.Transformer(3, 9, n_embd, 2, 2, dense_impl=impl, rngs=nnx.Rngs(params=0), **kw)
        graphdef, params = nnx.split(model, nnx.Param)
        loss = lambda p: jnp.mean((nnx.merge(graphdef, p)(x, y) - y) ** 2)
        jitted = jax.jit(jax.value_and_grad(loss))
        hlo = jitted.lower(params).compile().as_text()
        return jitted(params), tuple(hlo.count(f'custom_call_target="{t}"') for t in (
            "icl_dense_weight_grad_cpu", "icl_normalize_cpu", "icl_normalize_vjp_cpu"))

    (loss_k, grads_k), calls = run("auto")
    assert calls == (8, 4, 4)  # 2 blocks × (qkv, attention out, MLP in, MLP out) and 2 norms each
    (loss_x, grads_x), calls = run("xla")
    assert calls == (0, 0, 0)
    np.testing.assert_allclose(loss_k, loss_x, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(grads_k), jax.tree.leaves(grads_x), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)
    assert run("auto", n_embd=32)[1] == (2, 4, 4)  # only MLP in (32 -> 128) has an output width of 64·n
    assert run("auto", n_embd=40)[1] == (0, 0, 0)  # 40 wide: neither kernel applies
    assert run("auto", compute_dtype="bfloat16")[1] == (0, 0, 0)
    with pytest.raises(UserError, match="'cpu_kernel' cannot run: it takes float32 only, the compute dtype is bfloat16"):
        run("cpu_kernel", compute_dtype="bfloat16")
    with pytest.raises(UserError, match="'cpu_kernel' cannot run: its output width must be a multiple of 64, got 96"):
        run("cpu_kernel", n_embd=32)
    with pytest.raises(UserError, match="'cpu_kernel' cannot run: its width must be a multiple of 16, got 40"):
        run("cpu_kernel", n_embd=40)


def test_auto_falls_back_to_xla_and_says_why(tmp_path):
    """Where the kernels cannot be built, `auto` trains with XLA's layer norms and gradients
    (the same numbers) and says once why; `cpu_kernel` stops with the reason."""
    script = """
import jax, jax.numpy as jnp
from flax import nnx
from icl_jax.errors import UserError
from icl_jax.models import transformer
x, y = jax.random.normal(jax.random.key(1), (2, 5, 3)), jax.random.normal(jax.random.key(2), (2, 5))
def grads(impl):
    graphdef, params = nnx.split(transformer.Transformer(3, 5, 64, 2, 2, attention_impl="einsum", dense_impl=impl,
                                                         rngs=nnx.Rngs(params=0)), nnx.Param)
    return jax.grad(lambda p: jnp.sum(nnx.merge(graphdef, p)(x, y)))(params)
assert all(jnp.array_equal(a, b) for a, b in zip(jax.tree.leaves(grads("auto")), jax.tree.leaves(grads("xla"))))
try:
    grads("cpu_kernel")
except UserError as e:
    print(e)
"""
    r = run_without_compiler(script, tmp_path)
    assert r.stderr.count("dense-layer gradients run on XLA's products, slower: the CPU kernel is unavailable") == 1
    assert r.stderr.count("layer norms run on XLA, slower: the CPU kernel is unavailable") == 1
    assert "model.dense_impl='cpu_kernel' cannot run: the C++ compiler failed (false --version)" in r.stdout
