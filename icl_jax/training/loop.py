"""train(config, workdir): the whole training run, resumable, behind the thin CLI in train.py.

Resume order: the latest checkpoint in WORKDIR, else a fresh initialisation. The host never
waits on the device inside the loop except every `log_every` steps (to print) and when it
saves; losses of the steps in between are kept as device arrays and averaged at the log.
"""

from __future__ import annotations

import contextlib
import pathlib
import signal
import time

import jax
import jax.numpy as jnp
from jax.experimental import multihost_utils
import ml_collections
import numpy as np

from icl_jax import config as config_lib
from icl_jax import curriculum, files, models, parallel, tasks
from icl_jax.checkpointing import Checkpoints
from icl_jax.data import feed as data_feed
from icl_jax.errors import NonFiniteLoss, Stopped, UserError
from icl_jax.training import optimizer, step as step_lib
from icl_jax.training.metrics_writer import MetricsWriter


class _StopRequest:
    """Turns SIGTERM/SIGINT into a flag the loop reads between steps (save, then exit).

    With several processes the stop must happen at the same step everywhere: JAX's
    distributed runtime catches SIGTERM itself and `reached_preemption_sync_point` agrees on
    the step. A flag set by one process's own handler could not be agreed on, so none is
    installed then (launch/local.sh turns Ctrl-C into SIGTERM for its processes)."""

    def __init__(self):
        self.signum: int | None = None
        self.reason = ""

    def requested(self, step: int) -> bool:
        if jax.process_count() > 1 and multihost_utils.reached_preemption_sync_point(step):
            self.reason, self.signum = "preemption notice (SIGTERM)", signal.SIGTERM
            return True
        self.reason = signal.Signals(self.signum).name if self.signum is not None else ""
        return self.signum is not None

    @contextlib.contextmanager
    def installed(self):
        signals = () if jax.process_count() > 1 else (signal.SIGTERM, signal.SIGINT)
        previous = {s: signal.getsignal(s) for s in signals}

        def handler(signum, frame):
            self.signum = signum
            signal.signal(signum, previous[signum])  # a second signal acts as usual

        for s in previous:
            signal.signal(s, handler)
        try:
            yield self
        finally:
            for s, h in previous.items():
                signal.signal(s, h)


def train(config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
          start_time: float | None = None, mesh: jax.sharding.Mesh | None = None,
          raise_when_stopped: bool = False) -> dict:
    """Trains to config.train.steps (or until SIGTERM/SIGINT) and returns the final state.
    `start_time` (default: now) is what the time-to-first-step report counts from; `mesh`
    (default: every device) is where the run is data-parallel. With `raise_when_stopped` (the
    CLI), a signal that stops the run before train.steps raises errors.Stopped once the
    checkpoint is saved, so that the exit status can tell a stopped run from a finished one.
    In a multi-process run that loses a peer process, this process prints one line and exits
    with parallel.PEER_LOST_EXIT (parallel.exit_after_lost_peer)."""
    start_time = time.time() if start_time is None else start_time
    config_lib.validate(config)
    mesh = parallel.make_mesh() if mesh is None else mesh
    parallel.check_batch_divides(config.train.batch_size, mesh)
    step_lib.batch_splits(config, mesh.shape[parallel.DATA])  # refuses a bad split before writing
    workdir = pathlib.Path(workdir)
    _make_workdir(workdir)
    files.record_run_config(workdir, config)
    if jax.process_index() == 0:
        files.write_json(workdir / "versions.json", files.library_versions())

    task = tasks.get_task(config.task, config.data)
    tx = optimizer.make_optimizer(config.train)
    spec = step_lib.state_spec(config, tx, mesh)
    tr = config.train
    checkpoints = Checkpoints(workdir, keep_last=tr.keep_last, keep_every=tr.keep_every,
                              with_data=getattr(task, "host_fed", False))
    writer = MetricsWriter(workdir, config, resumed_step=checkpoints.latest_step())
    try:
        state, stop = _run(config, workdir, task, tx, spec, mesh, checkpoints, writer, start_time)
    except jax.errors.JaxRuntimeError as e:
        if parallel.is_lost_peer(e):  # a collective found the other end gone (kill -9, lost host)
            parallel.exit_after_lost_peer(checkpoints.latest_step())  # before close(): it would wait on the peer
        raise
    finally:
        checkpoints.close()
        writer.close()
    if raise_when_stopped and stop.signum is not None and int(state["step"]) < tr.steps:
        raise Stopped(int(state["step"]), stop.signum)
    return state


