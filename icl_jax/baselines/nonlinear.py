"""Baselines for the nonlinear regression classes (tasks/nonlinear.py) beyond the linear
family's classic learners: greedy depth-limited regression trees, and the 2-layer net trained
in context (neural_net.py) with the settings `evaluate` uses.

Greedy trees are scikit-learn's CART (DecisionTreeRegressor, squared error, best split),
fitted once per prompt and prefix: a Python loop over B·K small fits (~0.2 ms each), the one
baseline here that is not a single vectorized call. Greedy CART is the field's comparison
(Garg et al. 2022 use it and XGBoost); the exact posterior over trees (d^(2^t - 1) split
assignments) is out of reach. scikit-learn is imported on use: without it the tree
baseline is unavailable (`greedy_tree_available`) and evaluate says so.
Legend: B prompts, K points, D input width.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from icl_jax.baselines import neural_net

# The in-context net: h = 100 as the target networks, full-batch Adam (Garg et al. train theirs
# with Adam too). Checked on 64 relu_net prompts at d = 4 (17 points) and d = 20 (41 points):
# 500 steps, or a learning rate of 3e-2, change its error by < 0.01 of the label scale.
NET_HIDDEN, NET_STEPS, NET_LEARNING_RATE = 100, 200, 1e-2


def greedy_tree_available() -> bool:
    return importlib.util.find_spec("sklearn") is not None


def greedy_tree(x_BxKxD, y_BxK, max_depth: int, seed: int = 0) -> np.ndarray:
    """yhat_BxK: at every k, a CART tree of depth <= max_depth fitted on the examples i < k
    predicts y_k (0 at k = 0)."""
    from sklearn.tree import DecisionTreeRegressor

    x, y = np.asarray(x_BxKxD, np.float64), np.asarray(y_BxK, np.float64)
    B, K, _ = x.shape
    yhat = np.zeros((B, K))
    tree = DecisionTreeRegressor(max_depth=max_depth, random_state=seed)
    for b in range(B):
        for k in range(1, K):
            yhat[b, k] = tree.fit(x[b, :k], y[b, :k]).predict(x[b, k:k + 1])[0]
    return yhat


def trained_net(x_BxKxD, y_BxK, seed: int) -> np.ndarray:
    """The in-context 2-layer net (squared loss) with the module's settings."""
    return np.asarray(neural_net.fit_predict(x_BxKxD, y_BxK, hidden=NET_HIDDEN, steps=NET_STEPS,
                                             learning_rate=NET_LEARNING_RATE, loss="squared", seed=seed))
