"""Shared test fixtures: small configs that compile and run in seconds on 2 CPU cores."""

import importlib.util
import os
import pathlib
import subprocess
import sys
import types

import ml_collections
import pytest

from icl_jax import config as config_lib
from icl_jax.kernels import build


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