def _make_workdir(workdir: pathlib.Path) -> None:
    if workdir.exists() and not workdir.is_dir():
        raise UserError(f"--workdir {workdir} is a file, not a directory: name a new or existing run directory")
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a parent that is a file, no permission, read-only file system
        raise UserError(f"cannot create --workdir {workdir}: {e.strerror or e}") from None


def _run(config, workdir, task, tx, spec, mesh, checkpoints, writer, start_time) -> tuple[dict, _StopRequest]:
    tr = config.train
    if checkpoints.latest_step() is not None:
        restored_step, state = checkpoints.restore(None, like=spec.abstract)
        writer.message(f"resuming from checkpoint at step {restored_step} in {checkpoints.directory}")
    else:
        state = spec.init()
        writer.message(f"starting {task.name} (d={task.n_dims}, {task.n_points} points) with "
                       f"{models.describe(config.model, state['params'], task.n_dims, task.n_points)}, on "
                       f"{mesh.size} device(s) × {jax.process_count()} process(es) in {workdir}")
    step = int(state["step"])
    last_saved = checkpoints.latest_step()
    feed = None
    compiled_step = step_lib.make_train_step(config, spec, task, tx, mesh)  # the task's own prompt source
    train_step = compiled_step
    if getattr(task, "host_fed", False):  # examples gathered by the host (tasks/images.py)
        feed = data_feed.TrainFeed(task.source("train"), tr.batch_size, task.n_points, config.seed, mesh,
                                   config.data.prefetch, checkpoints.restore_data(step) if step else None)
        train_step = lambda state: compiled_step(state, feed.next())  # noqa: E731

    def save(at_step: int, state) -> None:
        nonlocal last_saved
        _raise_if_nonfinite(state, last_saved)
        checkpoints.save(at_step, state, None if feed is None else feed.state())
        last_saved = at_step

    losses: list[jax.Array] = []
    interval_start, interval_first_step = time.time(), step
    first_step_reported = False
    with _StopRequest().installed() as stop, (contextlib.closing(feed) if feed else contextlib.nullcontext()):
        while step < tr.steps:
            state, metrics = train_step(state)
            step += 1
            if not first_step_reported:  # one sync per process: time to the first step
                jax.block_until_ready(metrics["loss"])
                writer.message(f"first step done {time.time() - start_time:.1f}s after start "
                               f"(init, restore and compile)")
                first_step_reported = True
                interval_start, interval_first_step = time.time(), step  # rates exclude compile
            losses.append(metrics["loss"])
            if step % tr.log_every == 0 or step == tr.steps:
                mean_loss = float(jnp.mean(jnp.stack(losses)))
                losses.clear()
                if not np.isfinite(mean_loss):
                    _raise_if_nonfinite(state, last_saved)
                now = time.time()
                rate = (step - interval_first_step) / max(now - interval_start, 1e-9)
                writer.write(step, {"loss": mean_loss,
                                    "active_dims": int(curriculum.active_dims(config, step - 1)),
                                    "active_points": int(curriculum.active_points(config, step - 1))}, rate)
                interval_start, interval_first_step = now, step
            if stop.requested(step):
                save(step, state)
                writer.message(f"{stop.reason} received: saved step {step}; "
                               f"run the same command again to resume")
                break
            if step == tr.steps or step % tr.checkpoint_every == 0:
                save(step, state)
    return state, stop


def _raise_if_nonfinite(state, last_saved: int | None) -> None:
    bad_step = int(state["nonfinite_step"])
    if bad_step >= 0:
        where = (f"the last good checkpoint is step {last_saved}" if last_saved is not None
                 else "no checkpoint was saved before it")
        raise NonFiniteLoss(f"the training loss became non-finite at step {bad_step}; stopped, {where}. "
                            f"Lower train.learning_rate or set train.grad_clip.")
