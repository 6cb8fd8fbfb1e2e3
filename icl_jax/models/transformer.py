"""GPT-2-style causal transformer over vector tokens (docs/prompts_and_model.md), in Flax NNX.

Pre-LN blocks, learned absolute positions, no dropout, GELU (tanh form, as GPT-2), a shared
linear read-in from the token width to the model width instead of a token-embedding table,
and a scalar linear read-out. Initialisation follows GPT-2 inside the stack: N(0, 0.02)
weights, residual projections scaled by 1/√(2·n_layer), zero biases. A block's operations
run as models/ops.py picked them when the model was built (docs/kernels.md).
Legend: B batch, T tokens, S = T/stride, M = B·S token rows, D token width, E model width,
H heads, F = E/H head width.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from icl_jax.models import attention, ops as ops_lib, tokens
from icl_jax.models.sequence import SequenceModel
from icl_jax.models.trace import Trace

# (n_layer, n_head, n_embd): the field's GPT-2 sizes.
PRESETS = {"transformer": {
    "tiny": dict(n_layer=3, n_head=2, n_embd=64),
    "small": dict(n_layer=6, n_head=4, n_embd=128),
    "standard": dict(n_layer=12, n_head=8, n_embd=256),
}}
OPTIONS = ("type_channel", "compute_dtype", "remat", "scan_layers", "attention_impl", "dense_impl")

_INIT = nnx.initializers.normal(0.02)


class Block(nnx.Module):
    def __init__(self, n_embd: int, n_head: int, n_layer: int, ops: ops_lib.Ops, dtype=jnp.float32, *,
                 rngs: nnx.Rngs):
        residual_init = nnx.initializers.normal(0.02 / math.sqrt(2 * n_layer))
        self.n_head, self.ops = n_head, ops
        linear = dict(dtype=dtype, param_dtype=jnp.float32, rngs=rngs)
        self.ln_1 = nnx.LayerNorm(n_embd, epsilon=1e-5, rngs=rngs)
        self.qkv = nnx.Linear(n_embd, 3 * n_embd, kernel_init=_INIT, **linear)
        self.attn_out = nnx.Linear(n_embd, n_embd, kernel_init=residual_init, **linear)
        self.ln_2 = nnx.LayerNorm(n_embd, epsilon=1e-5, rngs=rngs)
        self.mlp_in = nnx.Linear(n_embd, 4 * n_embd, kernel_init=_INIT, **linear)
        self.mlp_out = nnx.Linear(4 * n_embd, n_embd, kernel_init=residual_init, **linear)

    def __call__(self, h_BxTxE: jax.Array, stride: int = 1) -> jax.Array:
        """The stream after this block at every stride-th token, from the first: BxSxE. Every
        token's key and value still enter the attention; stride 2 is the last block of the
        model, whose output is read only at the x tokens. The stream stays float32, held as
        M = B·S token rows inside the block (ops.py: why one token axis); only the operations
        run in the compute dtype."""
        b, t, e = h_BxTxE.shape
        ops = self.ops
        qkv_BxTx3E = ops.norm_then_dense(self.ln_1, self.qkv, h_BxTxE)
        h_MxE = h_BxTxE[:, ::stride].reshape(-1, e)
        attended_MxE = ops.dense(self.attn_out, ops.causal_attention(qkv_BxTx3E, self.n_head, stride))
        h_MxE = h_MxE + attended_MxE.astype(h_MxE.dtype)
        u_Mx4E = jax.nn.gelu(ops.norm_then_dense(self.ln_2, self.mlp_in, h_MxE), approximate=True)
        h_MxE = h_MxE + ops.dense(self.mlp_out, u_Mx4E).astype(h_MxE.dtype)
        return h_MxE.reshape(b, t // stride, e)

    def heads(self, h_BxTxE: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """q, k, v, each BxTxHxF, unscaled: this block's projections of the stream h."""
        b, t, e = h_BxTxE.shape
        qkv = self.ops.norm_then_dense(self.ln_1, self.qkv, h_BxTxE).reshape(b, t, 3, self.n_head, e // self.n_head)
        return qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]

    def attention_weights(self, h_BxTxE: jax.Array) -> jax.Array:
        """weights_BxHxTxT: the causal softmax attention of this block's heads; for the analyses."""
        q, k, _ = self.heads(h_BxTxE)
        return attention.causal_weights(q.transpose(0, 2, 1, 3) * (1 / math.sqrt(q.shape[-1])), k.transpose(0, 2, 1, 3))


