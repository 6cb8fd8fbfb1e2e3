"""Boolean samplers: label balance at the reference size, labels against loop-based numpy
definitions, the teaching set, the config file."""

import functools
import pathlib

import jax
import numpy as np
import pytest

from icl_jax import config as config_lib
from icl_jax import tasks
from icl_jax.errors import UserError
from icl_jax.tasks import boolean
from tests.conftest import load_module

pytestmark = pytest.mark.timeout(180)
ROOT = pathlib.Path(__file__).resolve().parents[1]


def make_task(name, n_dims=28, n_points=40, **overrides):
    c = config_lib.default_config()
    c.task.name, c.task.n_dims, c.task.n_points = name, n_dims, n_points
    for key, value in overrides.items():
        c.task[key] = value
    return tasks.get_task(c.task)


@functools.lru_cache(maxsize=32)
def sample(task, batch, seed=0):
    """(x, y, w) as numpy, cached: tests asking for the same prompts share one compile."""
    p = jax.jit(lambda key: task.sample(key, batch))(jax.random.key(seed))
    return np.asarray(p.x_BxKxD), np.asarray(p.y_BxK), np.asarray(p.w_BxD)


def _majority_positive(n, q):
    """P(majority over a Bernoulli(q) subset of n uniform ±1 bits is +1), ties -1."""
    from math import comb

    total = 0.0
    for size in range(n + 1):
        p_size = comb(n, size) * q**size * (1 - q) ** (n - size)
        total += p_size * sum(comb(size, j) for j in range(size + 1) if 2 * j - size > 0) / 2**size
    return total


CONJ_POSITIVE = 0.3 + 0.7 * 0.85**28  # rewritten, or uniform bits that satisfy all literals: 0.3073


@pytest.mark.parametrize("name,positive", [
    ("conjunction", CONJ_POSITIVE),
    ("disjunction", 1 - CONJ_POSITIVE),
    ("sparse_disjunction", 1 - (0.3 + 0.7 / 16)),
    ("majority", _majority_positive(28, 0.3)),
    ("parity", 0.5 + 0.5**29),
])
def test_label_balance_at_the_reference_size(name, positive):
    _, y, _ = sample(make_task(name), 2000)
    assert abs((y > 0).mean() - positive) < 0.01, ((y > 0).mean(), positive)
    if name == "conjunction":
        assert abs((y > 0).mean() - 0.31) < 0.01  # the figure


# ---- loop-based numpy definitions, independent of tasks/boolean_functions.py ----
def np_literal_holds(xi, wi):
    return (wi == 1 and xi == 1) or (wi == -1 and xi == -1)


def np_label(name, x, w, m=None):
    n = x.shape[0]
    if name in ("conjunction", "teach_conjunction"):
        return 1 if all(np_literal_holds(x[i], w[i]) for i in range(n) if w[i] != 0) else -1
    if name in ("disjunction", "sparse_disjunction"):
        return 1 if any(np_literal_holds(x[i], w[i]) for i in range(n) if w[i] != 0) else -1
    if name in ("cnf", "dnf"):
        parts = [np_label("disjunction" if name == "cnf" else "conjunction", x, c) for c in w.reshape(-1, n)]
        return (1 if all(p == 1 for p in parts) else -1) if name == "cnf" else (1 if 1 in parts else -1)
    if name == "majority":
        plus = sum(1 for i in range(n) if w[i] and x[i] == 1)
        return 1 if plus > sum(1 for i in range(n) if w[i]) - plus else -1
    if name == "threshold":
        return 1 if float(np.dot(x, w[:-1])) > w[-1] else -1
    if name == "int_halfspace":
        return 1 if float(np.dot(x, w)) > 0.5 else -1
    if name in ("parity", "sparse_parity"):
        return int(np.prod([x[i] for i in range(n) if w[i]]))
    raise ValueError(name)


def np_nearest_neighbour(x_KxD, coins, m):
    y = []
    for k in range(len(x_KxD)):
        hamming = [int(np.sum(x_KxD[j] != x_KxD[k])) for j in range(k)]
        if k >= m or (hamming and min(hamming) == 0):
            y.append(y[int(np.argmin(hamming))])
        else:
            y.append(coins[k])
    return y


