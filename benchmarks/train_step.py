"""Train-step speed against this machine's float32 matmul peak, measured in the same run.

    python benchmarks/train_step.py [--kind=transformer,lstm,gru,mamba,hybrid,retnet]
        [--sizes=tiny,small,standard] [--steps=20] [--config.model.X=...]

For each model kind (model.kind; default the transformer alone) and each size (model.size:
each kind's preset of that name, matched to the transformer's in parameters) on the reference
linear task (d=20, 41 points, batch 64): parameters, model FLOPs per step (computed, and the
field's count), time to the first step (init + compile + one step), steps/s (median, min, max
over timed steps after warm-up), achieved GFLOP/s and its fraction of the peak (jnp.dot of
2048×2048 float32), and the share of step time spent sampling the batch inside the step (the
same step fed a fixed batch). --config.model.X=... applies to every kind (a key a kind does
not read is an error for that kind).

FLOPs per step count matmuls only, forward + backward = 3 × forward = 6 · (weights a token
goes through in products) · tokens, plus the T×T products of attention and retention. Legend:
T = 2K tokens per prompt, B prompts, L = model.n_layer, E = model.n_embd, W the token width
(D, the input width, here) and C the outputs per token (1; the classes of a classification
task), so a read-in and read-out of E·(W + C) weights per token in every kind:
  transformer  dense  = 6 · B·T · (L · 12E² + E·(W + C))   (qkv 3E², out E², mlp 8E²)
               attn   = 6 · B · L · 2·T²·E                 (QKᵀ and AV over the full T×T)
  lstm         6 · B·T · (L · 4·(E + E)·E + E·(W + C))     (4 gates × (input + hidden) × hidden)
  gru          6 · B·T · (L · 3·(E + E)·E + E·(W + C))     (3 gates, as the LSTM's)
  mamba        6 · B·T · (L · M + E·(W + C)), a block's M = E·2I + I·(R + 2N) + R·I + I·E
               (in_proj, x_proj, dt_proj, out_proj; I = 2E, R = ⌈E/16⌉, N = model.ssm_state)
  hybrid       6 · B·T · ((L + 1) · M + L · 4E² + E·(W + C)) + 6 · B · L · 2·T²·E
               (L + 1 Mamba blocks, L attention blocks: qkv 3E², out E², no MLP; attention's
               T×T products counted as the transformer's)
  retnet       6 · B·T · (L · 13E² + E·(W + C)) + 6 · B · L · 2·T²·E
               (qkvg 4E², out E², mlp 8E²; retention's QKᵀ and its product with V over the
               full T×T, as attention's)
Not counted, in any kind: biases, norms (layer, RMS, group), activations (GELU, SiLU,
sigmoid, tanh, softplus), softmax and retention's decay mask, the loss and Adam (XLA counts
15–40 FLOPs a parameter, ≤ 0.2% of the matmuls at batch 64 × 82 tokens); and the
recurrences' own work, elementwise rather than matmul work: the LSTM's and GRU's gate
arithmetic, Mamba's depthwise causal convolution, its selective scan (decay, drive and the
scan over the B·T·I·N states) and its read-out y = s·C + D·u, a length-N product per channel
and token over the scan's states (2·I·N a token: 7.7%, 3.9%, 2.0% of the counted FLOPs of the
tiny, small, standard mamba), none of which runs near the matmul peak.
tests/test_benchmarks.py checks the counts against XLA's own (cost_analysis of the model's
loss and gradients): the terms in E² (a second difference in the width) of the transformer,
mamba, hybrid and retnet, and of the LSTM's and GRU's cell over one token (XLA counts a scan's
body once, not once per token), and the T²·E terms (a cross difference in width and prompt
length) of retention and attention.

The transformer's FLOPs are the field's count (313.2 GFLOP for the standard model): every
token through every block.
The attention term is a convention: the CPU kernel (icl_jax/kernels/cpu) skips the 16-key blocks
above the causal diagonal and recomputes QKᵀ in the backward pass, so it executes about two
thirds of it at T = 82 (the einsum core executes all of it; the hybrid's attention blocks run
on the same kernel).
The transformer computes its last block's output at the K x tokens alone, the only ones read
out (models/transformer.py), so the work done, which the GFLOP/s and the fraction of peak use,
is that less the y tokens' share of the last block and read-out: their out and MLP products
(9E² each), their queries' half of QKᵀ and AV (2·K·T·E per prompt), and their read-out (E·C).
The other kinds take every token through every layer: their work done is the field's count.
"""

from __future__ import annotations

if __name__ == "__main__":  # the process `python -m icl_jax.train` runs in (host memory kept)
    from icl_jax import cpu_process

    cpu_process.prepare()

import argparse
import math
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from icl_jax import config as config_lib
from icl_jax import cpu_process, parallel, tasks
from icl_jax.errors import UserError
from icl_jax.models import mamba, tokens
from icl_jax.training import optimizer, step as step_lib


