"""The model of a run: built from its config (what training initialises), or restored from its
run directory with the parameters alone, on this process's devices: no optimizer and nothing
of training/, so evaluation, analyses and notebooks need only the model and its checkpoints.
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import ml_collections
from flax import nnx

from icl_jax import config as config_lib
from icl_jax import files, models, parallel, tasks
from icl_jax.checkpointing import Checkpoints


def build(config: ml_collections.ConfigDict, key: jax.Array | int = 0) -> nnx.Module:
    """The model of run config `config`, its parameters drawn from `key`."""
    return models.build(config.model, config.task.n_dims, tasks.label_classes(config.task), key)


def param_shapes(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh) -> tuple[nnx.GraphDef, Any]:
    """The model's graph, and its parameters as ShapeDtypeStructs with their shardings on `mesh`
    (those of the train state's parameters, parallel.state_shardings): what a restore fills."""
    graphdef = nnx.graphdef(nnx.eval_shape(lambda: build(config)))
    abstract = jax.eval_shape(lambda: nnx.to_pure_dict(nnx.state(build(config), nnx.Param)))
    shardings = parallel.state_shardings(abstract, mesh, config.parallel.shard_params)
    return graphdef, parallel.with_shardings(abstract, shardings)


def restore_params(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, step: int | None,
                   mesh: jax.sharding.Mesh | None = None) -> tuple[int, nnx.GraphDef, Any]:
    """(step, graphdef, params) of a checkpoint in WORKDIR (the latest when step is None),
    restored onto `mesh`, by default this process's own devices whatever topology wrote it:
    evaluation needs no collectives, in one process or many."""
    mesh = parallel.make_mesh(jax.local_devices()) if mesh is None else mesh
    graphdef, abstract = param_shapes(config, mesh)
    checkpoints = Checkpoints(workdir, read_only=True)
    try:
        step, params = checkpoints.restore_params(step, like=abstract)
    finally:
        checkpoints.close()
    return step, graphdef, params


def load(workdir: str | pathlib.Path, step: int | None = None) -> tuple[ml_collections.ConfigDict, nnx.Module]:
    """(config, model) of the run in WORKDIR: its validated config, and its model with the
    parameters of checkpoint `step` (the latest when None) on this process's devices."""
    config = config_lib.validate(files.load_run_config(workdir))
    _, graphdef, params = restore_params(config, workdir, step)
    return config, nnx.merge(graphdef, params)