@pytest.mark.parametrize("name", boolean.NAMES)
def test_labels_match_a_loop_definition(name):
    task = make_task(name, n_dims=5, n_points=24, nn_labelled_points=4, sparse_disjunction_size=2)
    x, y, w = sample(task, 16, seed=3)
    assert set(np.unique(x)) <= {-1.0, 1.0} and set(np.unique(y)) <= {-1.0, 1.0}
    for b in range(16):
        if name == "nearest_neighbour":
            expected = np_nearest_neighbour(x[b], w[b], 4)
        else:
            expected = [np_label(name, x[b, k], w[b]) for k in range(24)]
        np.testing.assert_array_equal(y[b], expected, err_msg=f"{name} prompt {b}")


def test_function_priors():
    _, _, w = sample(make_task("conjunction"), 2000)
    assert abs((w != 0).mean() - 0.3) < 0.01 and abs((w == 1).mean() - (w == -1).mean()) < 0.01
    _, _, w = sample(make_task("sparse_parity", parity_size=3), 200)
    assert np.all(w.sum(1) == 3)
    _, _, w = sample(make_task("int_halfspace"), 500)
    assert set(np.unique(w)) == set(range(-3, 4))
    _, _, w = sample(make_task("threshold"), 500)
    assert set(np.unique(w[:, -1])) == {-2.5, -1.5, -0.5, 0.5, 1.5, 2.5}


def test_rewrite_puts_examples_in_the_minority_class():
    # with every example rewritten, every conjunction example is positive, every 3-CNF
    # example negative; with none, conjunctions of >= 6 literals are almost never positive
    for name, label in (("conjunction", 1), ("cnf", -1)):
        _, y, _ = sample(make_task(name, n_dims=12, n_points=10, minority_prob=1.0), 200)
        assert np.all(y == label), name
    _, y, w = sample(make_task("conjunction", n_dims=12, minority_prob=0.0), 2000)
    big = np.abs(w).sum(1) >= 6
    assert (y[big] > 0).mean() < 0.03


def test_teaching_set_opens_the_prompt():
    x, y, w = sample(make_task("teach_conjunction", n_dims=6, n_points=12), 64)
    for b in range(64):
        literals = np.flatnonzero(w[b])
        size = len(literals) + 2
        assert y[b, 0] == y[b, 1] == 1 and np.all(y[b, 2:size] == -1)
        irrelevant = w[b] == 0
        assert np.all(x[b, 0, irrelevant] == -1) and np.all(x[b, 1, irrelevant] == 1)
        for j, i in enumerate(literals):  # negative j flips literal j only
            assert np.flatnonzero(x[b, 2 + j] != x[b, 0]).tolist() == [i]


def test_check_config_names_the_key():
    c = config_lib.default_config()
    c.task.name, c.task.n_dims, c.task.parity_size = "sparse_parity", 5, 6
    with pytest.raises(UserError, match="task.parity_size"):
        tasks.get_task(c.task)
    c.task.parity_size, c.task.minority_prob = 2, 1.5
    with pytest.raises(UserError, match="task.minority_prob"):
        tasks.get_task(c.task)


def test_config_file_picks_the_class_and_size():
    module = load_module(ROOT / "configs" / "boolean.py")
    c = config_lib.validate(module.get_config("parity,standard"))  # validate fills the preset's sizes
    assert (c.task.name, c.task.n_dims, c.task.n_points, c.model.n_layer) == ("parity", 28, 40, 12)
    c = config_lib.validate(module.get_config(""))
    assert c.task.name == "conjunction" and c.task.n_dims == module.LAPTOP_BITS and c.model.n_layer == 3
    assert tasks.get_task(c.task).loss == "logistic"
    for arg in ("conjunction,parity", "huge"):
        with pytest.raises(UserError):
            module.get_config(arg)
    for name in boolean.NAMES:
        config_lib.validate(module.get_config(name))
