"""The operations a transformer block is written in, and the one place that picks how they run.

A block (models/transformer.py) is GPT-2's, x + attention(ln_1(x)) then x + mlp(ln_2(x)),
written in three operations of an `Ops`:
    norm_then_dense(norm, layer, x)        layer(norm(x))
    dense(layer, x)                        layer(x)
    causal_attention(qkv, n_head, stride)  causal softmax attention of the fused q|k|v
                                           projection, at every stride-th token's query
`select` picks how each runs, once, when the model is built: from model.attention_impl and
model.dense_impl ("auto" or an explicit choice), the compute dtype, the widths and the
backend. There an explicit choice that cannot run is a UserError, the C++ kernels for CPU
(icl_jax/kernels/cpu) are built and registered, and a fallback is noted once; tracing a
model then starts no compiler, prints nothing and meets no error about the choice. Plain
XLA (attention "xla", dense "xla": Ops()) is the reference every other implementation is
tested against. Why each exists: docs/kernels.md.

The operations run on the tokens as N rows, one token axis: each weight gradient then
contracts a single axis, which XLA:CPU runs as one matmul on the activation as it lies (a
contraction over (B, T) first transposed it: benchmarks/README.md), and the CPU kernels take
rows. The dense operations take tokens on any leading axes, [..., E], and give them back so,
[..., O]; attention gives its output as rows, for the output projection.
Legend: B prompts, T tokens, S = T/stride, N rows, M = B·S rows, E model width, O output
width, H heads, F = E/H head width.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys

import jax
import jax.numpy as jnp
from flax import nnx

from icl_jax.config import ATTENTION_IMPLS, DENSE_IMPLS
from icl_jax.errors import UserError
from icl_jax.kernels.cpu import causal_attention_cpu, dense_cpu, layer_norm_cpu
from icl_jax.models import attention


@dataclasses.dataclass(frozen=True)
class Ops:
    """How a block's operations run (select() makes one; hashable: it lives in the graphdef).

    attention: "cpu_kernel" (the C++ kernel), "einsum" (models/attention.py), or the
      implementation handed to jax.nn.dot_product_attention: "xla", "cudnn", or None for its
      own pick.
    norms_in_kernel: the layer norms run in the C++ kernel, their scale and shift folded into
      the dense layer that follows.
    gradient_kernel_widths: the output widths of the dense layers whose weight and bias
      gradients come from the C++ kernel.
    """
    attention: str | None = "xla"
    norms_in_kernel: bool = False
    gradient_kernel_widths: frozenset[int] = frozenset()

    def norm_then_dense(self, norm: nnx.LayerNorm, layer: nnx.Linear, x_BxTxE: jax.Array) -> jax.Array:
        """layer(norm(x)), BxTxO (or NxO from NxE rows) in the layer's compute dtype."""
        x_NxE = _rows(x_BxTxE)
        if self.norms_in_kernel:
            y_NxO = self._folded_norm_then_dense(norm, layer, x_NxE)
        else:
            y_NxO = self._dense_rows(layer, norm(x_NxE).astype(layer.dtype or x_NxE.dtype))
        return _tokens(y_NxO, x_BxTxE)

    def dense(self, layer: nnx.Linear, x_BxTxE: jax.Array) -> jax.Array:
        """layer(x), BxTxO (or NxO from NxE rows) in the layer's compute dtype."""
        return _tokens(self._dense_rows(layer, _rows(x_BxTxE)), x_BxTxE)

    def _dense_rows(self, layer: nnx.Linear, x_NxE: jax.Array) -> jax.Array:
        if layer.out_features in self.gradient_kernel_widths:
            return dense_cpu.linear(x_NxE, layer.kernel[...], layer.bias[...])
        return layer(x_NxE)

    def _folded_norm_then_dense(self, norm: nnx.LayerNorm, layer: nnx.Linear, x_NxE: jax.Array) -> jax.Array:
        """layer(norm(x)) with the norm's scale s and shift t folded into the layer,
        (x̂·s + t)·W + b = x̂·(s∘W) + (t·W + b): their gradients then come out of the layer's
        weight gradient (a few E×O products), not two more passes over the N×E rows."""
        kernel_ExO, bias_O = layer.kernel[...], layer.bias[...]
        xhat_NxE = layer_norm_cpu.normalize(x_NxE, norm.epsilon)
        kernel_ExO, bias_O = norm.scale[...][:, None] * kernel_ExO, norm.bias[...] @ kernel_ExO + bias_O
        if layer.out_features in self.gradient_kernel_widths:
            return dense_cpu.linear(xhat_NxE, kernel_ExO, bias_O)
        return xhat_NxE @ kernel_ExO + bias_O

    def causal_attention(self, qkv_BxTx3E: jax.Array, n_head: int, stride: int = 1) -> jax.Array:
        """attended_MxE: softmax(q·kᵀ/√F, causal)·v of each head at every stride-th token's
        query (token stride·i, seeing the keys at or before it), one row per query (M = B·S),
        the heads side by side. The projection's columns are q | k | v, each head-major (H×F)."""
        b, t, _ = qkv_BxTx3E.shape
        qkv_BxTx3xHxF = qkv_BxTx3E.reshape(b, t, 3, n_head, -1)
        scale = 1 / math.sqrt(qkv_BxTx3xHxF.shape[-1])
        if self.attention == "cpu_kernel":  # reads q, k, v as they lie, writes token-major
            attended_BxSxHxF = causal_attention_cpu.causal_attention(qkv_BxTx3xHxF, stride, scale)
        elif self.attention == "einsum":
            # Heads-major BxHxTxF copies, so that every product is a plain batched matmul; the
            # moves keep each head's F-wide rows whole.
            q, k, v = qkv_BxTx3xHxF.transpose(2, 0, 3, 1, 4)
            attended_BxSxHxF = attention.causal_attention(q[:, :, ::stride] * scale, k, v).transpose(0, 2, 1, 3)
        else:  # fused kernels on GPU take square causal attention: the rows are dropped after it
            q, k, v = (qkv_BxTx3xHxF[:, :, j] for j in range(3))
            attended_BxSxHxF = jax.nn.dot_product_attention(q, k, v, is_causal=True,
                                                            implementation=self.attention)[:, ::stride]
        return attended_BxSxHxF.reshape(b * (t // stride), -1)


def _rows(x_BxTxE: jax.Array) -> jax.Array:
    """x_NxE: the tokens on one axis (a reshape of contiguous axes: free; none for rows)."""
    return x_BxTxE.reshape(-1, x_BxTxE.shape[-1])


def _tokens(y_NxO: jax.Array, x_BxTxE: jax.Array) -> jax.Array:
    """y_BxTxO: rows computed from x's tokens, back on x's token axes."""
    return y_NxO.reshape(*x_BxTxE.shape[:-1], y_NxO.shape[-1])


def select(attention_impl: str, dense_impl: str, compute_dtype, n_embd: int, n_head: int) -> Ops:
    """The Ops of a block of width n_embd with n_head heads computing in compute_dtype, here
    (the default backend). attention_impl: "auto", "cpu_kernel", "einsum", "xla" or "cudnn";
    dense_impl: "auto", "cpu_kernel" or "xla" (config.py). "auto" takes the C++ kernels on
    CPU wherever they apply and build, else XLA (the einsum core for attention); an explicit
    choice that cannot run is a UserError naming the key and the reason."""
    if attention_impl not in ATTENTION_IMPLS:
        raise UserError(f"model.attention_impl must be one of {', '.join(ATTENTION_IMPLS)}, got {attention_impl!r}")
    if dense_impl not in DENSE_IMPLS:
        raise UserError(f"model.dense_impl must be one of {', '.join(DENSE_IMPLS)}, got {dense_impl!r}")
    norms_in_kernel, widths = _dense_choice(dense_impl, compute_dtype, n_embd)
    return Ops(_attention_choice(attention_impl, compute_dtype, n_embd // n_head), norms_in_kernel, widths)


def _attention_choice(impl: str, compute_dtype, head_width: int) -> str | None:
    backend = jax.default_backend()
    if impl == "auto":
        if backend != "cpu":
            return None
        fits = _kernel_fits(causal_attention_cpu, (compute_dtype, head_width), "attention_impl", insist=False,
                            fallback="attention runs on the einsum core")
        return "cpu_kernel" if fits else "einsum"
    if impl == "cpu_kernel":
        _kernel_fits(causal_attention_cpu, (compute_dtype, head_width), "attention_impl", insist=True)
    if impl == "cudnn" and backend != "gpu":
        raise UserError("model.attention_impl='cudnn' cannot run: it runs on GPU only, and the default backend "
                        f"is {backend}")
    return impl


def _dense_choice(impl: str, compute_dtype, n_embd: int) -> tuple[bool, frozenset[int]]:
    """(norms_in_kernel, gradient_kernel_widths). The checks run in the order a block meets its
    layers (qkv after ln_1, attn_out, mlp_in after ln_2, mlp_out), so an explicit choice
    reports the first layer that cannot take a kernel."""
    if impl == "xla" or (impl == "auto" and jax.default_backend() != "cpu"):
        return False, frozenset()
    insist = impl == "cpu_kernel"
    norms = _kernel_fits(layer_norm_cpu, (compute_dtype, n_embd), "dense_impl", insist,
                         fallback="layer norms run on XLA")
    widths = frozenset(width for width in (3 * n_embd, n_embd, 4 * n_embd)  # qkv; attn_out, mlp_out; mlp_in
                       if _kernel_fits(dense_cpu, (compute_dtype, width), "dense_impl", insist,
                                       fallback="dense-layer gradients run on XLA's products"))
    return norms, widths


def _kernel_fits(kernel, facts: tuple, key: str, insist: bool, fallback: str = "") -> bool:
    """Whether `kernel` (a kernels/cpu module) takes a layer of these facts here, building it if
    needed. Where it does not: insist raises UserError for model.<key>; else a kernel that would
    fit but cannot be built is noted once on stderr, with what runs instead (`fallback`)."""
    why = kernel.unsupported(*facts)
    if why is None and (why := kernel.unavailable()) and not insist:
        _note_once(f"icl_jax: {fallback}, slower: the CPU kernel is unavailable ({why})")
    if why and insist:
        raise UserError(f"model.{key}='cpu_kernel' cannot run: {why}")
    return why is None


@functools.cache
def _note_once(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
