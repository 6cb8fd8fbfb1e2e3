"""Shared test fixtures: small configs that compile and run in seconds on 2 CPU cores."""

import contextlib
import importlib
import importlib.util
import io
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import types

import ml_collections
import pytest

from icl_jax import compilation_cache, config as config_lib
from icl_jax.kernels.cpu import build

_SESSION_CACHE = "_ICL_JAX_TEST_SESSION_CACHE"  # set where this session made the folder


def pytest_configure(config):
    """One XLA compilation cache (compilation_cache.py) for the session, in a fresh folder:
    the many tests that compile the same small programs, in either xdist worker or in a CLI
    subprocess, compile each once. The first process (the xdist controller) makes it, the
    workers and subprocesses inherit it through the environment, and it is removed at the end.
    ICL_JAX_COMPILATION_CACHE=0 runs the suite without it; a path there is used as it is."""
    if compilation_cache.ENV not in os.environ:
        os.environ[compilation_cache.ENV] = os.environ[_SESSION_CACHE] = tempfile.mkdtemp(prefix="icl_jax_xla_")
    compilation_cache.enable()


def pytest_unconfigure(config):
    if os.environ.get(_SESSION_CACHE) and not os.environ.get("PYTEST_XDIST_WORKER"):
        shutil.rmtree(os.environ.pop(_SESSION_CACHE), ignore_errors=True)


def small_config(**task) -> ml_collections.ConfigDict:
    """A tiny laptop config shrunk further: 2 layers, width 32, d=3, 7 points."""
    c = config_lib.default_config()
    config_lib.laptop(c, n_dims=3, steps=40)
    c.model.n_layer, c.model.n_head, c.model.n_embd = 2, 2, 32
    c.train.batch_size, c.train.log_every, c.train.checkpoint_every = 16, 10, 20
    c.train.warmup_steps = 5
    c.eval.num_prompts, c.eval.batch_size, c.eval.bootstrap_samples = 64, 32, 200
    for key, value in task.items():
        c.task[key] = value
    return c


@pytest.fixture
def tiny_config() -> ml_collections.ConfigDict:
    return small_config()


def load_module(path: str | pathlib.Path) -> types.ModuleType:
    """A Python file (a config, a benchmark script) as a module, without it being a package."""
    path = pathlib.Path(path)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def require_kernel(name: str) -> None:
    """Skips the calling test module where C++ kernel `name` cannot be built, unless
    ICL_JAX_REQUIRE_CPU_KERNEL=1 (.ci/run sets it, after making sure there is a compiler),
    where that fails instead."""
    try:
        build.load(name)
    except build.KernelUnavailable as e:
        if os.environ.get("ICL_JAX_REQUIRE_CPU_KERNEL") == "1":
            raise
        pytest.skip(f"the CPU kernel {name} cannot be built here: {e}", allow_module_level=True)


def run_without_compiler(script: str, kernel_cache: pathlib.Path) -> subprocess.CompletedProcess:
    """`python -c script` where no C++ kernel can be built (CXX=false, an empty kernel cache);
    fails the test if the script does."""
    env = dict(os.environ, CXX="false", ICL_JAX_KERNEL_CACHE=str(kernel_cache))
    r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=200)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def run_cli_in_process(module: str, *args: str, cwd: str | pathlib.Path | None = None) -> subprocess.CompletedProcess:
    """`python -m MODULE ARGS` (an icl_jax command) run in this process: no interpreter or JAX
    start per call. The module's flags are defined for the call and removed after it (the
    programs define flags of the same names), and the flags are parsed as the program's
    app.run parses them (cli.parse_flags), in `cwd` if given. Returns the exit code and what
    it printed."""
    from absl import flags, logging

    from icl_jax import cli

    known, out, err, code, argv = set(flags.FLAGS), io.StringIO(), io.StringIO(), 0, sys.argv
    verbosity = logging.get_verbosity()  # the programs set theirs
    sys.argv = [module, *args]  # config_flags reads its --config.KEY overrides from here
    here = os.getcwd()
    try:
        os.chdir(cwd or here)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main = importlib.import_module(module).main
                main(cli.parse_flags([module, *args]))
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else int(e.code is not None)
    finally:
        os.chdir(here)
        sys.argv = argv
        sys.modules.pop(module, None)
        for name in set(flags.FLAGS) - known:
            delattr(flags.FLAGS, name)
        flags.FLAGS.unparse_flags()
        logging.set_verbosity(verbosity)
    return subprocess.CompletedProcess([module, *args], code, out.getvalue(), err.getvalue())
