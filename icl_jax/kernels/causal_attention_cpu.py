"""Causal softmax attention through the C++ kernel for XLA:CPU (causal_attention_cpu.cc).

Same contract as models/attention.py's causal_attention (queries every stride-th token, q
scaled beforehand, BxHxTqxF / BxHxTxF float32 arrays), computed one (prompt, head) at a time
in cache and without ever writing the Tq×T weights to memory: forward saves each query's
log-sum-exp, backward recomputes the weights from it.

Under a sharded jit the calls keep their operands' sharding of the batch and head axes and
need the token and feature axes whole (custom_partitioning): each device computes on its own
prompts, with no collective, as XLA does for the einsum path. Under vmap the mapped axis joins
the batch axis (custom_vmap).
"""

from __future__ import annotations

import functools
import sys

import jax
import jax.numpy as jnp
from jax.experimental.custom_partitioning import custom_partitioning
from jax.sharding import NamedSharding, PartitionSpec

from icl_jax.kernels import build

_FORWARD = "icl_causal_attention_cpu_forward"
_BACKWARD = "icl_causal_attention_cpu_backward"
VECTOR = 16  # the kernel's float32 vector: head width must be a multiple of it


def unsupported(q_BxHxTqxF: jax.Array, k_BxHxTxF: jax.Array) -> str | None:
    """Why the kernel cannot take these arrays here, or None if it can (building it if needed)."""
    if jax.default_backend() != "cpu":
        return f"it runs on CPU only, and the default backend is {jax.default_backend()}"
    if q_BxHxTqxF.dtype != jnp.float32 or k_BxHxTxF.dtype != jnp.float32:
        return f"it takes float32 only, got {q_BxHxTqxF.dtype}"
    if q_BxHxTqxF.ndim != 4 or k_BxHxTxF.ndim != 4:
        return f"it takes BxHxTxF arrays, got shapes {q_BxHxTqxF.shape} and {k_BxHxTxF.shape}"
    if q_BxHxTqxF.shape[-1] % VECTOR:
        return f"its head width must be a multiple of {VECTOR}, got {q_BxHxTqxF.shape[-1]}"
    try:
        _register()
    except build.KernelUnavailable as e:
        _say_once(f"icl_jax: attention runs on the einsum core, slower: the CPU kernel is unavailable ({e})")
        return str(e)
    return None


@functools.cache
def _say_once(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@functools.cache
def _register() -> None:
    """Registers the kernel's two FFI targets, once (build.load keeps a failure for the process)."""
    library = build.load("causal_attention_cpu")
    for target, symbol in ((_FORWARD, "IclCausalAttentionForward"), (_BACKWARD, "IclCausalAttentionBackward")):
        jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(library, symbol)), platform="cpu")


def _like(x) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(x.shape, x.dtype)


def _forward_call(q, k, v):
    lse = jax.ShapeDtypeStruct(q.shape[:-1], jnp.float32)
    return jax.ffi.ffi_call(_FORWARD, (_like(q), lse))(q, k, v)


def _backward_call(q, k, v, out, lse, d_out):
    return jax.ffi.ffi_call(_BACKWARD, (_like(q), _like(k), _like(v)))(q, k, v, out, lse, d_out)


def _batch_and_heads_sharded(call, rule: str):
    """`call` partitioned as its first operand's batch and head axes are; tokens and features whole."""
    def specs(mesh, leading, shapes):
        return tuple(NamedSharding(mesh, PartitionSpec(*leading, *[None] * (len(s.shape) - 2))) for s in shapes)

    def leading(arg_shapes):
        spec = tuple(arg_shapes[0].sharding.spec) + (None, None)
        return spec[:2]

    def infer(mesh, arg_shapes, result_shapes):
        return specs(mesh, leading(arg_shapes), result_shapes)

    def partition(mesh, arg_shapes, result_shapes):
        lead = leading(arg_shapes)
        return mesh, call, specs(mesh, lead, result_shapes), specs(mesh, lead, arg_shapes)

    partitioned = custom_partitioning(call)
    partitioned.def_partition(partition, infer_sharding_from_operands=infer, sharding_rule=rule,
                              need_replication_factors=("q", "f", "k"))
    return partitioned


def _vmapped_into_the_batch(call):
    """`call` under vmap: the mapped axis joins the batch axis (every prompt and head is an
    independent item to the kernel), unmapped operands broadcast along it."""
    batched = jax.custom_batching.custom_vmap(call)

    @batched.def_vmap
    def rule(axis_size, in_batched, *args):
        args = [a if mapped else jnp.broadcast_to(a, (axis_size, *a.shape)) for a, mapped in zip(args, in_batched)]
        outs = batched(*(a.reshape(axis_size * a.shape[1], *a.shape[2:]) for a in args))
        return tuple(o.reshape(axis_size, -1, *o.shape[1:]) for o in outs), (True,) * len(outs)

    return batched


_forward = _vmapped_into_the_batch(
    _batch_and_heads_sharded(_forward_call, "b h q f, b h k f, b h k f -> b h q f, b h q"))
_backward = _vmapped_into_the_batch(_batch_and_heads_sharded(
    _backward_call, "b h q f, b h k f, b h k f, b h q f, b h q, b h q f -> b h q f, b h k f, b h k f"))


@jax.custom_vjp
def causal_attention(q_BxHxTqxF: jax.Array, k_BxHxTxF: jax.Array, v_BxHxTxF: jax.Array) -> jax.Array:
    """out_BxHxTqxF: softmax(q·kᵀ, causal) · v; query i sits at token (T/Tq)·i."""
    return _checked_forward(q_BxHxTqxF, k_BxHxTxF, v_BxHxTxF)[0]


def _checked_forward(q, k, v):
    if reason := unsupported(q, k):
        raise ValueError(f"the CPU attention kernel cannot run: {reason}")
    if k.shape != v.shape or q.shape[:2] != k.shape[:2] or q.shape[-1] != k.shape[-1] or k.shape[2] % q.shape[2]:
        raise ValueError(f"q {q.shape}, k {k.shape}, v {v.shape} are not causal attention's shapes")
    return _forward(q, k, v)


def _vjp_forward(q, k, v):
    out, lse = _checked_forward(q, k, v)
    return out, (q, k, v, out, lse)


def _vjp_backward(residuals, d_out):
    return tuple(_backward(*residuals, d_out))


causal_attention.defvjp(_vjp_forward, _vjp_backward)
