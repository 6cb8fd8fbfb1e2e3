"""Boolean inputs that are not uniform bits: the minority rewrite and the teaching set.

Minority rewrite (conjunction, teach_conjunction, disjunction, sparse_disjunction, cnf,
dnf). A function of these classes is C terms of literals (C = 1 but for cnf and dnf). Each
example independently, with probability minority_prob, has the bits of one term (drawn per
example) set to that term's minority pattern: the literals made true (conjunction, dnf) or
false (disjunction, cnf), which puts the example in the minority class. Otherwise labels
would be almost always one class: at n = 28 a random conjunction of ~8 literals holds on
0.4% of uniform inputs; with the rewrite at 0.3 the positive fraction is
0.3 + 0.7·E[2^-|w|] ≈ 0.307. The inputs are then evidence about the function, which exact
enumeration must weigh: `rewrite_log_likelihood`.

Teaching set (teach_conjunction): the prompt opens with examples that identify the
conjunction, then random examples as for conjunction. The set is two positive examples
(every irrelevant bit -1, then every irrelevant bit +1) and one negative example per literal
(that literal made false, the rest as in the first). Two positives, not one: with negated
literals allowed, one positive example leaves ¬x_j (or x_j) for every irrelevant j
consistent, so it would not identify the function; |literals| + 2 examples do, and
elimination recovers it exactly.
Legend: B prompts, K points, D = n bits, C terms, P = C·D parameters per function, T rows.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from icl_jax.tasks import boolean_functions as bf


def rewrite_into_minority(term_key: jax.Array, rewrite_key: jax.Array, x_BxKxD: jax.Array, w_BxP: jax.Array,
                          sign: float, prob: float) -> jax.Array:
    """x with, at each example rewritten (probability `prob`), the bits of one term of w (drawn
    per example) set to sign · term."""
    B, K, D = x_BxKxD.shape
    patterns_BxCxD = sign * w_BxP.reshape(B, -1, D)
    term_BxK = jax.random.randint(term_key, (B, K), 0, patterns_BxCxD.shape[1])
    pattern_BxKxD = jnp.take_along_axis(patterns_BxCxD, term_BxK[..., None], axis=1)
    rewrite_BxK = jax.random.bernoulli(rewrite_key, prob, (B, K))
    return jnp.where(rewrite_BxK[..., None] & (pattern_BxKxD != 0), pattern_BxKxD, x_BxKxD)


def rewrite_log_likelihood(x_KxD: jax.Array, w_P: jax.Array, sign: float, prob: float) -> jax.Array:
    """log P(x_k | w) per point, up to a constant: (1 - p) + p·mean over terms of 2^r [x_k shows
    the term's pattern sign · term], r = its literals (the rewrite fixes r bits, the other
    n - r stay uniform)."""
    def one_term(term_D):
        return prob * jnp.exp2(jnp.sum(term_D != 0)) * bf.satisfies_all(x_KxD, sign * term_D)

    terms_CxD = w_P.reshape(-1, x_KxD.shape[-1])
    return jnp.log((1 - prob) + jnp.mean(jax.vmap(one_term)(terms_CxD), axis=0))


def teaching_set(w_BxD: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(rows_BxTxD, length_B), T = D + 2: the teaching set of each conjunction (module
    docstring); rows past length_B are filler."""
    B, D = w_BxD.shape
    relevant = w_BxD != 0
    low, high = jnp.where(relevant, w_BxD, -1.0), jnp.where(relevant, w_BxD, 1.0)
    rank_BxD = jnp.cumsum(relevant, axis=1) - 1  # position of each literal among the literals
    flip_BxDxD = relevant[:, None, :] & (rank_BxD[:, None, :] == jnp.arange(D)[None, :, None])
    negatives_BxDxD = jnp.where(flip_BxDxD, -low[:, None, :], low[:, None, :])
    rows = jnp.concatenate([low[:, None], high[:, None], negatives_BxDxD], axis=1)
    return rows, jnp.sum(relevant, axis=1) + 2


def with_teaching_set(x_BxKxD: jax.Array, w_BxD: jax.Array) -> jax.Array:
    """The first length_B points of each prompt replaced by its teaching set (cut at K)."""
    K = x_BxKxD.shape[1]
    rows_BxTxD, length_B = teaching_set(w_BxD)
    T = rows_BxTxD.shape[1]
    rows_BxKxD = rows_BxTxD[:, :K] if T >= K else jnp.pad(rows_BxTxD, ((0, 0), (0, K - T), (0, 0)))
    in_set_BxK = jnp.arange(K)[None, :] < length_B[:, None]
    return jnp.where(in_set_BxK[..., None], rows_BxKxD, x_BxKxD)
