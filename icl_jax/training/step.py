"""The train step: a pure function (state[, host examples]) -> (state, metrics), jitted with
the state donated. One builder, make_train_step, for both ways a step gets its prompts
(PromptSource): sampled by the task on device, or built by the task on device from examples
the host gathered. Either way they are keyed by derive(seed, TRAIN_DATA, step), so the step
number (with the host sampler's state, for host examples) is the whole data-pipeline state and
a resumed run replays exactly the same batches. On a mesh, the prompts are constrained to the
data axis: each device makes its own slice, and sampled values equal the single-device batch
(partitionable threefry).

On CPU each device's batch is differentiated as two independent halves (train.batch_splits):
the mean of their gradients is the batch's, and XLA:CPU overlaps the two halves' operations,
one's memory-bound layer norms and GELUs with the other's matmuls, for faster train steps
(measured in benchmarks/README.md).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from icl_jax import curriculum, losses, parallel, rng, run_model
from icl_jax.errors import UserError
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
    graphdef = nnx.graphdef(nnx.eval_shape(lambda: run_model.build(config)))

    def init() -> TrainState:
        params = nnx.to_pure_dict(nnx.state(run_model.build(config, rng.derive(config.seed, rng.PARAMS)), nnx.Param))
        return {"step": jnp.int32(0), "params": params, "opt_state": tx.init(params),
                "nonfinite_step": jnp.int32(-1)}

    abstract = jax.eval_shape(init)
    shardings = parallel.state_shardings(abstract, mesh, config.parallel.shard_params)
    return StateSpec(graphdef, jax.jit(init, out_shardings=shardings), parallel.with_shardings(abstract, shardings))


class PromptSource(NamedTuple):
    """How a train step gets its prompts: make(key, step, *inputs) -> Prompts, on device, from
    the step's key and the `inputs` the host passes the step after the state."""
    make: Callable[..., Prompts]
    n_inputs: int


def sampled(config: ml_collections.ConfigDict, task: Task) -> PromptSource:
    """Prompts the task samples on device: nothing comes from the host."""
    def make(key, step) -> Prompts:
        return task.sample(key, config.train.batch_size, curriculum.active_dims(config, step))

    return PromptSource(make, n_inputs=0)


def from_host_examples(task: Task) -> PromptSource:
    """Prompts the task builds on device (tasks/images.py: projection and label permutation)
    from one input, the examples the host gathered (task.host_fed, data/feed.py)."""
    def make(key, step, examples) -> Prompts:
        return task.prompts(key, *examples)

    return PromptSource(make, n_inputs=1)


def prompt_source(config: ml_collections.ConfigDict, task: Task) -> PromptSource:
    """The task's own: from host examples for a host-fed task, else sampled."""
    return from_host_examples(task) if getattr(task, "host_fed", False) else sampled(config, task)


def _on_data_axis(prompts: Prompts, batch_sharding) -> Prompts:
    return jax.tree.map(lambda a: jax.lax.with_sharding_constraint(a, batch_sharding), prompts)


def sample_batch(config: ml_collections.ConfigDict, task: Task, step, batch_sharding) -> Prompts:
    """The sampled prompts of training step `step`, split over the mesh's data axis."""
    key = rng.derive(config.seed, rng.TRAIN_DATA, step)
    return _on_data_axis(sampled(config, task).make(key, step), batch_sharding)


def batch_splits(config: ml_collections.ConfigDict, n_shards: int = 1) -> int:
    """Into how many independent parts each of the n_shards devices' batches is split for
    differentiation: train.batch_splits, or for 0 (auto) 2 on CPU where that divides."""
    per_device, splits = config.train.batch_size // n_shards, config.train.batch_splits
    if splits == 0:
        return 2 if jax.default_backend() == "cpu" and per_device % 2 == 0 else 1
    if per_device % splits:
        raise UserError(f"train.batch_splits={splits} does not divide the {per_device} prompts of each "
                        f"device's batch (train.batch_size={config.train.batch_size} over {n_shards} devices)")
    return splits


