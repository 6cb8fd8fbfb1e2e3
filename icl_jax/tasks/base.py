"""What every task gives training and evaluation, whatever its family.

A task samples prompts inside the jitted step; its `loss` names how the model's read-out is
scored (losses.py), its `family` names which scorer `evaluate` runs
(evaluation/run.py), and `label_classes` how labels enter the y tokens (models/tokens.py).
Legend: B prompts, K points per prompt, D input width, P task parameters per prompt.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import jax
import jax.numpy as jnp

LOSSES = ("squared", "logistic", "cross_entropy")


class Prompts(NamedTuple):
    x_BxKxD: jax.Array
    y_BxK: jax.Array  # real values (squared), ±1 (logistic) or class indices (cross_entropy)
    w_BxD: jax.Array  # the task parameters that generated y, B×P (for probes and oracles)


class Task(Protocol):
    name: str
    family: str  # the scorer evaluate runs: "linear", ...
    n_dims: int
    n_points: int
    loss: str  # one of LOSSES
    label_classes: int  # cross_entropy: labels are 0..C-1 and enter y tokens one-hot; else 0

    @property
    def normalizer(self) -> float:
        """The per-example loss of the trivial predictor (E[y²] for regression; 1 otherwise)."""

    def sample(self, key: jax.Array, batch_size: int, active_dims=None) -> Prompts:
        """`active_dims` (may be traced) is the dimension curriculum; tasks without one ignore it."""


class RegressionTask(Task, Protocol):
    """A task with real labels y = f_w(x) (+ σ·ε) whose f the task computes itself: the linear,
    Fourier and nonlinear families. Scorers and baselines ask it rather than its name."""

    noise_std: float

    def labels(self, x_BxKxD, w_BxP, xp=jnp):
        """The noiseless labels of the prompts' own task parameters; `xp` is jnp (inside the
        sampler) or np (float64 labels for exact scoring, evaluation/prompts.py)."""