def matmul_peak_gflops(n: int = 2048, repeats: int = 10) -> float:
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    dot = jax.jit(jnp.dot)
    dot(a, b).block_until_ready()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        dot(a, b).block_until_ready()
        times.append(time.perf_counter() - start)
    return 2 * n**3 / min(times) / 1e9


def _token_widths(config) -> tuple[int, int]:
    """(W, C): the token width the read-in takes and the outputs the read-out gives per token."""
    t, m = config.task, config.model
    classes = tasks.label_classes(t)
    return tokens.width(t.n_dims, classes, m.type_channel), max(classes, 1)


def _read_in_out(config) -> int:
    """Weights of the read-in and read-out a token goes through: E·(W + C)."""
    return config.model.n_embd * sum(_token_widths(config))


def _attention(config) -> int:
    """QKᵀ and AV (or retention's two products) over the full T×T, every layer, forward and
    backward: 6 · B · L · 2·T²·E."""
    m, t, b = config.model, 2 * config.task.n_points, config.train.batch_size
    return 6 * b * m.n_layer * 2 * t * t * m.n_embd


def _per_token(config, weights: int) -> int:
    """6 · B·T · weights: each weight one multiply-add a token, forward and backward."""
    return 6 * config.train.batch_size * 2 * config.task.n_points * weights


def mamba_block_weights(n_embd: int, n_state: int) -> int:
    """M: in_proj E→2I, x_proj I→R+2N, dt_proj R→I, out_proj I→E (models/mamba.py)."""
    inner, rank = mamba.EXPAND * n_embd, math.ceil(n_embd / 16)
    return n_embd * 2 * inner + inner * (rank + 2 * n_state) + rank * inner + inner * n_embd


def transformer_flops(config, every_token: bool = False) -> int:
    m, t, b = config.model, 2 * config.task.n_points, config.train.batch_size
    dense = _per_token(config, m.n_layer * 12 * m.n_embd**2 + _read_in_out(config))
    if every_token:
        return dense + _attention(config)
    y_tokens = t // 2
    read_out = m.n_embd * _token_widths(config)[1]
    skipped = 6 * b * y_tokens * (9 * m.n_embd**2 + 2 * t * m.n_embd + read_out)
    return dense + _attention(config) - skipped


def lstm_flops(config, every_token: bool = False) -> int:
    m = config.model
    return _per_token(config, m.n_layer * 4 * (m.n_embd + m.n_embd) * m.n_embd + _read_in_out(config))


def gru_flops(config, every_token: bool = False) -> int:
    m = config.model
    return _per_token(config, m.n_layer * 3 * (m.n_embd + m.n_embd) * m.n_embd + _read_in_out(config))


def mamba_flops(config, every_token: bool = False) -> int:
    m = config.model
    return _per_token(config, m.n_layer * mamba_block_weights(m.n_embd, m.ssm_state) + _read_in_out(config))


def hybrid_flops(config, every_token: bool = False) -> int:
    m = config.model
    weights = (m.n_layer + 1) * mamba_block_weights(m.n_embd, m.ssm_state) + m.n_layer * 4 * m.n_embd**2
    return _per_token(config, weights + _read_in_out(config)) + _attention(config)


def retnet_flops(config, every_token: bool = False) -> int:
    m = config.model
    return _per_token(config, m.n_layer * 13 * m.n_embd**2 + _read_in_out(config)) + _attention(config)


# model.kind -> its matmul FLOPs per train step (the module docstring has the formulas)
FLOPS = {"transformer": transformer_flops, "lstm": lstm_flops, "gru": gru_flops, "mamba": mamba_flops,
         "hybrid": hybrid_flops, "retnet": retnet_flops}


def model_flops(config, every_token: bool = False) -> float:
    """FLOPs of one train step of config.model.kind: those the model computes, or with
    every_token the field's count (every token through every block; the same but for the
    transformer)."""
    if config.model.kind not in FLOPS:
        raise UserError(f"no FLOP count for model.kind {config.model.kind!r}; counted: {', '.join(FLOPS)}")
    return FLOPS[config.model.kind](config, every_token)


def parse_kinds(value: str) -> list[str]:
    """--kind's comma-separated kinds, each one FLOPS counts."""
    kinds = [k.strip() for k in value.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in FLOPS]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(
            f"unknown kind {', '.join(map(repr, unknown)) or repr(value)}; benchmarked kinds: {', '.join(FLOPS)}"
            + (" (linear_attention, the GD construction of width D + 1, has no FLOP count here)"
               if "linear_attention" in unknown else ""))
    return kinds


def timed_steps(fn, state, steps: int) -> tuple[list[float], object]:
    """Runs `steps` steps state → fn(state); returns the seconds of each and the last state."""
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        state, metrics = fn(state)
        jax.block_until_ready(metrics["loss"])
        times.append(time.perf_counter() - start)
    return times, state


