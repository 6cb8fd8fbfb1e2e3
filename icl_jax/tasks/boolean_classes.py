"""The Boolean classes (docs/function_classes.md), each a small class that says what it is.

For the sampler a class gives its prior (`draw_functions`), its labels (`label_fn`, from
boolean_functions.py) and its inputs (`draw_inputs`: uniform bits unless it says otherwise,
boolean_inputs.py). For the baselines it says, as data, what they would otherwise have to
infer from its name: which exact posterior applies (`exact_posterior`; the one map from each
kind to its solver is baselines/boolean_bayes.py), the hypothesis set with its prior weights
and the inputs' likelihood that enumeration needs (`hypothesis_count`, `hypotheses`,
`input_log_likelihood`), and the classic learners made for it (`class_learners`; mapped to
code in baselines/boolean_learners.py).

A class holds every Boolean key of config.task (boolean.CONFIG_KEYS) and reads the ones it
needs. Legend: B prompts, K points, D = n bits, P parameters per function, H hypotheses.
"""

from __future__ import annotations

import abc
import dataclasses
import enum
import functools
import math
from typing import Callable, ClassVar

import jax
import jax.numpy as jnp

from icl_jax.tasks import boolean_functions as bf
from icl_jax.tasks import boolean_inputs as inputs
from icl_jax.tasks import boolean_priors as priors
from icl_jax.tasks.base import Prompts

LabelFn = Callable[[jax.Array, jax.Array], jax.Array]  # (x_KxD, w_P) -> y_K, one prompt
LogLikelihoodFn = Callable[[jax.Array, jax.Array], jax.Array]  # (x_KxD, w_P) -> log P(x_k | w) per k


class ExactPosterior(enum.Enum):
    """How a class's exact posterior is computed; the value is how reports name it."""
    ENUMERATION = "enumeration"  # of hypotheses(), inputs weighed by input_log_likelihood()
    GF2_ELIMINATION = "GF(2) elimination"  # parities under the uniform prior over all 2^n subsets
    NEAREST_NEIGHBOUR_RULE = "the class's nearest-neighbour rule"


class ClassLearner(enum.Enum):
    """A classic learner made for a class: consistent with every function in it."""
    CONJUNCTION_ELIMINATION = "conjunction_elimination"
    DISJUNCTION_ELIMINATION = "disjunction_elimination"
    GF2_ELIMINATION = "gf2_elimination"  # the parity posterior: consistent with any sub-class of parities


# Sub-streams of one prompt key.
_X, _W, _REWRITE, _TERM = 0, 1, 2, 3


@dataclasses.dataclass(frozen=True)
class BooleanTask(abc.ABC):
    """One Boolean class at one size; x ∈ {±1}^n, labels ±1, noiseless."""
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

    name: ClassVar[str]
    label_fn: ClassVar[LabelFn]
    family: ClassVar[str] = "boolean"
    loss: ClassVar[str] = "logistic"
    label_classes: ClassVar[int] = 0  # y = ±1 enters the y token as a number; the read-out is the logit of +1
    exact_posterior: ClassVar[ExactPosterior | None] = ExactPosterior.ENUMERATION
    no_exact_posterior: ClassVar[str] = ""  # why not, where exact_posterior is None
    class_learners: ClassVar[tuple[ClassLearner, ...]] = ()

    @property
    def normalizer(self) -> float:
        return 1.0  # errors are 0-1: no scale to remove

    @abc.abstractmethod
    def draw_functions(self, key: jax.Array, batch_size: int) -> jax.Array:
        """w_BxP from the class's prior."""

    def draw_inputs(self, key: jax.Array, w_BxP: jax.Array) -> jax.Array:
        """x_BxKxD given the functions: uniform bits."""
        shape = (w_BxP.shape[0], self.n_points, self.n_dims)
        return jax.random.rademacher(jax.random.fold_in(key, _X), shape, dtype=jnp.float32)

    def sample(self, key: jax.Array, batch_size: int, active_dims=None) -> Prompts:
        del active_dims  # no dimension curriculum for Boolean classes
        w_BxP = self.draw_functions(jax.random.fold_in(key, _W), batch_size)
        x_BxKxD = self.draw_inputs(key, w_BxP)
        return Prompts(x_BxKxD, jax.vmap(self.label_fn)(x_BxKxD, w_BxP), w_BxP)

    def hypothesis_count(self) -> int | None:
        """H, known without listing them; None where the class has no hypothesis set to enumerate."""
        return None

    def hypotheses(self) -> priors.Hypotheses:
        """Every function of the class with its log prior weight (ask hypothesis_count first:
        H grows exponentially with n)."""
        raise NotImplementedError(f"{self.name} has no hypothesis set to enumerate")

    def input_log_likelihood(self) -> LogLikelihoodFn | None:
        """log P(x_k | w) per point up to a constant, or None: the inputs are uniform bits
        whatever the function."""
        return None


