"""The train step: a pure function state -> (state, metrics), jitted with the state donated.

The batch is sampled inside the step from derive(seed, TRAIN_DATA, step), so the step
number is the only data-pipeline state and a resumed run replays exactly the same batches.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from icl_jax import curriculum, rng
from icl_jax.models import transformer
from icl_jax.tasks import LinearTask

TrainState = dict[str, Any]  # {"step", "params", "opt_state", "nonfinite_step"}


def masked_mse(yhat_BxK: jax.Array, y_BxK: jax.Array, mask_K: jax.Array) -> jax.Array:
    """Mean squared error over the prompts and the positions the curriculum keeps."""
    sq = jnp.square(yhat_BxK - y_BxK) * mask_K
    return jnp.sum(sq) / (jnp.sum(mask_K) * y_BxK.shape[0])


def init_state(config: ml_collections.ConfigDict, tx: optax.GradientTransformation):
    """Returns (graphdef, state) with the state built under jit (an eager NNX init of the
    standard model takes seconds; jitted it is fast)."""
    graphdef = nnx.graphdef(nnx.eval_shape(lambda: transformer.build(config)))

    @jax.jit
    def init() -> TrainState:
        params = nnx.state(transformer.build(config, rng.derive(config.seed, rng.PARAMS)), nnx.Param)
        params = nnx.to_pure_dict(params)
        return {"step": jnp.int32(0), "params": params, "opt_state": tx.init(params),
                "nonfinite_step": jnp.int32(-1)}

    return graphdef, init


def make_train_step(config: ml_collections.ConfigDict, graphdef: nnx.GraphDef, task: LinearTask,
                    tx: optax.GradientTransformation) -> Callable[[TrainState], tuple[TrainState, dict]]:
    batch_size, n_points = config.train.batch_size, task.n_points

    def loss_fn(params, x_BxKxD, y_BxK, mask_K):
        yhat_BxK = nnx.merge(graphdef, params)(x_BxKxD, y_BxK)
        return masked_mse(yhat_BxK, y_BxK, mask_K)

    def train_step(state: TrainState) -> tuple[TrainState, dict]:
        step = state["step"]
        key = rng.derive(config.seed, rng.TRAIN_DATA, step)
        prompts = task.sample(key, batch_size, curriculum.active_dims(config, step))
        mask_K = (jnp.arange(n_points) < curriculum.active_points(config, step)).astype(jnp.float32)
        loss, grads = jax.value_and_grad(loss_fn)(state["params"], prompts.x_BxKxD, prompts.y_BxK, mask_K)
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        first_bad = jnp.where((state["nonfinite_step"] < 0) & ~jnp.isfinite(loss), step, state["nonfinite_step"])
        new_state = {"step": step + 1, "params": optax.apply_updates(state["params"], updates),
                     "opt_state": opt_state, "nonfinite_step": first_bad}
        return new_state, {"loss": loss}

    return jax.jit(train_step, donate_argnums=0)
