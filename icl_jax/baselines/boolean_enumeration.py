"""Exact Bayes for Boolean classes by enumerating the hypotheses, every prefix at once.

P(y_k = +1 | x_1, y_1, ..., x_k) = Σ_h π_h L_h [h agrees with y_i, i < k] [h(x_k) = +1] / (the
same sum without the last factor), where L_h = Π_{i≤k} P(x_i | h) is the likelihood of the
inputs. It matters: for conjunction-like classes the sampler rewrites an example into the
minority class with probability p, so P(x | h) ∝ (1 - p) + p·2^r·[x lies in h's rewrite
image] (r bits fixed by the rewrite) and the inputs themselves, the query's included, are
evidence about h. For the other classes inputs are uniform and L_h is constant.

Hypotheses are listed per class (`hypotheses`), scanned in chunks with an online
log-sum-exp (memory one chunk), and labelled by the same functions as the sampler
(tasks/boolean_functions.py); tests compare with a brute force written independently.
Legend: B prompts, K points, D = n bits, H hypotheses, P parameters, C chunk.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from icl_jax.tasks import boolean_functions as bf
from icl_jax.tasks.boolean import BooleanTask

MAX_HYPOTHESES = 200_000


class Hypotheses(NamedTuple):
    params_HxP: np.ndarray
    log_prior_H: np.ndarray


def _literal_vectors(n: int, prob: float) -> Hypotheses:
    """All of {0, 1, -1}^n with the literal prior (0: 1 - prob, ±1: prob/2 each)."""
    digits = np.array(list(itertools.product((0.0, 1.0, -1.0), repeat=n)), np.float32).reshape(-1, n)
    with np.errstate(divide="ignore"):
        per_digit = np.log(np.where(digits == 0, 1.0 - prob, prob / 2))
    return Hypotheses(digits, per_digit.sum(axis=1))


def _subsets(n: int, size: int | None = None, prob: float = 0.5) -> Hypotheses:
    """0/1 masks: all 2^n (prior prob^|S| (1-prob)^(n-|S|)) or the C(n, size), uniform."""
    if size is not None:
        masks = np.zeros((math.comb(n, size), n), np.float32)
        for row, support in enumerate(itertools.combinations(range(n), size)):
            masks[row, list(support)] = 1.0
        return Hypotheses(masks, np.full(len(masks), -math.log(len(masks))))
    masks = np.array(list(itertools.product((0.0, 1.0), repeat=n)), np.float32).reshape(-1, n)
    with np.errstate(divide="ignore"):
        log_prior = np.log(np.where(masks > 0, prob, 1.0 - prob)).sum(axis=1)
    return Hypotheses(masks, log_prior)


def hypothesis_count(task: BooleanTask) -> int | None:
    """H for the class at the task's size; None where no finite enumeration applies."""
    n, name = task.n_dims, task.name
    return {"conjunction": 3**n, "disjunction": 3**n, "sparse_disjunction": math.comb(n, task.sparse_disjunction_size),
            "cnf": 3 ** (n * task.clauses), "dnf": 3 ** (n * task.clauses), "majority": 2**n,
            "threshold": 3**n * 2 * task.integer_bound, "int_halfspace": (2 * task.integer_bound + 1) ** n,
            "parity": 2**n, "sparse_parity": math.comb(n, task.parity_size)}.get(name)


def hypotheses(task: BooleanTask) -> Hypotheses:
    n, name = task.n_dims, task.name
    count = hypothesis_count(task)
    if count is None or count > MAX_HYPOTHESES:
        raise ValueError(f"{name} at n={n} has {count} hypotheses; enumeration stops at {MAX_HYPOTHESES}")
    if name in ("conjunction", "disjunction"):
        return _literal_vectors(n, task.literal_prob)
    if name == "sparse_disjunction":
        return _subsets(n, task.sparse_disjunction_size)
    if name in ("cnf", "dnf"):
        one = _literal_vectors(n, task.clause_literal_prob)
        index = np.array(list(itertools.product(range(len(one.params_HxP)), repeat=task.clauses)))
        return Hypotheses(one.params_HxP[index].reshape(len(index), -1), one.log_prior_H[index].sum(axis=1))
    if name == "majority":
        return _subsets(n, prob=task.literal_prob)
    if name == "threshold":
        w = _literal_vectors(n, task.literal_prob)
        offsets = np.arange(-task.integer_bound, task.integer_bound) + 0.5
        params = np.concatenate([np.repeat(w.params_HxP, len(offsets), axis=0),
                                 np.tile(offsets, len(w.params_HxP))[:, None]], axis=1).astype(np.float32)
        return Hypotheses(params, np.repeat(w.log_prior_H, len(offsets)) - math.log(len(offsets)))
    if name == "int_halfspace":
        b = task.integer_bound
        w = np.array(list(itertools.product(range(-b, b + 1), repeat=n)), np.float32).reshape(-1, n)
        return Hypotheses(w, np.full(len(w), -n * math.log(2 * b + 1)))
    if name == "parity":
        return _subsets(n)
    return _subsets(n, task.parity_size)  # sparse_parity


def input_log_likelihood(task: BooleanTask):
    """(x_KxD, w_P) -> log P(x_i | h) per point up to a constant, or None (uniform inputs)."""
    p, n = task.minority_prob, task.n_dims
    if task.name not in ("conjunction", "disjunction", "sparse_disjunction", "cnf", "dnf") or p == 0:
        return None

    def term(matches_K, w_D):
        # P(x | one term) ∝ (1 - p) + p 2^r [x in the rewrite image], r = |literals|
        return p * jnp.exp2(jnp.sum(w_D != 0)) * matches_K

    if task.name == "conjunction":
        return lambda x, w: jnp.log((1 - p) + term(bf.satisfies_all(x, w), w))
    if task.name in ("disjunction", "sparse_disjunction"):
        return lambda x, w: jnp.log((1 - p) + term(~bf.satisfies_any(x, w), w))
    clauses, dnf = task.clauses, task.name == "dnf"

    def mixed(x, w):  # the rewritten term (dnf: made true) or clause (cnf: made false) is drawn per example
        def one(c):
            return term(bf.satisfies_all(x, c) if dnf else ~bf.satisfies_any(x, c), c)

        return jnp.log((1 - p) + jnp.mean(jax.vmap(one)(w.reshape(clauses, n)), axis=0))

    return mixed


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
    return input_log_likelihood(task)  # one function object per task: jit's static cache hits


@jax.jit
def nearest_neighbour_posterior(x_BxKxD, y_BxK, labelled_points):
    """The nearest-neighbour class's rule is known, so Bayes follows it: from k = m on, the
    label of the nearest earlier point (earliest among equals); before, the label of an
    earlier exact copy, else a coin flip (0)."""
    x = jnp.asarray(x_BxKxD, jnp.float32)
    B, K, D = x.shape
    sim = jnp.einsum("bkd,bjd->bkj", x, x)
    earlier = jnp.arange(K)[None, :] < jnp.arange(K)[:, None]
    masked = jnp.where(earlier, sim, -jnp.inf)
    nearest = jnp.argmax(masked, axis=-1)
    known = (jnp.arange(K) >= labelled_points)[None] | (jnp.max(masked, axis=-1) >= D)
    known = known & (jnp.arange(K) > 0)[None]
    return jnp.where(known, jnp.take_along_axis(jnp.asarray(y_BxK, jnp.float32), nearest, axis=1), 0.0)
