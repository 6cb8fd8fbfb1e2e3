"""Where training metrics go: a progress line for people, JSON lines and TensorBoard events
for programs, and Weights & Biases where the config sets wandb.project (icl_jax/wandb_writer.py).
Only process 0 writes."""

from __future__ import annotations

import json
import pathlib
import sys

import jax
import ml_collections

from icl_jax import files, wandb_writer


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class MetricsWriter:
    def __init__(self, workdir: str | pathlib.Path, config: ml_collections.ConfigDict, resumed_step: int | None):
        """`config`: the run's validated config (train.steps, wandb.*). `resumed_step`: the
        checkpoint the run restarts from. Records past it came from an attempt that died before
        saving; they are dropped so each step appears once (W&B, whose steps only grow, keeps
        the first of a step logged twice)."""
        self.enabled = jax.process_index() == 0
        self.total_steps = config.train.steps
        self._wandb = wandb_writer.start(config, workdir)  # None unless wandb.project, on process 0
        if not self.enabled:
            return
        path = pathlib.Path(workdir) / "metrics.jsonl"
        if resumed_step is not None and path.exists():
            kept = [line for line in path.read_text().splitlines(keepends=True)
                    if json.loads(line)["step"] <= resumed_step]
            files.write_atomic(path, "".join(kept))
        self._jsonl = open(path, "a", buffering=1)
        from tensorboardX import SummaryWriter  # imported late: only process 0 needs it

        self._tb = SummaryWriter(logdir=str(workdir), flush_secs=30)

    def write(self, step: int, metrics: dict[str, float], steps_per_sec: float) -> None:
        if not self.enabled:
            return
        record = {"step": step, **metrics, "steps_per_sec": steps_per_sec}
        self._jsonl.write(json.dumps(record) + "\n")
        for name, value in record.items():
            if name != "step":
                self._tb.add_scalar(f"train/{name}", value, step)
        if self._wandb is not None:
            self._wandb.log({f"train/{name}": value for name, value in record.items() if name != "step"}, step=step)
        eta = (self.total_steps - step) / steps_per_sec if steps_per_sec > 0 else float("inf")
        details = "  ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        print(f"step {step:>{len(str(self.total_steps))}}/{self.total_steps}  {details}  "
              f"{steps_per_sec:.1f} steps/s  ETA {_duration(eta) if eta != float('inf') else '?'}",
              flush=True)

    def message(self, text: str) -> None:
        if self.enabled:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled:
            self._jsonl.close()
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None
