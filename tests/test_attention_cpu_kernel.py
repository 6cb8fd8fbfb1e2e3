"""The C++ attention kernel for XLA:CPU (icl_jax/kernels/cpu) against float64 autodiff, and its build.

It needs a C++ compiler. Without one these tests skip, unless ICL_JAX_REQUIRE_CPU_KERNEL=1
(.ci/run sets it, after making sure there is a compiler), where they fail instead.
"""

import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from icl_jax.errors import UserError
from icl_jax.kernels.cpu import build, causal_attention_cpu
from icl_jax.models import transformer
from tests.conftest import require_kernel, run_without_compiler

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module", autouse=True)
def kernel_built():
    require_kernel("causal_attention_cpu")


def _plain_attention(qkv, stride, scale):
    """Causal softmax attention as autodiff sees it, from the BxTx3xHxF projection: out_BxTqxHxF,
    query i at token stride·i."""
    q, k, v = (qkv[:, :, j].transpose(0, 2, 1, 3) for j in range(3))
    q = q[:, :, ::stride]
    visible = jnp.arange(k.shape[2])[None, :] <= stride * jnp.arange(q.shape[2])[:, None]
    logits = jnp.where(visible, scale * jnp.einsum("bhqf,bhkf->bhqk", q, k), -jnp.inf)
    return jnp.einsum("bhqk,bhkf->bqhf", jax.nn.softmax(logits, axis=-1), v)


def _kernel(stride, scale=0.25):
    return lambda qkv: causal_attention_cpu.causal_attention(qkv, stride, scale)


@pytest.mark.parametrize("b,t,h,f,stride", [
    (2, 82, 4, 32, 1),  # the reference task's prompts (41 points), small model's heads
    (2, 82, 4, 32, 2),  # the last block: the x tokens' queries alone
    (3, 22, 2, 64, 1),  # the laptop task, wider heads
    (1, 7, 1, 16, 1),   # fewer keys than one vector
    (1, 17, 2, 48, 1),  # one key past a vector, an odd count of vectors per head
    (2, 1, 1, 16, 1),   # a single token
    (1, 15, 1, 16, 3),  # every third token
    (1, 96, 1, 16, 3),  # every third, past one row block: rows of a block end in different key vectors
    (2, 90, 2, 32, 5),  # every fifth
])
def test_kernel_agrees_with_float64_autodiff(b, t, h, f, stride):
    keys = jax.random.split(jax.random.key(b * 1000 + t), 2)
    qkv = 2.0 * jax.random.normal(keys[0], (b, t, 3, h, f))  # logits of spread ~4·√f·scale: peaked
    d_out = jax.random.normal(keys[1], (b, t // stride, h, f))
    scale = 1 / np.sqrt(f)
    out, vjp = jax.vjp(jax.jit(_kernel(stride, scale)), qkv)
    (d_qkv,) = vjp(d_out)
    with jax.enable_x64(True):
        out64, vjp64 = jax.vjp(lambda x: _plain_attention(x, stride, scale), np.asarray(qkv, np.float64))
        expected = [np.asarray(out64), np.asarray(vjp64(np.asarray(d_out, np.float64))[0])]
    for name, got, want in zip(("out", "d_qkv"), (out, d_qkv), expected):
        assert got.dtype == jnp.float32 and got.shape == want.shape, name
        np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=2e-5 * max(1.0, np.abs(want).max()),
                                   err_msg=name)
    if stride > 1:  # tokens that are not queries get no query gradient
        assert not np.any(np.asarray(d_qkv)[:, np.arange(t) % stride != 0, 0])


def test_keys_after_a_query_do_not_reach_it():
    """Changing the last key and value moves only the queries that see it, and the key's own
    gradient comes from those queries alone."""
    qkv = jax.random.normal(jax.random.key(0), (1, 20, 3, 2, 16))
    out = _kernel(1)(qkv)
    moved = _kernel(1)(qkv.at[:, -1, 1:].add(1.0))
    np.testing.assert_array_equal(out[:, :-1], moved[:, :-1])
    assert np.all(np.abs(out[:, -1] - moved[:, -1]) > 0)
    only_first_query = jnp.zeros((1, 20, 2, 16)).at[:, 0].set(1.0)
    _, vjp = jax.vjp(_kernel(1), qkv)
    (d_qkv,) = vjp(only_first_query)
    np.testing.assert_array_equal(d_qkv[:, :, :2], 0)  # one key seen: its weight is 1, fixed
    np.testing.assert_array_equal(d_qkv[:, 1:, 2], 0)
    np.testing.assert_allclose(d_qkv[:, 0, 2], 1.0)


def test_two_independent_calls_in_one_program_finish():
    """Two kernels side by side (the train step's two batch halves) share XLA's 2-thread pool;
    neither may wait on a helper the other's queue holds (tests/ time out if one does)."""
    qkv = jax.random.normal(jax.random.key(0), (16, 82, 3, 4, 32))

    @jax.jit
    def both(qkv):
        return [jax.grad(lambda x: jnp.sum(_kernel(2)(x) ** 2))(qkv[i::2]) for i in range(2)]

    first = both(qkv)
    for _ in range(20):
        again = both(qkv)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)  # and the result does not depend on the threads' race


