"""Causal softmax attention through the C++ kernel for XLA:CPU (causal_attention_cpu.cc).

Takes the fused projection as the model makes it, qkv_BxTx3xHxF (float32, F a multiple of
16), and returns out_BxTqxHxF: the attention output at every stride-th token (query i at token
stride·i, seeing the keys at or before it), with q·k scaled by `scale`. It is computed one
(prompt, head) at a time in cache without the Tq×T weights or heads-major copies of q, k, v
ever reaching memory: forward saves each query's log-sum-exp, backward recomputes the
weights and writes dqkv in qkv's own layout. models/attention.py's einsum core computes the
same on heads-major arrays, and is what runs where this kernel cannot (docs/kernels.md).

Under a sharded jit the calls keep their operands' sharding of the batch and head axes and
need the token and feature axes whole (custom_partitioning): each device computes on its own
prompts, with no collective, as XLA does for the einsum path. Under vmap the mapped axis joins
the batch axis (custom_vmap).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental.custom_partitioning import custom_partitioning
from jax.sharding import NamedSharding, PartitionSpec

from icl_jax.kernels.cpu import batching, build

_FORWARD = "icl_causal_attention_cpu_forward"
_BACKWARD = "icl_causal_attention_cpu_backward"
VECTOR = 16  # the kernel's float32 vector: head width must be a multiple of it


def unsupported(compute_dtype, head_width: int) -> str | None:
    """Why the kernel cannot take a model's attention of this compute dtype and head width, or
    None if it can (where it is available: unavailable())."""
    if jnp.dtype(compute_dtype) != jnp.float32:
        return f"it takes float32 only, the compute dtype is {jnp.dtype(compute_dtype)}"
    if head_width % VECTOR:
        return f"its head width must be a multiple of {VECTOR}, got {head_width}"
    return None


def unavailable() -> str | None:
    """Why the kernel cannot run here, or None once it is built and registered with XLA:CPU."""
    return build.unavailable("causal_attention_cpu", {_FORWARD: "IclCausalAttentionForward",
                                                      _BACKWARD: "IclCausalAttentionBackward"})


def _layout_problem(qkv_BxTx3xHxF: jax.Array, stride: int) -> str | None:
    """Why the kernel cannot take this projection, or None."""
    if qkv_BxTx3xHxF.ndim != 5 or qkv_BxTx3xHxF.shape[2] != 3:
        return f"it takes a BxTx3xHxF projection, got shape {qkv_BxTx3xHxF.shape}"
    if stride < 1 or qkv_BxTx3xHxF.shape[1] % stride:
        return f"queries every {stride} tokens do not divide {qkv_BxTx3xHxF.shape[1]} tokens"
    return unsupported(qkv_BxTx3xHxF.dtype, qkv_BxTx3xHxF.shape[-1])


def _sharded_by_batch_and_heads(call, rule: str, arg_head_axes: tuple[int, ...], result_head_axes: tuple[int, ...]):
    """`call` partitioned as its first operand (qkv) is along its batch and head axes; every
    other axis whole. *_head_axes: where each operand and each result has its head axis."""
    def specs(mesh, batch, heads, shapes, head_axes):
        def spec(shape, head_axis):
            entries = [None] * len(shape.shape)
            entries[0], entries[head_axis] = batch, heads
            return NamedSharding(mesh, PartitionSpec(*entries))
        return tuple(spec(s, a) for s, a in zip(shapes, head_axes, strict=True))

    def batch_and_heads(arg_shapes):
        spec = tuple(arg_shapes[0].sharding.spec) + (None,) * 5
        return spec[0], spec[3]

    def infer(mesh, arg_shapes, result_shapes):
        return specs(mesh, *batch_and_heads(arg_shapes), result_shapes, result_head_axes)

    def partition(mesh, arg_shapes, result_shapes):
        batch, heads = batch_and_heads(arg_shapes)
        return (mesh, call, specs(mesh, batch, heads, result_shapes, result_head_axes),
                specs(mesh, batch, heads, arg_shapes, arg_head_axes))

    partitioned = custom_partitioning(call)
    partitioned.def_partition(partition, infer_sharding_from_operands=infer, sharding_rule=rule,
                              need_replication_factors=("t", "c", "f", "q"))
    return partitioned


@functools.cache
def _calls(stride: int, scale: float):
    """The forward and backward FFI calls for one query stride and logit scale, partitioned and
    batched."""
    def forward(qkv):
        b, t, _, h, f = qkv.shape
        results = (jax.ShapeDtypeStruct((b, t // stride, h, f), qkv.dtype),
                   jax.ShapeDtypeStruct((b, h, t // stride), jnp.float32))
        return jax.ffi.ffi_call(_FORWARD, results)(qkv, stride=np.int64(stride), scale=np.float32(scale))

    def backward(qkv, out, lse, d_out):
        result = jax.ShapeDtypeStruct(qkv.shape, qkv.dtype)
        return (jax.ffi.ffi_call(_BACKWARD, result)(qkv, out, lse, d_out, stride=np.int64(stride),
                                                    scale=np.float32(scale)),)

    forward = _sharded_by_batch_and_heads(forward, "b t c h f -> b q h f, b h q", (3,), (2, 1))
    backward = _sharded_by_batch_and_heads(
        backward, "b t c h f, b q h f, b h q, b q h f -> b t c h f", (3, 2, 1, 2), (3,))
    return batching.mapped_into_leading_axis(forward), batching.mapped_into_leading_axis(backward)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def causal_attention(qkv_BxTx3xHxF: jax.Array, stride: int, scale: float) -> jax.Array:
    """out_BxTqxHxF: softmax(scale·q·kᵀ, causal)·v at every stride-th token's query."""
    return _checked_forward(qkv_BxTx3xHxF, stride, scale)[0]


def _checked_forward(qkv, stride, scale):
    if reason := _layout_problem(qkv, stride) or unavailable():  # a cache hit once a model selected it
        raise ValueError(f"the CPU attention kernel cannot run: {reason}")
    return _calls(stride, float(scale))[0](qkv)


def _vjp_forward(qkv, stride, scale):
    out, lse = _checked_forward(qkv, stride, scale)
    return out, (qkv, out, lse)


def _vjp_backward(stride, scale, residuals, d_out):
    return tuple(_calls(stride, float(scale))[1](*residuals, d_out))


causal_attention.defvjp(_vjp_forward, _vjp_backward)
