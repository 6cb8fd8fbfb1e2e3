import jax
import jax.numpy as jnp
import numpy as np
import pytest

from icl_jax import curriculum, tasks
from icl_jax.tasks import linear
from tests.conftest import small_config

pytestmark = pytest.mark.timeout(120)

ALL = {
    "linear": {},
    "noisy_linear": {"name": "linear", "noise_std": 0.5},
    "sparse_linear": {"name": "sparse_linear", "sparsity": 3},
    "sign_vector": {"name": "sign_vector"},
    "task_pool": {"name": "task_pool", "pool_size": 16, "noise_std": 0.5},
    "gaussian_mixture": {"name": "gaussian_mixture", "mixture_scale": 3.0},
    "anisotropic_linear": {"name": "anisotropic_linear", "weight_spectrum_decay": 1.5, "noise_std": 0.5},
}


def _task(name, n_dims=8, n_points=9):
    overrides = dict(ALL[name])
    overrides.setdefault("name", name)
    return tasks.get_task(small_config(n_dims=n_dims, n_points=n_points, **overrides).task)


@pytest.mark.parametrize("name", sorted(ALL))
def test_same_key_same_batch_other_key_other_batch(name):
    task = _task(name)
    sample = jax.jit(lambda key: task.sample(key, 32))
    a, b, c = sample(jax.random.key(5)), sample(jax.random.key(5)), sample(jax.random.key(6))
    for u, v, w in zip(a, b, c):
        np.testing.assert_array_equal(u, v)
        assert not np.array_equal(u, w)


@pytest.mark.parametrize("name", sorted(ALL))
def test_second_moment_of_y_matches_normalizer(name):
    task = _task(name)
    y = jax.jit(lambda key: task.sample(key, 20000).y_BxK)(jax.random.key(0))
    y2 = np.asarray(y, np.float64) ** 2
    stderr = y2.mean(axis=1).std() / np.sqrt(y2.shape[0])
    assert abs(y2.mean() - task.normalizer) < 5 * stderr, (y2.mean(), task.normalizer)


def test_normalizers_are_the_closed_forms():
    assert _task("linear").normalizer == 8
    assert _task("noisy_linear").normalizer == 8.25
    assert _task("sparse_linear").normalizer == 3
    assert _task("sign_vector").normalizer == 8
    assert _task("gaussian_mixture").normalizer == 8 + 9
    pool = linear.pool_weights(16, 1, 8)
    assert _task("task_pool").normalizer == pytest.approx(np.mean(np.sum(pool.astype(np.float64) ** 2, 1)) + 0.25)
    assert _task("anisotropic_linear").normalizer == pytest.approx(8.25)  # trace Σ = d


@pytest.mark.parametrize("name", sorted(ALL))
def test_sampled_weights_have_the_moments_the_prior_description_states(name):
    """The float64 description (tasks/priors.py) that the exact posterior and the lmmse proxy
    read, against what the jitted sampler draws: mean and covariance of w within 5 standard errors."""
    task = _task(name, n_dims=5)
    mean_D, cov_DxD = task.prior.moments()
    n = 100_000
    w = np.asarray(jax.jit(lambda key: task.sample(key, n).w_BxD)(jax.random.key(8)), np.float64)
    centred = w - mean_D
    np.testing.assert_array_less(np.abs(centred.mean(0)), 5 * centred.std(0) / np.sqrt(n) + 1e-9)
    products = centred[:, :, None] * centred[:, None, :]
    stderr = products.std(0) / np.sqrt(n)
    np.testing.assert_array_less(np.abs(products.mean(0) - cov_DxD), 5 * stderr + 1e-9)
    assert np.mean(np.sum(w**2, 1)) == pytest.approx(task.prior.second_moment, rel=0.03)


def test_labels_are_linear_in_the_returned_weights():
    task = _task("linear")
    p = task.sample(jax.random.key(1), 16)
    np.testing.assert_allclose(p.y_BxK, np.einsum("bkd,bd->bk", p.x_BxKxD, p.w_BxD), rtol=1e-5, atol=1e-5)


def test_sparse_support_size_and_sign_vector_values():
    w = _task("sparse_linear").sample(jax.random.key(2), 500).w_BxD
    assert np.all(np.sum(np.asarray(w) != 0, axis=1) == 3)
    counts = np.sum(np.asarray(w) != 0, axis=0)
    assert counts.min() > 0.5 * counts.mean()  # supports are spread over all coordinates
    w = _task("sign_vector").sample(jax.random.key(2), 100).w_BxD
    assert set(np.unique(np.asarray(w)).tolist()) == {-1.0, 1.0}


def test_task_pool_draws_only_pool_members_and_all_of_them():
    task = _task("task_pool")
    w = np.asarray(task.sample(jax.random.key(3), 2000).w_BxD)
    pool = linear.pool_weights(16, 1, 8)
    distance = np.abs(w[:, None, :] - pool[None]).max(-1)
    assert np.all(distance.min(1) < 1e-6)
    assert len(np.unique(distance.argmin(1))) == 16
    other_seed = linear.pool_weights(16, 2, 8)
    assert not np.allclose(pool, other_seed)


def test_mixture_weights_cluster_at_the_two_centres():
    w = np.asarray(_task("gaussian_mixture").sample(jax.random.key(4), 4000).w_BxD)
    side = np.sign(w[:, 0])
    assert abs(side.mean()) < 0.1
    np.testing.assert_allclose(np.abs(w[:, 0]).mean(), 3.0, atol=0.1)
    np.testing.assert_allclose(w[:, 1:].std(), 1.0, atol=0.05)


def test_inactive_coordinates_are_zero_and_sparse_support_stays_active():
    task = _task("sparse_linear")
    p = jax.jit(lambda key, active: task.sample(key, 200, active))(jax.random.key(7), jnp.int32(4))
    assert np.all(np.asarray(p.x_BxKxD)[..., 4:] == 0)
    assert np.all(np.asarray(p.w_BxD)[:, 4:] == 0)


def test_curriculum_grows_then_stops():
    c = small_config(n_dims=20, n_points=41)
    c.curriculum.interval, c.curriculum.dims_start, c.curriculum.points_start = 2000, 5, 11
    assert [int(curriculum.active_dims(c, s)) for s in (0, 1999, 2000, 30000, 10**6)] == [5, 5, 6, 20, 20]
    assert [int(curriculum.active_points(c, s)) for s in (0, 1999, 2000, 30000, 10**6)] == [11, 11, 13, 41, 41]
    c.curriculum.interval = 0
    assert int(curriculum.active_dims(c, 0)) == 20 and int(curriculum.active_points(c, 0)) == 41
