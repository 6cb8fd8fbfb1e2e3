"""The Boolean function classes of docs/function_classes.md: how a function labels inputs, per prompt.

A function is a parameter vector w_P; `label(x_KxD, w_P) -> y_K` (±1) is a pure jnp
function, vmapped over prompts by the sampler (tasks/boolean.py) and over hypotheses by the
enumeration baseline (baselines/boolean_enumeration.py), so both read one definition.
Inputs are x ∈ {±1}^D. Parameters, per class (n = D):
  conjunction, disjunction: w ∈ {0, ±1}^n, a literal x_i (w_i = 1) or ¬x_i (w_i = -1) per
    nonzero; conjunction: +1 iff every literal holds (the empty one is always +1);
    disjunction: +1 iff some literal holds (the empty one is always -1).
  cnf / dnf: C clauses / terms of that form, flattened (P = C·n).
  majority: a 0/1 subset mask; +1 iff more of its bits are +1 than -1 (ties -1).
  threshold: w ∈ {0, ±1}^n and an offset θ in the last slot (P = n+1); +1 iff x·w > θ.
  int_halfspace: w ∈ {-b..b}^n; +1 iff x·w > 1/2.
  parity, sparse_parity: a 0/1 subset mask S; y = Π_{i∈S} x_i (the character χ_S: with
    bits b = (1-x)/2, y = (-1)^(Σ_S b_i), linear over GF(2)).
  nearest_neighbour: the first m labels are coin flips (P = K coins); every later point takes
    the label of its nearest earlier point (largest x·x', the earliest on ties); an earlier
    exact copy of a point passes its label on at any position.
Legend: K points, D = n input bits, P parameters, C clauses.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def _pm(condition):
    return jnp.where(condition, 1.0, -1.0).astype(jnp.float32)


# Written as dot products (x·w counts agreeing minus disagreeing literals, exact small
# integers in float32), so that vmapped over many hypotheses they become one matmul.
def satisfies_all(x_KxD, w_D):
    """Per point: every literal of w holds (x_i = w_i wherever w_i ≠ 0): x·w = |w|_1."""
    return x_KxD @ w_D > jnp.sum(jnp.abs(w_D)) - 0.5


def satisfies_any(x_KxD, w_D):
    """Per point: some literal of w holds: x·w > -|w|_1."""
    return x_KxD @ w_D > 0.5 - jnp.sum(jnp.abs(w_D))


def conjunction(x_KxD, w_D):
    return _pm(satisfies_all(x_KxD, w_D))


def disjunction(x_KxD, w_D):
    return _pm(satisfies_any(x_KxD, w_D))


def cnf(x_KxD, w_P):
    clauses_CxD = w_P.reshape(-1, x_KxD.shape[-1])
    return _pm(jnp.all(jax.vmap(lambda w: satisfies_any(x_KxD, w))(clauses_CxD), axis=0))


def dnf(x_KxD, w_P):
    terms_CxD = w_P.reshape(-1, x_KxD.shape[-1])
    return _pm(jnp.any(jax.vmap(lambda w: satisfies_all(x_KxD, w))(terms_CxD), axis=0))


def majority(x_KxD, mask_D):
    return _pm(x_KxD @ mask_D > 0.5)


def threshold(x_KxD, w_P):
    return _pm(x_KxD @ w_P[:-1] > w_P[-1])


def int_halfspace(x_KxD, w_D):
    return _pm(x_KxD @ w_D > 0.5)


def parity(x_KxD, mask_D):
    flips_K = ((1.0 - x_KxD) / 2) @ mask_D  # how many bits of S are -1
    return (1.0 - 2.0 * jnp.mod(flips_K, 2.0)).astype(jnp.float32)


def nearest_neighbour(x_KxD, coins_K, labelled_points: int):
    """Each point's label is the label of its parent (its nearest earlier point, or for the
    first `labelled_points`, an earlier exact copy if any, else itself); following parents
    to a root by pointer doubling (log2 K gathers) labels every point with no loop over K."""
    K, D = x_KxD.shape
    sim_KxK = x_KxD @ x_KxD.T  # = D - 2·Hamming distance, exact small integers
    earlier_KxK = jnp.arange(K)[None, :] < jnp.arange(K)[:, None]
    masked = jnp.where(earlier_KxK, sim_KxK, -jnp.inf)
    nearest_K = jnp.argmax(masked, axis=1)  # first maximum: the earliest of equally near points
    copy_K = jnp.max(masked, axis=1) >= D
    index_K = jnp.arange(K)
    parent_K = jnp.where((index_K >= labelled_points) | copy_K, nearest_K, index_K)
    for _ in range(max(1, math.ceil(math.log2(max(K, 2))))):
        parent_K = parent_K[parent_K]
    return coins_K[parent_K].astype(jnp.float32)
