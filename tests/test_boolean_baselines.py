"""Boolean baselines against brute force written here with loops: each class's hypothesis
set, the exact posterior by enumeration (inputs' likelihood included), GF(2) elimination on
known systems and against enumeration, the elimination algorithm, the nearest-neighbour
rule; the learners each class names; the reference figures."""

import itertools

import numpy as np
import pytest

from icl_jax.baselines import boolean_bayes, boolean_enumeration, boolean_gf2, boolean_learners
from icl_jax.evaluation import boolean_scoring
from icl_jax.tasks import boolean
from icl_jax.tasks.boolean_classes import ClassLearner, ExactPosterior
from tests.test_boolean_tasks import make_task, np_label, sample

pytestmark = pytest.mark.timeout(240)


def literal_prior(n, prob):
    for w in itertools.product((0, 1, -1), repeat=n):
        yield np.array(w, float), np.prod([1 - prob if v == 0 else prob / 2 for v in w])


def brute_hypotheses(name, task):
    n = task.n_dims
    if name in ("conjunction", "disjunction"):
        return list(literal_prior(n, task.literal_prob))
    if name in ("cnf", "dnf"):
        one = list(literal_prior(n, task.clause_literal_prob))
        return [(np.concatenate([w for w, _ in combo]), np.prod([p for _, p in combo]))
                for combo in itertools.product(one, repeat=task.clauses)]
    if name == "majority":
        q = task.literal_prob
        return [(np.array(m, float), q ** sum(m) * (1 - q) ** (n - sum(m)))
                for m in itertools.product((0, 1), repeat=n)]
    if name == "threshold":
        offsets = np.arange(-task.integer_bound, task.integer_bound) + 0.5
        return [(np.append(w, t), p / len(offsets)) for w, p in literal_prior(n, task.literal_prob) for t in offsets]
    if name == "int_halfspace":
        b = task.integer_bound
        return [(np.array(w, float), 1.0) for w in itertools.product(range(-b, b + 1), repeat=n)]
    size = task.sparse_disjunction_size if name == "sparse_disjunction" else task.parity_size
    if name == "parity":
        return [(np.array(m, float), 1.0) for m in itertools.product((0, 1), repeat=n)]
    return [(np.isin(np.arange(n), s).astype(float), 1.0) for s in itertools.combinations(range(n), size)]


def input_probability(name, task, x, w):
    """P(x | w) from the sampler's definition: uniform bits, except that with probability p
    the relevant bits of a (uniformly chosen) term are set to its minority pattern."""
    n, p = task.n_dims, task.minority_prob
    if name not in ("conjunction", "disjunction", "sparse_disjunction", "cnf", "dnf"):
        return 2.0**-n
    parts = w.reshape(-1, n)
    rewritten = 0.0
    for part in parts:
        pattern = part if name in ("conjunction", "dnf") else -part
        fixed = pattern != 0
        rewritten += float(np.all(x[fixed] == pattern[fixed])) * 2.0 ** -(n - fixed.sum()) / len(parts)
    return (1 - p) * 2.0**-n + p * rewritten


def brute_posterior(name, task, x_BxKxD, y_BxK):
    hyps = brute_hypotheses(name, task)
    B, K, _ = x_BxKxD.shape
    out = np.zeros((B, K))
    for b in range(B):
        labels = np.array([[np_label(name, x_BxKxD[b, k], w) for k in range(K)] for w, _ in hyps])
        like = np.array([[input_probability(name, task, x_BxKxD[b, k], w) for k in range(K)] for w, _ in hyps])
        prior = np.array([p for _, p in hyps])
        for k in range(K):
            weight = prior * np.all(labels[:, :k] == y_BxK[b, :k], axis=1) * np.prod(like[:, :k + 1], axis=1)
            out[b, k] = weight[labels[:, k] == 1].sum() / weight.sum()
    return out


CASES = [
    ("conjunction", dict(n_dims=3)),
    ("disjunction", dict(n_dims=3, minority_prob=0.5)),
    ("sparse_disjunction", dict(n_dims=4, sparse_disjunction_size=2)),
    ("dnf", dict(n_dims=2, clauses=2)),
    ("cnf", dict(n_dims=2, clauses=2, clause_literal_prob=0.5)),
    ("majority", dict(n_dims=4)),
    ("threshold", dict(n_dims=3, integer_bound=2)),
    ("int_halfspace", dict(n_dims=2, integer_bound=2)),
    ("parity", dict(n_dims=4)),
    ("sparse_parity", dict(n_dims=5, parity_size=2)),
]


