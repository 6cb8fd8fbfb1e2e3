"""The issue's Monte-Carlo check: on prompts of its own class, the exact posterior's mean error is
at most every other baseline's at every k, within the paired bootstrap interval.

A few thousand prompts per class, laptop size (d = 5, 11 points); every baseline that evaluate
scores (the classic five, tuned gradient descent, the Lasso for sparse classes) plus the
"lmmse" proxy (the Gaussian posterior with the class's own mean and covariance)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from icl_jax import rng, tasks
from icl_jax.baselines import bayes
from icl_jax.baselines.gaussian_posterior import gaussian_posterior
from icl_jax.evaluation import predictors, prompts, statistics
from tests.conftest import small_config

pytestmark = pytest.mark.timeout(300)

CLASSES = {
    "linear_noisy": dict(name="linear", noise_std=0.5),
    "sparse": dict(name="sparse_linear", sparsity=2),
    "sparse_noisy": dict(name="sparse_linear", sparsity=2, noise_std=0.3),
    "sign_vector": dict(name="sign_vector"),
    "task_pool": dict(name="task_pool", pool_size=16, noise_std=0.5),
    "gaussian_mixture": dict(name="gaussian_mixture"),
    "anisotropic_noisy": dict(name="anisotropic_linear", weight_spectrum_decay=2.0, noise_std=0.3),
}


@pytest.mark.parametrize("case", sorted(CLASSES))
def test_exact_posterior_is_never_beaten(case):
    config = small_config(n_dims=5, n_points=11, **CLASSES[case])
    t = config.task
    task = tasks.get_task(t)
    n = 2000
    p = jax.jit(lambda key: task.sample(key, n))(rng.derive(11, rng.EVAL_DATA))
    x, y32, w = (np.asarray(a) for a in p)
    y = prompts.exact_labels(task, x, y32, w)
    post = bayes.posterior(task, x, y)
    assert post.name == "bayes"
    others = {name: b.predict(x, y) for name, b in predictors.all_baselines(task, tuning_seed=5).items()}
    mean, cov = task.prior.moments()
    others["lmmse"] = np.asarray(gaussian_posterior(x, y, mean, cov, t.noise_std))
    counts = statistics.resample_counts(n, 400, seed=1)
    e_bayes = statistics.squared_errors(post.yhat_BxK, y)
    for name, yhat in others.items():
        diff = e_bayes - statistics.squared_errors(yhat, y)  # paired, per prompt and k
        interval = statistics.curve(diff, counts, confidence=0.98)
        assert np.all(np.array(interval["ci_low"]) <= 1e-12), (name, interval["mean"])
    # and it is a real floor: strictly better than least squares somewhere on every class
    assert (e_bayes.mean(0) < statistics.squared_errors(others["least_squares"], y).mean(0) - 1e-3).any()
