"""DESIGN.md §1 tokenization: x_1, ỹ_1, x_2, ỹ_2, ... with ỹ_i = [y_i, 0, ..., 0].

Variant: an explicit type channel telling x tokens from y tokens, which the model otherwise
has to learn from position parity (it shortens the initial loss plateau of small models).
Legend: B prompts, K points, D input width, T = 2K tokens, W token width.
"""

import jax
import jax.numpy as jnp


def interleave(x_BxKxD: jax.Array, y_BxK: jax.Array, type_channel: bool = False) -> jax.Array:
    """Returns tokens_BxTxW with x at even positions and the padded y at odd ones; W = D, or
    D + 1 with an explicit type channel (0 on x tokens, 1 on y tokens)."""
    if type_channel:
        x_BxKxD = jnp.pad(x_BxKxD, ((0, 0), (0, 0), (0, 1)))
    b, k, w = x_BxKxD.shape
    y_BxKxW = jnp.zeros_like(x_BxKxD).at[:, :, 0].set(y_BxK)
    if type_channel:
        y_BxKxW = y_BxKxW.at[:, :, -1].set(1.0)
    return jnp.stack([x_BxKxD, y_BxKxW], axis=2).reshape(b, 2 * k, w)


def predictions_at_x(out_BxT: jax.Array) -> jax.Array:
    """The read-out at each x token is the prediction of that x's y: returns yhat_BxK."""
    return out_BxT[:, 0::2]
