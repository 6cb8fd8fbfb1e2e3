"""A dense layer whose parameter gradients come from the C++ kernel for XLA:CPU
(dense_grad_cpu.cc).

`linear(x_NxE, w_ExO, b_O)` is x·w + b, computed by XLA, as nnx.Linear computes it; its
backward pass takes dx = dy·wᵀ from XLA too, and dw = xᵀ·dy with db = Σ dy from the kernel in
one pass (XLA:CPU runs xᵀ·dy at about half the matmul peak at these widths and the bias
gradient as a second pass over dy; benchmarks/README.md has the numbers, docs/kernels.md the
design).

Under a sharded jit the kernel runs on each device's own tokens and the partial gradients
are summed over the mesh axes that split the tokens (custom_partitioning), as XLA's own
all-reduce does for dw on the plain path. Under vmap the backward pass falls back to XLA's
batched products (custom_vmap): nothing in this package differentiates a vmapped model on the
hot path.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental.custom_partitioning import custom_partitioning
from jax.sharding import NamedSharding, PartitionSpec

from icl_jax.kernels.cpu import build

_TARGET = "icl_dense_weight_grad_cpu"
STRIPE = 64  # columns of dw per kernel work item: the output width must be a multiple of it


def unsupported(compute_dtype, output_width: int) -> str | None:
    """Why the kernel cannot give the gradients of a layer of this compute dtype and output
    width, or None if it can (where it is available: unavailable())."""
    if jnp.dtype(compute_dtype) != jnp.float32:
        return f"it takes float32 only, the compute dtype is {jnp.dtype(compute_dtype)}"
    if output_width % STRIPE:
        return f"its output width must be a multiple of {STRIPE}, got {output_width}"
    return None


def unavailable() -> str | None:
    """Why the kernel cannot run here, or None once it is built and registered with XLA:CPU."""
    return build.unavailable("dense_grad_cpu", {_TARGET: "IclDenseWeightGrad"})


def _layout_problem(x_NxE: jax.Array, w_ExO: jax.Array) -> str | None:
    """Why the kernel cannot take this layer, or None."""
    if x_NxE.dtype != w_ExO.dtype:
        return f"it takes inputs and weights of one dtype, got {x_NxE.dtype} and {w_ExO.dtype}"
    if x_NxE.ndim != 2 or w_ExO.ndim != 2 or x_NxE.shape[1] != w_ExO.shape[0]:
        return f"it takes NxE inputs and ExO weights, got {x_NxE.shape} and {w_ExO.shape}"
    return unsupported(w_ExO.dtype, w_ExO.shape[1])


def _weight_grad(x_NxE: jax.Array, dy_NxO: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(dw_ExO, db_O) of this device's tokens: the kernel call itself."""
    results = (jax.ShapeDtypeStruct((x_NxE.shape[1], dy_NxO.shape[1]), jnp.float32),
               jax.ShapeDtypeStruct((dy_NxO.shape[1],), jnp.float32))
    return jax.ffi.ffi_call(_TARGET, results)(x_NxE, dy_NxO)


def _token_axes(arg_shapes) -> str | tuple[str, ...] | None:
    """The mesh axes that split the tokens of x (its leading axis), as its spec names them."""
    return (tuple(arg_shapes[0].sharding.spec) + (None,))[0]


def _summed_over_token_shards(call):
    """`call` partitioned along the tokens as x is, E and O whole; each device's partial
    gradients summed over the mesh axes that split the tokens."""
    def infer(mesh, arg_shapes, result_shapes):
        return tuple(NamedSharding(mesh, PartitionSpec()) for _ in result_shapes)

    def partition(mesh, arg_shapes, result_shapes):
        tokens = _token_axes(arg_shapes)

        def summed(x, dy):
            grads = call(x, dy)
            return grads if tokens is None else tuple(jax.lax.psum(g, tokens) for g in grads)

        rows = NamedSharding(mesh, PartitionSpec(tokens, None))
        return mesh, summed, infer(mesh, arg_shapes, result_shapes), (rows, rows)

    partitioned = custom_partitioning(call)
    partitioned.def_partition(partition, infer_sharding_from_operands=infer, sharding_rule="n e, n o -> e o, o",
                              reduction_factors=("n",), need_replication_factors=("e", "o"))
    return partitioned


def _xla_weight_grad(x_AxNxE: jax.Array, dy_AxNxO: jax.Array) -> tuple[jax.Array, jax.Array]:
    return jnp.einsum("ane,ano->aeo", x_AxNxE, dy_AxNxO), dy_AxNxO.sum(1)


@functools.cache
def _weight_grad_call():
    batched = jax.custom_batching.custom_vmap(_summed_over_token_shards(_weight_grad))

    @batched.def_vmap
    def rule(axis_size, in_batched, x, dy):
        x, dy = (a if mapped else jnp.broadcast_to(a, (axis_size, *a.shape)) for a, mapped in zip((x, dy), in_batched))
        return _xla_weight_grad(x, dy), (True, True)

    return batched


@jax.custom_vjp
def linear(x_NxE: jax.Array, w_ExO: jax.Array, b_O: jax.Array) -> jax.Array:
    """y_NxO = x·w + b."""
    return x_NxE @ w_ExO + b_O


def _vjp_forward(x, w, b):
    if reason := _layout_problem(x, w) or unavailable():  # a cache hit once a model selected it
        raise ValueError(f"the CPU dense-gradient kernel cannot run: {reason}")
    return x @ w + b, (x, w)


def _vjp_backward(residuals, dy_NxO):
    x, w = residuals
    dw, db = _weight_grad_call()(x, dy_NxO)
    return dy_NxO @ w.T, dw, db


linear.defvjp(_vjp_forward, _vjp_backward)
