"""Nonlinear regression (docs/function_classes.md), x ~ N(0, I_d), a fresh function per prompt:

  relu_net       y = √(2/h) relu(x W1) W2, W1 (d×h), W2 (h) ~ N(0, 1): E[y²] = E|x|² = d
                 (E relu(z)² = Var z / 2), so the normalized loss matches linear regression's.
  decision_tree  a full binary tree of depth t: every internal node splits on x_j > 0 with j
                 uniform over the active coordinates, leaves N(0, 1): E[y²] = 1.

The dims curriculum works as for linear classes: coordinates past `active_dims` are zero in x
and trees split only on active coordinates.
Task parameters per prompt (w_BxP): relu_net [W1 row-major (d·h), W2 (h)]; decision_tree
[split coordinate of each internal node in heap order (2^t - 1, as floats), leaf values (2^t)].
Legend: B prompts, K points, D = task.n_dims, H hidden units, I internal nodes, L leaves.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from icl_jax.tasks.base import Prompts

_X, _PARAMS, _NOISE, _SPLITS = 0, 1, 2, 3


def relu_net_labels(x_BxKxD, w_BxP, hidden: int, xp=jnp):
    B, _, D = x_BxKxD.shape
    w1_BxDxH = w_BxP[:, :D * hidden].reshape(B, D, hidden)
    w2_BxH = w_BxP[:, D * hidden:]
    h_BxKxH = xp.maximum(xp.einsum("bkd,bdh->bkh", x_BxKxD, w1_BxDxH), 0.0)
    return xp.einsum("bkh,bh->bk", h_BxKxH, w2_BxH) * np.sqrt(2.0 / hidden)


def tree_leaf(x_BxKxD, split_BxI, depth: int, xp=jnp):
    """Leaf index (0..2^depth - 1) each x reaches: from the root (heap node 0) go to child
    2i+1 when x_j <= 0 and 2i+2 when x_j > 0, j the node's split coordinate."""
    B, K, _ = x_BxKxD.shape
    node_BxK = xp.zeros((B, K), dtype=np.int32)
    for _ in range(depth):
        j_BxK = xp.take_along_axis(split_BxI, node_BxK, axis=1).astype(np.int32)
        right = xp.take_along_axis(x_BxKxD, j_BxK[..., None], axis=2)[..., 0] > 0
        node_BxK = 2 * node_BxK + 1 + right.astype(np.int32)
    return node_BxK - (2**depth - 1)


def decision_tree_labels(x_BxKxD, w_BxP, depth: int, xp=jnp):
    n_internal = 2**depth - 1
    leaf_BxK = tree_leaf(x_BxKxD, w_BxP[:, :n_internal], depth, xp)
    return xp.take_along_axis(w_BxP[:, n_internal:], leaf_BxK, axis=1)


@dataclasses.dataclass(frozen=True)
class NonlinearTask:
    name: str  # relu_net | decision_tree
    n_dims: int
    n_points: int
    hidden: int  # relu_net
    depth: int  # decision_tree
    noise_std: float
    family = "nonlinear"
    loss = "squared"
    label_classes = 0

    @property
    def normalizer(self) -> float:
        return (self.n_dims if self.name == "relu_net" else 1.0) + self.noise_std**2

    @property
    def tree_depth(self) -> int | None:
        """The depth of the target trees (decision_tree), None for other classes: greedy trees
        of that depth are a baseline only where the targets are trees."""
        return self.depth if self.name == "decision_tree" else None

    def labels(self, x_BxKxD, w_BxP, xp=jnp):
        if self.name == "relu_net":
            return relu_net_labels(x_BxKxD, w_BxP, self.hidden, xp)
        return decision_tree_labels(x_BxKxD, w_BxP, self.depth, xp)

    def sample(self, key: jax.Array, batch_size: int, active_dims=None) -> Prompts:
        D = self.n_dims
        active = D if active_dims is None else active_dims
        mask_D = (jnp.arange(D) < active).astype(jnp.float32)
        x = jax.random.normal(jax.random.fold_in(key, _X), (batch_size, self.n_points, D)) * mask_D
        params_key = jax.random.fold_in(key, _PARAMS)
        if self.name == "relu_net":
            w = jax.random.normal(params_key, (batch_size, D * self.hidden + self.hidden))
        else:
            n_internal = 2**self.depth - 1
            splits = jax.random.randint(jax.random.fold_in(key, _SPLITS), (batch_size, n_internal), 0, active)
            leaves = jax.random.normal(params_key, (batch_size, 2**self.depth))
            w = jnp.concatenate([splits.astype(jnp.float32), leaves], axis=1)
        y = self.labels(x, w)
        if self.noise_std:
            y = y + self.noise_std * jax.random.normal(jax.random.fold_in(key, _NOISE), y.shape)
        return Prompts(x, y, w)


# ---- the family's registry entry (tasks/__init__.py) ----
NAMES = ("relu_net", "decision_tree")
FAMILY = "nonlinear"
# The keys of config.task this family reads besides name, n_dims and n_points.
CONFIG_KEYS = {
    "noise_std": 0.0,  # label noise σ
    "relu_hidden": 100,  # relu_net: hidden units h of the target network
    "tree_depth": 4,  # decision_tree: depth of the full binary tree
}
MAX_TREE_DEPTH = 12  # 2^12 leaves per prompt already; deeper trees mean huge task parameters


def check_config(t) -> None:
    from icl_jax.errors import UserError

    if t.noise_std < 0:
        raise UserError(f"task.noise_std must be >= 0, got {t.noise_std}")
    if t.name == "relu_net" and t.relu_hidden < 1:
        raise UserError(f"task.relu_hidden must be >= 1, got {t.relu_hidden}")
    if t.name == "decision_tree" and not 1 <= t.tree_depth <= MAX_TREE_DEPTH:
        raise UserError(f"task.tree_depth must lie in [1, {MAX_TREE_DEPTH}], got {t.tree_depth}")


def label_classes(t) -> int:
    return 0


def make(t) -> NonlinearTask:
    return NonlinearTask(t.name, t.n_dims, t.n_points, int(t.relu_hidden), int(t.tree_depth), float(t.noise_std))
