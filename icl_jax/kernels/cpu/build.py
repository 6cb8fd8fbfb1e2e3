"""Compile a C++ kernel of this package for the host CPU once, and load it.

A kernel is built when a model selects it (models/ops.py), or on its first direct use, with
the host's C++ compiler (`$CXX`, else `c++`, `g++` or `clang++` on the PATH, else the
`ziglang` package's `zig c++`: `pip install ziglang` brings one to a machine without any) at
-O3 -march=native, against the XLA FFI headers jaxlib ships. The shared library is kept in
`$ICL_JAX_KERNEL_CACHE` (default `~/.cache/icl_jax/kernels`) under a name that hashes
everything the binary depends on: the source and the headers beside it, the compiler and its
version, the flags, jaxlib's version and this CPU's model and instruction set (a cache on a
shared home directory then never hands one host's -march=native build to another). It is
written to a temporary file and renamed into place, so processes building at once each see
a whole library.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import pathlib
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile

FLAGS = ("-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-fno-math-errno")
SOURCE_DIR = pathlib.Path(__file__).resolve().parent


class KernelUnavailable(RuntimeError):
    """A kernel cannot be built or loaded here; the message says why."""


def cache_dir() -> pathlib.Path:
    if os.environ.get("ICL_JAX_KERNEL_CACHE"):
        return pathlib.Path(os.environ["ICL_JAX_KERNEL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(base) / "icl_jax" / "kernels"


def compiler() -> list[str]:
    """The command that runs a C++ compiler here; KernelUnavailable if there is none."""
    if os.environ.get("CXX"):
        return shlex.split(os.environ["CXX"])
    for name in ("c++", "g++", "clang++"):
        if path := shutil.which(name):
            return [path]
    try:
        import ziglang  # noqa: F401  (a compiler from PyPI: pip install ziglang)
    except ImportError:
        raise KernelUnavailable(
            "no C++ compiler: set $CXX, install g++ or clang++, or `pip install ziglang`") from None
    return [sys.executable, "-m", "ziglang", "c++"]


def _cpu_identity() -> str:
    """This CPU's model and feature flags (what -march=native compiles for)."""
    try:
        lines = pathlib.Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    keys = ("model name", "flags", "Features", "CPU implementer", "CPU part")
    return "\n".join(sorted({line for line in lines if line.split(":")[0].strip() in keys}))


def _run(command: list[str], what: str) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise KernelUnavailable(f"{what} failed to run ({shlex.join(command)}): {e}") from None
    if done.returncode:
        raise KernelUnavailable(f"{what} failed ({shlex.join(command)}):\n{done.stderr[-4000:]}")
    return done.stdout


def library_path(name: str) -> pathlib.Path:
    """Where kernel `name` (source kernels/cpu/<name>.cc) is built, compiling it if it is not yet."""
    import jax.ffi
    import jaxlib

    source = SOURCE_DIR / f"{name}.cc"
    cxx = compiler()
    version = _run(cxx + ["--version"], "the C++ compiler")
    headers = [h.read_text() for h in sorted(SOURCE_DIR.glob("*.h"))]
    key = hashlib.sha256("\0".join([
        source.read_text(), *headers, shlex.join(cxx), version, " ".join(FLAGS), jaxlib.__version__,
        platform.machine(), _cpu_identity()]).encode()).hexdigest()[:16]
    target = cache_dir() / f"{name}-{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        built = pathlib.Path(scratch) / target.name
        _run(cxx + list(FLAGS) + ["-I", jax.ffi.include_dir(), str(source), "-o", str(built)],
             f"compiling {source.name}")
        os.replace(built, target)
    return target


def load(name: str) -> ctypes.CDLL:
    """Kernel `name` loaded into this process (built first if needed); KernelUnavailable if it
    cannot be. The outcome is kept for the process, a failure included (no rebuild per call)."""
    outcome = _load_once(name)
    if isinstance(outcome, KernelUnavailable):
        raise outcome
    return outcome


@functools.cache
def _load_once(name: str) -> ctypes.CDLL | KernelUnavailable:
    try:
        return ctypes.CDLL(str(library_path(name)))
    except KernelUnavailable as e:
        return e
    except OSError as e:
        return KernelUnavailable(f"loading kernel {name} failed: {e}")


def unavailable(name: str, targets: dict[str, str]) -> str | None:
    """Why kernel `name` cannot run here, or None once its FFI handlers ({target name: exported
    symbol}) are registered with XLA:CPU (built first if needed; once per process)."""
    import jax

    if jax.default_backend() != "cpu":
        return f"it runs on CPU only, and the default backend is {jax.default_backend()}"
    outcome = _register_once(name, tuple(targets.items()))
    return None if outcome is None else str(outcome)


@functools.cache
def _register_once(name: str, targets: tuple[tuple[str, str], ...]) -> KernelUnavailable | None:
    import jax.ffi

    try:
        library = load(name)
    except KernelUnavailable as e:
        return e
    for target, symbol in targets:
        jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(library, symbol)), platform="cpu")
    return None
