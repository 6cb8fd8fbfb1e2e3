"""The entry points' one re-execution: host memory kept in the process, with its opt-out."""

import os
import subprocess
import sys
import textwrap

import pytest

from icl_jax import cpu_process

pytestmark = pytest.mark.timeout(180)

# Allocates and frees 64 MiB, then counts the page faults of allocating it again.
_CHILD = textwrap.dedent("""
    import os, resource
    from icl_jax import cpu_process
    cpu_process.prepare()
    faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = bytearray(64 << 20); del block
    before = faults(); block = bytearray(64 << 20); del block
    print(faults() - before, os.environ.get("GLIBC_TUNABLES", "-"))
""")
_OURS = ("GLIBC_TUNABLES", "JAX_PLATFORMS", cpu_process.MALLOC_OPT_OUT, "ICL_JAX_CPU_PROCESS_REEXECUTED")


def _run_child(tmp_path, **env):
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    environment = {k: v for k, v in os.environ.items() if k not in _OURS}
    proc = subprocess.run([sys.executable, str(script)], env={**environment, **env},
                          capture_output=True, text=True, check=True)
    refaults, tunables = proc.stdout.split()
    return int(refaults), tunables


def test_tunables_merge_and_keep_the_users_values():
    merged = cpu_process.merged_tunables("glibc.malloc.arena_max=4:glibc.other=2")
    entries = dict(e.split("=") for e in merged.split(":"))
    assert entries["glibc.malloc.arena_max"] == "4" and entries["glibc.other"] == "2"
    assert entries["glibc.malloc.mmap_max"] == "0"
    assert cpu_process.merged_tunables(merged) == merged  # applying twice changes nothing


needs_glibc = pytest.mark.skipif(
    not (sys.platform == "linux" and cpu_process.computes_on_cpu() and "glibc" in os.confstr("CS_GNU_LIBC_VERSION")),
    reason="glibc Linux CPU only")


@needs_glibc
def test_reexecuted_process_refaults_nothing_and_opt_out_keeps_glibcs_default(tmp_path):
    refaults, tunables = _run_child(tmp_path)
    assert "glibc.malloc.mmap_max=0" in tunables
    assert refaults < 100  # the freed 64 MiB is reused in place
    refaults, tunables = _run_child(tmp_path, **{cpu_process.MALLOC_OPT_OUT: "1"})
    assert tunables == "-"
    assert refaults > 1000  # glibc's default: a fresh mmap, 16k pages faulted in again
    refaults, tunables = _run_child(tmp_path, GLIBC_TUNABLES="glibc.malloc.arena_max=2")
    assert tunables.startswith("glibc.malloc.arena_max=2:") and refaults < 100
    refaults, tunables = _run_child(tmp_path, JAX_PLATFORMS="cuda")
    assert tunables == "-"  # an accelerator run keeps glibc's default


def test_accelerator_runs_are_left_alone(monkeypatch):
    monkeypatch.setenv("JAX_PLATFORMS", "cuda,cpu")
    assert not cpu_process.computes_on_cpu()
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    assert cpu_process.computes_on_cpu()
    monkeypatch.setattr(cpu_process.glob, "glob", lambda pattern: ["/dev/nvidiactl"])
    monkeypatch.delenv("JAX_PLATFORMS")
    assert not cpu_process.computes_on_cpu()
