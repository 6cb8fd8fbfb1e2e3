"""RetNet (Sun et al. 2023): retention, linear attention with a fixed decay per head.

The shared read-in and read-out (models/sequence.py) around n_layer pre-norm blocks, each
retention then a GELU MLP as in the transformer's block. Head h of retention gives, at token t,
    o_t = Σ_{s≤t} γ_h^{t−s} (q_t·k_s / √F) v_s,
which is linear attention (models/linear_attention.py, without the decay or the per-prefix
copies) and a recurrence at once: S_t = γ_h S_{t−1} + k_tᵀ v_t / √F, o_t = q_t S_t, a state
of F×F per head. `retention` computes the parallel form, a masked T×T product as attention;
`retention_recurrent` the recurrence, for checking. q and k are rotated by their position
(RetNet's xPos without its extrapolation scaling: rotary angles t·θ_i), so q_t·k_s depends on
t − s: without it the model cannot tell the token just before from one three back (the decay
alone barely does), cannot pair x_i with y_i, and does not learn linear regression at all.
The heads' outputs are normalised (a group norm per head, which also makes RetNet's extra
rescalings of the parallel form unnecessary) and gated by swish(x W_G).
Legend: B prompts, T tokens, E model width, H heads, F = E/H head width.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from icl_jax.errors import UserError
from icl_jax.models.sequence import SequenceModel

# The transformer's sizes: a block has 13E² weights (q, k, v, gate and output, and the MLP's
# 8E²) against the transformer's 12E², within the ±10 % of tests/test_model_kinds.py.
PRESETS = {"retnet": {
    "tiny": dict(n_layer=3, n_head=2, n_embd=64),
    "small": dict(n_layer=6, n_head=4, n_embd=128),
    "standard": dict(n_layer=12, n_head=8, n_embd=256),
}}
OPTIONS = ("type_channel", "compute_dtype", "remat")
_INIT = nnx.initializers.normal(0.02)


def decays(n_head: int) -> jax.Array:
    """γ_H = 1 − 2^(−5−h): RetNet's multi-scale decays, from ~32 tokens' memory to longer."""
    return 1 - 2.0 ** (-5 - jnp.arange(n_head, dtype=jnp.float32))


def rotate(a_BxHxTxF: jax.Array) -> jax.Array:
    """a with each pair (a_i, a_{i+F/2}) of token t turned by the angle t·θ_i, θ_i = 10⁻⁴ᐟ⁽ᶠᐟ²⁾ⁱ
    (rotary positions): rotated q_t·k_s then depends on the positions through t − s alone."""
    t, f = a_BxHxTxF.shape[-2:]
    angle_TxG = jnp.arange(t, dtype=jnp.float32)[:, None] * 10_000.0 ** (-jnp.arange(f // 2) / (f // 2))
    cos, sin = jnp.cos(angle_TxG), jnp.sin(angle_TxG)
    first, second = a_BxHxTxF[..., :f // 2], a_BxHxTxF[..., f // 2:]
    return jnp.concatenate([first * cos - second * sin, first * sin + second * cos], axis=-1)


def retention(q_BxHxTxF: jax.Array, k_BxHxTxF: jax.Array, v_BxHxTxF: jax.Array, gamma_H: jax.Array) -> jax.Array:
    """out_BxHxTxF: Σ_{s≤t} γ^{t−s} (q_t·k_s) v_s, in parallel form (scale q or k beforehand)."""
    t = q_BxHxTxF.shape[2]
    lag_TxT = jnp.arange(t)[:, None] - jnp.arange(t)[None, :]
    # γ^lag only where lag ≥ 0: the where keeps the future's negative powers out of the product.
    decay_HxTxT = jnp.where(lag_TxT >= 0, gamma_H[:, None, None] ** jnp.maximum(lag_TxT, 0), 0.0)
    scores = jnp.einsum("bhtf,bhsf->bhts", q_BxHxTxF, k_BxHxTxF) * decay_HxTxT.astype(q_BxHxTxF.dtype)
    return jnp.einsum("bhts,bhsf->bhtf", scores, v_BxHxTxF)


def retention_recurrent(q_BxHxTxF: jax.Array, k_BxHxTxF: jax.Array, v_BxHxTxF: jax.Array,
                        gamma_H: jax.Array) -> jax.Array:
    """The same output from the state S_t = γ S_{t−1} + k_tᵀ v_t, one token after another."""
    def step(s_BxHxFxF, qkv):
        q, k, v = qkv
        s_BxHxFxF = gamma_H[:, None, None] * s_BxHxFxF + jnp.einsum("bhf,bhg->bhfg", k, v)
        return s_BxHxFxF, jnp.einsum("bhf,bhfg->bhg", q, s_BxHxFxF)

    b, h, _, f = q_BxHxTxF.shape
    moved = [jnp.moveaxis(a, 2, 0) for a in (q_BxHxTxF, k_BxHxTxF, v_BxHxTxF)]
    _, out_TxBxHxF = jax.lax.scan(step, jnp.zeros((b, h, f, f), q_BxHxTxF.dtype), moved)
    return jnp.moveaxis(out_TxBxHxF, 0, 2)


class RetentionBlock(nnx.Module):
    def __init__(self, n_embd: int, n_head: int, n_layer: int, dtype=jnp.float32, *, rngs: nnx.Rngs):
        residual_init = nnx.initializers.normal(0.02 / math.sqrt(2 * n_layer))
        self.n_head = n_head
        linear = dict(use_bias=False, dtype=dtype, param_dtype=jnp.float32, rngs=rngs)
        self.ln_1 = nnx.LayerNorm(n_embd, epsilon=1e-5, rngs=rngs)
        self.qkvg = nnx.Linear(n_embd, 4 * n_embd, kernel_init=_INIT, **linear)
        self.head_norm = nnx.GroupNorm(n_embd, num_groups=n_head, epsilon=1e-5, rngs=rngs)
        self.out = nnx.Linear(n_embd, n_embd, kernel_init=residual_init, **linear)
        self.ln_2 = nnx.LayerNorm(n_embd, epsilon=1e-5, rngs=rngs)
        self.mlp_in = nnx.Linear(n_embd, 4 * n_embd, kernel_init=_INIT, dtype=dtype, rngs=rngs)
        self.mlp_out = nnx.Linear(4 * n_embd, n_embd, kernel_init=residual_init, dtype=dtype, rngs=rngs)

    def heads(self, h_BxTxE: jax.Array) -> tuple[jax.Array, ...]:
        """q, k, v, each BxHxTxF, q and k rotated by position and k scaled by 1/√F, and the
        gate's input g_BxTxE."""
        b, t, e = h_BxTxE.shape
        q, k, v, g = jnp.split(self.qkvg(self.ln_1(h_BxTxE)).astype(jnp.float32), 4, axis=-1)
        split = lambda a: a.reshape(b, t, self.n_head, e // self.n_head).transpose(0, 2, 1, 3)  # noqa: E731
        return rotate(split(q)), rotate(split(k)) / math.sqrt(e // self.n_head), split(v), g

    def __call__(self, h_BxTxE: jax.Array, mix=retention) -> jax.Array:
        b, t, e = h_BxTxE.shape
        q, k, v, g = self.heads(h_BxTxE)
        o_BxTxE = mix(q, k, v, decays(self.n_head)).transpose(0, 2, 1, 3).reshape(b, t, e)
        # The group norm on rows (one token each): given B×T×E it would pool statistics over time.
        normed_BxTxE = self.head_norm(o_BxTxE.reshape(b * t, e)).reshape(b, t, e)
        h_BxTxE = h_BxTxE + self.out(normed_BxTxE * jax.nn.silu(g)).astype(h_BxTxE.dtype)
        u = jax.nn.gelu(self.mlp_in(self.ln_2(h_BxTxE)), approximate=True)
        return h_BxTxE + self.mlp_out(u).astype(h_BxTxE.dtype)


class RetNet(SequenceModel):
    def __init__(self, n_dims: int, n_embd: int, n_layer: int, n_head: int, type_channel: bool = False,
                 compute_dtype: str = "float32", remat: bool = False, label_classes: int = 0, *,
                 rngs: nnx.Rngs):
        self.init_stack(n_dims, n_embd, label_classes, type_channel, remat, lambda: [
            RetentionBlock(n_embd, n_head, n_layer, jnp.dtype(compute_dtype), rngs=rngs) for _ in range(n_layer)], rngs)


def check(m: ml_collections.ConfigDict, label_classes: int) -> None:
    if (m.n_embd // m.n_head) % 2:
        raise UserError(f"model.kind='retnet' rotates pairs of a head's coordinates: the head width "
                        f"model.n_embd / model.n_head = {m.n_embd // m.n_head} must be even")


def build(m: ml_collections.ConfigDict, input_width: int, label_classes: int = 0,
          key: jax.Array | int = 0) -> RetNet:
    return RetNet(input_width, m.n_embd, m.n_layer, m.n_head, m.type_channel, m.compute_dtype, m.remat,
                  label_classes, rngs=nnx.Rngs(params=key))


def state_size(m: ml_collections.ConfigDict, input_width: int, n_points: int) -> int:
    """S, F×F per head per layer: E²/H a layer."""
    return m.n_layer * m.n_head * (m.n_embd // m.n_head) ** 2
