"""Comparing algorithms, not only their errors (docs/evaluation.md).

* prediction_differences: E[(ŷ_a - ŷ_b)^2] per k for every pair of predictors, on the same
  prompts (two predictors with the same error curve can still disagree on every prompt).
* the weight probe: a predictor that is linear in its query, ŷ_k = x_k·w_k, reveals w_k by its
  answers to fresh queries with the same k examples before them. `probe_prompts` builds those
  prompts for several k in one batch (a causal predictor never looks past the query, so the
  probe sits at position k and the later positions are zeros), `implied_weights` fits w by
  least squares on the answers and says how linear they were (R^2), and `weight_agreement`
  compares the model's w with each baseline's w (cosine, squared error).

Cost of the probe: num_prompts x n_probes x len(ks) sequences in one forward pass. evaluate
probes k in {d/2, d, 2d} (clipped to the prompt), 2d probes, 128 prompts: 768 d-length
sequences for d = 3 ... 15,360 for d = 20, about 12 evaluation sets of 1280.
"""

from __future__ import annotations

import itertools
from typing import Callable, NamedTuple

import jax
import numpy as np

from icl_jax import rng
from icl_jax.evaluation import statistics

Predictor = Callable[[np.ndarray, np.ndarray], np.ndarray]


def prediction_differences(predictions: dict[str, np.ndarray], normalizer: float, counts_RxN: np.ndarray
                           ) -> dict[str, dict[str, list[float]]]:
    """{"a|b": curve} of the normalized mean squared difference of a's and b's predictions at
    every k (with the paired bootstrap interval), for every unordered pair."""
    out = {}
    for a, b in itertools.combinations(predictions, 2):
        diff = statistics.squared_errors(predictions[a], predictions[b]) / normalizer
        out[f"{a}|{b}"] = statistics.curve(diff, counts_RxN)
    return out


def probe_ks(n_dims: int, n_points: int) -> list[int]:
    """The k probed by evaluate: d/2, d and 2d examples, those that fit in the prompt."""
    return sorted({k for k in (max(1, n_dims // 2), n_dims, 2 * n_dims) if 1 <= k < n_points})


def probe_queries(seed: int, n_probes: int, n_dims: int) -> np.ndarray:
    """Fresh probe inputs q_PxD ~ N(0, I), from their own random stream."""
    return np.asarray(jax.random.normal(rng.derive(seed, rng.PROBE), (n_probes, n_dims)), np.float32)


class Probe(NamedTuple):
    x_MxLxD: np.ndarray  # M = N * len(ks) * P probe prompts of length L = max(ks) + 1
    y_MxL: np.ndarray


def probe_prompts(x_NxKxD: np.ndarray, y_NxK: np.ndarray, ks: list[int], q_PxD: np.ndarray) -> Probe:
    """For prompt n, probed k and probe p: the first k examples of n, then q_p at position k,
    zeros after it (never seen by a causal predictor). Ordered (n, k, p)."""
    N, K, D = x_NxKxD.shape
    L, P = max(ks) + 1, len(q_PxD)
    x = np.zeros((N, len(ks), P, L, D), np.float32)
    y = np.zeros((N, len(ks), P, L), np.float32)
    for i, k in enumerate(ks):
        x[:, i, :, :k] = x_NxKxD[:, None, :k]
        y[:, i, :, :k] = y_NxK[:, None, :k]
        x[:, i, :, k] = q_PxD[None]
    return Probe(x.reshape(-1, L, D), y.reshape(-1, L))


def implied_weights(yhat_MxL: np.ndarray, ks: list[int], q_PxD: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(w_NxKpxD, r2_NxKp): the least-squares w with q·w ≈ the answers at the probe position, and
    the fraction of the answers' variance it explains (1: the predictor is linear there)."""
    P, D = q_PxD.shape
    answers = np.asarray(yhat_MxL, np.float64).reshape(-1, len(ks), P, yhat_MxL.shape[-1])
    a_NxKpxP = np.stack([answers[:, i, :, k] for i, k in enumerate(ks)], axis=1)
    q = q_PxD.astype(np.float64)
    w = a_NxKpxP @ np.linalg.pinv(q).T
    residual = a_NxKpxP - w @ q.T
    centered = a_NxKpxP - a_NxKpxP.mean(-1, keepdims=True)
    r2 = 1 - (residual**2).sum(-1) / np.maximum((centered**2).sum(-1), 1e-300)
    return w, r2


def weight_agreement(w_model_NxKpxD: np.ndarray, others: dict[str, np.ndarray], normalizer: float
                     ) -> dict[str, dict[str, list[float]]]:
    """Per probed k, mean over prompts of cos(w_model, w_b) and of |w_model - w_b|^2 / E[y^2]
    (the squared error's expected effect on a prediction with x ~ N(0, I), normalized like
    the loss). A zero w (k with no information, the zero predictor) has cosine 0."""
    out = {}
    for name, w in others.items():
        a, b = w_model_NxKpxD.astype(np.float64), np.asarray(w, np.float64)
        norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
        cosine = np.where(norms > 0, (a * b).sum(-1) / np.where(norms > 0, norms, 1.0), 0.0)
        out[name] = {"cosine": cosine.mean(0).tolist(),
                     "squared_error": (((a - b) ** 2).sum(-1) / normalizer).mean(0).tolist()}
    return out