@pytest.mark.parametrize("name,size", CASES, ids=[c[0] for c in CASES])
def test_each_class_lists_its_prior(name, size):
    """The hypothesis set a class hands to enumeration is its prior: the same functions with
    the same probabilities as the brute-force list, as many as it says."""
    task = make_task(name, n_points=7, **size)
    listed = task.hypotheses()
    assert len(listed.params_HxP) == task.hypothesis_count()
    got = dict(zip(map(tuple, listed.params_HxP), np.exp(listed.log_prior_H)))
    brute = brute_hypotheses(name, task)
    total = sum(p for _, p in brute)
    expected = {tuple(w): p / total for w, p in brute if p > 0}
    assert {w for w, p in got.items() if p > 0} == set(expected)
    np.testing.assert_allclose([got[w] for w in expected], list(expected.values()), rtol=1e-6)


@pytest.mark.parametrize("name,size", CASES, ids=[c[0] for c in CASES])
def test_exact_posterior_matches_brute_force(name, size):
    task = make_task(name, n_points=7, **size)
    x, y, _ = sample(task, 6, seed=11)
    expected = brute_posterior(name, task, x, y)
    got = boolean_bayes.posterior(task, x, y)
    assert got.p_plus_BxK is not None, got.method
    np.testing.assert_allclose(got.p_plus_BxK, expected, atol=2e-5)
    if name == "parity":  # GF(2) route; the enumeration of all 2^n subsets agrees
        assert got.method == "GF(2) elimination"
        np.testing.assert_allclose(boolean_enumeration.posterior_plus(task, x, y), expected, atol=2e-5)



@pytest.mark.parametrize("name,size,chunk", [("conjunction", dict(n_dims=3), 4), ("dnf", dict(n_dims=2, clauses=2), 7),
                                             ("threshold", dict(n_dims=3, integer_bound=2), 10)])
def test_enumeration_in_many_chunks_matches_brute_force(name, size, chunk):
    """The online log-sum-exp over chunks (the last one padded), the inputs' likelihood
    included (conjunction, dnf): 27, 81 and 108 hypotheses in chunks of 4, 7 and 10."""
    task = make_task(name, n_points=7, **size)
    x, y, _ = sample(task, 6, seed=12)
    hypotheses = len(boolean_enumeration.hypotheses(task).params_HxP)
    assert hypotheses > 3 * chunk and hypotheses % chunk  # several chunks, the last one padded
    np.testing.assert_allclose(boolean_enumeration.posterior_plus(task, x, y, chunk=chunk),
                               brute_posterior(name, task, x, y), atol=2e-5)

def test_every_kind_of_posterior_and_learner_has_its_code_and_teach_conjunction_says_why_not():
    assert set(boolean_bayes.SOLVERS) == set(ExactPosterior)
    assert set(boolean_learners.FOR_CLASS) == set(ClassLearner)
    task = make_task("teach_conjunction", n_dims=3)
    got = boolean_bayes.posterior(task, *sample(task, 2)[:2])
    assert got.p_plus_BxK is None and "teaching set" in got.method
    task = make_task("conjunction")  # 3^28 hypotheses
    assert boolean_bayes.posterior(task, *sample(task, 2)[:2]) == (None, f"{3**28} hypotheses exceed the "
                                                                         f"enumeration limit 200000")


# What a learner made for a class never gets wrong on that class's prompts, and how often it
# must commit to it: elimination keeps the most specific consistent conjunction, which implies
# the target, so its +1 is right (disjunctions: its -1); GF(2) elimination's decided labels
# are determined by the examples.
NEVER_WRONG = {ClassLearner.CONJUNCTION_ELIMINATION: lambda yhat: yhat > 0,
               ClassLearner.DISJUNCTION_ELIMINATION: lambda yhat: yhat < 0,
               ClassLearner.GF2_ELIMINATION: lambda yhat: yhat != 0}
CLASS_LEARNERS = {"conjunction": {"elimination"}, "teach_conjunction": {"elimination"}, "disjunction": {"elimination"},
                  "sparse_disjunction": {"elimination"}, "sparse_parity": {"gf2_elimination"}}


@pytest.mark.parametrize("name", boolean.NAMES)
def test_the_learners_a_class_names_are_consistent_with_it(name):
    task = make_task(name, n_dims=6, n_points=20, nn_labelled_points=4, sparse_disjunction_size=2, parity_size=2)
    scored = set(boolean_scoring.learners(task, seed=0)) - {"nn_1", "nn_3", "averaging", "majority", "mlp_gd"}
    assert scored == CLASS_LEARNERS.get(name, set())
    x, y, _ = sample(task, 200, seed=9)
    for learner in task.class_learners:
        yhat = np.asarray(boolean_learners.FOR_CLASS[learner][1](x, y))
        committed = NEVER_WRONG[learner](yhat)
        assert committed[:, 10:].mean() > 0.2, learner
        np.testing.assert_array_equal(np.sign(yhat[committed]), y[committed], err_msg=str(learner))