class Transformer(SequenceModel):
    """Options that matter on accelerators, each checked against the plain path in the tests:
    `compute_dtype` (bfloat16 matmuls, float32 parameters and residual stream), `remat`
    (recompute each block in the backward pass), `scan_layers` (one compiled block scanned
    over stacked parameters: compile time independent of depth). `attention_impl` and
    `dense_impl` ("auto" or an explicit choice: config.py) say how the blocks'
    operations run; models/ops.py picks that here, once, and raises UserError for a choice that
    cannot run."""

    def __init__(self, n_dims: int, n_positions: int, n_embd: int, n_layer: int, n_head: int,
                 type_channel: bool = False, compute_dtype: str = "float32", remat: bool = False,
                 scan_layers: bool = False, attention_impl: str = "auto", label_classes: int = 0,
                 dense_impl: str = "auto", *, rngs: nnx.Rngs):
        self.max_tokens = 2 * n_positions
        self.remat, self.scan_layers = remat, scan_layers
        self.init_read_in(n_dims, n_embd, label_classes, type_channel, rngs)
        self.wpe = nnx.Param(_INIT(rngs.params(), (self.max_tokens, n_embd)))
        dtype = jnp.dtype(compute_dtype)
        ops = ops_lib.select(attention_impl, dense_impl, dtype, n_embd, n_head)
        block_args = (n_embd, n_head, n_layer, ops, dtype)
        if scan_layers:
            @nnx.split_rngs(splits=n_layer)
            @nnx.vmap(in_axes=(0,), out_axes=0)
            def stacked(rngs):
                return Block(*block_args, rngs=rngs)

            self.blocks = stacked(rngs)
        else:
            self.blocks = nnx.List([Block(*block_args, rngs=rngs) for _ in range(n_layer)])
        self.init_read_out(n_embd, rngs)

    def _embed(self, x_BxKxD: jax.Array, y_BxK: jax.Array) -> jax.Array:
        t = 2 * x_BxKxD.shape[1]
        if t > self.max_tokens:
            raise ValueError(f"{t // 2} points exceed the model's {self.max_tokens // 2} positions")
        return self.read_in_tokens(x_BxKxD, y_BxK) + self.wpe[:t]

    def _layers(self, index: int | slice) -> Block | list[Block]:
        """self.blocks[index]; with scan_layers, a Block of those layers' stacked parameters."""
        if not self.scan_layers:
            return list(self.blocks)[index]
        graphdef, state = nnx.split(self.blocks)
        return nnx.merge(graphdef, jax.tree.map(lambda a: a[index], state))

    def trace(self, x_BxKxD: jax.Array, y_BxK: jax.Array) -> Trace:
        """The output, the residual stream at every x token (the query positions) after the
        read-in and after each block, and each block's attention weights. Block by block in
        Python (scanned layers are sliced out): for analyses, not for speed."""
        h = self._embed(x_BxKxD, y_BxK)
        n_layer = jax.tree.leaves(nnx.state(self.blocks))[0].shape[0] if self.scan_layers else len(self.blocks)
        blocks = [self._layers(i) for i in range(n_layer)]
        hidden, attention = [tokens.predictions_at_x(h)], []
        for block in blocks:
            attention.append(block.attention_weights(h))
            h = block(h)
            hidden.append(tokens.predictions_at_x(h))
        return Trace(tokens.predictions_at_x(self.read_out_tokens(h)), hidden, attention)

    def __call__(self, x_BxKxD: jax.Array, y_BxK: jax.Array) -> jax.Array:
        """Returns yhat_BxK (logits_BxKxC with label classes): output k sees (x_j, y_j) for
        j < k, and x_k."""
        h = self._embed(x_BxKxD, y_BxK)
        apply = (lambda block, h: block(h))
        apply_last = (lambda block, h: block(h, tokens.X_STRIDE))
        if self.remat:
            apply, apply_last = nnx.remat(apply), nnx.remat(apply_last)
        first, last = self._layers(slice(None, -1)), self._layers(-1)
        if self.scan_layers:
            @nnx.scan(in_axes=(nnx.Carry, 0), out_axes=nnx.Carry)
            def through(h, block):
                return apply(block, h)

            h = through(h, first)
        else:
            for block in first:
                h = apply(block, h)
        # Only the x tokens are read out, so the last block computes its output there alone
        # (the y tokens' keys and values still enter its attention): its share of a CPU train
        # step is in benchmarks/README.md.
        return self.read_out_tokens(apply_last(last, h))


def build(m: ml_collections.ConfigDict, input_width: int, label_classes: int = 0,
          key: jax.Array | int = 0) -> Transformer:
    return Transformer(input_width, m.n_positions, m.n_embd, m.n_layer, m.n_head, m.type_channel,
                       m.compute_dtype, m.remat, m.scan_layers, m.attention_impl, label_classes, m.dense_impl,
                       rngs=nnx.Rngs(params=key))


def state_size(m: ml_collections.ConfigDict, input_width: int, n_points: int) -> int:
    """The key-value cache when the last query is read: a key and a value of width E per
    layer for each of the 2·n_points − 1 tokens seen."""
    return 2 * m.n_layer * m.n_embd * (2 * n_points - 1)
