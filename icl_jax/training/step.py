"""The train step: a pure function state -> (state, metrics), jitted with the state donated.

The batch is sampled inside the step from derive(seed, TRAIN_DATA, step), so the step
number is the only data-pipeline state and a resumed run replays exactly the same batches.
On a mesh, the sampled batch is constrained to the data axis: each device draws its own
slice, and the values equal the single-device batch (partitionable threefry).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from icl_jax import curriculum, parallel, rng
from icl_jax import models
from icl_jax.training import losses
from icl_jax.tasks import Prompts, Task

TrainState = dict[str, Any]  # {"step", "params", "opt_state", "nonfinite_step"}


class StateSpec(NamedTuple):
    graphdef: nnx.GraphDef
    init: Callable[[], TrainState]  # jitted, returns the state already placed on the mesh
    abstract: TrainState  # ShapeDtypeStructs with the target shardings (what restores use)


def state_spec(config: ml_collections.ConfigDict, tx: optax.GradientTransformation,
               mesh: jax.sharding.Mesh) -> StateSpec:
    """The model's graph, a jitted initialiser and the state's sharded shapes. Init runs under
    jit: an eager NNX init of the standard model takes seconds; jitted it is fast."""
    graphdef = nnx.graphdef(nnx.eval_shape(lambda: models.build(config)))

    def init() -> TrainState:
        params = nnx.to_pure_dict(nnx.state(models.build(config, rng.derive(config.seed, rng.PARAMS)), nnx.Param))
        return {"step": jnp.int32(0), "params": params, "opt_state": tx.init(params),
                "nonfinite_step": jnp.int32(-1)}

    abstract = jax.eval_shape(init)
    shardings = parallel.state_shardings(abstract, mesh, config.parallel.shard_params)
    return StateSpec(graphdef, jax.jit(init, out_shardings=shardings), parallel.with_shardings(abstract, shardings))


def sample_batch(config: ml_collections.ConfigDict, task: Task, step, batch_sharding) -> Prompts:
    """The prompts of training step `step`, split over the mesh's data axis."""
    key = rng.derive(config.seed, rng.TRAIN_DATA, step)
    prompts = task.sample(key, config.train.batch_size, curriculum.active_dims(config, step))
    return jax.tree.map(lambda a: jax.lax.with_sharding_constraint(a, batch_sharding), prompts)


def make_update(config: ml_collections.ConfigDict, spec: StateSpec, tx: optax.GradientTransformation,
                loss: str = "squared"):
    """update(state, prompts, mask_K) -> (state, metrics): one optimizer step on a given batch,
    `loss` one of tasks.LOSSES."""

    def loss_fn(params, x_BxKxD, y_BxK, mask_K):
        out = nnx.merge(spec.graphdef, params)(x_BxKxD, y_BxK)
        return losses.masked_loss(loss, out, y_BxK, mask_K)

    def update(state: TrainState, prompts: Prompts, mask_K: jax.Array) -> tuple[TrainState, dict]:
        step = state["step"]
        if config.train.loss_positions == "last":  # one query after the examples
            mask_K = mask_K * (jnp.arange(mask_K.shape[0]) == jnp.sum(mask_K) - 1)
        loss, grads = jax.value_and_grad(loss_fn)(state["params"], prompts.x_BxKxD, prompts.y_BxK, mask_K)
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        first_bad = jnp.where((state["nonfinite_step"] < 0) & ~jnp.isfinite(loss), step, state["nonfinite_step"])
        new_state = {"step": step + 1, "params": optax.apply_updates(state["params"], updates),
                     "opt_state": opt_state, "nonfinite_step": first_bad}
        return new_state, {"loss": loss}

    return update


def make_train_step(config: ml_collections.ConfigDict, spec: StateSpec, task: Task,
                    tx: optax.GradientTransformation, mesh: jax.sharding.Mesh
                    ) -> Callable[[TrainState], tuple[TrainState, dict]]:
    parallel.check_batch_divides(config.train.batch_size, mesh)
    batch_sharding, n_points = parallel.batch_sharding(mesh), task.n_points
    update = make_update(config, spec, tx, task.loss)

    def train_step(state: TrainState) -> tuple[TrainState, dict]:
        step = state["step"]
        prompts = sample_batch(config, task, step, batch_sharding)
        mask_K = (jnp.arange(n_points) < curriculum.active_points(config, step)).astype(jnp.float32)
        return update(state, prompts, mask_K)

    shardings = jax.tree.map(lambda a: a.sharding, spec.abstract)
    return jax.jit(train_step, in_shardings=(shardings,),
                   out_shardings=(shardings, parallel.replicated(mesh)), donate_argnums=0)


def make_host_fed_step(config: ml_collections.ConfigDict, spec: StateSpec, task, tx: optax.GradientTransformation,
                       mesh: jax.sharding.Mesh):
    """train_step(state, batch) -> (state, metrics) for a task whose examples the host gathers
    (task.host_fed, data/feed.py): the task turns the given examples into prompts on device
    (tasks/images.py: projection and label permutation), keyed like the sampled path by
    derive(seed, TRAIN_DATA, step), so the step number and the host sampler's state together
    replay a run exactly."""
    parallel.check_batch_divides(config.train.batch_size, mesh)
    batch_sharding, n_points = parallel.batch_sharding(mesh), task.n_points
    update = make_update(config, spec, tx, task.loss)

    def train_step(state: TrainState, batch) -> tuple[TrainState, dict]:
        step = state["step"]
        prompts = task.prompts(rng.derive(config.seed, rng.TRAIN_DATA, step), *batch)
        prompts = jax.tree.map(lambda a: jax.lax.with_sharding_constraint(a, batch_sharding), prompts)
        mask_K = (jnp.arange(n_points) < curriculum.active_points(config, step)).astype(jnp.float32)
        return update(state, prompts, mask_K)

    shardings = jax.tree.map(lambda a: a.sharding, spec.abstract)
    return jax.jit(train_step, in_shardings=(shardings, batch_sharding),
                   out_shardings=(shardings, parallel.replicated(mesh)), donate_argnums=0)
