"""Tokenization (docs/prompts_and_model.md): x_1, ỹ_1, x_2, ỹ_2, ... with ỹ_i = [y_i, 0, ..., 0].

Variant: an explicit type channel telling x tokens from y tokens, which the model otherwise
has to learn from position parity (it shortens the initial loss plateau of small models).
Legend: B prompts, K points, D input width, T = 2K tokens, W token width.
"""

import jax
import jax.numpy as jnp


def width(n_dims: int, label_classes: int = 0, type_channel: bool = False) -> int:
    """W: wide enough for x and for a one-hot label, plus the type channel."""
    return max(n_dims, label_classes) + int(type_channel)


def interleave(x_BxKxD: jax.Array, y_BxK: jax.Array, type_channel: bool = False,
               label_classes: int = 0) -> jax.Array:
    """Returns tokens_BxTxW with x at even positions and the padded y at odd ones (W = width()):
    ỹ = [y, 0, ...], or with label_classes = C > 0, [one_hot(y, C), 0, ...]; with a type
    channel the last coordinate is 0 on x tokens and 1 on y tokens."""
    w = width(x_BxKxD.shape[-1], label_classes, type_channel)
    x_BxKxD = jnp.pad(x_BxKxD, ((0, 0), (0, 0), (0, w - x_BxKxD.shape[-1])))
    b, k, _ = x_BxKxD.shape
    if label_classes:
        y_BxKxW = jax.nn.one_hot(y_BxK.astype(jnp.int32), w, dtype=x_BxKxD.dtype)
    else:
        y_BxKxW = jnp.zeros_like(x_BxKxD).at[:, :, 0].set(y_BxK)
    if type_channel:
        y_BxKxW = y_BxKxW.at[:, :, -1].set(1.0)
    return jnp.stack([x_BxKxD, y_BxKxW], axis=2).reshape(b, 2 * k, w)


X_STRIDE = 2  # the x tokens are every second token, from the first


def predictions_at_x(out_BxT: jax.Array) -> jax.Array:
    """The read-out at each x token is the prediction of that x's y: returns yhat_BxK."""
    return out_BxT[:, 0::X_STRIDE]
