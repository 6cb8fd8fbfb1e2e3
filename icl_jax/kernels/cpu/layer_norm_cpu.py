"""A block's layer norm, without its scale and shift, through the C++ kernel for XLA:CPU
(layer_norm_cpu.cc), its backward pass in the kernel too.

`normalize(x_NxE, eps)` is (x - mean) / sqrt(var + eps) over each row, for float32 rows whose
width is a multiple of 16. The model (models/ops.py) folds the layer norm's scale s and shift
t into the dense layer that follows it, (x̂·s + t)·W + b = x̂·(s∘W) + (t·W + b), so that their
gradients come out of that layer's weight gradient (a few E×O products) instead of two more
passes over the N×E activations.

It works on whole rows, so under a sharded jit the calls keep their operands' split of the
rows (custom_partitioning: no collective), and under vmap the mapped axis joins the rows
(custom_vmap).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental.custom_partitioning import custom_partitioning
from jax.sharding import NamedSharding, PartitionSpec

from icl_jax.kernels.cpu import batching, build

_TARGETS = {"icl_normalize_cpu": "IclNormalize", "icl_normalize_vjp_cpu": "IclNormalizeVjp"}
VECTOR = 16  # the kernel's float32 vector: the row width must be a multiple of it


def unsupported(compute_dtype, width: int) -> str | None:
    """Why the kernel cannot take a layer norm of this compute dtype and width, or None if it
    can (where it is available: unavailable())."""
    if jnp.dtype(compute_dtype) != jnp.float32:
        return f"it takes float32 only, the compute dtype is {jnp.dtype(compute_dtype)}"
    if width % VECTOR:
        return f"its width must be a multiple of {VECTOR}, got {width}"
    return None


def unavailable() -> str | None:
    """Why the kernel cannot run here, or None once it is built and registered with XLA:CPU."""
    return build.unavailable("layer_norm_cpu", _TARGETS)


def _layout_problem(x_NxE: jax.Array) -> str | None:
    """Why the kernel cannot take these rows, or None."""
    if x_NxE.ndim != 2:
        return f"it takes NxE rows, got shape {x_NxE.shape}"
    return unsupported(x_NxE.dtype, x_NxE.shape[1])


def _rowwise(call, sharding_rule: str):
    """`call` partitioned along its operands' rows (axis 0, split as the first operand's), every
    other axis whole; under vmap, the mapped axis joins the rows."""
    def shardings(mesh, arg_shapes, shapes):
        rows = (tuple(arg_shapes[0].sharding.spec) + (None,))[0]
        return tuple(NamedSharding(mesh, PartitionSpec(rows, *[None] * (len(s.shape) - 1))) for s in shapes)

    def infer(mesh, arg_shapes, result_shapes):
        return shardings(mesh, arg_shapes, result_shapes)

    def partition(mesh, arg_shapes, result_shapes):
        return mesh, call, shardings(mesh, arg_shapes, result_shapes), shardings(mesh, arg_shapes, arg_shapes)

    partitioned = custom_partitioning(call)
    partitioned.def_partition(partition, infer_sharding_from_operands=infer, sharding_rule=sharding_rule,
                              need_replication_factors=("e",))
    return batching.mapped_into_leading_axis(partitioned)


@functools.cache
def _calls(eps: float):
    """The forward and backward FFI calls for epsilon eps, partitioned by rows and batched."""
    def normalize(x):
        n, e = x.shape
        results = (jax.ShapeDtypeStruct((n, e), x.dtype), jax.ShapeDtypeStruct((n,), jnp.float32))
        return jax.ffi.ffi_call("icl_normalize_cpu", results)(x, eps=np.float32(eps))

    def normalize_vjp(xhat, rstd, dxhat):
        result = jax.ShapeDtypeStruct(xhat.shape, xhat.dtype)
        return (jax.ffi.ffi_call("icl_normalize_vjp_cpu", result)(xhat, rstd, dxhat),)

    return _rowwise(normalize, "n e -> n e, n"), _rowwise(normalize_vjp, "n e, n, n e -> n e")


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def normalize(x_NxE: jax.Array, eps: float) -> jax.Array:
    """xhat_NxE: each row minus its mean, over sqrt(its variance + eps)."""
    return _normalize_forward(x_NxE, eps)[0]


def _normalize_forward(x, eps):
    if reason := _layout_problem(x) or unavailable():  # a cache hit once a model selected it
        raise ValueError(f"the CPU layer-norm kernel cannot run: {reason}")
    xhat, rstd = _calls(float(eps))[0](x)
    return xhat, (xhat, rstd)


def _normalize_backward(eps, residuals, dxhat):
    return _calls(float(eps))[1](*residuals, dxhat)


normalize.defvjp(_normalize_forward, _normalize_backward)