def first_step(config):
    """Builds the train step as `python -m icl_jax.train` does and takes one: returns the step
    (state → state, metrics), the state after it, the seconds to it (init, compile, one step),
    and the pieces it is made of."""
    mesh = parallel.make_mesh()
    task, tx = tasks.get_task(config.task, config.data), optimizer.make_optimizer(config.train)
    start = time.perf_counter()
    spec = step_lib.state_spec(config, tx, mesh)
    state = spec.init()
    train_step = step_lib.make_train_step(config, spec, task, tx, mesh)
    state, metrics = train_step(state)
    jax.block_until_ready(metrics["loss"])
    return train_step, state, time.perf_counter() - start, (mesh, task, tx, spec)


def benchmark(config, steps: int, warmup: int) -> dict:
    train_step, state, first_step_s, (mesh, task, tx, spec) = first_step(config)

    # The same update on one fixed batch: the difference is what sampling costs. Sampled and
    # fixed steps alternate, so a change in the machine's load hits both alike.
    prompts = task.sample(jax.random.key(0), config.train.batch_size)
    mask_K = jnp.ones(task.n_points)
    update = jax.jit(step_lib.make_update(config, spec, tx, n_shards=mesh.shape[parallel.DATA]), donate_argnums=0)
    fixed = lambda s: update(s, prompts, mask_K)
    _, state = timed_steps(train_step, state, warmup)
    _, state = timed_steps(fixed, state, warmup + 1)
    times, fixed_times = [], []
    for _ in range(steps):
        t, state = timed_steps(train_step, state, 1)
        times += t
        t, state = timed_steps(fixed, state, 1)
        fixed_times += t

    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(spec.abstract["params"]))
    median, fixed_median = statistics.median(times), statistics.median(fixed_times)
    return {"params": n_params, "gflop": model_flops(config) / 1e9,
            "field_gflop": model_flops(config, every_token=True) / 1e9, "first_step_s": first_step_s,
            "steps_per_s": 1 / median, "min_steps_per_s": 1 / max(times), "max_steps_per_s": 1 / min(times),
            "gflops": model_flops(config) / median / 1e9, "sampling_share": (median - fixed_median) / median}


def configs(kinds: list[str], sizes: list[str], overrides: list[str]) -> list:
    """The validated config of each kind and size, in that order: the reference linear task,
    model.kind and the kind's preset for model.size, then the --config.section.key=value
    overrides (as in train.py)."""
    out = []
    for kind in kinds:
        for size in sizes:
            config = config_lib.default_config()  # the reference linear task
            config.model.kind = kind
            config_lib.apply_model_preset(config, size)
            for item in overrides:  # --config.model.remat=True style, as in train.py
                key, value = item.removeprefix("--config.").split("=", 1)
                section, name = key.split(".")
                current = config[section][name]
                config[section][name] = (value.lower() == "true") if isinstance(current, bool) else type(current)(value)
            try:
                config_lib.validate(config)
            except UserError as e:
                raise UserError(f"--kind={kind} --sizes={size}: {e}") from e
            out.append(config)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", type=parse_kinds, default="transformer",
                        help=f"comma-separated model kinds, of {', '.join(FLOPS)}")
    parser.add_argument("--sizes", default="tiny,small,standard")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per size (after warm-up)")
    parser.add_argument("--warmup", type=int, default=3)
    args, overrides = parser.parse_known_args()
    try:  # every config checked before anything is measured
        runs = configs(args.kind, args.sizes.split(","), overrides)
    except UserError as e:
        parser.error(str(e))

    peak = matmul_peak_gflops()
    print(f"{jax.devices()[0].device_kind} ×{jax.device_count()}, jax {jax.__version__}; "
          f"float32 matmul peak (2048² jnp.dot, best of 10): {peak:.1f} GFLOP/s")
    memory = "kept in the process (icl_jax.cpu_process)" if "glibc.malloc.mmap_max=0" in os.environ.get(
        "GLIBC_TUNABLES", "") else f"glibc's default ({cpu_process.MALLOC_OPT_OUT} set, or not glibc)"
    print(f"host memory: {memory}; each device's batch differentiated in "
          f"{step_lib.batch_splits(config_lib.default_config(), jax.device_count())} parts (train.batch_splits)")
    header = (f"{'kind':>11} {'size':>9} {'params':>8} {'GFLOP/step':>10} {'(field)':>8} {'1st step s':>10} "
              f"{'steps/s':>8} {'(min-max)':>13} {'GFLOP/s':>8} {'of peak':>8} {'sampling':>8}")
    print(header)
    for config in runs:
        r = benchmark(config, args.steps, args.warmup)
        print(f"{config.model.kind:>11} {config.model.size:>9} {r['params'] / 1e6:>7.2f}M {r['gflop']:>10.2f} "
              f"{r['field_gflop']:>8.2f} {r['first_step_s']:>10.1f} "
              f"{r['steps_per_s']:>8.2f} {r['min_steps_per_s']:>6.2f}-{r['max_steps_per_s']:<6.2f} "
              f"{r['gflops']:>8.1f} {r['gflops'] / peak:>7.0%} {r['sampling_share']:>8.1%}", flush=True)
    print(f"float32 matmul peak at the end: {matmul_peak_gflops():.1f} GFLOP/s (load drift check)")


if __name__ == "__main__":
    main()