def test_model_takes_the_kernel_on_cpu_and_agrees_with_the_xla_reference():
    """attention_impl "auto" picks the kernel on CPU for float32 and head width 16·n,
    and the einsum core otherwise; the kernel's model computes the plain XLA model's numbers."""
    x = jax.random.normal(jax.random.key(1), (4, 9, 3))
    y = jax.random.normal(jax.random.key(2), (4, 9))

    def run(impl, n_embd=32, n_head=2, **kw):
        model = transformer.Transformer(3, 9, n_embd, 2, n_head, attention_impl=impl, rngs=nnx.Rngs(params=0), **kw)
        graphdef, params = nnx.split(model, nnx.Param)
        loss = lambda p: jnp.mean((nnx.merge(graphdef, p)(x, y) - y) ** 2)
        jitted = jax.jit(jax.value_and_grad(loss))
        hlo = jitted.lower(params).compile().as_text()
        return jitted(params), "icl_causal_attention_cpu_forward" in hlo

    (loss_k, grads_k), used = run("auto")
    assert used
    (loss_x, grads_x), used = run("xla")
    assert not used
    np.testing.assert_allclose(loss_k, loss_x, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(grads_k), jax.tree.leaves(grads_x), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert not run("einsum")[1]
    assert not run("auto", n_embd=48, n_head=2)[1]  # head width 24: the einsum core
    assert not run("auto", compute_dtype="bfloat16")[1]
    with pytest.raises(UserError, match="'cpu_kernel' cannot run: its head width must be a multiple of 16, got 24"):
        run("cpu_kernel", n_embd=48, n_head=2)


def test_kernel_is_built_once_and_reused(tmp_path, monkeypatch):
    """The library is cached under a key of what it depends on: a second process finds it and
    compiles nothing; nothing half-written is left beside it."""
    log = tmp_path / "compiles.log"
    wrapper = tmp_path / "cxx"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexec {" ".join(build.compiler())} "$@"\n')
    wrapper.chmod(0o755)
    env = dict(os.environ, CXX=str(wrapper), ICL_JAX_KERNEL_CACHE=str(tmp_path / "cache"))
    script = "from icl_jax.kernels.cpu import build; print(build.library_path('causal_attention_cpu'))"
    paths = [subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True,
                            timeout=200).stdout.strip() for _ in range(2)]
    assert paths[0] == paths[1] and pathlib.Path(paths[0]).is_file()
    compiles = [line for line in log.read_text().splitlines() if "causal_attention_cpu.cc" in line]
    assert len(compiles) == 1 and "-march=native" in compiles[0]
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [pathlib.Path(paths[0]).name]


def test_a_missing_or_failing_compiler_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("ICL_JAX_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-c++"))
    with pytest.raises(build.KernelUnavailable, match=r"the C\+\+ compiler failed to run .*no-such-c\+\+"):
        build.library_path("causal_attention_cpu")
    broken = tmp_path / "broken-c++"
    broken.write_text('#!/bin/sh\ncase "$1" in --version) echo broken 1.0;; *) echo "error: no" >&2; exit 1;; esac\n')
    broken.chmod(0o755)
    monkeypatch.setenv("CXX", str(broken))
    with pytest.raises(build.KernelUnavailable, match="(?s)compiling causal_attention_cpu.cc failed .*error: no"):
        build.library_path("causal_attention_cpu")
    assert not list(tmp_path.glob("*.so"))



def test_vmap_maps_into_the_kernels_batch():
    """The analyses vmap the model: a mapped axis (vmap inside vmap too) gives each slice's own
    attention and gradients."""
    qkv = jax.random.normal(jax.random.key(0), (3, 2, 1, 10, 3, 2, 16))
    value_and_grad = jax.value_and_grad(lambda x: jnp.sum(jnp.sin(_kernel(2)(x))))
    mapped = jax.jit(jax.vmap(value_and_grad))(qkv[:, 0])
    nested = jax.jit(jax.vmap(jax.vmap(value_and_grad)))(qkv)
    for i in range(3):
        for j in range(2):
            value, grad = value_and_grad(qkv[i, j])
            np.testing.assert_allclose(nested[0][i, j], value, rtol=1e-5)
            np.testing.assert_allclose(nested[1][i, j], grad, rtol=1e-5, atol=1e-6)
        value, grad = value_and_grad(qkv[i, 0])
        np.testing.assert_allclose(mapped[0][i], value, rtol=1e-5)
        np.testing.assert_allclose(mapped[1][i], grad, rtol=1e-5, atol=1e-6)


def test_auto_falls_back_to_the_einsum_core_and_says_why(tmp_path):
    """Where the kernel cannot be built, `auto` trains on the einsum core (the same numbers)
    and says once why; `cpu_kernel` stops with the reason."""
    script = """
import sys, jax, jax.numpy as jnp
from flax import nnx
from icl_jax.errors import UserError
from icl_jax.models import transformer
x, y = jax.random.normal(jax.random.key(1), (2, 5, 3)), jax.random.normal(jax.random.key(2), (2, 5))
run = lambda impl: transformer.Transformer(3, 5, 32, 2, 2, attention_impl=impl, rngs=nnx.Rngs(params=0))(x, y)
assert jnp.array_equal(run("auto"), run("einsum")) and jnp.array_equal(run("auto"), run("auto"))
try:
    run("cpu_kernel")
except UserError as e:
    print(e)
"""
    r = run_without_compiler(script, tmp_path)
    assert r.stderr.count("attention runs on the einsum core, slower: the CPU kernel is unavailable") == 1, r.stderr
    assert "model.attention_impl='cpu_kernel' cannot run: the C++ compiler failed (false --version)" in r.stdout
