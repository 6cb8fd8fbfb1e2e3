"""MambaFormer (Park et al. 2024): Mamba blocks and softmax attention, interleaved.

The shared read-in and read-out (models/sequence.py) around one Mamba block in place of the
position embedding (the recurrence orders the tokens, so attention needs no positions), then
n_layer pairs of a causal attention block and a Mamba block (models/mamba.py), the Mamba
block in the place of the transformer's MLP. Park et al. find it learns both what Mamba
learns better than a transformer (sparse parity) and what it learns worse (retrieval).
The attention block is the transformer's first half, GPT-2's, over the same operations
(models/ops.py picks how they run: attention_impl and dense_impl apply here as there).
Legend: B prompts, T tokens, E model width, H heads, F = E/H head width, M = B·T rows.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from icl_jax.models import attention, mamba, ops as ops_lib
from icl_jax.models.sequence import SequenceModel

# An attention block (4E²) and a Mamba block (≈ 6E²) a pair, against a transformer block's
# 12E², and the first Mamba block besides (tests/test_model_kinds.py: ±10 %).
PRESETS = {"hybrid": {
    "tiny": dict(n_layer=3, n_head=2, n_embd=60),
    "small": dict(n_layer=6, n_head=4, n_embd=128),
    "standard": dict(n_layer=12, n_head=8, n_embd=264),
}}
OPTIONS = ("type_channel", "compute_dtype", "remat", "attention_impl", "dense_impl", "ssm_state")
_INIT = nnx.initializers.normal(0.02)


class AttentionBlock(nnx.Module):
    def __init__(self, n_embd: int, n_head: int, n_layer: int, ops: ops_lib.Ops, dtype=jnp.float32, *,
                 rngs: nnx.Rngs):
        self.n_head, self.ops = n_head, ops
        linear = dict(dtype=dtype, param_dtype=jnp.float32, rngs=rngs)
        self.ln = nnx.LayerNorm(n_embd, epsilon=1e-5, rngs=rngs)
        self.qkv = nnx.Linear(n_embd, 3 * n_embd, kernel_init=_INIT, **linear)
        self.out = nnx.Linear(n_embd, n_embd, kernel_init=nnx.initializers.normal(0.02 / math.sqrt(2 * n_layer)),
                              **linear)

    def __call__(self, h_BxTxE: jax.Array) -> jax.Array:
        attended_MxE = self.ops.dense(self.out, self.ops.causal_attention(
            self.ops.norm_then_dense(self.ln, self.qkv, h_BxTxE), self.n_head))
        return h_BxTxE + attended_MxE.reshape(h_BxTxE.shape).astype(h_BxTxE.dtype)

    def attention_weights(self, h_BxTxE: jax.Array) -> jax.Array:
        """weights_BxHxTxT of this block's heads; for the analyses."""
        b, t, e = h_BxTxE.shape
        qkv = self.ops.norm_then_dense(self.ln, self.qkv, h_BxTxE).reshape(b, t, 3, self.n_head, e // self.n_head)
        q, k, _ = qkv.transpose(2, 0, 3, 1, 4)
        return attention.causal_weights(q * (1 / math.sqrt(q.shape[-1])), k)


class Hybrid(SequenceModel):
    def __init__(self, n_dims: int, n_embd: int, n_layer: int, n_head: int, n_state: int = 16,
                 type_channel: bool = False, compute_dtype: str = "float32", remat: bool = False,
                 attention_impl: str = "auto", dense_impl: str = "auto", label_classes: int = 0, *,
                 rngs: nnx.Rngs):
        dtype = jnp.dtype(compute_dtype)
        ops = ops_lib.select(attention_impl, dense_impl, dtype, n_embd, n_head)
        n_mamba = n_layer + 1

        def make_layers():
            layers = [mamba.MambaBlock(n_embd, n_state, n_mamba, dtype, rngs=rngs)]
            for _ in range(n_layer):
                layers += [AttentionBlock(n_embd, n_head, n_layer, ops, dtype, rngs=rngs),
                           mamba.MambaBlock(n_embd, n_state, n_mamba, dtype, rngs=rngs)]
            return layers

        self.init_stack(n_dims, n_embd, label_classes, type_channel, remat, make_layers, rngs)


def build(m: ml_collections.ConfigDict, input_width: int, label_classes: int = 0,
          key: jax.Array | int = 0) -> Hybrid:
    return Hybrid(input_width, m.n_embd, m.n_layer, m.n_head, m.ssm_state, m.type_channel, m.compute_dtype,
                  m.remat, m.attention_impl, m.dense_impl, label_classes, rngs=nnx.Rngs(params=key))


def state_size(m: ml_collections.ConfigDict, input_width: int, n_points: int) -> int:
    """The Mamba blocks' states and the attention blocks' key-value cache (as the transformer's)."""
    return ((m.n_layer + 1) * mamba.state_per_block(m.n_embd, m.ssm_state)
            + 2 * m.n_layer * m.n_embd * (2 * n_points - 1))
