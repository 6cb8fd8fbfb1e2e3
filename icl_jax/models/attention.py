"""Causal softmax attention over heads-major arrays, with a hand-written backward pass.

Legend: B batch, H heads, T tokens (queries q, keys k), F head width.

Queries may be every `stride`-th token alone (Tq = Tk / stride, query i at position stride·i):
the last block needs its output only at the x tokens (transformer.py), and it is causal
attention still, each query seeing the keys at or before its position.

Heads-major (BxHxTxF) makes every product a plain batched matmul. The backward pass is the
textbook one, from the saved weights: dv = pᵀ·do, dp = do·vᵀ, ds = p ⊙ (dp − Σ dp ⊙ p),
dq = ds·k, dk = dsᵀ·q. Written out, because autodiff's version was slower on CPU, where XLA
fused dp's product into the softmax's reduction loop instead of handing it to the matmul
library (benchmarks/README.md). It is the "einsum" attention of models/ops.py
(docs/kernels.md).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def query_stride(tq: int, tk: int) -> int:
    """How many tokens apart the queries are: Tk / Tq, which must be a whole number."""
    if tq < 1 or tk % tq:
        raise ValueError(f"{tq} queries are not every n-th of {tk} tokens")
    return tk // tq


def causal_mask(tq: int, tk: int) -> jax.Array:
    """visible_TqxTk: key j is visible to query i when j ≤ i·stride."""
    return jnp.arange(tk)[None, :] <= query_stride(tq, tk) * jnp.arange(tq)[:, None]


def causal_weights(q_BxHxTqxF: jax.Array, k_BxHxTxF: jax.Array) -> jax.Array:
    """weights_BxHxTqxT in float32: each query's softmax over the keys at or before it, of the
    plain products q·k (scale q beforehand)."""
    logits = jnp.einsum("bhqf,bhkf->bhqk", q_BxHxTqxF, k_BxHxTxF).astype(jnp.float32)
    return jax.nn.softmax(jnp.where(causal_mask(*logits.shape[-2:]), logits, -jnp.inf), axis=-1)


@jax.custom_vjp
def causal_attention(q_BxHxTqxF: jax.Array, k_BxHxTxF: jax.Array, v_BxHxTxF: jax.Array) -> jax.Array:
    """out_BxHxTqxF = causal_weights(q, k) · v, in v's dtype."""
    return _forward(q_BxHxTqxF, k_BxHxTxF, v_BxHxTxF)[0]


def _forward(q, k, v):
    p = causal_weights(q, k)
    return jnp.einsum("bhqk,bhkf->bhqf", p.astype(v.dtype), v), (q, k, v, p)


def _backward(residuals, do_BxHxTqxF):
    q, k, v, p = residuals
    dtype = v.dtype
    dv = jnp.einsum("bhqk,bhqf->bhkf", p.astype(dtype), do_BxHxTqxF)
    dp = jnp.einsum("bhqf,bhkf->bhqk", do_BxHxTqxF, v).astype(jnp.float32)
    ds = (p * (dp - jnp.sum(dp * p, axis=-1, keepdims=True))).astype(dtype)
    return jnp.einsum("bhqk,bhkf->bhqf", ds, k), jnp.einsum("bhqk,bhqf->bhkf", ds, q), dv


causal_attention.defvjp(_forward, _backward)
