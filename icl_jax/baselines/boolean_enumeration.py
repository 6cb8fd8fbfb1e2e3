"""Exact Bayes for Boolean classes by enumerating the hypotheses, every prefix at once.

P(y_k = +1 | x_1, y_1, ..., x_k) = Σ_h π_h L_h [h agrees with y_i, i < k] [h(x_k) = +1] / (the
same sum without the last factor), where L_h = Π_{i≤k} P(x_i | h) is the likelihood of the
inputs. It matters: for conjunction-like classes the sampler rewrites an example into the
minority class with probability p, so P(x | h) ∝ (1 - p) + p·2^r·[x lies in h's rewrite
image] (r bits fixed by the rewrite) and the inputs themselves, the query's included, are
evidence about h. For the other classes inputs are uniform and L_h is constant.

Everything about the class comes from the task: its hypotheses with their prior
(task.hypotheses()), its labels (task.label_fn, the sampler's own) and the inputs'
likelihood (task.input_log_likelihood()). They are scanned in chunks with an online
log-sum-exp (memory one chunk); tests compare with a brute force written independently.
Legend: B prompts, K points, D = n bits, H hypotheses, P parameters, C chunk.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from icl_jax.tasks.boolean import BooleanTask
from icl_jax.tasks.boolean_priors import Hypotheses

MAX_HYPOTHESES = 200_000  # time and memory grow with H: conjunctions up to n = 11, majority up to n = 17


def enumerable(task: BooleanTask) -> bool:
    count = task.hypothesis_count()
    return count is not None and count <= MAX_HYPOTHESES


def hypotheses(task: BooleanTask) -> Hypotheses:
    """The task's hypotheses, refused past MAX_HYPOTHESES."""
    if not enumerable(task):
        raise ValueError(f"{task.name} at n={task.n_dims} has {task.hypothesis_count()} hypotheses; "
                         f"enumeration stops at {MAX_HYPOTHESES}")
    return task.hypotheses()


@functools.partial(jax.jit, static_argnames=("label_fn", "loglik_fn", "chunk"))
def _posterior_plus(x_BxKxD, y_BxK, params_HxP, log_prior_H, label_fn, loglik_fn, chunk):
    B, K, _ = x_BxKxD.shape
    H, P = params_HxP.shape
    n_chunks = -(-H // chunk)
    pad = n_chunks * chunk - H
    params = jnp.pad(params_HxP, ((0, pad), (0, 0))).reshape(n_chunks, chunk, P)
    prior = jnp.pad(log_prior_H, (0, pad), constant_values=-jnp.inf).reshape(n_chunks, chunk)
    label_all = jax.vmap(jax.vmap(label_fn, in_axes=(0, None)), in_axes=(None, 0))  # -> C×B×K

    def body(carry, chunk_params):
        top, total, plus = carry
        w_CxP, prior_C = chunk_params
        labels_CxBxK = label_all(x_BxKxD, w_CxP)
        wrong = (labels_CxBxK != y_BxK[None]).astype(jnp.int32)
        consistent = jnp.cumsum(wrong, axis=2) - wrong == 0  # agrees with every example i < k
        log_w = jnp.broadcast_to(prior_C[:, None, None], labels_CxBxK.shape)
        if loglik_fn is not None:
            loglik_CxBxK = jax.vmap(jax.vmap(loglik_fn, in_axes=(0, None)), in_axes=(None, 0))(x_BxKxD, w_CxP)
            log_w = log_w + jnp.cumsum(loglik_CxBxK, axis=2)  # inputs up to and including the query
        log_w = jnp.where(consistent, log_w, -jnp.inf)
        new_top = jnp.maximum(top, jnp.max(log_w, axis=0))
        weight = jnp.exp(log_w - new_top)
        shrink = jnp.exp(top - new_top)
        total = total * shrink + jnp.sum(weight, axis=0)
        plus = plus * shrink + jnp.sum(weight * (labels_CxBxK > 0), axis=0)
        return (new_top, total, plus), None

    init = (jnp.full((B, K), -1e30), jnp.zeros((B, K)), jnp.zeros((B, K)))
    (_, total, plus), _ = jax.lax.scan(body, init, (params, prior))
    return plus / total


def posterior_plus(task: BooleanTask, x_BxKxD, y_BxK, chunk: int = 512) -> np.ndarray:
    """P(y_k = +1 | the examples before k and x_k) for every prompt and k, float32."""
    h = hypotheses(task)
    chunk = min(chunk, len(h.params_HxP))
    return np.asarray(_posterior_plus(jnp.asarray(x_BxKxD, jnp.float32), jnp.asarray(y_BxK, jnp.float32),
                                      jnp.asarray(h.params_HxP), jnp.asarray(h.log_prior_H, jnp.float32),
                                      task.label_fn, _cached_loglik(task), chunk))


@functools.lru_cache(maxsize=16)
def _cached_loglik(task: BooleanTask):
    return task.input_log_likelihood()  # one function object per task: jit's static cache hits
