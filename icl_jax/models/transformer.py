"""GPT-2-style causal transformer over vector tokens (DESIGN.md §1), in Flax NNX.

Pre-LN blocks, learned absolute positions, no dropout, GELU (tanh form, as GPT-2), a shared
linear read-in from the token width to the model width instead of a token-embedding table,
and a scalar linear read-out. Initialisation follows GPT-2 inside the stack: N(0, 0.02)
weights, residual projections scaled by 1/√(2·n_layer), zero biases.
Legend: B batch, T tokens, D token width, E model width, H heads, F = E/H head width.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from icl_jax.errors import UserError
from icl_jax.kernels import causal_attention_cpu, dense_cpu, layer_norm_cpu
from icl_jax.models import attention, tokens
from icl_jax.models.trace import Trace

_INIT = nnx.initializers.normal(0.02)
# The read-in and read-out sit outside GPT-2 in the field's model and keep PyTorch's default
# Linear init, U(±1/√fan_in). It matters: with N(0, 0.02) the input signal starts as small as
# the position embedding and small models sit far longer on the initial loss plateau.
_TORCH_LINEAR_INIT = nnx.initializers.variance_scaling(1 / 3, "fan_in", "uniform")


class Block(nnx.Module):
    def __init__(self, n_embd: int, n_head: int, n_layer: int, dtype=jnp.float32,
                 attention_impl: str | None = None, dense_impl: str | None = None, *, rngs: nnx.Rngs):
        residual_init = nnx.initializers.normal(0.02 / math.sqrt(2 * n_layer))
        self.n_head, self.attention_impl, self.dense_impl = n_head, attention_impl, dense_impl
        linear = dict(dtype=dtype, param_dtype=jnp.float32, rngs=rngs)
        self.ln_1 = nnx.LayerNorm(n_embd, epsilon=1e-5, rngs=rngs)
        self.qkv = nnx.Linear(n_embd, 3 * n_embd, kernel_init=_INIT, **linear)
        self.attn_out = nnx.Linear(n_embd, n_embd, kernel_init=residual_init, **linear)
        self.ln_2 = nnx.LayerNorm(n_embd, epsilon=1e-5, rngs=rngs)
        self.mlp_in = nnx.Linear(n_embd, 4 * n_embd, kernel_init=_INIT, **linear)
        self.mlp_out = nnx.Linear(4 * n_embd, n_embd, kernel_init=residual_init, **linear)

    def _use_kernel(self, layer: nnx.Linear, unsupported: Callable[[], str | None]) -> bool:
        """Whether a step of `layer`'s sublayer runs on a C++ kernel for CPU (dense_impl: None is
        "auto", on CPU where the kernel builds and applies; "cpu_kernel" insists; "xla" never);
        unsupported() says why the kernel cannot take it, or None."""
        impl = self.dense_impl
        if impl == "xla" or (impl is None and jax.default_backend() != "cpu"):
            return False
        why = (f"it takes float32 only, the compute dtype is {jnp.dtype(layer.dtype)}"
               if layer.dtype not in (None, jnp.float32) else unsupported())
        if why and impl == "cpu_kernel":
            raise UserError(f"model.dense_impl='cpu_kernel' cannot run: {why}")
        return not why

    def _dense(self, layer: nnx.Linear, x_NxE: jax.Array, norm: nnx.LayerNorm | None = None) -> jax.Array:
        """layer(norm(x)), or layer(x) without a norm. On CPU the norm runs in the C++ kernel
        (kernels/layer_norm_cpu.py) with its scale and shift folded into the layer,
        (x̂·s + t)·W + b = x̂·(s∘W) + (t·W + b), and the layer's weight and bias gradients come
        from the other (kernels/dense_cpu.py), each where it applies (_use_kernel)."""
        kernel, bias = layer.kernel[...], layer.bias[...]
        folded = norm is not None and self._use_kernel(layer, lambda: layer_norm_cpu.unsupported(x_NxE))
        if folded:
            x_NxE = layer_norm_cpu.normalize(x_NxE, norm.epsilon)
            kernel, bias = norm.scale[...][:, None] * kernel, norm.bias[...] @ kernel + bias
        elif norm is not None:
            x_NxE = norm(x_NxE).astype(layer.dtype or x_NxE.dtype)
        if self._use_kernel(layer, lambda: dense_cpu.unsupported(x_NxE, kernel)):
            return dense_cpu.linear(x_NxE, kernel, bias)
        return x_NxE @ kernel + bias if folded else layer(x_NxE)

    def _qkv(self, h_NxE: jax.Array, b: int) -> jax.Array:
        """qkv_BxTx3xHxF: the normalized stream times the fused kernel, one matmul."""
        n, e = h_NxE.shape
        return self._dense(self.qkv, h_NxE, self.ln_1).reshape(b, n // b, 3, self.n_head, e // self.n_head)

    def heads(self, h_BxTxE: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """q, k, v, each BxTxHxF, unscaled: this block's projections of the stream h."""
        b, t, e = h_BxTxE.shape
        qkv = self._qkv(h_BxTxE.reshape(b * t, e), b)
        return qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]

    def attention_weights(self, h_BxTxE: jax.Array) -> jax.Array:
        """weights_BxHxTxT: the causal softmax attention of this block's heads; for the analyses."""
        q, k, _ = self.heads(h_BxTxE)
        return attention.causal_weights(q.transpose(0, 2, 1, 3) * (1 / math.sqrt(q.shape[-1])), k.transpose(0, 2, 1, 3))

    def _attend(self, h_NxE: jax.Array, b: int, stride: int) -> jax.Array:
        """The attention sublayer's output at every stride-th token, MxE (N = B·T tokens in,
        M = N / stride out) in the compute dtype.

        On CPU ("auto") the core is the C++ kernel (kernels/causal_attention_cpu.py) where it
        builds and takes the projection (float32, head width a multiple of 16): it reads q, k,
        v from the fused projection as it lies and writes the output token-major. Else
        "einsum": heads-major BxHxTxF copies, so that every product of the core is a plain
        batched matmul (models/attention.py); the moves keep each head's F-wide rows whole.
        Both compute the kept queries alone. The other choices call
        jax.nn.dot_product_attention, which picks fused kernels on GPU: those take square
        causal attention, so the rows are dropped after it."""
        n, e = h_NxE.shape
        qkv_BxTx3xHxF = self._qkv(h_NxE, b)
        impl = self.attention_impl
        scale = 1 / math.sqrt(qkv_BxTx3xHxF.shape[-1])
        if impl is None and jax.default_backend() == "cpu":
            impl = "einsum" if causal_attention_cpu.unsupported(qkv_BxTx3xHxF, stride) else "cpu_kernel"
        elif impl == "cpu_kernel" and (unsupported := causal_attention_cpu.unsupported(qkv_BxTx3xHxF, stride)):
            raise UserError(f"model.attention_impl='cpu_kernel' cannot run: {unsupported}")
        if impl == "cpu_kernel":
            attended = causal_attention_cpu.causal_attention(qkv_BxTx3xHxF, stride, scale)
        elif impl == "einsum":
            q, k, v = qkv_BxTx3xHxF.transpose(2, 0, 3, 1, 4)
            attended = attention.causal_attention(q[:, :, ::stride] * scale, k, v).transpose(0, 2, 1, 3)
        else:
            q, k, v = (qkv_BxTx3xHxF[:, :, j] for j in range(3))
            attended = jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation=impl)[:, ::stride]
        return self._dense(self.attn_out, attended.reshape(n // stride, e))

    def __call__(self, h_BxTxE: jax.Array, stride: int = 1) -> jax.Array:
        """The stream after this block at every stride-th token, from the first: Bx(T/stride)xE.
        Every token's key and value still enter the attention; stride 2 is the last block of
        the model, whose output is read only at the x tokens."""
        # Tokens flattened to one axis inside the block, so each weight gradient contracts a
        # single axis: XLA:CPU then runs it as one matmul on the activation as it lies, where
        # a contraction over (B, T) first transposed the activation, ~10% of a train step.
        # The residual stream stays float32; only the matmuls run in the compute dtype.
        b, t, e = h_BxTxE.shape
        attended_MxE = self._attend(h_BxTxE.reshape(b * t, e), b, stride)
        h_MxE = h_BxTxE[:, ::stride].reshape(b * (t // stride), e) + attended_MxE.astype(h_BxTxE.dtype)
        mlp = self._dense(self.mlp_out, jax.nn.gelu(self._dense(self.mlp_in, h_MxE, self.ln_2), approximate=True))
        return (h_MxE + mlp.astype(h_MxE.dtype)).reshape(b, t // stride, e)


class Transformer(nnx.Module):
    """Options that matter on accelerators, each checked against the plain path in the tests:
    `compute_dtype` (bfloat16 matmuls, float32 parameters and residual stream), `remat`
    (recompute each block in the backward pass), `scan_layers` (one compiled block scanned
    over stacked parameters: compile time independent of depth), `attention_impl` (None: the
    C++ kernel on CPU where it builds, else the einsum core; elsewhere
    jax.nn.dot_product_attention's pick, e.g. cuDNN's fused kernel on GPU; or "cpu_kernel",
    "einsum", "xla", "cudnn")."""

    def __init__(self, n_dims: int, n_positions: int, n_embd: int, n_layer: int, n_head: int,
                 type_channel: bool = False, compute_dtype: str = "float32", remat: bool = False,
                 scan_layers: bool = False, attention_impl: str | None = None, label_classes: int = 0,
                 dense_impl: str | None = None, *, rngs: nnx.Rngs):
        self.max_tokens = 2 * n_positions
        self.type_channel, self.remat, self.scan_layers = type_channel, remat, scan_layers
        self.label_classes = label_classes
        width = tokens.width(n_dims, label_classes, type_channel)
        self.read_in = nnx.Linear(width, n_embd, kernel_init=_TORCH_LINEAR_INIT, rngs=rngs)
        self.wpe = nnx.Param(_INIT(rngs.params(), (self.max_tokens, n_embd)))
        block_args = (n_embd, n_head, n_layer, jnp.dtype(compute_dtype), attention_impl, dense_impl)
        if scan_layers:
            @nnx.split_rngs(splits=n_layer)
            @nnx.vmap(in_axes=(0,), out_axes=0)
            def stacked(rngs):
                return Block(*block_args, rngs=rngs)

            self.blocks = stacked(rngs)
        else:
            self.blocks = nnx.List([Block(*block_args, rngs=rngs) for _ in range(n_layer)])
        self.ln_f = nnx.LayerNorm(n_embd, epsilon=1e-5, rngs=rngs)
        self.read_out = nnx.Linear(n_embd, max(label_classes, 1), kernel_init=_TORCH_LINEAR_INIT, rngs=rngs)

    def _embed(self, x_BxKxD: jax.Array, y_BxK: jax.Array) -> jax.Array:
        z_BxTxW = tokens.interleave(x_BxKxD, y_BxK, self.type_channel, self.label_classes)
        t = z_BxTxW.shape[1]
        if t > self.max_tokens:
            raise ValueError(f"{t // 2} points exceed the model's {self.max_tokens // 2} positions")
        return self.read_in(z_BxTxW) + self.wpe[:t]

    def _read_out(self, h_BxSxE: jax.Array) -> jax.Array:
        """The output at each of the S tokens given: BxS, or BxSxC with label classes."""
        out_BxSxC = self.read_out(self.ln_f(h_BxSxE))
        return out_BxSxC if self.label_classes else out_BxSxC[..., 0]

    def _layers(self, index: int | slice) -> Block | list[Block]:
        """self.blocks[index]; with scan_layers, a Block of those layers' stacked parameters."""
        if not self.scan_layers:
            return list(self.blocks)[index]
        graphdef, state = nnx.split(self.blocks)
        return nnx.merge(graphdef, jax.tree.map(lambda a: a[index], state))

    def trace(self, x_BxKxD: jax.Array, y_BxK: jax.Array) -> Trace:
        """The output, the residual stream at every x token (the query positions) after the
        read-in and after each block, and each block's attention weights. Block by block in
        Python (scanned layers are sliced out): for analyses, not for speed."""
        h = self._embed(x_BxKxD, y_BxK)
        n_layer = jax.tree.leaves(nnx.state(self.blocks))[0].shape[0] if self.scan_layers else len(self.blocks)
        blocks = [self._layers(i) for i in range(n_layer)]
        hidden, attention = [tokens.predictions_at_x(h)], []
        for block in blocks:
            attention.append(block.attention_weights(h))
            h = block(h)
            hidden.append(tokens.predictions_at_x(h))
        return Trace(tokens.predictions_at_x(self._read_out(h)), hidden, attention)

    def __call__(self, x_BxKxD: jax.Array, y_BxK: jax.Array) -> jax.Array:
        """Returns yhat_BxK (logits_BxKxC with label classes): output k sees (x_j, y_j) for
        j < k, and x_k."""
        h = self._embed(x_BxKxD, y_BxK)
        apply = (lambda block, h: block(h))
        apply_last = (lambda block, h: block(h, tokens.X_STRIDE))
        if self.remat:
            apply, apply_last = nnx.remat(apply), nnx.remat(apply_last)
        first, last = self._layers(slice(None, -1)), self._layers(-1)
        if self.scan_layers:
            @nnx.scan(in_axes=(nnx.Carry, 0), out_axes=nnx.Carry)
            def through(h, block):
                return apply(block, h)

            h = through(h, first)
        else:
            for block in first:
                h = apply(block, h)
        # Only the x tokens are read out, so the last block computes its output there alone
        # (the y tokens' keys and values still enter its attention): on CPU 12% of the tiny
        # model's train step and 4% of the small one's (benchmarks/README.md).
        return self._read_out(apply_last(last, h))


def build(m: ml_collections.ConfigDict, input_width: int, label_classes: int = 0,
          key: jax.Array | int = 0) -> Transformer:
    return Transformer(input_width, m.n_positions, m.n_embd, m.n_layer, m.n_head, m.type_channel,
                       m.compute_dtype, m.remat, m.scan_layers,
                       None if m.attention_impl == "auto" else m.attention_impl,
                       label_classes, None if m.dense_impl == "auto" else m.dense_impl,
                       rngs=nnx.Rngs(params=key))


def param_count(params) -> int:
    return sum(int(p.size) for p in jax.tree.leaves(params))
