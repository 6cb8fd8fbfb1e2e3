"""JAX's persistent compilation cache, on by default for the command-line programs.

A program that compiled the train step once (the same config, a resumed run, `evaluate` or
`analyze` after `train`) loads the executables from disk instead of compiling them again.
The cache is kept in `$ICL_JAX_COMPILATION_CACHE` (default `~/.cache/icl_jax/xla`, beside the
C++ kernels of kernels/cpu/build.py); ICL_JAX_COMPILATION_CACHE=0 turns it off, and a cache
directory set through JAX itself (JAX_COMPILATION_CACHE_DIR) is used as it is.

JAX keys an entry on the program, jaxlib's version, the backend, the XLA flags and the
compile options, not on the host CPU, yet XLA:CPU compiles for the CPU it runs on. Entries
are therefore kept in a folder per CPU model and instruction set (a cache on a shared home
directory never hands one host's executable to another), jaxlib version and C++ kernel
sources: an executable calls a kernel by its XLA target name, so one compiled before a kernel
changed is never run with the new kernel. The folder can be deleted at any time.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import platform

ENV = "ICL_JAX_COMPILATION_CACHE"
_OFF = ("0", "off", "false", "no")
# What is worth a disk entry: the train step and evaluation programs take seconds; the many
# small programs of a run (initializers, metrics) compile in milliseconds, about what reading
# an entry back costs.
MIN_COMPILE_SECONDS = 0.2


def base_dir() -> pathlib.Path | None:
    """Where the cache lives (the per-host folders are under it), or None when turned off."""
    value = os.environ.get(ENV)
    if value is not None and value.strip().lower() in _OFF + ("",):
        return None
    if value:
        return pathlib.Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(base) / "icl_jax" / "xla"


def host_key() -> str:
    """A hash of what the executables depend on beyond JAX's own key: this CPU, jaxlib's
    version and the sources of the C++ kernels they may call."""
    import jaxlib

    from icl_jax.kernels.cpu import build

    kernels = sorted(p for pattern in ("*.cc", "*.h") for p in build.SOURCE_DIR.glob(pattern))
    parts = [jaxlib.__version__, platform.machine(), build._cpu_identity(),
             *(f"{p.name}\0{p.read_text()}" for p in kernels)]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def enable() -> pathlib.Path | None:
    """Turns the cache on for this process (call before the first compilation); returns the
    folder in use, or None when it is off. A folder already set in JAX's config is kept."""
    import jax

    if jax.config.jax_compilation_cache_dir:
        return pathlib.Path(jax.config.jax_compilation_cache_dir)
    base = base_dir()
    if base is None:
        return None
    directory = base / host_key()
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return directory
