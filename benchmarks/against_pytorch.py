"""icl_jax's train step against the field's PyTorch model on the same task, in the same run.

    python benchmarks/against_pytorch.py [--sizes=tiny,small,standard] [--rounds=6] [--turn=4]
                                         [--torch_python=PYTHON] [--modes=eager,compile]

For each size: icl_jax's train step (built as `python -m icl_jax.train` builds it, in this
process) and the PyTorch model's, in eager mode and under torch.compile
(benchmarks/pytorch_model.py, each in a fresh process of --torch_python, an interpreter with
torch and transformers installed; by default this one). After each one's first step and
warm-up, they take turns of a few steps each (--rounds, --turn), so a change in the machine's
load hits all alike; the first step of each turn, which finds the caches holding the other
process's data, is not timed. All train the reference linear task (d=20, 41 points, batch
64) with Adam and sample every batch inside the step. The last column is icl_jax's steps/s
over the faster PyTorch mode's: above 1, icl_jax is faster.

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
import statistics
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


class TorchStep:
    """The PyTorch model's train step for this config's model and task, in a fresh process of
    `python` (pytorch_model.py --serve); steps(n) runs n and returns their seconds."""

    def __init__(self, python: str, config, mode: str, warmup: int):
        m, task = config.model, config.task
        args = dict(n_layer=m.n_layer, n_head=m.n_head, n_embd=m.n_embd, n_dims=task.n_dims,
                    n_points=task.n_points, batch_size=config.train.batch_size, warmup=warmup)
        self.command = [python, str(TORCH_MODEL), f"--mode={mode}", "--serve", *(f"--{k}={v}" for k, v in args.items())]
        self._cache = tempfile.TemporaryDirectory()  # compiled from scratch, as icl_jax's first step is
        self._stderr = tempfile.TemporaryFile("w+")
        env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "XLA_FLAGS")}
        self._process = subprocess.Popen(self.command, env=env | {"TORCHINDUCTOR_CACHE_DIR": self._cache.name},
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True)
        self.about = json.loads(self._reply())

    def _reply(self) -> str:
        line = self._process.stdout.readline()
        if not line:
            self._process.wait()
            self._stderr.seek(0)
            raise SystemExit(f"the PyTorch reference failed ({' '.join(self.command)}):\n{self._stderr.read()[-3000:]}")
        return line

    def steps(self, n: int) -> list[float]:
        self._process.stdin.write(f"{n}\n")
        self._process.stdin.flush()
        return json.loads(self._reply())

    def close(self) -> None:
        self._process.stdin.close()
        self._process.wait()
        self._stderr.close()
        self._cache.cleanup()


def _steps_per_s(times: list[float]) -> str:
    return f"{1 / statistics.median(times):>6.2f} ({1 / max(times):.2f}-{1 / min(times):.2f})"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="tiny,small,standard")
    parser.add_argument("--rounds", type=int, default=6, help="turns each library takes per size, after warm-up")
    parser.add_argument("--turn", type=int, default=4, help="steps per turn; all but the first are timed")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--modes", default="eager,compile", help="PyTorch modes: eager, compile")
    parser.add_argument("--torch_python", default=sys.executable, help="an interpreter with torch and transformers")
    args = parser.parse_args()
    modes = args.modes.split(",")
    if not modes or set(modes) - {"eager", "compile"}:
        raise SystemExit(f"--modes takes eager and/or compile, not {args.modes!r}")
    if args.rounds < 1 or args.turn < 2:
        raise SystemExit("--rounds must be at least 1 and --turn at least 2 (a turn's first step is not timed)")

    check_torch(args.torch_python)
    peak = train_step.matmul_peak_gflops()
    print(f"jax {jax.__version__}, {jax.device_count()} CPU device; float32 matmul 2048², best of 10: "
          f"jnp.dot {peak:.1f} GFLOP/s")
    header = f"{'size':>9} {'icl_jax':>19} " + " ".join(f"{'torch ' + m:>19}" for m in modes) + f" {'icl_jax ÷ torch':>15}"
    print(f"steps/s, median (min-max) of {args.rounds} turns × {args.turn - 1} timed steps each\n" + header)
    torch_peaks = []
    for size in args.sizes.split(","):
        config = config_lib.default_config()  # the reference linear task
        config_lib.apply_model_preset(config, size)
        config_lib.validate(config)  # fills the preset's sizes
        ours, state, ours_first, _ = train_step.first_step(config)
        theirs = {m: TorchStep(args.torch_python, config, m, args.warmup) for m in modes}
        _, state = train_step.timed_steps(ours, state, args.warmup)
        times = {"icl_jax": []} | {m: [] for m in modes}
        for _ in range(args.rounds):  # the first step of each turn finds the caches cold: untimed
            turn, state = train_step.timed_steps(ours, state, args.turn)
            times["icl_jax"] += turn[1:]
            for m, t in theirs.items():
                times[m] += t.steps(args.turn)[1:]
        for t in theirs.values():
            t.close()
        torch_peaks += [t.about["matmul_gflops"] for t in theirs.values()]
        best = min(statistics.median(times[m]) for m in modes)
        print(f"{size:>9} " + " ".join(_steps_per_s(t) for t in times.values())
              + f" {best / statistics.median(times['icl_jax']):>14.2f}×", flush=True)
        print(f"{'':>9} first step: icl_jax {ours_first:.1f} s, "
              + ", ".join(f"torch {m} {t.about['first_step_s']:.1f} s" for m, t in theirs.items()))
    about = next(iter(theirs.values())).about
    print(f"torch {about['torch']}, {about['threads']} threads, attention {about['attention']}; torch.matmul 2048² "
          f"{min(torch_peaks):.0f}-{max(torch_peaks):.0f} GFLOP/s; jnp.dot at the end {train_step.matmul_peak_gflops():.1f}")


if __name__ == "__main__":
    main()
