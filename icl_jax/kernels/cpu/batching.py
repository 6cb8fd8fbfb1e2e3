"""vmap for the CPU kernels' FFI calls, which take no mapped axis of their own."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def mapped_into_leading_axis(call):
    """`call` under vmap: the mapped axis joins every operand's and result's leading axis (the
    prompts, or the token rows: items the kernel treats independently); unmapped operands
    broadcast along it."""
    batched = jax.custom_batching.custom_vmap(call)

    @batched.def_vmap
    def rule(axis_size, in_batched, *args):
        args = [a if mapped else jnp.broadcast_to(a, (axis_size, *a.shape)) for a, mapped in zip(args, in_batched)]
        outs = batched(*(a.reshape(axis_size * a.shape[1], *a.shape[2:]) for a in args))
        return tuple(o.reshape(axis_size, -1, *o.shape[1:]) for o in outs), (True,) * len(outs)

    return batched
