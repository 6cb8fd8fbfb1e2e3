"""GPT-2-style causal transformer over vector tokens (DESIGN.md §1), in Flax NNX.

Pre-LN blocks, learned absolute positions, no dropout, GELU (tanh form, as GPT-2), a shared
linear read-in from the token width to the model width instead of a token-embedding table,
and a scalar linear read-out. Initialisation follows GPT-2 inside the stack: N(0, 0.02)
weights, residual projections scaled by 1/√(2·n_layer), zero biases.
Legend: B batch, T tokens, D token width, E model width, H heads, F = E/H head width.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from icl_jax.models import tokens

_INIT = nnx.initializers.normal(0.02)
# The read-in and read-out sit outside GPT-2 in the field's model and keep PyTorch's default
# Linear init, U(±1/√fan_in). It matters: with N(0, 0.02) the input signal starts as small as
# the position embedding and small models sit far longer on the initial loss plateau.
_TORCH_LINEAR_INIT = nnx.initializers.variance_scaling(1 / 3, "fan_in", "uniform")


class Block(nnx.Module):
    def __init__(self, n_embd: int, n_head: int, n_layer: int, *, rngs: nnx.Rngs):
        residual_init = nnx.initializers.normal(0.02 / math.sqrt(2 * n_layer))
        self.n_head = n_head
        self.ln_1 = nnx.LayerNorm(n_embd, epsilon=1e-5, rngs=rngs)
        self.qkv = nnx.Linear(n_embd, 3 * n_embd, kernel_init=_INIT, rngs=rngs)
        self.attn_out = nnx.Linear(n_embd, n_embd, kernel_init=residual_init, rngs=rngs)
        self.ln_2 = nnx.LayerNorm(n_embd, epsilon=1e-5, rngs=rngs)
        self.mlp_in = nnx.Linear(n_embd, 4 * n_embd, kernel_init=_INIT, rngs=rngs)
        self.mlp_out = nnx.Linear(4 * n_embd, n_embd, kernel_init=residual_init, rngs=rngs)

    def __call__(self, h_BxTxE: jax.Array) -> jax.Array:
        b, t, e = h_BxTxE.shape
        qkv = self.qkv(self.ln_1(h_BxTxE)).reshape(b, t, 3, self.n_head, e // self.n_head)
        q_BxTxHxF, k_BxTxHxF, v_BxTxHxF = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        attended = jax.nn.dot_product_attention(q_BxTxHxF, k_BxTxHxF, v_BxTxHxF, is_causal=True)
        h_BxTxE = h_BxTxE + self.attn_out(attended.reshape(b, t, e))
        mlp = self.mlp_out(jax.nn.gelu(self.mlp_in(self.ln_2(h_BxTxE)), approximate=True))
        return h_BxTxE + mlp


class Transformer(nnx.Module):
    def __init__(self, n_dims: int, n_positions: int, n_embd: int, n_layer: int, n_head: int,
                 type_channel: bool = False, *, rngs: nnx.Rngs):
        self.max_tokens = 2 * n_positions
        self.type_channel = type_channel
        self.read_in = nnx.Linear(n_dims + int(type_channel), n_embd, kernel_init=_TORCH_LINEAR_INIT, rngs=rngs)
        self.wpe = nnx.Param(_INIT(rngs.params(), (self.max_tokens, n_embd)))
        self.blocks = nnx.List([Block(n_embd, n_head, n_layer, rngs=rngs) for _ in range(n_layer)])
        self.ln_f = nnx.LayerNorm(n_embd, epsilon=1e-5, rngs=rngs)
        self.read_out = nnx.Linear(n_embd, 1, kernel_init=_TORCH_LINEAR_INIT, rngs=rngs)

    def __call__(self, x_BxKxD: jax.Array, y_BxK: jax.Array) -> jax.Array:
        """Returns yhat_BxK: prediction k sees (x_j, y_j) for j < k, and x_k."""
        z_BxTxW = tokens.interleave(x_BxKxD, y_BxK, self.type_channel)
        t = z_BxTxW.shape[1]
        if t > self.max_tokens:
            raise ValueError(f"{t // 2} points exceed the model's {self.max_tokens // 2} positions")
        h = self.read_in(z_BxTxW) + self.wpe[:t]
        for block in self.blocks:
            h = block(h)
        return tokens.predictions_at_x(self.read_out(self.ln_f(h))[..., 0])


def build(config: ml_collections.ConfigDict, key: jax.Array | int = 0) -> Transformer:
    m = config.model
    return Transformer(config.task.n_dims, m.n_positions, m.n_embd, m.n_layer, m.n_head, m.type_channel,
                       rngs=nnx.Rngs(params=key))


def param_count(params) -> int:
    return sum(int(p.size) for p in jax.tree.leaves(params))
