"""Wall-clock time of one small sweep run one at a time and several at once on this machine.

    python benchmarks/sweep_parallel.py [--parallel=1,2] [--runs=4] [--steps=1000] [--config=configs/linear.py]

Runs the same grid (seeds 0..runs-1 of the config, train.steps=steps, then evaluate) with
`python -m icl_jax.sweep --parallel=P` for each P, each in a fresh folder, and prints the
seconds and the speed-up over the first P in the same run. Whole runs are timed (start-up,
compilation, training, evaluation): that is what a sweep waits for.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time


def sweep_command(config: str, runs: int, steps: int, parallel: int, workdir: str) -> list[str]:
    return [sys.executable, "-m", "icl_jax.sweep", f"--config={config}", f"--workdir={workdir}",
            f"--sweep=seed=[{','.join(map(str, range(runs)))}]", f"--sweep=train.steps=[{steps}]",
            "--sweep=eval.num_prompts=[256]", f"--parallel={parallel}"]


def sweep_seconds(config: str, runs: int, steps: int, parallel: int, workdir: str) -> float:
    start = time.perf_counter()
    result = subprocess.run(sweep_command(config, runs, steps, parallel, workdir), capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"sweep --parallel={parallel} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parallel", default="1,2")
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--config", default="configs/linear.py")
    args = parser.parse_args()
    counts = [int(p) for p in args.parallel.split(",")]
    print(f"sweep of {args.runs} runs of {args.config}, {args.steps} steps each, "
          f"{len(os.sched_getaffinity(0))} CPUs")
    print(f"{'parallel':>8} {'seconds':>8} {'speed-up':>9}")
    first = None
    with tempfile.TemporaryDirectory() as root:
        # one warm-up run fills the XLA compilation cache, so no setting pays for compiling first
        sweep_seconds(args.config, 1, 10, 1, os.path.join(root, "warmup"))
        for p in counts:
            seconds = sweep_seconds(args.config, args.runs, args.steps, p, os.path.join(root, f"p{p}"))
            first = first or seconds
            print(f"{p:>8} {seconds:>8.1f} {first / seconds:>8.2f}x", flush=True)


if __name__ == "__main__":
    main()
