"""Runs a sweep's runs as child processes: `train`, then `evaluate` at train.steps, each run
once; finished runs are skipped and unfinished ones resume, so rerunning the same command
after an interruption (or a crash, or a preempted job) only does what is left.

Several runs at once (`parallel`): on a CPU each child gets its own share of the cores
(sched_setaffinity), so the children do not fight over the same threads. Ctrl-C or SIGTERM is
passed on to the children, each saves a checkpoint and stops; no new run starts, and the
sweep exits with the signal's status (130, 143) once they have.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import os
import pathlib
import signal
import subprocess
import sys
import time

from icl_jax import cpu_process, files
from icl_jax.sweeps import runs as runs_lib
from icl_jax.sweeps.grid import ConfigSource

LOG_FILE = "sweep.log"  # each run's train and evaluate output, appended
LOCK_FILE = ".sweep.lock"  # held while a sweep works on the run: two sweeps never train one run
_POLL_SECONDS = 0.25


@dataclasses.dataclass
class _Job:
    run: runs_lib.Run
    run_dir: pathlib.Path
    stage: str  # "train" | "evaluate"
    process: subprocess.Popen
    cpus: tuple[int, ...]
    log_offset: int
    started: float
    lock: object  # the open LOCK_FILE, flock-ed


@dataclasses.dataclass
class Outcome:
    skipped: list[str] = dataclasses.field(default_factory=list)  # finished before this sweep
    busy: list[str] = dataclasses.field(default_factory=list)  # another sweep process works on them
    finished: list[str] = dataclasses.field(default_factory=list)
    failed: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (name, why)
    stopped: list[str] = dataclasses.field(default_factory=list)
    signal: int | None = None

    @property
    def exit_status(self) -> int:
        if self.signal is not None:
            return 128 + self.signal
        return 1 if self.failed or self.busy else 0


def auto_parallel() -> int:
    """Runs at once by default. On 2 CPU cores two tiny-model runs, one core each, finish a
    sweep 1.9x sooner than one run at a time on both (benchmarks/sweep_parallel.py): a small
    model's step uses a second thread poorly, and start-up, compilation and evaluation barely
    at all. On an accelerator one run has the devices to itself."""
    if not cpu_process.computes_on_cpu():
        return 1
    return 2 if len(os.sched_getaffinity(0)) >= 2 else 1


def cpu_shares(parallel: int, cpus: list[int] | None = None) -> list[tuple[int, ...]]:
    """The machine's usable CPUs split into `parallel` disjoint groups (equal up to one)."""
    cpus = sorted(os.sched_getaffinity(0)) if cpus is None else cpus
    if parallel > len(cpus):
        return [tuple(cpus)] * parallel
    return [tuple(cpus[i::parallel]) for i in range(parallel)]


def child_command(stage: str, run: runs_lib.Run, run_dir: pathlib.Path, source: ConfigSource) -> list[str]:
    common = [sys.executable, "-m", f"icl_jax.{stage}", f"--workdir={run_dir}"]
    return common + (run.train_flags(source) if stage == "train" else [f"--step={run.steps}"])


