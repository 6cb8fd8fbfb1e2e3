"""icl_jax: meta-trained in-context learners and the exact baselines they are compared with."""

from __future__ import annotations


def load(workdir, step: int | None = None):
    """(config, model) of the run in WORKDIR: its config, and an nnx model with the parameters
    of checkpoint `step` (the latest when None) on this process's devices (run_model.load).
    Raises errors.UserError where WORKDIR holds no run or no such checkpoint."""
    # Imported here: importing the package must not import JAX (cpu_process.prepare runs first).
    from icl_jax import run_model

    return run_model.load(workdir, step)
