"""What a model shows the analyses besides its prediction (icl_jax/analysis/).

Legend: B prompts, K points, E state width at the query position, H heads, T tokens.
"""

from __future__ import annotations

from typing import NamedTuple

import jax


class Trace(NamedTuple):
    yhat_BxK: jax.Array  # the model's output, as model(x, y) returns it
    hidden_BxKxE: list[jax.Array]  # state at each query position: after the read-in, then after each layer
    attention_BxHxTxT: list[jax.Array] | None  # softmax weights per layer (None: the model has none)
