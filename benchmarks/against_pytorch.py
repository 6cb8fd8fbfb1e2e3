"""icl_jax's train step against the field's PyTorch model on the same task, in the same run.

    python benchmarks/against_pytorch.py [--sizes=tiny,small,standard] [--steps=12]
                                         [--torch_python=PYTHON] [--modes=eager,compile]

For each size, back to back: icl_jax's step (benchmarks/train_step.py's measurement, in this
process), then the PyTorch model's step in eager mode and under torch.compile
(benchmarks/pytorch_model.py, each in a fresh process of --torch_python, an interpreter with
torch and transformers installed; by default this one). Both train the reference linear task
(d=20, 41 points, batch 64) with Adam and sample every batch inside the step. The last column
is icl_jax's steps/s over the faster PyTorch mode's: above 1, icl_jax is faster.

PyTorch runs in the process a researcher would start (no icl_jax.cpu_process memory settings:
they did not change its speed here) with torch's own thread count, and compiles into an empty
inductor cache, so its first step is comparable with icl_jax's (which caches nothing).
"""

from __future__ import annotations

if __name__ == "__main__":  # the process `python -m icl_jax.train` runs in (host memory kept)
    from icl_jax import cpu_process

    cpu_process.prepare()

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import jax

from icl_jax import config as config_lib

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is not a package
import train_step  # noqa: E402

TORCH_MODEL = Path(__file__).with_name("pytorch_model.py")


def check_torch(python: str) -> None:
    """Stops with the command that fixes it unless `python` can import torch and transformers."""
    done = subprocess.run([python, "-c", "import torch, transformers"], capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"{python} cannot run the PyTorch reference ({last}). Install it there with "
                         "`pip install torch transformers`, or pass --torch_python=<an interpreter that has them>.")


def torch_step(python: str, config, mode: str, steps: int, warmup: int) -> dict:
    """The PyTorch model's timings for this config's model and task, from a fresh process."""
    m, task = config.model, config.task
    args = dict(n_layer=m.n_layer, n_head=m.n_head, n_embd=m.n_embd, n_dims=task.n_dims,
                n_points=task.n_points, batch_size=config.train.batch_size, steps=steps, warmup=warmup)
    command = [python, str(TORCH_MODEL), f"--mode={mode}", *(f"--{k}={v}" for k, v in args.items())]
    with tempfile.TemporaryDirectory() as cache:  # compiled from scratch, as icl_jax's first step is
        env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "XLA_FLAGS")}
        done = subprocess.run(command, env=env | {"TORCHINDUCTOR_CACHE_DIR": cache}, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the PyTorch reference failed ({' '.join(command)}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="tiny,small,standard")
    parser.add_argument("--steps", type=int, default=12, help="timed steps per size and library (after warm-up)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--modes", default="eager,compile", help="PyTorch modes: eager, compile")
    parser.add_argument("--torch_python", default=sys.executable, help="an interpreter with torch and transformers")
    args = parser.parse_args()
    modes = args.modes.split(",")
    if not modes or set(modes) - {"eager", "compile"}:
        raise SystemExit(f"--modes takes eager and/or compile, not {args.modes!r}")

    check_torch(args.torch_python)
    peak = train_step.matmul_peak_gflops()
    print(f"jax {jax.__version__}, {jax.device_count()} CPU device; float32 matmul 2048², best of 10: "
          f"jnp.dot {peak:.1f} GFLOP/s")
    header = f"{'size':>9} {'icl_jax':>8} " + " ".join(f"{'torch ' + m:>14}" for m in modes) + f" {'icl_jax ÷ torch':>15}"
    print("steps/s, median (min-max) of the timed steps\n" + header)
    torch_peaks = []
    for size in args.sizes.split(","):
        config = config_lib.default_config()  # the reference linear task
        config_lib.apply_model_preset(config, size)
        ours = train_step.benchmark(config, args.steps, args.warmup)
        theirs = {m: torch_step(args.torch_python, config, m, args.steps, args.warmup) for m in modes}
        torch_peaks += [t["matmul_gflops"] for t in theirs.values()]
        best = max(t["steps_per_s"] for t in theirs.values())
        cells = " ".join(f"{t['steps_per_s']:>6.2f} ({t['min_steps_per_s']:.2f}-{t['max_steps_per_s']:.2f})"
                         for t in theirs.values())
        print(f"{size:>9} {ours['steps_per_s']:>8.2f} {cells} {ours['steps_per_s'] / best:>14.2f}×", flush=True)
        for m, t in theirs.items():
            print(f"{'':>9} torch {m}: first step {t['first_step_s']:.1f} s (icl_jax {ours['first_step_s']:.1f} s)")
    info = next(iter(theirs.values()))
    print(f"torch {info['torch']}, {info['threads']} threads, attention {info['attention']}; torch.matmul 2048² "
          f"{min(torch_peaks):.0f}-{max(torch_peaks):.0f} GFLOP/s; jnp.dot at the end {train_step.matmul_peak_gflops():.1f}")


if __name__ == "__main__":
    main()
