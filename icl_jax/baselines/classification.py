"""In-context classification baselines for every prefix at once (the image tasks' learners):
nearest neighbour, majority label, and multinomial logistic regression trained in context
by gradient descent.

Each returns scores_BxKxL whose argmax over L is the prediction of y_k from x_k and the k
examples before it; logistic regression's scores are log-probabilities (its cross-entropy is
meaningful), the others' are not. With no example (k = 0) every score is equal and the
argmax is class 0, which under per-prompt label permutations is right 1/L of the time.
Legend: B prompts, K points, D input width, L classes.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def _earlier_KxK(k: int) -> Array:
    """[query k, example i]: i < k."""
    return jnp.arange(k)[None, :] < jnp.arange(k)[:, None]


@functools.partial(jax.jit, static_argnames=("n_classes",))
def nearest_neighbour(x_BxKxD: Array, y_BxK: Array, n_classes: int) -> Array:
    """One-hot label of the earlier example nearest to x_k (Euclidean; ties: the lower index)."""
    x_BxKxD = jnp.asarray(x_BxKxD, jnp.float32)
    k = x_BxKxD.shape[1]
    # Distances from differences: the |a|² − 2ab + |b|² expansion cancels in float32.
    diff_BxKxKxD = x_BxKxD[:, :, None, :] - x_BxKxD[:, None, :, :]
    dist_BxKxK = jnp.where(_earlier_KxK(k), jnp.sum(diff_BxKxKxD * diff_BxKxKxD, axis=-1), jnp.inf)
    nearest_BxK = jnp.argmin(dist_BxKxK, axis=-1)  # first minimum: the lower index
    label_BxK = jnp.take_along_axis(jnp.asarray(y_BxK, jnp.int32), nearest_BxK, axis=1)
    seen_K = jnp.arange(k) > 0
    return jax.nn.one_hot(label_BxK, n_classes) * seen_K[None, :, None]


@functools.partial(jax.jit, static_argnames=("n_classes",))
def majority(x_BxKxD: Array, y_BxK: Array, n_classes: int) -> Array:
    """Counts of each label among the earlier examples (argmax: the most frequent, ties to
    the lower class). Ignores the inputs."""
    del x_BxKxD
    onehot_BxKxL = jax.nn.one_hot(jnp.asarray(y_BxK, jnp.int32), n_classes)
    return jnp.cumsum(onehot_BxKxL, axis=1) - onehot_BxKxL  # exclusive: examples before k


def _top_eigenvalue(x_KxD: Array, mask_K: Array, count: Array, iterations: int = 30) -> Array:
    """Largest eigenvalue of Σ_i mask_i [x_i, 1][x_i, 1]ᵀ / count, by power iteration from
    the all-ones vector (never orthogonal to the top eigenvector of this nonnegative-mean
    matrix in practice). From below: at worst GD's step is a little long, and GD is stable
    up to twice 1/S."""
    z_KxE = jnp.concatenate([x_KxD, jnp.ones_like(x_KxD[:, :1])], axis=1) * jnp.sqrt(mask_K / count)[:, None]

    def iterate(_, v_E):
        v_E = z_KxE.T @ (z_KxE @ v_E)
        return v_E / jnp.maximum(jnp.linalg.norm(v_E), 1e-30)

    v_E = jax.lax.fori_loop(0, iterations, iterate, jnp.ones(z_KxE.shape[1]) / np.sqrt(z_KxE.shape[1]))
    return jnp.maximum(jnp.sum(jnp.square(z_KxE @ v_E)), 1e-6)


@functools.partial(jax.jit, static_argnames=("n_classes", "steps"))
def logistic_regression(x_BxKxD: Array, y_BxK: Array, n_classes: int, steps: int = 100,
                        l2: float = 0.0) -> Array:
    """Log-probabilities of a multinomial logistic regression (weights D×L and a bias) fitted
    to the first k examples by `steps` steps of full-batch gradient descent on the mean
    cross-entropy (+ l2/2 |W|²) from zero, vmapped over prompts and lengths k.

    Step size 1/S per prompt and k, S = ½ λ + l2 with λ the largest eigenvalue of the
    examples' second-moment matrix [x, 1]ᵀ[x, 1]/k (power iteration): the softmax Hessian is
    at most ½ I, so S bounds the loss's smoothness and every k descends without tuning (the
    trace bound, ½ mean|x|², would be D/4 times too cautious once k ≳ D). A fixed number of
    steps from zero is an implicit regularizer where the examples are separable (k ≤ D).
    """
    x_BxKxD = jnp.asarray(x_BxKxD, jnp.float32)
    onehot_BxKxL = jax.nn.one_hot(jnp.asarray(y_BxK, jnp.int32), n_classes)
    n_points, n_dims = x_BxKxD.shape[1:]

    def fit_and_predict(x_KxD, onehot_KxL, k):
        mask_K = (jnp.arange(n_points) < k).astype(jnp.float32)
        count = jnp.maximum(k, 1).astype(jnp.float32)
        rate = 1.0 / (0.5 * _top_eigenvalue(x_KxD, mask_K, count) + l2)

        def descend(_, wb):
            w_DxL, b_L = wb
            p_KxL = jax.nn.softmax(x_KxD @ w_DxL + b_L)
            g_KxL = (p_KxL - onehot_KxL) * mask_K[:, None] / count
            return w_DxL - rate * (x_KxD.T @ g_KxL + l2 * w_DxL), b_L - rate * jnp.sum(g_KxL, axis=0)

        w_DxL, b_L = jax.lax.fori_loop(0, steps, descend,
                                       (jnp.zeros((n_dims, n_classes)), jnp.zeros(n_classes)))
        return jax.nn.log_softmax(x_KxD[k] @ w_DxL + b_L)

    per_prompt = jax.vmap(fit_and_predict, in_axes=(None, None, 0))  # every length k
    return jax.vmap(lambda x, o: per_prompt(x, o, jnp.arange(n_points)))(x_BxKxD, onehot_BxKxL)