def test_gf2_on_a_known_system():
    # bits e1, e2, e1+e2, e3 of n = 3 (bit 1 <-> x = -1); parity over S = {0, 2}
    bits = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1], [1, 1, 0], [0, 1, 1]])
    x = (1 - 2 * bits)[None].astype(np.float32)
    y = (x[..., 0] * x[..., 2]).astype(np.float32)
    # k=2: e1+e2 is in span{e1, e2} -> y0·y1; k=3: e3 is not; k=4: a repeat; k=5: e2+e3 -> y1·y3
    expected = [0, 0, y[0, 0] * y[0, 1], 0, y[0, 2], y[0, 1] * y[0, 3]]
    np.testing.assert_array_equal(np.asarray(boolean_gf2.parity_posterior(x, y))[0], expected)


def test_gf2_full_rank_identifies_every_parity():
    task = make_task("parity", n_dims=12, n_points=40)
    x, y, _ = sample(task, 300, seed=2)
    yhat = np.asarray(boolean_gf2.parity_posterior(x, y))
    decided = yhat != 0
    assert np.all(yhat[decided] == y[decided])  # never wrong when decided
    assert decided[:, 30:].mean() > 0.99 and not decided[:, 0].any()


def np_elimination(x_KxD, y_K):
    n = x_KxD.shape[1]
    out = []
    for k in range(len(y_K)):
        alive = {(i, v) for i in range(n) for v in (1, -1)}  # literal x_i = v
        for j in range(k):
            if y_K[j] > 0:
                alive -= {(i, -x_KxD[j, i]) for i in range(n)}
        out.append(1 if all(x_KxD[k, i] == v for i, v in alive) else -1)
    return out


def test_elimination_matches_the_loop_definition():
    for name, fn, sign in (("conjunction", boolean_learners.conjunction_elimination, 1),
                           ("disjunction", boolean_learners.disjunction_elimination, -1)):
        x, y, _ = sample(make_task(name, n_dims=6, n_points=15), 20, seed=4)
        got = np.asarray(fn(x, y))
        for b in range(20):
            np.testing.assert_array_equal(got[b], sign * np.array(np_elimination(x[b], sign * y[b])))


def test_elimination_reference_figures_and_teaching_sets():
    # n = 28, 40 points (the figures): "about 0.77" accuracy at k = 10 (0.742 to 0.757
    # over 4 seeds of 5000 prompts), ≈0.99 by k = 40 (0.993)
    x, y, _ = sample(make_task("conjunction"), 2000)  # the prompts of the label-balance test
    accuracy = (np.asarray(boolean_learners.conjunction_elimination(x, y)) == y).mean(0)
    assert 0.72 < accuracy[10] < 0.79 and accuracy[39] > 0.985
    assert accuracy[10] < accuracy[20] < accuracy[39]
    # after its teaching set (|literals| + 2 examples) elimination knows the conjunction
    x, y, w = sample(make_task("teach_conjunction", n_dims=8, n_points=20), 300, seed=6)
    correct = np.asarray(boolean_learners.conjunction_elimination(x, y)) == y
    taught = np.arange(20)[None] >= (np.abs(w).sum(1) + 2)[:, None]
    assert correct[taught].all() and taught.mean() > 0.4


def test_bayes_beats_every_learner_on_average_and_the_nearest_neighbour_rule_is_exact():
    task = make_task("conjunction", n_dims=6, n_points=15)
    x, y, _ = sample(task, 500, seed=7)
    bayes_error = (np.sign(2 * boolean_bayes.posterior(task, x, y).p_plus_BxK - 1) != y).mean()
    for fn in (boolean_learners.conjunction_elimination, boolean_learners.averaging, boolean_learners.majority_class):
        assert bayes_error < (np.sign(np.asarray(fn(x, y))) != y).mean() - 0.01, fn.__name__
    task = make_task("nearest_neighbour", n_dims=6, n_points=20, nn_labelled_points=5)
    x, y, _ = sample(task, 200, seed=8)
    p = boolean_bayes.posterior(task, x, y).p_plus_BxK
    assert np.all((2 * p[:, 5:] - 1) == y[:, 5:])
    nn1 = np.asarray(boolean_learners.nearest_neighbors_vote(x, y, n_neighbors=1))
    np.testing.assert_array_equal(nn1[:, 5:], y[:, 5:])
    assert abs((p[:, 1:5] == 0.5).mean() - 1) < 0.05  # unlabelled leading points: a coin flip


def test_simple_learners_on_hand_examples():
    x = np.array([[[1, 1], [1, -1], [-1, -1], [1, 1]]], np.float32)
    y = np.array([[1, -1, -1, 1]], np.float32)
    np.testing.assert_array_equal(boolean_learners.majority_class(x, y)[0], [0, 1, 0, -1])
    np.testing.assert_array_equal(boolean_learners.nearest_neighbors_vote(x, y, n_neighbors=1)[0], [0, 1, -1, 1])
    # k = 2: two neighbours tie 1:1, the nearest (x_1, distance 1 from x_2) decides
    np.testing.assert_array_equal(boolean_learners.nearest_neighbors_vote(x, y, n_neighbors=3)[0], [0, 1, -1, -1])
