"""The in-context 2-layer net (baselines/neural_net.py) against a plain numpy net trained by
hand-written backprop and Adam, one prompt and prefix at a time."""

import jax
import numpy as np
import pytest

from icl_jax.baselines import neural_net

pytestmark = pytest.mark.timeout(120)


def _numpy_fit_predict(params, x_KxD, y_K, k, steps, lr, loss):
    """One net, trained on rows < k by full-batch Adam (optax defaults), predicting row k."""
    w1, b1, w2, b2 = (np.array(p, np.float64) for p in params)
    m = [np.zeros_like(p) for p in (w1, b1, w2, b2)]
    v = [np.zeros_like(p) for p in (w1, b1, w2, b2)]
    x, y = x_KxD[:k].astype(np.float64), y_K[:k].astype(np.float64)
    for t in range(1, steps + 1):
        pre = x @ w1 + b1
        h = np.maximum(pre, 0)
        out = h @ w2 + b2
        if loss == "squared":
            d_out = 2 * (out - y) / k
        else:  # d/d out of softplus(-y out)
            d_out = -y / (1 + np.exp(y * out)) / k
        g_w2, g_b2 = h.T @ d_out, d_out.sum()
        d_pre = np.outer(d_out, w2) * (pre > 0)
        grads = [x.T @ d_pre, d_pre.sum(0), g_w2, g_b2]
        new = []
        for i, (p, g) in enumerate(zip((w1, b1, w2, b2), grads)):
            m[i] = 0.9 * m[i] + 0.1 * g
            v[i] = 0.999 * v[i] + 0.001 * g * g
            mhat, vhat = m[i] / (1 - 0.9**t), v[i] / (1 - 0.999**t)
            new.append(p - lr * mhat / (np.sqrt(vhat) + 1e-8))
        w1, b1, w2, b2 = new
    return float(np.maximum(x_KxD[k] @ w1 + b1, 0) @ w2 + b2)


@pytest.mark.parametrize("loss", ["squared", "logistic"])
def test_matches_numpy_backprop_and_adam(loss):
    B, K, D, H, steps, lr, seed = 3, 7, 3, 8, 25, 0.05, 4
    x = np.asarray(jax.random.normal(jax.random.key(0), (B, K, D)))
    y = x[..., 0] - 0.5 * x[..., 1] ** 2
    if loss == "logistic":
        y = np.where(y > 0, 1.0, -1.0)
    got = np.asarray(neural_net.fit_predict(x, y, hidden=H, steps=steps, learning_rate=lr, loss=loss, seed=seed,
                                            prompts_per_group=2))
    assert got.shape == (B, K) and np.all(got[:, 0] == 0)
    for b in range(B):
        params = neural_net.init_params(jax.random.fold_in(jax.random.key(seed), b), D, H)
        for k in (1, 3, K - 1):
            want = _numpy_fit_predict(params, x[b], y[b], k, steps, lr, loss)
            np.testing.assert_allclose(got[b, k], want, rtol=2e-3, atol=2e-4)


def test_fits_its_examples_and_generalizes_on_a_simple_function():
    B, K, D = 16, 41, 2
    x = np.asarray(jax.random.normal(jax.random.key(1), (B, K, D)))
    y = np.abs(x[..., 0])  # one kink: a few ReLUs represent it
    yhat = np.asarray(neural_net.fit_predict(x, y, hidden=32, steps=300, learning_rate=1e-2, seed=0))
    error_k = np.mean((yhat - y) ** 2, axis=0) / np.mean(y**2)
    assert error_k[-5:].mean() < 0.05 < error_k[1]


def test_rejects_bad_arguments():
    x, y = np.zeros((1, 3, 2)), np.zeros((1, 3))
    with pytest.raises(ValueError, match="loss"):
        neural_net.fit_predict(x, y, hidden=4, steps=1, learning_rate=0.1, loss="hinge", seed=0)
    with pytest.raises(ValueError, match="hidden"):
        neural_net.fit_predict(x, y, hidden=0, steps=1, learning_rate=0.1, loss="squared", seed=0)
