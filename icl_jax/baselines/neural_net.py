"""A 2-layer ReLU net trained in context by full-batch Adam, for every prefix of every prompt.

For prompt b and length k, a fresh net is trained on the examples i < k of prompt b and
predicts y_k at x_k (0 at k = 0, where there is nothing to train on). All B·K nets train at
once: one vmap over the lengths of a prompt (a 0/1 mask over its rows picks the prefix; masked
rows add nothing to the loss, hence nothing to the gradient) inside a `lax.map` over prompts
in groups of `prompts_per_group` (vmapped within a group: memory is bounded by one group).
The nets of one prompt share their initialisation, so a longer prefix is the same net
trained on more data; prompts get independent initialisations from (seed, prompt index).

Net: f(x) = relu(x W1 + b1) · w2 + b2, W1 ~ N(0, 2/D) (He), w2 ~ N(0, 1/H), zero biases.
Loss on the k seen examples: "squared" (mean (f - y)^2) or "logistic" (labels ±1, mean
softplus(-y f); the output is then the logit of y = +1).
Shape legend: B prompts, K points, D input width, H hidden units.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

Array = jax.Array
LOSSES = ("squared", "logistic")


class Params(NamedTuple):
    w1_DxH: Array
    b1_H: Array
    w2_H: Array
    b2: Array


def init_params(key: Array, n_dims: int, hidden: int) -> Params:
    k1, k2 = jax.random.split(key)
    return Params(jax.random.normal(k1, (n_dims, hidden)) * jnp.sqrt(2.0 / n_dims), jnp.zeros(hidden),
                  jax.random.normal(k2, (hidden,)) / jnp.sqrt(hidden), jnp.zeros(()))


def forward(params: Params, x_NxD: Array) -> Array:
    return jax.nn.relu(x_NxD @ params.w1_DxH + params.b1_H) @ params.w2_H + params.b2


def per_example_loss(kind: str, out_N: Array, y_N: Array) -> Array:
    if kind == "squared":
        return jnp.square(out_N - y_N)
    return jax.nn.softplus(-y_N * out_N)  # logistic, labels ±1


def train(params: Params, x_KxD: Array, y_K: Array, mask_K: Array, *, steps: int, learning_rate: float,
          loss: str) -> Params:
    """`steps` full-batch Adam steps on the mean loss over the rows with mask_K = 1."""
    tx = optax.adam(learning_rate)
    count = jnp.maximum(jnp.sum(mask_K), 1.0)

    def objective(p):
        return jnp.sum(per_example_loss(loss, forward(p, x_KxD), y_K) * mask_K) / count

    def step(carry, _):
        p, opt_state = carry
        updates, opt_state = tx.update(jax.grad(objective)(p), opt_state, p)
        return (optax.apply_updates(p, updates), opt_state), None

    (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), None, length=steps)
    return params


@functools.partial(jax.jit, static_argnames=("hidden", "steps", "learning_rate", "loss", "seed",
                                             "prompts_per_group"))
def _fit_predict(x_BxKxD, y_BxK, *, hidden, steps, learning_rate, loss, seed, prompts_per_group):
    B, K, D = x_BxKxD.shape
    prefix_KxK = (jnp.arange(K)[None, :] < jnp.arange(K)[:, None]).astype(x_BxKxD.dtype)  # row k: i < k
    root = jax.random.key(seed)

    def one_prompt(args):
        index, x_KxD, y_K = args
        params = init_params(jax.random.fold_in(root, index), D, hidden)
        fit = functools.partial(train, steps=steps, learning_rate=learning_rate, loss=loss)
        trained = jax.vmap(fit, in_axes=(None, None, None, 0))(params, x_KxD, y_K, prefix_KxK)
        yhat_K = jax.vmap(lambda p, x_D: forward(p, x_D[None])[0])(trained, x_KxD)
        return jnp.where(jnp.arange(K) > 0, yhat_K, 0.0)

    return jax.lax.map(one_prompt, (jnp.arange(B), x_BxKxD, y_BxK), batch_size=min(prompts_per_group, B))


def fit_predict(x_BxKxD, y_BxK, *, hidden: int, steps: int, learning_rate: float, loss: str = "squared",
                seed: int = 0, prompts_per_group: int = 8) -> Array:
    """yhat_BxK: at every k, the prediction at x_k of a net trained on the examples i < k of
    its prompt (see module docstring). float32. Cost: B·K nets × steps × K rows."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    if hidden < 1 or steps < 0 or learning_rate <= 0:
        raise ValueError(f"need hidden >= 1, steps >= 0, learning_rate > 0; got {hidden}, {steps}, {learning_rate}")
    return _fit_predict(jnp.asarray(x_BxKxD, jnp.float32), jnp.asarray(y_BxK, jnp.float32), hidden=int(hidden),
                        steps=int(steps), learning_rate=float(learning_rate), loss=loss, seed=int(seed),
                        prompts_per_group=int(prompts_per_group))