class _RewrittenIntoMinority(BooleanTask):
    """A class of terms of literals whose examples are rewritten into the minority class
    (boolean_inputs.py)."""
    minority_sign: ClassVar[float]  # +1: a term is made true (conjunction, dnf); -1: a clause made false

    def draw_inputs(self, key: jax.Array, w_BxP: jax.Array) -> jax.Array:
        x_BxKxD = super().draw_inputs(key, w_BxP)
        return inputs.rewrite_into_minority(jax.random.fold_in(key, _TERM), jax.random.fold_in(key, _REWRITE),
                                            x_BxKxD, w_BxP, self.minority_sign, self.minority_prob)

    def input_log_likelihood(self) -> LogLikelihoodFn | None:
        if self.minority_prob == 0:
            return None
        return functools.partial(inputs.rewrite_log_likelihood, sign=self.minority_sign, prob=self.minority_prob)


class _OneTermOfLiterals(_RewrittenIntoMinority):
    """One term (C = 1): each variable a positive literal, a negative one or absent, drawn
    independently; 3^d functions."""

    def draw_functions(self, key, batch_size):
        return priors.literals(key, (batch_size, self.n_dims), self.literal_prob)

    def hypothesis_count(self):
        return 3**self.n_dims

    def hypotheses(self):
        return priors.literal_vectors(self.n_dims, self.literal_prob)


class Conjunction(_OneTermOfLiterals):
    name = "conjunction"
    label_fn = staticmethod(bf.conjunction)
    minority_sign = 1.0
    class_learners = (ClassLearner.CONJUNCTION_ELIMINATION,)


class TeachConjunction(Conjunction):
    """A conjunction whose prompt opens with its teaching set (boolean_inputs.py). No exact
    posterior is computed: the first two examples, always positive, reveal the function (its
    literals are where they agree), so the Bayes error is 0 from k = 2 on; elimination is the
    learner the teaching set is for."""
    name = "teach_conjunction"
    exact_posterior = None
    no_exact_posterior = "none: the teaching set's first two examples reveal the conjunction"

    def draw_inputs(self, key, w_BxP):
        return inputs.with_teaching_set(super().draw_inputs(key, w_BxP), w_BxP)

    def hypothesis_count(self):
        return None  # the teaching set ties the inputs to the function jointly, not example by example


class Disjunction(_OneTermOfLiterals):
    name = "disjunction"
    label_fn = staticmethod(bf.disjunction)
    minority_sign = -1.0
    class_learners = (ClassLearner.DISJUNCTION_ELIMINATION,)


class _UniformSubset:
    """Mixin: the function is a uniform subset of `subset_size` of the n variables, C(n, s)
    functions."""
    subset_size: int

    def draw_functions(self, key, batch_size):
        return priors.fixed_size_subset(key, batch_size, self.n_dims, self.subset_size)

    def hypothesis_count(self):
        return math.comb(self.n_dims, self.subset_size)

    def hypotheses(self):
        return priors.subsets(self.n_dims, self.subset_size)


class SparseDisjunction(_UniformSubset, Disjunction):
    """Monotone: sparse_disjunction_size positive literals, a uniform subset."""
    name = "sparse_disjunction"

    @property
    def subset_size(self) -> int:
        return self.sparse_disjunction_size


