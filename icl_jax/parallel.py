"""Device mesh and shardings: data parallel over every device, optionally FSDP-style.

One mesh axis, `data`. The batch is split along it; parameters and optimizer state are
replicated, or (parallel.shard_params) split along their largest divisible axis. The axis is
of the Auto type, so XLA's partitioner inserts the gradient all-reduce (or the FSDP
all-gathers), and a sharding constraint on the sampled batch makes each device draw only its
own slice — with partitionable threefry those slices are exactly the single-device batch's.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Sequence

import jax
from jax.sharding import NamedSharding, PartitionSpec as P

from icl_jax.errors import UserError

DATA = "data"


def make_mesh(devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
    devices = jax.devices() if devices is None else list(devices)
    return jax.make_mesh((len(devices),), (DATA,), axis_types=(jax.sharding.AxisType.Auto,),
                         devices=devices)


def batch_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA))


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def check_batch_divides(batch_size: int, mesh: jax.sharding.Mesh, key: str = "train.batch_size") -> None:
    n = mesh.shape[DATA]
    if batch_size % n:
        raise UserError(f"{key}={batch_size} does not divide evenly over the {n} devices; "
                        f"use a multiple of {n}")


def _leaf_sharding(x, mesh: jax.sharding.Mesh, shard_params: bool) -> NamedSharding:
    n = mesh.shape[DATA]
    if shard_params and n > 1:
        for axis in sorted(range(len(x.shape)), key=lambda a: -x.shape[a]):
            if x.shape[axis] >= n and x.shape[axis] % n == 0:
                spec = [None] * len(x.shape)
                spec[axis] = DATA
                return NamedSharding(mesh, P(*spec))
    return replicated(mesh)


def state_shardings(abstract_state: Any, mesh: jax.sharding.Mesh, shard_params: bool) -> Any:
    """A sharding for every leaf of the train state (scalars and small leaves replicated)."""
    return jax.tree.map(lambda x: _leaf_sharding(x, mesh, shard_params), abstract_state)


def with_shardings(abstract_state: Any, shardings: Any) -> Any:
    """ShapeDtypeStructs carrying the target shardings: what Orbax restores into."""
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                        abstract_state, shardings)


def initialize_multihost() -> None:
    """jax.distributed.initialize(), before any other JAX call of the process.

    On TPU pods, SLURM and other clusters JAX finds the coordinator itself. For N processes on
    one machine (launch/local.sh) the ICL_JAX_COORDINATOR, ICL_JAX_NUM_PROCESSES and
    ICL_JAX_PROCESS_ID variables name it, and CPU collectives go over gloo.
    """
    env = os.environ
    if "ICL_JAX_COORDINATOR" in env:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")  # only the CPU client reads it
        jax.distributed.initialize(coordinator_address=env["ICL_JAX_COORDINATOR"],
                                   num_processes=int(env["ICL_JAX_NUM_PROCESSES"]),
                                   process_id=int(env["ICL_JAX_PROCESS_ID"]))
    else:
        jax.distributed.initialize()


def multihost_requested(flag_value: bool) -> bool:
    return flag_value or os.environ.get("ICL_JAX_MULTIHOST", "") not in ("", "0", "false")


# Exit status of a process whose peer process was lost (EX_TEMPFAIL: rerunning resumes).
PEER_LOST_EXIT = 75
# What a collective or the coordination service says when the other end is gone.
_PEER_LOST_SIGNS = ("connection reset", "connection closed", "connection refused", "socket closed",
                    "broken pipe", "heartbeat", "unavailable", "gloo")


def is_lost_peer(error: BaseException) -> bool:
    """Whether `error`, raised in a multi-process run, says another process is gone (a kill -9,
    a lost host): JAX then raises from the next collective, e.g. "Gloo all-reduce failed ...
    Connection reset by peer"."""
    text = str(error).lower()
    return (jax.process_count() > 1 and isinstance(error, jax.errors.JaxRuntimeError)
            and any(sign in text for sign in _PEER_LOST_SIGNS))


def exit_after_lost_peer(resume_step: int | None) -> None:
    """Says in one line that a peer process was lost and where a rerun resumes, then ends the
    process at once with PEER_LOST_EXIT: without the peer, JAX's distributed runtime can
    neither go on nor shut down (its shutdown waits out the heartbeat timeout, then aborts)."""
    where = f"step {resume_step}" if resume_step is not None else "the start (no checkpoint was saved yet)"
    print(f"error: a peer process of this {jax.process_count()}-process run was lost, so process "
          f"{jax.process_index()} stops too; rerun the same command to continue from {where}",
          file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(PEER_LOST_EXIT)
