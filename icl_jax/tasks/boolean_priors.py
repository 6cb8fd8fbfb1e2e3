"""The priors of the Boolean classes' functions, two ways: drawn inside the jitted sampler
(jax), and listed in full with their prior weights for exact enumeration (numpy).

Each listing is the support of the matching draw with its probabilities, side by side so
that a reader can check one against the other (the tests check both against brute force).
Legend: B prompts, n bits, H hypotheses, P parameters per function.
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Hypotheses(NamedTuple):
    """Every function of a class (its parameters, as the class's label function reads them)
    and its log prior weight."""
    params_HxP: np.ndarray
    log_prior_H: np.ndarray


# ---- literal vectors: w ∈ {0, ±1}^n, nonzero with probability prob, then ±1 with equal odds ----
def literals(key: jax.Array, shape: tuple[int, ...], prob: float) -> jax.Array:
    """{0, ±1} entries: nonzero with probability `prob`, then ±1 with equal odds."""
    u = jax.random.uniform(key, shape)
    return jnp.where(u < prob / 2, 1.0, jnp.where(u < prob, -1.0, 0.0))


def literal_vectors(n: int, prob: float) -> Hypotheses:
    """All of {0, 1, -1}^n with the literal prior (0: 1 - prob, ±1: prob/2 each)."""
    digits = np.array(list(itertools.product((0.0, 1.0, -1.0), repeat=n)), np.float32).reshape(-1, n)
    with np.errstate(divide="ignore"):
        per_digit = np.log(np.where(digits == 0, 1.0 - prob, prob / 2))
    return Hypotheses(digits, per_digit.sum(axis=1))


def independent_parts(one: Hypotheses, parts: int) -> Hypotheses:
    """`parts` functions drawn independently from `one`, concatenated (cnf clauses, dnf terms)."""
    index = np.array(list(itertools.product(range(len(one.params_HxP)), repeat=parts)))
    return Hypotheses(one.params_HxP[index].reshape(len(index), -1), one.log_prior_H[index].sum(axis=1))


# ---- subsets as 0/1 masks: each bit independently, or a uniform subset of a fixed size ----
def fixed_size_subset(key: jax.Array, batch_size: int, n: int, size: int) -> jax.Array:
    """0/1 masks B×n with exactly `size` ones, uniform over the C(n, size) subsets."""
    scores = jax.random.uniform(key, (batch_size, n))
    kth = jax.lax.top_k(scores, size)[0][:, -1:]
    return (scores >= kth).astype(jnp.float32)


def subsets(n: int, size: int | None = None, prob: float = 0.5) -> Hypotheses:
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


# ---- integers ----
def draw_threshold(key: jax.Array, batch_size: int, n: int, prob: float, bound: int) -> jax.Array:
    """w_Bx(n+1): literal weights, then the offset θ ∈ {-b, ..., b-1} + 1/2 (uniform; never equal
    to an integer x·w) in the last slot."""
    w = literals(jax.random.fold_in(key, 0), (batch_size, n), prob)
    offset = jax.random.randint(jax.random.fold_in(key, 1), (batch_size, 1), -bound, bound) + 0.5
    return jnp.concatenate([w, offset.astype(jnp.float32)], axis=1)


def thresholds(n: int, prob: float, bound: int) -> Hypotheses:
    w, offsets = literal_vectors(n, prob), np.arange(-bound, bound) + 0.5
    params = np.concatenate([np.repeat(w.params_HxP, len(offsets), axis=0),
                             np.tile(offsets, len(w.params_HxP))[:, None]], axis=1).astype(np.float32)
    return Hypotheses(params, np.repeat(w.log_prior_H, len(offsets)) - math.log(len(offsets)))


def integer_vectors(n: int, bound: int) -> Hypotheses:
    """All of {-b..b}^n, uniform."""
    w = np.array(list(itertools.product(range(-bound, bound + 1), repeat=n)), np.float32).reshape(-1, n)
    return Hypotheses(w, np.full(len(w), -n * math.log(2 * bound + 1)))
