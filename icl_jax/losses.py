"""The losses, one per task.loss, over the positions the curriculum keeps, and classification
correctness: training minimises them, evaluation scores with them (so neither imports the other).

Model outputs: out_BxK for "squared" (the prediction) and "logistic" (the logit of y = +1,
labels ±1); logits_BxKxC for "cross_entropy" (labels are class indices 0..C-1).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def _per_example(kind: str, out, y_BxK: jax.Array) -> jax.Array:
    if kind == "squared":
        return jnp.square(out - y_BxK)
    if kind == "logistic":
        return jax.nn.softplus(-y_BxK * out)  # -log σ(y·out), stable for large |out|
    if kind == "cross_entropy":
        return optax.softmax_cross_entropy_with_integer_labels(out, y_BxK.astype(jnp.int32))
    raise ValueError(f"unknown loss {kind!r}")


def masked_loss(kind: str, out, y_BxK: jax.Array, mask_K: jax.Array) -> jax.Array:
    """Mean loss over the prompts and the positions with mask_K = 1."""
    per_BxK = _per_example(kind, out, y_BxK) * mask_K
    return jnp.sum(per_BxK) / (jnp.sum(mask_K) * y_BxK.shape[0])


def correct(kind: str, out, y_BxK: jax.Array) -> jax.Array:
    """1.0 where a classification output is right, per example (B×K). A logit of exactly 0
    is no answer and counts as wrong (docs/function_classes.md)."""
    if kind == "logistic":
        return (jnp.sign(out) == y_BxK).astype(jnp.float32)
    if kind == "cross_entropy":
        return (jnp.argmax(out, axis=-1) == y_BxK.astype(jnp.int32)).astype(jnp.float32)
    raise ValueError(f"accuracy is not defined for loss {kind!r}")
