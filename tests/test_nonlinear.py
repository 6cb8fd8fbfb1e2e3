"""ReLU-net and decision-tree prompts against independent numpy implementations, their
statistics, the greedy-tree baseline and the family's scorer."""

import jax
import numpy as np
import pytest

from icl_jax import config as config_lib
from icl_jax import tasks
from icl_jax.baselines import nonlinear as nonlinear_baselines
from icl_jax.evaluation import regression_scoring, statistics

pytestmark = pytest.mark.timeout(300)


def _task(name, d=5, K=9, **keys):
    c = config_lib.default_config()
    c.task.name, c.task.n_dims, c.task.n_points = name, d, K
    c.curriculum.interval = 0
    for key, value in keys.items():
        c.task[key] = value
    config_lib.validate(c)
    return tasks.get_task(c.task)


def _sample(task, B, seed=0, active=None):
    return (np.asarray(a) for a in task.sample(jax.random.key(seed), B, active))


def test_relu_net_labels_and_variance():
    task = _task("relu_net", d=6, K=9, relu_hidden=100)
    x, y, w = _sample(task, 3000)
    assert w.shape == (3000, 6 * 100 + 100) and task.normalizer == 6
    b = 7  # an independent evaluation of one prompt's network
    w1, w2 = w[b, :600].reshape(6, 100), w[b, 600:]
    np.testing.assert_allclose(y[b], np.sqrt(2 / 100) * np.maximum(x[b] @ w1, 0) @ w2, rtol=1e-4, atol=1e-4)
    assert np.mean(y**2) == pytest.approx(6.0, rel=0.05)  # E[y²] = d by the √(2/h) scale
    assert abs(np.mean(y)) < 0.1
    x, y, _ = _sample(task, 3000, seed=1, active=3)  # the dims curriculum
    assert np.all(x[..., 3:] == 0) and np.mean(y**2) == pytest.approx(3.0, rel=0.05)


def _tree_by_recursion(x_D, splits, leaves, node=0, depth=4):
    if depth == 0:
        return leaves[node - (len(leaves) - 1)]
    child = 2 * node + (2 if x_D[int(splits[node])] > 0 else 1)
    return _tree_by_recursion(x_D, splits, leaves, child, depth - 1)


def test_decision_tree_labels_and_statistics():
    task = _task("decision_tree", d=5, K=9, tree_depth=4)
    x, y, w = _sample(task, 4000)
    assert w.shape == (4000, 15 + 16) and task.normalizer == 1
    for b in range(5):
        want = [_tree_by_recursion(x[b, k], w[b, :15], w[b, 15:]) for k in range(9)]
        np.testing.assert_array_equal(y[b], want)
    assert np.mean(y**2) == pytest.approx(1.0, rel=0.05)
    assert set(np.unique(w[:, :15])) == {0, 1, 2, 3, 4}  # split coordinates uniform over d
    _, _, w = _sample(task, 500, seed=2, active=2)
    assert set(np.unique(w[:, :15])) == {0, 1}


def _best_stump(x_KxD, y_K, query_D):
    """Brute force: the depth-1 regression tree with the least squared error (every coordinate,
    every midpoint between sorted values) evaluated at the query; NaN when splits with
    different answers tie (CART breaks ties at random)."""
    candidates = [(np.sum((y_K - y_K.mean()) ** 2), y_K.mean())]
    for j in range(x_KxD.shape[1]):
        values = np.sort(np.unique(x_KxD[:, j]))
        for t in (values[1:] + values[:-1]) / 2:
            left = x_KxD[:, j] <= t
            sse = np.sum((y_K[left] - y_K[left].mean()) ** 2) + np.sum((y_K[~left] - y_K[~left].mean()) ** 2)
            candidates.append((sse, y_K[left].mean() if query_D[j] <= t else y_K[~left].mean()))
    best = min(c[0] for c in candidates)
    answers = {round(a, 12) for sse, a in candidates if sse <= best + 1e-9}
    return answers.pop() if len(answers) == 1 else np.nan


def test_greedy_tree_matches_a_brute_force_stump():
    pytest.importorskip("sklearn")
    x = np.asarray(jax.random.normal(jax.random.key(3), (3, 12, 3)), np.float64)
    y = np.where(x[..., 1] > 0, 2.0, -1.0) + 0.3 * x[..., 0]
    yhat = nonlinear_baselines.greedy_tree(x, y, max_depth=1)
    assert np.all(yhat[:, 0] == 0)
    want = np.array([[_best_stump(x[b, :k], y[b, :k], x[b, k]) for k in range(1, 12)] for b in range(3)])
    unique = ~np.isnan(want)
    assert unique[:, 6:].all()
    np.testing.assert_allclose(yhat[:, 1:][unique], want[unique], atol=1e-9)


class _FakeModel:
    """Predicts the mean of the labels seen so far: between zero and the learners."""

    def __call__(self, x, y):
        total = np.concatenate([np.zeros_like(y[:, :1]), np.cumsum(y, 1)[:, :-1]], 1)
        return total / np.maximum(np.arange(y.shape[1]), 1)


@pytest.mark.parametrize("name", ["decision_tree", "relu_net"])
def test_scorer_reports_every_baseline(name):
    if name == "decision_tree":
        pytest.importorskip("sklearn")
    task = _task(name, d=2, K=9, tree_depth=2, relu_hidden=10)
    x, y, w = _sample(task, 16, seed=4)
    c = config_lib.default_config()
    c.task.name, c.task.n_dims, c.task.n_points, c.task.tree_depth, c.task.relu_hidden = name, 2, 9, 2, 10
    c.curriculum.interval = 0
    counts = statistics.resample_counts(16, 50, 0)
    scores = regression_scoring.score(c, task, _FakeModel(), x, y, w, counts)
    expected = {"model", "neural_net", "least_squares", "nearest_neighbors", "averaging", "zero"}
    if name == "decision_tree":
        expected.add("greedy_tree")
        assert "scikit-learn" in scores.report["baseline_info"]["greedy_tree"]["implementation"]
    assert set(scores.errors) == expected
    np.testing.assert_allclose(scores.errors["zero"], y.astype(np.float64) ** 2 / task.normalizer, rtol=1e-4)
    assert scores.report["least_squares_unbounded_k"] == [1, 2, 3]
    assert all(e.shape == (16, 9) and np.all(np.isfinite(e)) for e in scores.errors.values())
