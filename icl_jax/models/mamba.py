"""Mamba (Gu & Dao 2023), the selective state-space model, over the prompt's tokens.

The shared read-in and read-out (models/sequence.py) around n_layer residual blocks, each
    h + out_proj(y ⊙ silu(z)),   (u, z) = in_proj(rms_norm(h)),   u ← silu(causal_conv(u)),
and y the selective scan of u: with (δ, B_t, C_t) = x_proj(u_t) and Δ_t = softplus(dt_proj(δ_t)),
    s_t = exp(Δ_t A) ⊙ s_{t−1} + (Δ_t ⊙ u_t) ⊗ B_t,    y_t = s_t C_t + D ⊙ u_t,
a state s of I×N per prompt (A diagonal: −exp(A_log), N numbers per channel). Δ, B and C
depend on the token: that is the "selective" of the name, and what lets the state keep or
forget a token by its content (Park et al. 2024 compare it with transformers in context).

The recurrence is linear in s, so its steps compose associatively, (a₁, b₁)∘(a₂, b₂) =
(a₁a₂, a₂b₁ + b₂): `selective_scan` runs it as a parallel scan (jax.lax.associative_scan,
O(log T) depth on an accelerator); `selective_scan_sequential` is the step-by-step loop it is
checked against. Both hold every step's state, B·T·I·N floats a block: fine at these prompt
lengths, the price of not having Mamba's fused kernel.
Legend: B prompts, T tokens, E model width, I = expand·E inner width, N state per channel,
R = ⌈E/16⌉ the rank of Δ's projection, W the convolution's width.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from icl_jax.models.sequence import TORCH_LINEAR_INIT, SequenceModel

# Two Mamba blocks per transformer block, as in the Mamba paper (a block has ≈ 6E² weights at
# expand 2, a transformer block 12E²), at widths that keep the count within ±10 % where the
# per-channel state terms weigh more (tests/test_model_kinds.py).
PRESETS = {"mamba": {
    "tiny": dict(n_layer=6, n_embd=56),
    "small": dict(n_layer=12, n_embd=120),
    "standard": dict(n_layer=24, n_embd=248),
}}
OPTIONS = ("type_channel", "compute_dtype", "remat", "ssm_state")
EXPAND = 2  # I = EXPAND·E
CONV_WIDTH = 4
DT_MIN, DT_MAX = 1e-3, 1e-1  # the range of Δ at initialisation (the Mamba paper's)


def _combine(earlier, later):
    """Two steps s ↦ a s + b composed, the earlier applied first."""
    a1, b1 = earlier
    a2, b2 = later
    return a1 * a2, a2 * b1 + b2


def selective_scan(decay_BxTxIxN: jax.Array, drive_BxTxIxN: jax.Array) -> jax.Array:
    """states_BxTxIxN: s_t = decay_t ⊙ s_{t−1} + drive_t from s_{−1} = 0, as a parallel scan."""
    return jax.lax.associative_scan(_combine, (decay_BxTxIxN, drive_BxTxIxN), axis=1)[1]


def selective_scan_sequential(decay_BxTxIxN: jax.Array, drive_BxTxIxN: jax.Array) -> jax.Array:
    """The same states, one step after another (jax.lax.scan over time): for checking."""
    def step(s_BxIxN, inputs):
        decay, drive = inputs
        s_BxIxN = decay * s_BxIxN + drive
        return s_BxIxN, s_BxIxN

    moved = (jnp.moveaxis(decay_BxTxIxN, 1, 0), jnp.moveaxis(drive_BxTxIxN, 1, 0))
    _, states_TxBxIxN = jax.lax.scan(step, jnp.zeros_like(decay_BxTxIxN[:, 0]), moved)
    return jnp.moveaxis(states_TxBxIxN, 0, 1)


def causal_conv(u_BxTxI: jax.Array, weight_WxI: jax.Array, bias_I: jax.Array) -> jax.Array:
    """Depthwise convolution over time that sees token t and the W − 1 before it."""
    w = weight_WxI.shape[0]
    padded = jnp.pad(u_BxTxI, ((0, 0), (w - 1, 0), (0, 0)))
    t = u_BxTxI.shape[1]
    return bias_I + sum(weight_WxI[j] * padded[:, j:j + t] for j in range(w))


def _uniform(bound: float):
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


class MambaBlock(nnx.Module):
    def __init__(self, n_embd: int, n_state: int, n_layer: int, dtype=jnp.float32, *, rngs: nnx.Rngs):
        inner, self.rank = EXPAND * n_embd, math.ceil(n_embd / 16)
        self.n_state = n_state
        linear = dict(use_bias=False, dtype=dtype, param_dtype=jnp.float32, rngs=rngs)
        self.norm = nnx.RMSNorm(n_embd, epsilon=1e-5, rngs=rngs)
        self.in_proj = nnx.Linear(n_embd, 2 * inner, kernel_init=TORCH_LINEAR_INIT, **linear)
        self.conv_weight = nnx.Param(_uniform(1 / math.sqrt(CONV_WIDTH))(rngs.params(), (CONV_WIDTH, inner)))
        self.conv_bias = nnx.Param(_uniform(1 / math.sqrt(CONV_WIDTH))(rngs.params(), (inner,)))
        self.x_proj = nnx.Linear(inner, self.rank + 2 * n_state, kernel_init=TORCH_LINEAR_INIT, **linear)
        # Δ starts log-uniform in [DT_MIN, DT_MAX]: its bias is softplus⁻¹ of such a draw.
        dt = jnp.exp(jax.random.uniform(rngs.params(), (inner,), jnp.float32, math.log(DT_MIN), math.log(DT_MAX)))
        self.dt_proj = nnx.Linear(self.rank, inner, kernel_init=_uniform(self.rank ** -0.5),
                                  bias_init=lambda *_: dt + jnp.log(-jnp.expm1(-dt)),
                                  dtype=dtype, param_dtype=jnp.float32, rngs=rngs)
        # S4D-real: channel i's N decay rates are 1..N.
        self.a_log = nnx.Param(jnp.log(jnp.broadcast_to(jnp.arange(1, n_state + 1, dtype=jnp.float32),
                                                        (inner, n_state))))
        self.d = nnx.Param(jnp.ones((inner,), jnp.float32))
        # Residual projections scaled by 1/√n_layer, as Mamba's prenorm-residual rescaling.
        self.out_proj = nnx.Linear(inner, n_embd, kernel_init=nnx.initializers.variance_scaling(
            1 / (3 * n_layer), "fan_in", "uniform"), **linear)

    def scan_inputs(self, h_BxTxE: jax.Array) -> tuple[jax.Array, ...]:
        """(u_BxTxI, delta_BxTxI, b_BxTxN, c_BxTxN, z_BxTxI), float32: what the scan reads."""
        u, z = jnp.split(self.in_proj(self.norm(h_BxTxE)).astype(jnp.float32), 2, axis=-1)
        u = jax.nn.silu(causal_conv(u, self.conv_weight[...], self.conv_bias[...]))
        dbc = self.x_proj(u).astype(jnp.float32)
        delta = jax.nn.softplus(self.dt_proj(dbc[..., :self.rank]).astype(jnp.float32))
        b, c = jnp.split(dbc[..., self.rank:], 2, axis=-1)
        return u, delta, b, c, z

    def __call__(self, h_BxTxE: jax.Array, scan=selective_scan) -> jax.Array:
        u, delta, b, c, z = self.scan_inputs(h_BxTxE)
        a_IxN = -jnp.exp(self.a_log[...])
        decay_BxTxIxN = jnp.exp(delta[..., None] * a_IxN)
        drive_BxTxIxN = (delta * u)[..., None] * b[:, :, None, :]
        states_BxTxIxN = scan(decay_BxTxIxN, drive_BxTxIxN)
        y_BxTxI = jnp.einsum("btin,btn->bti", states_BxTxIxN, c) + self.d[...] * u
        return h_BxTxE + self.out_proj(y_BxTxI * jax.nn.silu(z)).astype(h_BxTxE.dtype)


def state_per_block(n_embd: int, n_state: int) -> int:
    """The scan's state and the convolution's last W − 1 inputs."""
    return EXPAND * n_embd * (n_state + CONV_WIDTH - 1)


class MambaModel(SequenceModel):
    def __init__(self, n_dims: int, n_embd: int, n_layer: int, n_state: int = 16, type_channel: bool = False,
                 compute_dtype: str = "float32", remat: bool = False, label_classes: int = 0, *,
                 rngs: nnx.Rngs):
        self.init_stack(n_dims, n_embd, label_classes, type_channel, remat, lambda: [
            MambaBlock(n_embd, n_state, n_layer, jnp.dtype(compute_dtype), rngs=rngs) for _ in range(n_layer)], rngs)


def build(m: ml_collections.ConfigDict, input_width: int, label_classes: int = 0,
          key: jax.Array | int = 0) -> MambaModel:
    return MambaModel(input_width, m.n_embd, m.n_layer, m.ssm_state, m.type_channel, m.compute_dtype,
                      m.remat, label_classes, rngs=nnx.Rngs(params=key))


def state_size(m: ml_collections.ConfigDict, input_width: int, n_points: int) -> int:
    return m.n_layer * state_per_block(m.n_embd, m.ssm_state)
