"""Which model a run trains: model_config.kind picks the module whose build(...) makes it.

Every model has the same call, model(x_BxKxD, y_BxK) -> yhat_BxK (logits with label
classes), and a trace(x, y) for the analyses (hidden states at the query, attention weights).
A model knows nothing of tasks: what it needs of one is the input width and the label classes.
"""

from __future__ import annotations

import jax
import ml_collections

from icl_jax.errors import UserError

KINDS = ("transformer", "linear_attention")


def build(model_config: ml_collections.ConfigDict, input_width: int, label_classes: int = 0,
          key: jax.Array | int = 0):
    """The model of `model_config` (config.model) for inputs of `input_width` coordinates and
    `label_classes` one-hot label classes (0: real-valued labels), its parameters drawn from `key`."""
    from icl_jax.models import linear_attention, transformer  # late: the package imports no model

    kind = model_config.get("kind", "transformer")
    if kind == "transformer":
        return transformer.build(model_config, input_width, label_classes, key)
    if kind == "linear_attention":
        return linear_attention.build(model_config, input_width, label_classes, key)
    raise UserError(f"unknown model.kind {kind!r}; known: {', '.join(KINDS)}")
