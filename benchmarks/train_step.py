"""Train-step speed against this machine's float32 matmul peak, measured in the same run.

    python benchmarks/train_step.py [--sizes=tiny,small,standard] [--steps=20] [--config.model.X=...]

For each model size on the reference linear task (d=20, 41 points, batch 64): parameters,
model FLOPs per step (computed, and the field's count), time to the first step (init +
compile + one step), steps/s (median, min, max over timed steps after warm-up), achieved
GFLOP/s and its fraction of the peak (jnp.dot of 2048×2048 float32), and the share of step
time spent sampling the batch inside the step (the same step fed a fixed batch).

FLOPs per step (forward + backward = 3 × forward, matmuls only; LayerNorm, softmax, GELU and
Adam are not counted): tokens T = 2K per prompt, width E, L layers, B prompts, token width D,
  dense  = 6 · B·T · (L · 12E² + E·D + E)          (qkv 3E², out E², mlp 8E², read-in/out)
  attn   = 6 · B · L · 2·T²·E                       (QKᵀ and AV over the full T×T)
is the field's count (313.2 GFLOP for the standard model): every token through every block.
The attention term is a convention: the CPU kernel (icl_jax/kernels/cpu) skips the 16-key blocks
above the causal diagonal and recomputes QKᵀ in the backward pass, so it executes about two
thirds of it at T = 82 (the einsum core executes all of it).
The model computes its last block's output at the K x tokens alone, the only ones read out
(models/transformer.py), so the work done, which the GFLOP/s and the fraction of peak use, is
that less the y tokens' share of the last block and read-out: their out and MLP products
(9E² each), their queries' half of QKᵀ and AV (2·K·T·E per prompt), and their read-out (E).
"""

from __future__ import annotations

if __name__ == "__main__":  # the process `python -m icl_jax.train` runs in (host memory kept)
    from icl_jax import cpu_process

    cpu_process.prepare()

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from icl_jax import config as config_lib
from icl_jax import cpu_process, parallel, tasks
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


def model_flops(config, every_token: bool = False) -> float:
    """FLOPs of one train step: those the model computes, or with every_token the field's
    count (every token through every block)."""
    m, t, b = config.model, 2 * config.task.n_points, config.train.batch_size
    dense = 6 * b * t * (m.n_layer * 12 * m.n_embd**2 + m.n_embd * (config.task.n_dims + 1))
    attention = 6 * b * m.n_layer * 2 * t * t * m.n_embd
    if every_token:
        return dense + attention
    y_tokens = t // 2
    skipped = 6 * b * y_tokens * (9 * m.n_embd**2 + 2 * t * m.n_embd + m.n_embd)
    return dense + attention - skipped


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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="tiny,small,standard")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per size (after warm-up)")
    parser.add_argument("--warmup", type=int, default=3)
    args, overrides = parser.parse_known_args()

    peak = matmul_peak_gflops()
    print(f"{jax.devices()[0].device_kind} ×{jax.device_count()}, jax {jax.__version__}; "
          f"float32 matmul peak (2048² jnp.dot, best of 10): {peak:.1f} GFLOP/s")
    memory = "kept in the process (icl_jax.cpu_process)" if "glibc.malloc.mmap_max=0" in os.environ.get(
        "GLIBC_TUNABLES", "") else f"glibc's default ({cpu_process.MALLOC_OPT_OUT} set, or not glibc)"
    print(f"host memory: {memory}; each device's batch differentiated in "
          f"{step_lib.batch_splits(config_lib.default_config(), jax.device_count())} parts (train.batch_splits)")
    header = (f"{'size':>9} {'params':>8} {'GFLOP/step':>10} {'(field)':>8} {'1st step s':>10} {'steps/s':>8} "
              f"{'(min-max)':>13} {'GFLOP/s':>8} {'of peak':>8} {'sampling':>8}")
    print(header)
    for size in args.sizes.split(","):
        config = config_lib.default_config()  # the reference linear task
        config_lib.apply_model_preset(config, size)
        for item in overrides:  # --config.model.remat=True style, as in train.py
            key, value = item.removeprefix("--config.").split("=", 1)
            section, name = key.split(".")
            current = config[section][name]
            config[section][name] = (value.lower() == "true") if isinstance(current, bool) else type(current)(value)
        config_lib.validate(config)
        r = benchmark(config, args.steps, args.warmup)
        print(f"{size:>9} {r['params'] / 1e6:>7.2f}M {r['gflop']:>10.2f} {r['field_gflop']:>8.2f} {r['first_step_s']:>10.1f} "
              f"{r['steps_per_s']:>8.2f} {r['min_steps_per_s']:>6.2f}-{r['max_steps_per_s']:<6.2f} "
              f"{r['gflops']:>8.1f} {r['gflops'] / peak:>7.0%} {r['sampling_share']:>8.1%}", flush=True)
    print(f"float32 matmul peak at the end: {matmul_peak_gflops():.1f} GFLOP/s (load drift check)")


if __name__ == "__main__":
    main()
