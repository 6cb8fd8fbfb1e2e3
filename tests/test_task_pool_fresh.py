"""A task-pool run is also scored on fresh tasks w ~ N(0, I) (linear_scoring.fresh_tasks;
Raventós et al. 2023): the pool's discrete posterior (dmmse) and the Gaussian posterior
(ridge) on them, against float64 NumPy references written here, with a stub model."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import scipy.special

from icl_jax import config as config_lib
from icl_jax import rng, tasks
from icl_jax.evaluation import linear_scoring, predictors, prompts, run, statistics
from icl_jax.tasks import linear
from tests.conftest import small_config

pytestmark = pytest.mark.timeout(240)
SIGMA, D, K, N = 0.5, 3, 7, 96
KEYS = ("metric", "curves", "normalizer", "description")


class RecordingModel:
    """A stub model: predicts 0.3 everywhere, and keeps every (x, y) it was asked about."""

    def __init__(self):
        self.calls = []

    def __call__(self, x_NxKxD, y_NxK):
        self.calls.append((np.asarray(x_NxKxD), np.asarray(y_NxK)))
        return np.full(np.shape(y_NxK), 0.3)


def _config(**task):
    c = small_config(n_dims=D, n_points=K, noise_std=SIGMA, **task)
    c.eval.num_prompts, c.eval.bootstrap_samples = N, 200
    return config_lib.validate(c)


def _score(config):
    """(report, model, pool prompts) of the linear scorer with a recording stub model. The
    tuned baselines and the weight probe, which the fresh-task entry does not read and
    tests/test_evaluate.py covers, are left out for speed (GD tuning compiles for seconds)."""
    task = tasks.get_task(config.task)
    x, y, w = prompts.eval_prompts(config, N)
    counts = statistics.resample_counts(N, config.eval.bootstrap_samples, config.eval.seed)
    model = RecordingModel()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(predictors, "all_baselines", lambda task, seed: {})
        patch.setattr(linear_scoring, "weight_probe", lambda *args: {"stub": True})
        scores = linear_scoring.score(config, task, model, x, y, w, counts, probe_prompts=8)
    return scores.report, model, (x, y, w)


@pytest.fixture(scope="module")
def pool8():
    config = _config(name="task_pool", pool_size=8, pool_seed=3)
    return (config, *_score(config))


@pytest.fixture(scope="module")
def pool1_fresh():
    """fresh_tasks alone (score calls it; the test above checks that) for a pool of one."""
    config = _config(name="task_pool", pool_size=1)
    counts = statistics.resample_counts(N, config.eval.bootstrap_samples, config.eval.seed)
    return linear_scoring.fresh_tasks(config, tasks.get_task(config.task), RecordingModel(), N, counts)


def _fresh_prompts(model: RecordingModel):
    """The prompts the model saw in the fresh-task call (the second: the first is the pool's)."""
    assert len(model.calls) == 2, [c[0].shape for c in model.calls]
    x, y = model.calls[1]
    return np.asarray(x, np.float64), np.asarray(y, np.float64)


def _means(errors_NxK):
    return errors_NxK.mean(0)


def _numpy_ridge(x, y, lam):
    """Posterior mean prediction of y_k under w ~ N(0, I), noise variance lam, from the k
    examples before it, float64."""
    out = np.zeros(y.shape)
    for b in range(len(x)):
        for k in range(x.shape[1]):
            X, Y = x[b, :k], y[b, :k]
            w = np.linalg.solve(X.T @ X + lam * np.eye(x.shape[2]), X.T @ Y)
            out[b, k] = x[b, k] @ w
    return out


def _numpy_dmmse(x, y, pool_MxD, sigma):
    """Discrete posterior over the pool: β_m ∝ exp(−‖y_<k − X_<k w_m‖²/(2σ²)), prediction
    Σ_m β_m x_k·w_m, float64."""
    pred_BxKxM = np.einsum("bkd,md->bkm", x, pool_MxD)
    sq = (y[..., None] - pred_BxKxM) ** 2
    before = np.concatenate([np.zeros_like(sq[:, :1]), np.cumsum(sq, 1)[:, :-1]], 1)
    beta = scipy.special.softmax(-before / (2 * sigma**2), axis=-1)
    return (beta * pred_BxKxM).sum(-1)


def test_entry_only_for_task_pool_and_in_the_top_level_format(pool8):
    config, report, _, _ = pool8
    fresh = report["fresh_tasks"]
    assert tuple(fresh) == KEYS
    assert fresh["description"] == "w ~ N(0, I): tasks outside the pool"
    assert fresh["metric"] == report["metric"]
    assert sorted(fresh["curves"]) == ["dmmse", "least_squares", "model", "ridge"]
    for c in fresh["curves"].values():
        assert sorted(c) == ["ci_high", "ci_low", "mean"] and len(c["mean"]) == K
        assert np.all(np.array(c["ci_low"]) <= np.array(c["mean"]) + 1e-12)
        assert np.all(np.array(c["mean"]) <= np.array(c["ci_high"]) + 1e-12)
    # E[y²] of w ~ N(0, I): d + σ², not the pool's (its own mean |w_m|² + σ²)
    assert fresh["normalizer"] == pytest.approx(D + SIGMA**2)
    assert tasks.get_task(config.task).normalizer != pytest.approx(D + SIGMA**2)
    # the printed table can show it through format_table, as the run.py lines in the report do
    table = run.format_table({"task": "task_pool", "n_dims": D, "step": 0, "num_prompts": N,
                              "k": list(range(K)), **fresh})
    assert "dmmse" in table and "ridge" in table

    linear_report, _, _ = _score(_config(name="linear"))
    assert "fresh_tasks" not in linear_report
    assert "bayes" in linear_report and "weight_probe" in linear_report  # the rest of the report is there


def test_fresh_prompts_are_eval_seeded_linear_prompts_outside_the_pool(pool8):
    config, _, model, (x_pool, y_pool, w_pool) = pool8
    x, y = _fresh_prompts(model)
    # drawn independently here: the linear class, derive(eval.seed, EVAL_DATA), N prompts
    t = config.task
    linear_task = tasks.get_task(small_config(name="linear", n_dims=t.n_dims, n_points=t.n_points,
                                              noise_std=t.noise_std).task)
    expected = linear_task.sample(rng.derive(config.eval.seed, rng.EVAL_DATA), N)
    np.testing.assert_array_equal(x, np.asarray(expected.x_BxKxD))
    np.testing.assert_allclose(y, np.asarray(expected.y_BxK), rtol=1e-5, atol=1e-6)  # unjitted here
    assert not np.allclose(y, y_pool)  # not the pool-task prompts the top level scores
    pool = linear.pool_weights(t.pool_size, t.pool_seed, t.n_dims)
    w = np.asarray(expected.w_BxD)

    def distance_to_pool(w_BxD):
        return np.sqrt(((w_BxD[:, None] - pool[None]) ** 2).sum(-1)).min(1)

    assert np.all(distance_to_pool(w_pool) < 1e-6)  # the top-level prompts are pool members
    assert distance_to_pool(w).min() > 0.05  # the fresh ones are not


def test_ridge_and_model_match_numpy(pool8):
    _, report, model, _ = pool8
    x, y = _fresh_prompts(model)
    curves = report["fresh_tasks"]["curves"]
    normalizer = D + SIGMA**2
    ridge = _numpy_ridge(x, y, SIGMA**2)
    np.testing.assert_allclose(curves["ridge"]["mean"], _means((ridge - y) ** 2 / normalizer), rtol=1e-8)
    np.testing.assert_allclose(curves["model"]["mean"], _means((0.3 - y) ** 2 / normalizer), rtol=1e-10)
    least_squares = np.array([[x[b, k] @ np.linalg.pinv(x[b, :k]) @ y[b, :k] if k else 0.0 for k in range(K)]
                              for b in range(N)])
    np.testing.assert_allclose(curves["least_squares"]["mean"], _means((least_squares - y) ** 2 / normalizer),
                               rtol=1e-3)


def test_dmmse_is_the_pools_discrete_posterior(pool8):
    config, report, model, _ = pool8
    x, y = _fresh_prompts(model)
    pool = linear.pool_weights(config.task.pool_size, config.task.pool_seed, D).astype(np.float64)
    dmmse = _numpy_dmmse(x, y, pool, SIGMA)
    curve = report["fresh_tasks"]["curves"]["dmmse"]["mean"]
    np.testing.assert_allclose(curve, _means((dmmse - y) ** 2 / (D + SIGMA**2)), rtol=1e-8)
    # not the ridge curve: the pool's posterior is the wrong prior here
    assert not np.allclose(curve, report["fresh_tasks"]["curves"]["ridge"]["mean"], rtol=1e-2)


def test_one_task_pool_dmmse_fails_on_fresh_tasks(pool1_fresh):
    curves = {n: np.array(c["mean"]) for n, c in pool1_fresh["curves"].items()}
    # dmmse predicts x·w_1 whatever it sees: error (|w − w_1|² + σ²)/(d + σ²) ≈ 2 at every k
    assert np.all(curves["dmmse"] > 1.3), curves["dmmse"]
    # ridge learns w from the examples: near the noise floor σ²/(d + σ²) ≈ 0.08 by k = 2d
    assert curves["ridge"][-1] < 0.3 and curves["dmmse"][-1] > 5 * curves["ridge"][-1], curves