def _parts(a_BxR: jax.Array, n_shards: int, splits: int) -> list[jax.Array]:
    """The `splits` parts of a batch: part j takes the j-th run of every device's rows, so no
    row changes device."""
    b = a_BxR.shape[0]
    a = a_BxR.reshape(n_shards, splits, b // (n_shards * splits), *a_BxR.shape[1:])
    return [a[:, j].reshape(b // splits, *a_BxR.shape[1:]) for j in range(splits)]


def make_update(config: ml_collections.ConfigDict, spec: StateSpec, tx: optax.GradientTransformation,
                loss: str = "squared", n_shards: int = 1):
    """update(state, prompts, mask_K) -> (state, metrics): one optimizer step on a given batch
    split over n_shards devices, `loss` one of tasks.LOSSES."""
    splits = batch_splits(config, n_shards)

    def loss_fn(params, x_BxKxD, y_BxK, mask_K):
        out = nnx.merge(spec.graphdef, params)(x_BxKxD, y_BxK)
        return losses.masked_loss(loss, out, y_BxK, mask_K)

    def loss_and_grads(params, x_BxKxD, y_BxK, mask_K):
        if splits == 1:
            return jax.value_and_grad(loss_fn)(params, x_BxKxD, y_BxK, mask_K)
        # Equal parts: the mean of their mean losses (and gradients) is the batch's.
        parts = [jax.value_and_grad(loss_fn)(params, x, y, mask_K)
                 for x, y in zip(_parts(x_BxKxD, n_shards, splits), _parts(y_BxK, n_shards, splits))]
        return jax.tree.map(lambda *part: sum(part) / splits, *parts)

    def update(state: TrainState, prompts: Prompts, mask_K: jax.Array) -> tuple[TrainState, dict]:
        step = state["step"]
        if config.train.loss_positions == "last":  # one query after the examples
            mask_K = mask_K * (jnp.arange(mask_K.shape[0]) == jnp.sum(mask_K) - 1)
        loss, grads = loss_and_grads(state["params"], prompts.x_BxKxD, prompts.y_BxK, mask_K)
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        first_bad = jnp.where((state["nonfinite_step"] < 0) & ~jnp.isfinite(loss), step, state["nonfinite_step"])
        new_state = {"step": step + 1, "params": optax.apply_updates(state["params"], updates),
                     "opt_state": opt_state, "nonfinite_step": first_bad}
        return new_state, {"loss": loss}

    return update


def make_train_step(config: ml_collections.ConfigDict, spec: StateSpec, task: Task,
                    tx: optax.GradientTransformation, mesh: jax.sharding.Mesh,
                    source: PromptSource | None = None) -> Callable[..., tuple[TrainState, dict]]:
    """train_step(state, *source inputs) -> (state, metrics); `source` (default: the task's own,
    prompt_source) says how the step's prompts are made."""
    parallel.check_batch_divides(config.train.batch_size, mesh)
    source = prompt_source(config, task) if source is None else source
    batch_sharding, n_points = parallel.batch_sharding(mesh), task.n_points
    update = make_update(config, spec, tx, task.loss, mesh.shape[parallel.DATA])

    def train_step(state: TrainState, *inputs) -> tuple[TrainState, dict]:
        step = state["step"]
        prompts = _on_data_axis(source.make(rng.derive(config.seed, rng.TRAIN_DATA, step), step, *inputs),
                                batch_sharding)
        mask_K = (jnp.arange(n_points) < curriculum.active_points(config, step)).astype(jnp.float32)
        return update(state, prompts, mask_K)

    shardings = jax.tree.map(lambda a: a.sharding, spec.abstract)
    return jax.jit(train_step, in_shardings=(shardings,) + (batch_sharding,) * source.n_inputs,
                   out_shardings=(shardings, parallel.replicated(mesh)), donate_argnums=0)
