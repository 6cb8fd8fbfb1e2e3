"""Linear self-attention (von Oswald et al. 2023), and the weights that make it gradient descent.

Tokens e_i = (x_i, y_i) in R^W, W = D + 1; the query is (x_k, 0). A layer with H heads adds
    Δe = (1/k) Σ_h P_h V_h (Σ_{i<k} e_i e_iᵀ) K_hᵀ Q_h e
to every token of the prompt (no softmax, no normalisation layers, no MLP), and the
prediction is ŷ = −(the query's y-coordinate) after the last layer.

Every prefix is its own prompt: prediction k runs the layers on the k examples before it
and the query (x_k, 0), so the in-context tokens of different k evolve separately (the
construction below is then exactly L steps of GD on the k examples for every k, not only
for one prompt length). The first layer reads shared example tokens through prefix sums; from
the second on, each prefix holds its own copy (B·K²·W per layer, small at these sizes).

The construction (`gradient_descent_params`): Q = K = [[I, 0], [0, 0]] and P V = [[0, 0],
[0, −η]] turn Δe_j into (0, −(η/k) Σ_i r_i x_i·x_j), r_i the y-coordinate of token i. The
context's y-coordinates are the residuals y_i − x_i·w_t and the query's is −x_k·w_t, so one
layer is w_{t+1} = w_t − η ∇L_k(w_t) with L_k(w) = (1/2k) Σ_{i<k} (x_i·w − y_i)², the loss
of baselines/gradient_descent.py.
Legend: B prompts, K points, D input width, W = D + 1 token width, H heads, N = K example
slots per prefix.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from icl_jax.errors import UserError
from icl_jax.models.trace import Trace

# Layers and heads as the transformer's presets of the same name: the construction has no
# width of its own (W = D + 1), so no preset can match a transformer's parameter count.
PRESETS = {"linear_attention": {"tiny": dict(n_layer=3, n_head=2), "small": dict(n_layer=6, n_head=4),
                                "standard": dict(n_layer=12, n_head=8)}}
OPTIONS = ()
_HIGHEST = jax.lax.Precision.HIGHEST  # the construction must match GD to float32 rounding


class LinearSelfAttention(nnx.Module):
    def __init__(self, width: int, n_head: int, init_scale: float, *, rngs: nnx.Rngs):
        init = nnx.initializers.normal(init_scale / np.sqrt(width))
        shape = (n_head, width, width)
        # Separate factors as in the paper (not the products PV and KᵀQ): the factorisation
        # is part of the model whose training dynamics the construction is compared with.
        self.query = nnx.Param(init(rngs.params(), shape))
        self.key = nnx.Param(init(rngs.params(), shape))
        self.value = nnx.Param(init(rngs.params(), shape))
        self.projection = nnx.Param(init(rngs.params(), shape))

    def mixing(self, context: jax.Array, count_K: jax.Array) -> jax.Array:
        """mixed_BxKxWxW = (1/k) Σ_h P_h V_h (Σ_{i<k} e_i e_iᵀ) K_hᵀ Q_h, so that Δe = mixed e.
        `context` is shared by every prefix (B×K×W, before any layer has changed it) or held
        per prefix (B×K×N×W, slot i of prefix k zero for i >= k)."""
        if context.ndim == 3:  # the k-th exclusive prefix sum of e_i e_iᵀ
            outer_BxKxWxW = jnp.einsum("bki,bkj->bkij", context, context, precision=_HIGHEST)
            total = jnp.cumsum(outer_BxKxWxW, axis=1)
            moments_BxKxWxW = jnp.concatenate([jnp.zeros_like(total[:, :1]), total[:, :-1]], axis=1)
        else:
            moments_BxKxWxW = jnp.einsum("bkni,bknj->bkij", context, context, precision=_HIGHEST)
        moments_BxKxWxW = moments_BxKxWxW / count_K[:, None, None]
        pv_HxWxW = jnp.einsum("hij,hjl->hil", self.projection[...], self.value[...], precision=_HIGHEST)
        kq_HxWxW = jnp.einsum("hji,hjl->hil", self.key[...], self.query[...], precision=_HIGHEST)
        return jnp.einsum("hij,bkjl,hlm->bkim", pv_HxWxW, moments_BxKxWxW, kq_HxWxW, precision=_HIGHEST)


def _apply(mixed_BxKxWxW: jax.Array, e: jax.Array) -> jax.Array:
    """e + mixed e for tokens e_BxKxW (one per prefix) or e_BxKxNxW (N per prefix)."""
    if e.ndim == 3:
        return e + jnp.einsum("bkim,bkm->bki", mixed_BxKxWxW, e, precision=_HIGHEST)
    return e + jnp.einsum("bkim,bknm->bkni", mixed_BxKxWxW, e, precision=_HIGHEST)


class LinearAttentionModel(nnx.Module):
    def __init__(self, n_dims: int, n_layer: int, n_head: int, init_scale: float = 1.0, *, rngs: nnx.Rngs):
        self.n_dims = n_dims
        self.layers = nnx.List([LinearSelfAttention(n_dims + 1, n_head, init_scale, rngs=rngs)
                                for _ in range(n_layer)])

    def trace(self, x_BxKxD: jax.Array, y_BxK: jax.Array) -> Trace:
        x_BxKxD = jnp.asarray(x_BxKxD, jnp.float32)
        k = x_BxKxD.shape[1]
        count_K = jnp.maximum(jnp.arange(k), 1).astype(jnp.float32)
        # Before the first layer every prefix sees the same example tokens; a layer that
        # changes them (any but the last, whose context nobody reads) gives each prefix its own.
        context = jnp.concatenate([x_BxKxD, jnp.asarray(y_BxK, jnp.float32)[..., None]], axis=-1)
        query_BxKxW = jnp.pad(x_BxKxD, ((0, 0), (0, 0), (0, 1)))
        hidden = [query_BxKxW]
        for i, layer in enumerate(self.layers):
            mixed = layer.mixing(context, count_K)
            if i + 1 < len(self.layers):
                if context.ndim == 3:
                    earlier_KxK = (jnp.arange(k)[None, :] < jnp.arange(k)[:, None]).astype(context.dtype)
                    context = earlier_KxK[None, :, :, None] * context[:, None]
                context = _apply(mixed, context)  # zero slots stay zero: Δe is linear in e
            query_BxKxW = _apply(mixed, query_BxKxW)
            hidden.append(query_BxKxW)
        return Trace(-query_BxKxW[..., -1], hidden, None)

    def __call__(self, x_BxKxD: jax.Array, y_BxK: jax.Array) -> jax.Array:
        """Returns yhat_BxK: output k sees (x_j, y_j) for j < k, and x_k."""
        return self.trace(x_BxKxD, y_BxK).yhat_BxK


def gradient_descent_params(n_dims: int, n_layer: int, n_head: int, step_size: float) -> dict:
    """Parameters (nnx.to_pure_dict layout) with which every layer is one GD step of size
    `step_size` on L_k from w = 0 (head 0 does it, the other heads are zero)."""
    w = n_dims + 1
    select_x = np.zeros((n_head, w, w), np.float32)
    select_x[0, :n_dims, :n_dims] = np.eye(n_dims)
    value = np.zeros((n_head, w, w), np.float32)
    value[0, n_dims, n_dims] = -step_size
    projection = np.zeros((n_head, w, w), np.float32)
    projection[0] = np.eye(w)
    layer = {"query": select_x, "key": select_x, "value": value, "projection": projection}
    return {"layers": {i: {name: jnp.asarray(a) for name, a in layer.items()} for i in range(n_layer)}}


def check(m: ml_collections.ConfigDict, label_classes: int) -> None:
    if label_classes:
        raise UserError("model.kind='linear_attention' reads out one real number: it cannot take a task with label classes")


def build(m: ml_collections.ConfigDict, input_width: int, label_classes: int = 0,
          key: jax.Array | int = 0) -> LinearAttentionModel:
    check(m, label_classes)
    return LinearAttentionModel(input_width, m.n_layer, m.n_head, rngs=nnx.Rngs(params=key))


def state_size(m: ml_collections.ConfigDict, input_width: int, n_points: int) -> int:
    """What each layer reads of the context: its W×W moment matrix Σ e_i e_iᵀ."""
    return m.n_layer * (input_width + 1) ** 2
