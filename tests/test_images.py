"""Image tasks: per-prompt projection and label permutation, the finite task set, and the
classification baselines against independent implementations."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from icl_jax import tasks
from icl_jax.baselines import classification
from icl_jax.data import digits, feed
from icl_jax.errors import UserError
from icl_jax.tasks import images
from tests.conftest import small_config

pytestmark = pytest.mark.timeout(120)


def _task(**overrides):
    settings = dict(name="images", dataset="digits", image_size=8, n_dims=16, n_points=7)
    return tasks.get_task(small_config(**{**settings, **overrides}).task)


@functools.lru_cache(maxsize=None)
def _jitted_prompts(task):
    return jax.jit(task.prompts)


def _prompts(task, key, images_BxKxHxWxC, labels_BxK):
    return _jitted_prompts(task)(key, images_BxKxHxWxC, labels_BxK)


def _batch(batch_size=6, n_points=7, repeat_rows=False):
    source = digits.load("train")
    indices = np.arange(batch_size * n_points).reshape(batch_size, n_points)
    if repeat_rows:  # every prompt holds the same examples
        indices = np.broadcast_to(indices[:1], indices.shape)
    return feed.gather_batch(source, indices)


def test_inputs_are_standardized_per_example_and_projected_with_the_prompts_matrix():
    task = _task()
    images_BxKxHxWxC, labels_BxK = _batch()
    key = jax.random.key(4)
    p = _prompts(task, key, images_BxKxHxWxC, labels_BxK)
    flat = images_BxKxHxWxC.reshape(6, 7, 64).astype(np.float64)
    standardized = (flat - flat.mean(-1, keepdims=True)) / flat.std(-1, keepdims=True)
    for b in (0, 5):
        # written out from the documented keys: prompt b's key fold_in(key, b), its projection
        # N(0, 1/I) from sub-stream 0, its label permutation from sub-stream 1
        prompt_key = jax.random.fold_in(key, b)
        a_IxD = np.asarray(jax.random.normal(jax.random.fold_in(prompt_key, 0), (64, 16)), np.float64) / 8.0
        permutation = np.asarray(jax.random.permutation(jax.random.fold_in(prompt_key, 1), 10))
        np.testing.assert_allclose(p.x_BxKxD[b], standardized[b] @ a_IxD, rtol=2e-4, atol=2e-4)
        np.testing.assert_array_equal(p.y_BxK[b], permutation[labels_BxK[b]])


def test_projection_entries_have_variance_one_over_the_input_width():
    a_IxD, permutation_L = images.task_parameters(jax.random.key(0), 400, 300, 10)
    assert abs(float(jnp.var(a_IxD)) * 400 - 1.0) < 0.02 and abs(float(jnp.mean(a_IxD))) < 0.01
    assert sorted(np.asarray(permutation_L).tolist()) == list(range(10))


def test_projection_and_permutation_are_per_prompt_and_reproducible_from_the_key():
    task = _task()
    images_BxKxHxWxC, labels_BxK = _batch(repeat_rows=True)
    p = _prompts(task, jax.random.key(1), images_BxKxHxWxC, labels_BxK)
    again = _prompts(task, jax.random.key(1), images_BxKxHxWxC, labels_BxK)
    other = _prompts(task, jax.random.key(2), images_BxKxHxWxC, labels_BxK)
    np.testing.assert_array_equal(p.x_BxKxD, again.x_BxKxD)
    np.testing.assert_array_equal(p.y_BxK, again.y_BxK)
    assert not np.allclose(p.x_BxKxD, other.x_BxKxD)
    # same examples in every prompt, yet every prompt sees its own inputs and its own labelling
    assert len({np.asarray(x).tobytes() for x in p.x_BxKxD}) == 6
    assert len({tuple(np.asarray(y)) for y in p.y_BxK}) > 1
    np.testing.assert_array_equal(p.w_BxD, -1)  # fresh tasks: no pool index


def test_labels_stay_consistent_with_their_inputs_within_a_prompt():
    task = _task(n_points=7)
    source = digits.load("train")
    order = np.argsort(source.labels_N, kind="stable")
    indices = np.stack([order[i::8][:7] for i in range(8)])  # sorted by label: repeats in each prompt
    images_BxKxHxWxC, labels_BxK = feed.gather_batch(source, indices)
    p = _prompts(task, jax.random.key(3), images_BxKxHxWxC, labels_BxK)
    for original, permuted in zip(labels_BxK, np.asarray(p.y_BxK)):
        mapping = {}
        for a, b in zip(original, permuted):
            assert mapping.setdefault(int(a), int(b)) == int(b)  # one new label per original one
        assert len(set(mapping.values())) == len(mapping)  # and no two share it


@pytest.mark.parametrize("num_tasks", [1, 4])
def test_a_finite_task_count_is_honoured(num_tasks):
    task = _task(num_tasks=num_tasks, pool_seed=9)
    images_BxKxHxWxC, labels_BxK = _batch(batch_size=40, n_points=7, repeat_rows=True)
    p = _prompts(task, jax.random.key(5), images_BxKxHxWxC, labels_BxK)
    index_B = np.asarray(p.w_BxD[:, 0]).astype(int)
    assert set(index_B) == set(range(num_tasks))  # 40 draws among ≤ 4 tasks hit all of them
    x_by_task = {}
    for i, x in zip(index_B, np.asarray(p.x_BxKxD)):
        np.testing.assert_array_equal(x_by_task.setdefault(i, x), x)  # same task, same projection
    assert len({x.tobytes() for x in x_by_task.values()}) == num_tasks
    # the pool depends only on pool_seed: another prompt key reuses the same members
    other = _prompts(task, jax.random.key(6), images_BxKxHxWxC, labels_BxK)
    for i, x in zip(np.asarray(other.w_BxD[:, 0]).astype(int), np.asarray(other.x_BxKxD)):
        np.testing.assert_array_equal(x_by_task[i], x)


def test_eval_prompts_do_not_depend_on_how_many_are_drawn():
    task = _task()
    many = task.eval_prompts(seed=11, num_prompts=70)  # two chunks
    few = task.eval_prompts(seed=11, num_prompts=10)
    np.testing.assert_array_equal(many.x_BxKxD[:10], few.x_BxKxD)
    np.testing.assert_array_equal(many.y_BxK[:10], few.y_BxK)
    assert many.x_BxKxD.shape == (70, 7, 16)


def test_config_checks():
    with pytest.raises(UserError, match="task.num_tasks"):
        _task(num_tasks=-1)
    with pytest.raises(UserError, match="eval_datasets holds the training data set"):
        _task(eval_datasets="digits")
    with pytest.raises(UserError, match="task.num_classes=4 label channels"):
        _task(num_classes=4).source("train")


# ---- baselines against independent loops ----
def _random_prompts(seed, b=3, k=12, d=5, n_classes=4):
    generator = np.random.default_rng(seed)
    return (generator.normal(size=(b, k, d)).astype(np.float32),
            generator.integers(0, n_classes, (b, k)).astype(np.int32))


def test_nearest_neighbour_and_majority_match_loops():
    x, y = _random_prompts(0)
    nn = np.asarray(classification.nearest_neighbour(x, y, n_classes=4)).argmax(-1)
    maj = np.asarray(classification.majority(x, y, n_classes=4)).argmax(-1)
    for b in range(3):
        assert nn[b, 0] == maj[b, 0] == 0  # no example: class 0
        for k in range(1, 12):
            distances = np.linalg.norm(x[b, :k] - x[b, k], axis=1)
            assert nn[b, k] == y[b, np.argmin(distances)]
            counts = np.bincount(y[b, :k], minlength=4)
            assert maj[b, k] == np.argmax(counts)


def test_logistic_regression_by_gd_reaches_the_scikit_learn_optimum():
    from sklearn.linear_model import LogisticRegression

    x, y = _random_prompts(1, b=2, k=40, d=3, n_classes=3)
    l2 = 0.05
    log_probs = np.asarray(classification.logistic_regression(x, y, n_classes=3, steps=3000, l2=l2))
    for b in range(2):
        for k in (15, 39):
            assert set(y[b, :k]) == {0, 1, 2}
            # ours: mean cross-entropy + l2/2 |W|², bias free; scikit-learn: |W|²/2 + C·sum
            reference = LogisticRegression(C=1 / (l2 * k), tol=1e-10, max_iter=10_000)
            reference.fit(x[b, :k].astype(np.float64), y[b, :k])
            expected = reference.predict_log_proba(x[b, k:k + 1].astype(np.float64))[0]
            np.testing.assert_allclose(log_probs[b, k], expected, atol=2e-3)
    np.testing.assert_allclose(log_probs[:, 0], np.log(1 / 3), atol=1e-6)  # k = 0: uniform
