"""The Boolean family (DESIGN.md §5): x ∈ {±1}^n, labels ±1, a function drawn per prompt.

Sampled inside the jitted step, vectorized, no Python loop over prompts or points. For the
conjunction-like classes (conjunction, its teaching variant, disjunction, sparse disjunction,
3-CNF, 3-DNF) each example independently, with probability task.minority_prob, has its
relevant bits rewritten so that it falls in the minority class (conjunctions: all literals
made true; disjunctions: all made false; DNF/CNF: one term made true / one clause false, the
term or clause drawn per example). Otherwise labels would be almost always one class: at
n = 28 a random conjunction of ~8 literals holds on 0.4% of uniform inputs; with the rewrite
at 0.3 the positive fraction is 0.3 + 0.7·E[2^-|w|] ≈ 0.307.

teach_conjunction: the prompt opens with a teaching set that identifies the conjunction,
then random examples as for conjunction. The set is two positive examples (every irrelevant
bit -1, then every irrelevant bit +1) and one negative example per literal (that literal
made false, the rest as in the first). Two positives, not one: with negated literals allowed,
one positive example leaves ¬x_j (or x_j) for every irrelevant j consistent, so it would not
identify the function; |literals| + 2 examples do, and elimination recovers it exactly.

Legend: B prompts, K points, D = n bits, P parameters per function (boolean_functions.py).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from icl_jax.tasks import boolean_functions as bf
from icl_jax.tasks.base import Prompts

NAMES = ("conjunction", "teach_conjunction", "disjunction", "sparse_disjunction", "cnf", "dnf", "majority",
         "threshold", "int_halfspace", "parity", "sparse_parity", "nearest_neighbour")
# classes whose sampler rewrites examples into the minority class
REWRITTEN = ("conjunction", "teach_conjunction", "disjunction", "sparse_disjunction", "cnf", "dnf")

# Sub-streams of one prompt key.
_X, _W, _REWRITE, _CLAUSE = 0, 1, 2, 3


def literals(key, shape, prob: float):
    """{0, ±1} entries: nonzero with probability `prob`, then ±1 with equal odds."""
    u = jax.random.uniform(key, shape)
    return jnp.where(u < prob / 2, 1.0, jnp.where(u < prob, -1.0, 0.0))


def fixed_size_subset(key, batch_size: int, n: int, size: int):
    """0/1 masks B×n with exactly `size` ones, uniform over the C(n, size) subsets."""
    scores = jax.random.uniform(key, (batch_size, n))
    kth = jax.lax.top_k(scores, size)[0][:, -1:]
    return (scores >= kth).astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class BooleanTask:
    name: str
    n_dims: int
    n_points: int
    literal_prob: float = 0.3
    minority_prob: float = 0.3
    clause_literal_prob: float = 0.2
    clauses: int = 3
    sparse_disjunction_size: int = 4
    parity_size: int = 2
    integer_bound: int = 3
    nn_labelled_points: int = 10
    family = "boolean"
    loss = "logistic"
    label_classes = 0

    @property
    def normalizer(self) -> float:
        return 1.0  # errors are 0-1: no scale to remove

    @property
    def label_fn(self):
        """label(x_KxD, w_P) -> y_K for one prompt."""
        if self.name == "nearest_neighbour":
            return functools.partial(bf.nearest_neighbour, labelled_points=self.nn_labelled_points)
        return {"conjunction": bf.conjunction, "teach_conjunction": bf.conjunction,
                "disjunction": bf.disjunction, "sparse_disjunction": bf.disjunction, "cnf": bf.cnf,
                "dnf": bf.dnf, "majority": bf.majority, "threshold": bf.threshold,
                "int_halfspace": bf.int_halfspace, "parity": bf.parity, "sparse_parity": bf.parity}[self.name]

    def draw_functions(self, key, batch_size: int) -> jax.Array:
        """w_BxP from the class's prior."""
        n, name = self.n_dims, self.name
        if name in ("conjunction", "teach_conjunction", "disjunction"):
            return literals(key, (batch_size, n), self.literal_prob)
        if name == "sparse_disjunction":  # monotone: positive literals only
            return fixed_size_subset(key, batch_size, n, self.sparse_disjunction_size)
        if name in ("cnf", "dnf"):
            return literals(key, (batch_size, self.clauses * n), self.clause_literal_prob)
        if name == "majority":
            return jax.random.bernoulli(key, self.literal_prob, (batch_size, n)).astype(jnp.float32)
        if name == "threshold":
            w = literals(jax.random.fold_in(key, 0), (batch_size, n), self.literal_prob)
            b = self.integer_bound
            offset = jax.random.randint(jax.random.fold_in(key, 1), (batch_size, 1), -b, b) + 0.5
            return jnp.concatenate([w, offset.astype(jnp.float32)], axis=1)
        if name == "int_halfspace":
            b = self.integer_bound
            return jax.random.randint(key, (batch_size, n), -b, b + 1).astype(jnp.float32)
        if name == "parity":  # uniform over all 2^n subsets
            return jax.random.bernoulli(key, 0.5, (batch_size, n)).astype(jnp.float32)
        if name == "sparse_parity":
            return fixed_size_subset(key, batch_size, n, self.parity_size)
        # nearest_neighbour: a coin per position (only the first nn_labelled_points are used)
        return jax.random.rademacher(key, (batch_size, self.n_points), dtype=jnp.float32)

    def minority_pattern(self, key, w_BxP, batch_size: int) -> jax.Array:
        """pattern_BxKxD: the values the relevant bits of each example take when rewritten
        (0 where a bit is left alone)."""
        n, K = self.n_dims, self.n_points
        if self.name in ("conjunction", "teach_conjunction"):
            return jnp.broadcast_to(w_BxP[:, None, :], (batch_size, K, n))
        if self.name in ("disjunction", "sparse_disjunction"):
            return jnp.broadcast_to(-w_BxP[:, None, :], (batch_size, K, n))
        clause_BxK = jax.random.randint(key, (batch_size, K), 0, self.clauses)
        clauses_BxCxD = w_BxP.reshape(batch_size, self.clauses, n)
        chosen_BxKxD = jnp.take_along_axis(clauses_BxCxD, clause_BxK[..., None], axis=1)
        return chosen_BxKxD if self.name == "dnf" else -chosen_BxKxD

    def sample(self, key: jax.Array, batch_size: int, active_dims=None) -> Prompts:
        del active_dims  # no dimension curriculum for Boolean classes
        n, K = self.n_dims, self.n_points
        w = self.draw_functions(jax.random.fold_in(key, _W), batch_size)
        x = jax.random.rademacher(jax.random.fold_in(key, _X), (batch_size, K, n), dtype=jnp.float32)
        if self.name in REWRITTEN:
            pattern = self.minority_pattern(jax.random.fold_in(key, _CLAUSE), w, batch_size)
            rewrite_BxK = jax.random.bernoulli(jax.random.fold_in(key, _REWRITE), self.minority_prob, (batch_size, K))
            x = jnp.where(rewrite_BxK[..., None] & (pattern != 0), pattern, x)
        if self.name == "teach_conjunction":
            x = with_teaching_set(x, w)
        y = jax.vmap(self.label_fn)(x, w)
        return Prompts(x, y, w)


