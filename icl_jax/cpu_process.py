"""Process settings of a CPU run that must be in place before JAX starts; the entry points
apply them by re-executing themselves once (same PID and arguments).

Host memory is kept in the process. XLA:CPU allocates each execution's temporary buffer
(2.2 GB for the standard model's train step, 0.57 GB for the small one) with malloc and frees
it afterwards; glibc serves blocks that large with a fresh mmap and unmaps them on free, so
every step page-faulted its whole buffer in again: 611k faults and ~1.1 s of kernel time per
3.2 s standard step on 2 cores. The glibc tunables below keep one heap (per-thread arenas send
large blocks to mmap), never mmap single blocks, never trim, and back the heap with
transparent huge pages: after the first step, no faults.

Only where the run computes on the CPU: not when JAX_PLATFORMS names another platform or a
GPU/TPU device node exists, where the host does little and one shared heap could slow its
input threads. ICL_JAX_SYSTEM_MALLOC=1 opts out; entries already in GLIBC_TUNABLES keep the
user's values.

Not done here, though measured faster (1.13-1.24x): splitting 2 cores into 2 XLA devices for
data parallelism. Its gradient all-reduce deadlocked a default-length run (both worker threads
blocked in the rendezvous, the other device's half never scheduled; benchmarks/README.md).
train.batch_splits (training/step.py) gets most of that gain with no collective: two
independent halves of the batch in one program on one device.
"""

from __future__ import annotations

import glob
import os
import platform
import sys

MALLOC_OPT_OUT = "ICL_JAX_SYSTEM_MALLOC"
_REEXECUTED = "ICL_JAX_CPU_PROCESS_REEXECUTED"  # a guard: never more than one re-execution
TUNABLES = {
    "glibc.malloc.arena_max": "1",
    "glibc.malloc.mmap_max": "0",
    "glibc.malloc.trim_threshold": str(2**62),
    "glibc.malloc.hugetlb": "1",  # madvise(MADV_HUGEPAGE) on the heap; glibc < 2.35 ignores it
}
_ACCELERATOR_NODES = ("/dev/nvidiactl", "/dev/kfd", "/dev/accel*", "/dev/vfio/[0-9]*")


def merged_tunables(current: str) -> str:
    """GLIBC_TUNABLES with ours added; entries already present (the user's) are kept as set."""
    entries = [e for e in current.split(":") if e]
    present = {e.split("=", 1)[0] for e in entries}
    return ":".join(entries + [f"{k}={v}" for k, v in TUNABLES.items() if k not in present])


def computes_on_cpu() -> bool:
    platforms = os.environ.get("JAX_PLATFORMS", "")
    if platforms:
        return platforms.split(",")[0].strip() == "cpu"
    return not any(glob.glob(pattern) for pattern in _ACCELERATOR_NODES)


def _keeps_memory() -> bool:
    return sys.platform == "linux" and platform.libc_ver()[0] == "glibc" and not os.environ.get(MALLOC_OPT_OUT)


def prepare() -> None:
    """Re-executes this program once with TUNABLES in its environment, unless they are there
    already. Call it first thing in an entry point's __main__, before jax is imported."""
    if "jax" in sys.modules or os.environ.get(_REEXECUTED) or not computes_on_cpu() or not _keeps_memory():
        return
    current = os.environ.get("GLIBC_TUNABLES", "")
    wanted = merged_tunables(current)
    if wanted == current:
        return
    os.environ.update({"GLIBC_TUNABLES": wanted, _REEXECUTED: "1"})
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
