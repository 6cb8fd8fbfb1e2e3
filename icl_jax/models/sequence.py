"""What every sequence model over the prompt's tokens shares, whatever mixes them across time.

tokens (models/tokens.py) -> a linear read-in to the model width -> the kind's layers, each
the stream h_BxTxE -> h_BxTxE, causal -> a final layer norm -> a linear read-out, read at the
x tokens. The transformer adds its positions and its stride on the last block; the recurrent,
state-space and retention models (their own files) need no positions: order is in the
recurrence.
Legend: B prompts, K points, D input width, T = 2K tokens, E model width, C label classes.
"""

from __future__ import annotations

import jax
from flax import nnx

from icl_jax.models import tokens
from icl_jax.models.trace import Trace

# The read-in and read-out sit outside GPT-2 in the field's model and keep PyTorch's default
# Linear init, U(±1/√fan_in). It matters: with N(0, 0.02) the input signal starts as small as
# the position embedding and small models sit far longer on the initial loss plateau.
TORCH_LINEAR_INIT = nnx.initializers.variance_scaling(1 / 3, "fan_in", "uniform")


class SequenceModel(nnx.Module):
    """A subclass's __init__ calls init_stack with its layers (modules mapping the stream
    h_BxTxE to h_BxTxE) and inherits the call and the trace. The transformer, which adds its
    positions between the read-in and the blocks, calls init_read_in and init_read_out itself,
    so that it draws its initial parameters as it always has."""

    def init_stack(self, n_dims: int, n_embd: int, label_classes: int, type_channel: bool, remat: bool,
                   make_layers, rngs: nnx.Rngs) -> None:
        """The whole init of a kind without positions: read-in, the layers make_layers() returns
        (made after the read-in, so parameters are drawn in the model's order), read-out."""
        self.remat = remat
        self.init_read_in(n_dims, n_embd, label_classes, type_channel, rngs)
        self.layers = nnx.List(make_layers())
        self.init_read_out(n_embd, rngs)

    def init_read_in(self, n_dims: int, n_embd: int, label_classes: int, type_channel: bool,
                     rngs: nnx.Rngs) -> None:
        self.type_channel, self.label_classes = type_channel, label_classes
        width = tokens.width(n_dims, label_classes, type_channel)
        self.read_in = nnx.Linear(width, n_embd, kernel_init=TORCH_LINEAR_INIT, rngs=rngs)

    def init_read_out(self, n_embd: int, rngs: nnx.Rngs) -> None:
        self.ln_f = nnx.LayerNorm(n_embd, epsilon=1e-5, rngs=rngs)
        self.read_out = nnx.Linear(n_embd, max(self.label_classes, 1), kernel_init=TORCH_LINEAR_INIT, rngs=rngs)

    def read_in_tokens(self, x_BxKxD: jax.Array, y_BxK: jax.Array) -> jax.Array:
        """h_BxTxE: the read-in of the prompt's tokens."""
        return self.read_in(tokens.interleave(x_BxKxD, y_BxK, self.type_channel, self.label_classes))

    def read_out_tokens(self, h_BxSxE: jax.Array) -> jax.Array:
        """The output at each of the S tokens given: BxS, or BxSxC with label classes."""
        out_BxSxC = self.read_out(self.ln_f(h_BxSxE))
        return out_BxSxC if self.label_classes else out_BxSxC[..., 0]

    def __call__(self, x_BxKxD: jax.Array, y_BxK: jax.Array) -> jax.Array:
        """Returns yhat_BxK (logits_BxKxC with label classes): output k sees (x_j, y_j) for
        j < k, and x_k."""
        h = self.read_in_tokens(x_BxKxD, y_BxK)
        apply = nnx.remat(_apply) if self.remat else _apply
        for layer in self.layers:
            h = apply(layer, h)
        return tokens.predictions_at_x(self.read_out_tokens(h))

    def trace(self, x_BxKxD: jax.Array, y_BxK: jax.Array) -> Trace:
        """The output, the stream at every x token after the read-in and after each layer, and
        the attention weights of the layers that have them (None when none has)."""
        h = self.read_in_tokens(x_BxKxD, y_BxK)
        hidden, attention = [tokens.predictions_at_x(h)], []
        for layer in self.layers:
            if hasattr(layer, "attention_weights"):
                attention.append(layer.attention_weights(h))
            h = layer(h)
            hidden.append(tokens.predictions_at_x(h))
        return Trace(tokens.predictions_at_x(self.read_out_tokens(h)), hidden, attention or None)


def _apply(layer: nnx.Module, h_BxTxE: jax.Array) -> jax.Array:
    return layer(h_BxTxE)
