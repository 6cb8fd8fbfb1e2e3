"""The persistent compilation cache of the command-line programs (icl_jax/compilation_cache.py)."""

import json
import os
import pathlib
import subprocess
import sys

import jax
import pytest

from icl_jax import compilation_cache
from icl_jax.kernels.cpu import build

pytestmark = pytest.mark.timeout(300)
ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_where_the_cache_lives_and_the_opt_out(monkeypatch, tmp_path):
    monkeypatch.delenv(compilation_cache.ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert compilation_cache.base_dir() == tmp_path / "icl_jax" / "xla"  # beside the kernels' cache
    assert build.cache_dir() == tmp_path / "icl_jax" / "kernels"
    monkeypatch.setenv(compilation_cache.ENV, str(tmp_path / "elsewhere"))
    assert compilation_cache.base_dir() == tmp_path / "elsewhere"
    for off in ("0", "off", "false", ""):
        monkeypatch.setenv(compilation_cache.ENV, off)
        assert compilation_cache.base_dir() is None


def test_enable_sets_a_folder_per_host_and_kernel_sources_or_nothing(monkeypatch, tmp_path):
    before = jax.config.jax_compilation_cache_dir
    try:
        jax.config.update("jax_compilation_cache_dir", None)
        monkeypatch.setenv(compilation_cache.ENV, "0")
        assert compilation_cache.enable() is None and jax.config.jax_compilation_cache_dir is None
        monkeypatch.setenv(compilation_cache.ENV, str(tmp_path))
        directory = compilation_cache.enable()
        assert directory == tmp_path / compilation_cache.host_key()
        assert jax.config.jax_compilation_cache_dir == str(directory)
        jax.config.update("jax_compilation_cache_dir", "/somewhere/of/the/user")  # set through JAX: kept
        assert compilation_cache.enable() == pathlib.Path("/somewhere/of/the/user")
    finally:
        jax.config.update("jax_compilation_cache_dir", before)
    # another CPU, or a changed kernel, gets a folder of its own
    key = compilation_cache.host_key()
    monkeypatch.setattr(build, "_cpu_identity", lambda: "another CPU")
    assert compilation_cache.host_key() != key
    monkeypatch.undo()
    kernels = tmp_path / "kernels"
    kernels.mkdir()
    for source in list(build.SOURCE_DIR.glob("*.cc")) + list(build.SOURCE_DIR.glob("*.h")):
        (kernels / source.name).write_text(source.read_text())
    monkeypatch.setattr(build, "SOURCE_DIR", kernels)
    assert compilation_cache.host_key() == key
    (kernels / "cpu_common.h").write_text((kernels / "cpu_common.h").read_text() + "\n// changed\n")
    assert compilation_cache.host_key() != key


@pytest.mark.slow
def test_a_second_run_loads_the_train_step_and_trains_bit_identically(tmp_path):
    """Two fresh `python -m icl_jax.train` processes on one cache: the first writes the
    compiled programs, the second loads them (JAX logs each hit) and computes the same losses."""
    env = dict(os.environ, **{compilation_cache.ENV: str(tmp_path / "cache")}, JAX_LOG_COMPILES="1")
    args = ["--config=configs/linear.py", "--config.model.n_layer=1", "--config.train.steps=2",
            "--config.train.log_every=1", "--verbosity=0"]
    runs = []
    for name in ("cold", "warm"):
        r = subprocess.run([sys.executable, "-m", "icl_jax.train", *args, f"--workdir={tmp_path / name}"], cwd=ROOT,
                           env=env, capture_output=True, text=True, timeout=240)
        assert r.returncode == 0, r.stderr[-3000:]
        runs.append(r.stderr)
        if name == "cold":
            entries = sorted(p.name for p in (tmp_path / "cache").rglob("*-cache"))
            assert any(e.startswith("jit_train_step-") for e in entries), entries
    assert "Persistent compilation cache hit for 'jit_train_step'" not in runs[0]
    assert "Persistent compilation cache hit for 'jit_train_step'" in runs[1], runs[1][-3000:]
    losses = [[json.loads(line)["loss"] for line in (tmp_path / name / "metrics.jsonl").open()] for name in ("cold", "warm")]
    assert len(losses[0]) == 2 and losses[0] == losses[1]