class Sweep:
    def __init__(self, source: ConfigSource, runs: list[runs_lib.Run], workdir: pathlib.Path,
                 sweep_name: str, parallel: int = 1, echo=print):
        self.source, self.runs, self.workdir = source, runs, pathlib.Path(workdir)
        self.sweep_name, self.echo = sweep_name, echo
        pin = parallel > 1 and cpu_process.computes_on_cpu() and hasattr(os, "sched_setaffinity")
        self.free_cpus = cpu_shares(parallel) if pin else [()] * parallel
        self.active: list[_Job] = []
        self.outcome = Outcome()

    def run(self) -> Outcome:
        pending = []
        for run in self.runs:
            run_dir = self.workdir / run.name
            state, step = runs_lib.status(run_dir, run.steps)
            label = self._label(run)
            if state is runs_lib.Status.FINISHED:
                self.outcome.skipped.append(run.name)
                self.echo(f"{label}: finished before, skipped")
            else:
                pending.append((run, run_dir, "evaluate" if state is runs_lib.Status.UNEVALUATED else "train", step))
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            while (pending and self.outcome.signal is None) or self.active:
                while pending and self.free_cpus and self.outcome.signal is None:
                    self._start(*pending.pop(0))
                time.sleep(_POLL_SECONDS)
                self._poll()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        return self.outcome

    def _label(self, run: runs_lib.Run) -> str:
        return f"[{self.runs.index(run) + 1}/{len(self.runs)} {run.name}]"

    def _start(self, run, run_dir, stage, step, cpus=None, lock=None):
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = lock or _lock(run_dir)
        if lock is None:
            self.outcome.busy.append(run.name)
            self.echo(f"{self._label(run)}: another sweep is working on it, skipped")
            return
        runs_lib.write_point(run_dir, run, self.source, self.sweep_name)
        cpus = self.free_cpus.pop(0) if cpus is None else cpus
        log = run_dir / LOG_FILE
        offset = log.stat().st_size if log.exists() else 0
        where = f" (resuming from step {step})" if stage == "train" and step else ""
        self.echo(f"{self._label(run)}: {stage}{where}; output in {log}")
        with open(log, "ab") as out:
            process = subprocess.Popen(
                child_command(stage, run, run_dir, self.source), stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                start_new_session=True,  # a terminal's Ctrl-C reaches the sweep, which passes it on once
                preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
        self.active.append(_Job(run, run_dir, stage, process, cpus, offset, time.time(), lock))

    def _poll(self):
        for job in list(self.active):
            self._echo_output(job)
            code = job.process.poll()
            if code is None:
                continue
            self._echo_output(job, final=True)
            self.active.remove(job)
            label, seconds = self._label(job.run), time.time() - job.started
            if code == 0 and job.stage == "train" and self.outcome.signal is None:
                self._start(job.run, job.run_dir, "evaluate", None, cpus=job.cpus, lock=job.lock)
                continue
            job.lock.close()  # releases the flock
            self.free_cpus.append(job.cpus)
            if code == 0 and job.stage == "train":  # trained to the end as the signal came
                self.outcome.stopped.append(job.run.name)
                self.echo(f"{label}: trained, not evaluated (a rerun evaluates it)")
            elif code == 0:
                self.outcome.finished.append(job.run.name)
                self.echo(f"{label}: finished ({seconds:.0f} s evaluating)")
            elif self.outcome.signal is not None:  # train saved a checkpoint; evaluate reruns whole
                self.outcome.stopped.append(job.run.name)
                self.echo(f"{label}: stopped during {job.stage}" + (", checkpoint saved" if job.stage == "train" else ""))
            else:
                why = f"{job.stage} exited with status {code}; see {job.run_dir / LOG_FILE}"
                self.outcome.failed.append((job.run.name, why))
                self.echo(f"{label}: FAILED: {why}")

    def _echo_output(self, job: _Job, final: bool = False):
        log = job.run_dir / LOG_FILE
        with open(log, "rb") as f:
            f.seek(job.log_offset)
            data = f.read()
        complete = data if final else data[:data.rfind(b"\n") + 1]
        job.log_offset += len(complete)
        for line in complete.decode(errors="replace").splitlines():
            self.echo(f"  {job.run.name}| {line}")

    def _on_signal(self, signum, frame):
        first = self.outcome.signal is None
        self.outcome.signal = signum
        if first:
            self.echo(f"{signal.Signals(signum).name}: stopping the running runs (each saves a checkpoint); "
                      f"rerun the same command to continue")
        for job in self.active:
            try:
                os.killpg(job.process.pid, signum)
            except ProcessLookupError:
                pass


def _lock(run_dir: pathlib.Path):
    """The run's lock file, open and exclusively locked; None where another process holds it."""
    f = open(run_dir / LOCK_FILE, "a")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    return f


def write_grid(workdir: pathlib.Path, source: ConfigSource, runs: list[runs_lib.Run], argv: list[str]) -> None:
    """WORKDIR/sweeps/<hash>.json: the runs one grid holds, so a report can name missing ones.
    Every shard writes the same file."""
    names = [r.name for r in runs]
    digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:8]
    files.write_json(workdir / "sweeps" / f"{digest}.json",
                     {"config": source.flag, "runs": names, "command": argv})