def teaching_set(w_BxD) -> tuple[jax.Array, jax.Array]:
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


def with_teaching_set(x_BxKxD, w_BxD):
    """The first length_B points of each prompt replaced by its teaching set (cut at K)."""
    K = x_BxKxD.shape[1]
    rows_BxTxD, length_B = teaching_set(w_BxD)
    T = rows_BxTxD.shape[1]
    rows_BxKxD = rows_BxTxD[:, :K] if T >= K else jnp.pad(rows_BxTxD, ((0, 0), (0, K - T), (0, 0)))
    in_set_BxK = jnp.arange(K)[None, :] < length_B[:, None]
    return jnp.where(in_set_BxK[..., None], rows_BxKxD, x_BxKxD)


# ---- the family's registry entry (tasks/__init__.py) ----
def check_config(t) -> None:
    from icl_jax.errors import UserError

    for key in ("literal_prob", "minority_prob", "clause_literal_prob"):
        if not 0.0 <= t[key] <= 1.0:
            raise UserError(f"task.{key} must lie in [0, 1], got {t[key]}")
    if t.clauses < 1:
        raise UserError(f"task.clauses must be >= 1, got {t.clauses}")
    if t.name == "sparse_disjunction" and not 1 <= t.sparse_disjunction_size <= t.n_dims:
        raise UserError(f"task.sparse_disjunction_size={t.sparse_disjunction_size} must lie in "
                        f"[1, task.n_dims={t.n_dims}]")
    if t.name == "sparse_parity" and not 1 <= t.parity_size <= t.n_dims:
        raise UserError(f"task.parity_size={t.parity_size} must lie in [1, task.n_dims={t.n_dims}]")
    if t.integer_bound < 1:
        raise UserError(f"task.integer_bound must be >= 1, got {t.integer_bound}")
    if t.name == "nearest_neighbour" and not 1 <= t.nn_labelled_points <= t.n_points:
        raise UserError(f"task.nn_labelled_points={t.nn_labelled_points} must lie in [1, task.n_points={t.n_points}]")
    if t.noise_std:
        raise UserError("task.noise_std must be 0 for Boolean classes (labels are noiseless ±1)")


def label_classes(t) -> int:
    return 0  # y = ±1 enters the y token as a number; the read-out is the logit of +1


def make(t) -> BooleanTask:
    return BooleanTask(t.name, t.n_dims, t.n_points, float(t.literal_prob), float(t.minority_prob),
                       float(t.clause_literal_prob), t.clauses, t.sparse_disjunction_size, t.parity_size,
                       t.integer_bound, t.nn_labelled_points)
