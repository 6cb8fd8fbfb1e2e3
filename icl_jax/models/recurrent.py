"""Stacked LSTM and GRU over the prompt's tokens (model.kind "lstm" and "gru"), Flax's cells.

The shared read-in and read-out (models/sequence.py) around n_layer recurrent layers of width
E, each reading the hidden states of the one below, as PyTorch's nn.LSTM(num_layers=L). Garg
et al. (2022) and Bhattamishra et al. (2024) compare such an LSTM with transformers: its
state is fixed, L·2E floats (LSTM: h and c) or L·E (GRU), whatever the prompt's length.
Legend: B prompts, T tokens, E model width.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from icl_jax.models.sequence import SequenceModel

# Widths that match the transformer preset of the same name in parameters at its depth: an
# LSTM layer has 8E² weights and a GRU layer 6E², a transformer block 12E²
# (tests/test_model_kinds.py holds every preset to ±10 %).
PRESETS = {
    "lstm": {"tiny": dict(n_layer=3, n_embd=80), "small": dict(n_layer=6, n_embd=160),
             "standard": dict(n_layer=12, n_embd=320)},
    "gru": {"tiny": dict(n_layer=3, n_embd=92), "small": dict(n_layer=6, n_embd=184),
            "standard": dict(n_layer=12, n_embd=368)},
}
OPTIONS = ("type_channel", "compute_dtype", "remat")
CELLS = {"lstm": nnx.OptimizedLSTMCell, "gru": nnx.GRUCell}


class RecurrentLayer(nnx.Module):
    def __init__(self, cell: str, n_embd: int, dtype, *, rngs: nnx.Rngs):
        self.cell = CELLS[cell](n_embd, n_embd, dtype=dtype, rngs=rngs)
        self.kind = cell

    def __call__(self, h_BxTxE: jax.Array) -> jax.Array:
        """The cell's hidden state after each token, from a zero state. (A scan of our own:
        nnx.RNN draws its zero carry from a random stream, which a jitted step cannot advance.)"""
        zeros_BxE = jnp.zeros((h_BxTxE.shape[0], self.cell.hidden_features), jnp.float32)
        carry = (zeros_BxE, zeros_BxE) if self.kind == "lstm" else zeros_BxE
        def step(carry, h_BxE):  # the state stays float32 whatever the compute dtype
            carry, out_BxE = self.cell(carry, h_BxE)
            return jax.tree.map(lambda a: a.astype(jnp.float32), carry), out_BxE

        _, out_TxBxE = jax.lax.scan(step, carry, jnp.moveaxis(h_BxTxE, 1, 0))
        return jnp.moveaxis(out_TxBxE, 0, 1).astype(jnp.float32)


class RecurrentModel(SequenceModel):
    def __init__(self, cell: str, n_dims: int, n_embd: int, n_layer: int, type_channel: bool = False,
                 compute_dtype: str = "float32", remat: bool = False, label_classes: int = 0, *,
                 rngs: nnx.Rngs):
        self.init_stack(n_dims, n_embd, label_classes, type_channel, remat, lambda: [
            RecurrentLayer(cell, n_embd, jnp.dtype(compute_dtype), rngs=rngs) for _ in range(n_layer)], rngs)


def build(m: ml_collections.ConfigDict, input_width: int, label_classes: int = 0,
          key: jax.Array | int = 0) -> RecurrentModel:
    return RecurrentModel(m.kind, input_width, m.n_embd, m.n_layer, m.type_channel, m.compute_dtype,
                          m.remat, label_classes, rngs=nnx.Rngs(params=key))


def state_size(m: ml_collections.ConfigDict, input_width: int, n_points: int) -> int:
    return m.n_layer * m.n_embd * (2 if m.kind == "lstm" else 1)
