"""Time every baseline on 1280 prompts x 41 lengths at d = 20, against the common way of doing it.

    python benchmarks/baselines.py [--prompts 1280] [--repeats 3] [--only least_squares,ridge]

The reference is a Python loop over prompts and lengths calling numpy.linalg.lstsq (float64,
LAPACK gelsd) on each prefix: 1280 x 40 calls. Every baseline is called once to compile, then
timed (median of --repeats runs, results fetched to the host); the table gives that time and
the loop's time divided by it. A float32 matmul is timed in the same run so that numbers taken
on a busy or different machine can be put in proportion.

Each baseline returns the prediction at every k in one call; the Bayes rows are the exact
posteriors (baselines/bayes.py) on noiseless (float64 labels) or noisy (σ = 0.5) prompts of
their own class. Noisy sign vectors at d = 20 enumerate 2^20 hypotheses per prompt and length
(~55e9 terms): timed at d = 12 and scaled by 2^8, not run.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from icl_jax import baselines
from icl_jax.baselines import enumeration, gaussian_posterior, gradient_descent, lasso, mixture
from icl_jax.tasks import linear as linear_tasks


def median_time(fn, repeats: int) -> tuple[float, float]:
    """(first call, median of the next `repeats`), seconds, results on the host."""
    start = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return first, float(np.median(times))


def numpy_loop(x, y) -> float:
    X, Y = x.astype(np.float64), y.astype(np.float64)
    start = time.perf_counter()
    for b in range(len(X)):
        for k in range(1, X.shape[1]):
            np.linalg.lstsq(X[b, :k], Y[b, :k], rcond=None)
    return time.perf_counter() - start


def matmul_gflops() -> float:
    a = jnp.asarray(np.random.default_rng(0).standard_normal((2048, 2048)), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    _, t = median_time(lambda: f(a), 5)
    return 2 * 2048**3 / t / 1e9


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=1280)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default="", help="comma-separated name prefixes: time only these rows "
                        "(e.g. least_squares,ridge), the loop and the matmul still run")
    args = parser.parse_args()
    B, K, D, sigma = args.prompts, 41, 20, 0.5
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, K, D)).astype(np.float32)
    noise = sigma * rng.standard_normal((B, K))

    def labels(w):  # noiseless float64 labels, and noisy float32 ones
        clean = np.einsum("bkd,bd->bk", x.astype(np.float64), w)
        return clean, (clean + noise).astype(np.float32)

    w_gauss = rng.standard_normal((B, D))
    y_clean, y_noisy = labels(w_gauss)
    w_sparse = np.zeros((B, D))
    for b in range(B):
        w_sparse[b, rng.choice(D, 3, replace=False)] = rng.standard_normal(3)
    ys_clean, ys_noisy = labels(w_sparse)
    centers = linear_tasks.mixture_centers(2, 3.0, D).astype(np.float64)
    wm_clean, wm_noisy = labels(centers[rng.integers(2, size=B)] + rng.standard_normal((B, D)))
    pool = linear_tasks.pool_weights(1024, 1, D).astype(np.float64)
    yp_clean, yp_noisy = labels(pool[rng.integers(1024, size=B)])
    w_sign = np.sign(rng.standard_normal((B, D)))
    yv_clean, _ = labels(w_sign)

    sup = np.array(list(itertools.combinations(range(D), 3)), np.int32)
    sparse_family = mixture.GaussianComponents(np.full(len(sup), -math.log(len(sup))), np.zeros((len(sup), D)),
                                               features_CxR=sup)
    gm_family = mixture.GaussianComponents(np.log([0.5, 0.5]), centers, features_CxR=np.tile(np.arange(D), (2, 1)))
    pool_family = mixture.PointComponents(np.full(1024, -math.log(1024)), pool)
    A = rng.standard_normal((D, D))
    cov, mean = A @ A.T / D + 0.1 * np.eye(D), rng.standard_normal(D)
    eta = np.linspace(0.05, 0.9, K)
    ls = jax.jit(functools.partial(baselines.least_squares, ridge=0.0))
    ridge = jax.jit(functools.partial(baselines.least_squares, ridge=sigma**2))

    # sign vectors, noisy: d = 12 measured, scaled to d = 20
    x12 = x[: B, :, :12]
    y12 = (np.einsum("bkd,bd->bk", x12.astype(np.float64), np.sign(rng.standard_normal((B, 12)))) + noise)

    cases = [
        ("least_squares", lambda: ls(x, y_noisy)),
        ("ridge (λ = 0.25)", lambda: ridge(x, y_noisy)),
        ("averaging", lambda: baselines.averaging(x, y_noisy)),
        ("nearest_neighbors (3)", lambda: baselines.nearest_neighbors(x, y_noisy, n_neighbors=3)),
        ("gd, 1 step", lambda: gradient_descent.gradient_descent(x, y_noisy, eta, 1)),
        ("gd, 10 steps", lambda: gradient_descent.gradient_descent(x, y_noisy, eta, 10)),
        ("lasso (α = 0.05), converged", lambda: lasso.lasso(x, y_noisy, 0.05).yhat_BxK),
        ("gaussian posterior, full Σ, σ = 0.5", lambda: gaussian_posterior.gaussian_posterior(x, y_noisy, mean, cov, sigma)),
        ("bayes linear, float64 solver, σ = 0", lambda: mixture.mixture_posterior(x, y_clean, [gm_family.__class__(
            np.zeros(1), np.zeros((1, D)), features_CxR=np.arange(D)[None])], 0.0).yhat_BxK),
        ("bayes sparse, 1140 supports, σ = 0", lambda: mixture.mixture_posterior(x, ys_clean, [sparse_family], 0.0).yhat_BxK),
        ("bayes sparse, 1140 supports, σ = 0.5", lambda: mixture.mixture_posterior(x, ys_noisy, [sparse_family], sigma).yhat_BxK),
        ("bayes gaussian mixture, C = 2, σ = 0", lambda: mixture.mixture_posterior(x, wm_clean, [gm_family], 0.0).yhat_BxK),
        ("bayes gaussian mixture, C = 2, σ = 0.5", lambda: mixture.mixture_posterior(x, wm_noisy, [gm_family], sigma).yhat_BxK),
        ("bayes task pool, M = 1024, σ = 0", lambda: mixture.mixture_posterior(x, yp_clean, [pool_family], 0.0).yhat_BxK),
        ("bayes task pool, M = 1024, σ = 0.5", lambda: mixture.mixture_posterior(x, yp_noisy, [pool_family], sigma).yhat_BxK),
        ("bayes sign vectors, 2^20, σ = 0", lambda: enumeration.sign_vector_posterior(x, yv_clean, D, 0.0).yhat_BxK),
        ("bayes sign vectors, 2^12, σ = 0.5", lambda: enumeration.sign_vector_posterior(x12, y12, 12, sigma).yhat_BxK),
    ]

    print(f"jax {jax.__version__}, {jax.devices()[0].device_kind}, {jax.local_device_count()} device(s); "
          f"{B} prompts x {K} lengths, d = {D}")
    print(f"float32 matmul 2048^3: {matmul_gflops():.0f} GFLOP/s")
    loop = numpy_loop(x, y_noisy)
    print(f"numpy.linalg.lstsq loop over prompts and lengths ({B * (K - 1)} calls): {loop:.3f} s\n")
    print(f"{'baseline':42s} {'first call':>11s} {'timed':>10s} {'loop / timed':>13s}")
    only = tuple(p.strip() for p in args.only.split(",") if p.strip())
    for name, fn in cases:
        if only and not name.startswith(only):
            continue
        first, t = median_time(fn, args.repeats)
        print(f"{name:42s} {first:10.3f}s {t:9.4f}s {loop / t:12.1f}x", flush=True)
        if name.startswith("bayes sign vectors, 2^12"):
            print(f"{'  -> sign vectors, 2^20, σ = 0.5 (x 2^8, not run)':42s} {'':11s} {t * 256:9.0f}s")


if __name__ == "__main__":
    main()