class _Clauses(_RewrittenIntoMinority):
    """`clauses` independent literal vectors, each variable a literal with probability
    clause_literal_prob (P = clauses · n)."""

    def draw_functions(self, key, batch_size):
        return priors.literals(key, (batch_size, self.clauses * self.n_dims), self.clause_literal_prob)

    def hypothesis_count(self):
        return 3 ** (self.n_dims * self.clauses)

    def hypotheses(self):
        return priors.independent_parts(priors.literal_vectors(self.n_dims, self.clause_literal_prob), self.clauses)


class CNF(_Clauses):
    name = "cnf"
    label_fn = staticmethod(bf.cnf)
    minority_sign = -1.0


class DNF(_Clauses):
    name = "dnf"
    label_fn = staticmethod(bf.dnf)
    minority_sign = 1.0


class Majority(BooleanTask):
    """Majority over a subset, each bit in it with probability literal_prob."""
    name = "majority"
    label_fn = staticmethod(bf.majority)

    def draw_functions(self, key, batch_size):
        return jax.random.bernoulli(key, self.literal_prob, (batch_size, self.n_dims)).astype(jnp.float32)

    def hypothesis_count(self):
        return 2**self.n_dims

    def hypotheses(self):
        return priors.subsets(self.n_dims, prob=self.literal_prob)


class Threshold(BooleanTask):
    name = "threshold"
    label_fn = staticmethod(bf.threshold)

    def draw_functions(self, key, batch_size):
        return priors.draw_threshold(key, batch_size, self.n_dims, self.literal_prob, self.integer_bound)

    def hypothesis_count(self):
        return 3**self.n_dims * 2 * self.integer_bound

    def hypotheses(self):
        return priors.thresholds(self.n_dims, self.literal_prob, self.integer_bound)


class IntHalfspace(BooleanTask):
    name = "int_halfspace"
    label_fn = staticmethod(bf.int_halfspace)

    def draw_functions(self, key, batch_size):
        b = self.integer_bound
        return jax.random.randint(key, (batch_size, self.n_dims), -b, b + 1).astype(jnp.float32)

    def hypothesis_count(self):
        return (2 * self.integer_bound + 1) ** self.n_dims

    def hypotheses(self):
        return priors.integer_vectors(self.n_dims, self.integer_bound)


class Parity(BooleanTask):
    """Uniform over all 2^n subsets: the version space is affine over GF(2), so elimination is
    exact at any n (its 2^n hypotheses can be enumerated too, for small n)."""
    name = "parity"
    label_fn = staticmethod(bf.parity)
    exact_posterior = ExactPosterior.GF2_ELIMINATION

    def draw_functions(self, key, batch_size):
        return jax.random.bernoulli(key, 0.5, (batch_size, self.n_dims)).astype(jnp.float32)

    def hypothesis_count(self):
        return 2**self.n_dims

    def hypotheses(self):
        return priors.subsets(self.n_dims)


class SparseParity(_UniformSubset, BooleanTask):
    """parity_size bits of n, a uniform subset (the field's parity-(n, k))."""
    name = "sparse_parity"
    label_fn = staticmethod(bf.parity)
    class_learners = (ClassLearner.GF2_ELIMINATION,)

    @property
    def subset_size(self) -> int:
        return self.parity_size


class NearestNeighbour(BooleanTask):
    """Coin-flip labels for the first nn_labelled_points, then each point takes its nearest
    earlier point's label: the rule is known, so Bayes follows it."""
    name = "nearest_neighbour"
    exact_posterior = ExactPosterior.NEAREST_NEIGHBOUR_RULE

    @property
    def label_fn(self):
        return functools.partial(bf.nearest_neighbour, labelled_points=self.nn_labelled_points)

    def draw_functions(self, key, batch_size):
        # a coin per position (only the first nn_labelled_points are used)
        return jax.random.rademacher(key, (batch_size, self.n_points), dtype=jnp.float32)


CLASSES: dict[str, type[BooleanTask]] = {cls.name: cls for cls in (
    Conjunction, TeachConjunction, Disjunction, SparseDisjunction, CNF, DNF, Majority, Threshold, IntHalfspace,
    Parity, SparseParity, NearestNeighbour)}
