"""Which model a run trains: config.model.kind picks the module whose build(config, key) makes it.

Every model has the same call, model(x_BxKxD, y_BxK) -> yhat_BxK (logits with label
classes), and a trace(x, y) for the analyses (hidden states at the query, attention weights).
"""

from __future__ import annotations

import jax
import ml_collections

from icl_jax.errors import UserError

KINDS = ("transformer", "linear_attention")


def build(config: ml_collections.ConfigDict, key: jax.Array | int = 0):
    from icl_jax.models import linear_attention, transformer  # late: the package imports no model

    kind = config.model.get("kind", "transformer")
    if kind == "transformer":
        return transformer.build(config, key)
    if kind == "linear_attention":
        return linear_attention.build(config, key)
    raise UserError(f"unknown model.kind {kind!r}; known: {', '.join(KINDS)}")
