"""Exact posterior mean of a mixture of Gaussian-linear models, every prompt length at once.

Prior: w ~ sum_c α_c N(μ_c, Σ_c), y = x·w + σε. Given the first k examples, the posterior is
again a mixture with weights β_c ∝ α_c p_c(y_<k) (the component's evidence) and the Bayes
prediction is sum_c β_c ŷ_c. One solver serves every class of docs/function_classes.md:
  * Gaussian mixture: components N(±scale·e_i, I)                  (GaussianComponents)
  * sparse linear: one component per support S, Σ_S = I on S       (GaussianComponents)
  * finite task pool: Σ_c = 0, the discrete posterior over the pool (PointComponents)
  * sign vectors: 2^d point components, enumerated in chunks       (enumeration.py)
  * mixtures of classes: several families in one call, their α's including the class weight.

Log space throughout: weights are logsumexp'ed online over chunks of components, so memory is
bounded by one chunk whatever the number of components. Noiseless (σ = 0) evidences are limits
(predictive.py): a component that has explained d of the k examples exactly outranks one that
explained fewer, inconsistent components get weight 0, and only among equals do the finite
parts compare. The ranking is kept as an integer "priority" beside the log weight.

Layout inside: x_KxDxB, y_KxB (batch minor); a chunk's lanes are (component, prompt) pairs.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from icl_jax.baselines import precision
from icl_jax.baselines.predictive import sequential_predictive

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class GaussianComponents:
    """Components w ~ N(mean_c, F_c F_cᵀ). F_c is either the identity on the coordinates
    `features_CxR` (sparse supports, isotropic components: a gather, no arithmetic) or a dense
    `factor_CxDxR`. log_prior_C: log α_c, including any class weight."""

    log_prior_C: np.ndarray
    mean_CxD: np.ndarray
    features_CxR: np.ndarray | None = None
    factor_CxDxR: np.ndarray | None = None
    chunk: int = 4  # components per step: keeps a step's lanes (chunk x B) cache-sized

    def __post_init__(self):
        if (self.features_CxR is None) == (self.factor_CxDxR is None):
            raise ValueError("give exactly one of features_CxR and factor_CxDxR")


@dataclasses.dataclass(frozen=True)
class PointComponents:
    """Components with Σ_c = 0: w = w_c exactly (a finite task pool)."""

    log_prior_M: np.ndarray
    w_MxD: np.ndarray
    chunk: int = 256


Family = Union[GaussianComponents, PointComponents, "enumeration.SignVectors"]  # noqa: F821


class Stats(NamedTuple):
    """Online logsumexp state per (k, prompt), over the components seen so far, restricted to
    those of the highest priority p (consistent first, then most exactly explained rows)."""

    priority_KxB: Array  # int
    max_KxB: Array  # m: the largest log weight among them
    sum_KxB: Array  # sum e,  e = exp(log weight - m)
    pred_KxB: Array  # sum e * prediction
    ent_KxB: Array  # sum e * (log weight - m), for the entropy
    true_KxB: Array  # sum e over the true component (when known)
    w_KxBxD: Array  # sum e * posterior mean of w (zeros(K, B, 0) when not asked for)


class MixturePosterior(NamedTuple):
    yhat_BxK: np.ndarray  # the Bayes prediction of y_k from the k examples before it
    w_BxKxD: np.ndarray | None  # posterior mean of w given those k examples
    true_weight_BxK: np.ndarray | None  # posterior weight of the component that made the prompt
    entropy_BxK: np.ndarray  # entropy of the component posterior (nats)
    family_weight_BxKxF: np.ndarray  # posterior weight of each family (class) passed in


def _chunk_stats(mean_KxCxB, logw_KxCxB, priority_KxCxB, is_true_CxB, w_KxCxBxD) -> Stats:
    p = jnp.max(priority_KxCxB, axis=1)
    sel = priority_KxCxB == p[:, None]
    m = jnp.max(jnp.where(sel, logw_KxCxB, -jnp.inf), axis=1)
    m_safe = jnp.where(jnp.isfinite(m), m, 0.0)
    diff = logw_KxCxB - m_safe[:, None]
    e = jnp.where(sel & jnp.isfinite(logw_KxCxB), jnp.exp(diff), 0.0)
    return Stats(p, m, jnp.sum(e, 1), jnp.sum(e * mean_KxCxB, 1),
                 jnp.sum(jnp.where(e > 0, e * diff, 0.0), 1), jnp.sum(e * is_true_CxB[None], 1),
                 jnp.einsum("kcb,kcbd->kbd", e, w_KxCxBxD))


def merge(a: Stats, b: Stats) -> Stats:
    """The state over the components of a and of b."""
    p = jnp.maximum(a.priority_KxB, b.priority_KxB)
    ma = jnp.where(a.priority_KxB == p, a.max_KxB, -jnp.inf)
    mb = jnp.where(b.priority_KxB == p, b.max_KxB, -jnp.inf)
    m = jnp.maximum(ma, mb)
    m_safe = jnp.where(jnp.isfinite(m), m, 0.0)

    def factor(mx):
        return jnp.where(jnp.isfinite(mx), jnp.exp(mx - m_safe), 0.0)

    fa, fb = factor(ma), factor(mb)
    shift_a = jnp.where(jnp.isfinite(ma), ma - m_safe, 0.0)
    shift_b = jnp.where(jnp.isfinite(mb), mb - m_safe, 0.0)
    return Stats(
        p, m, fa * a.sum_KxB + fb * b.sum_KxB, fa * a.pred_KxB + fb * b.pred_KxB,
        fa * (a.ent_KxB + shift_a * a.sum_KxB) + fb * (b.ent_KxB + shift_b * b.sum_KxB),
        fa * a.true_KxB + fb * b.true_KxB,
        fa[..., None] * a.w_KxBxD + fb[..., None] * b.w_KxBxD)


def empty_stats(K: int, B: int, D: int, dtype) -> Stats:
    z = jnp.zeros((K, B), dtype)
    return Stats(jnp.full((K, B), -2, jnp.int32), jnp.full((K, B), -jnp.inf, dtype), z, z, z, z,
                 jnp.zeros((K, B, D), dtype))


def evidence_priority(logp_KxN: Array, degenerate_KxN: Array, consistent_KxN: Array,
                      log_prior_N: Array) -> tuple[Array, Array]:
    """(log weight, priority) of each lane at every k from its per-step predictive, using the
    rows j < k only (exclusive prefix sums: row k is the query)."""
    K = logp_KxN.shape[0]

    def exclusive(a):
        return jnp.concatenate([jnp.zeros_like(a[:1]), jnp.cumsum(a, axis=0)[:-1]], axis=0)

    logw = log_prior_N + exclusive(logp_KxN)
    bad = exclusive((~consistent_KxN).astype(jnp.int32))  # inconsistent rows before k
    n_degenerate = exclusive(degenerate_KxN.astype(jnp.int32))
    priority = jnp.where(bad == 0, K + 1, 0) + n_degenerate
    return logw, priority


@functools.partial(jax.jit, static_argnames=("noise_std", "chunk", "with_weights", "dense"))
def _gaussian_stats(x_KxDxB, y_KxB, scale_B, log_prior_C, mean_CxD, feature_arg, true_B,
                    noise_std: float, tol: float, chunk: int, with_weights: bool, dense: bool) -> Stats:
    K, D, B = x_KxDxB.shape
    C = log_prior_C.shape[0]
    n_chunks = -(-C // chunk)
    pad = n_chunks * chunk - C
    # padded components: prior weight 0 (log -inf) and a priority below every real one
    log_prior_C = jnp.concatenate([log_prior_C, jnp.full((pad,), -jnp.inf, log_prior_C.dtype)])
    mean_CxD = jnp.concatenate([mean_CxD, jnp.zeros((pad, D), mean_CxD.dtype)])
    feature_arg = jnp.concatenate([feature_arg, jnp.zeros((pad,) + feature_arg.shape[1:], feature_arg.dtype)])
    real_C = jnp.arange(n_chunks * chunk) < C

    def body(stats, inp):
        index_c, prior_c, mean_cxD, feat, real_c = inp
        if dense:  # a = x F_c
            a_KxRxcxB = jnp.einsum("kdb,cdr->krcb", x_KxDxB, feat)
        else:
            a_KxRxcxB = jnp.moveaxis(x_KxDxB[:, feat, :], 1, 2)  # K x c x R x B -> K x R x c x B
        R = a_KxRxcxB.shape[1]
        xmu_KxcxB = jnp.einsum("kdb,cd->kcb", x_KxDxB, mean_cxD)
        t_KxcxB = y_KxB[:, None] - xmu_KxcxB
        scale_N = jnp.broadcast_to(scale_B, (chunk, B)).reshape(-1)
        pred = sequential_predictive(a_KxRxcxB.reshape(K, R, -1), t_KxcxB.reshape(K, -1), noise_std,
                                     scale_N, tol, with_weights)
        mean = pred.mean_KxN.reshape(K, chunk, B) + xmu_KxcxB
        logw, priority = evidence_priority(pred.logp_KxN, pred.degenerate_KxN, pred.consistent_KxN,
                                           jnp.repeat(prior_c, B))
        priority = jnp.where(jnp.repeat(real_c, B)[None], priority, -1).reshape(K, chunk, B)
        if with_weights:  # w = μ_c + F_c v
            v_KxRxcxB = pred.weights_KxRxN.reshape(K, R, chunk, B)
            F_cxDxR = feat if dense else jax.nn.one_hot(feat, D, dtype=x_KxDxB.dtype).transpose(0, 2, 1)
            w = mean_cxD[None, :, None, :] + jnp.einsum("krcb,cdr->kcbd", v_KxRxcxB, F_cxDxR)
        else:
            w = jnp.zeros((K, chunk, B, 0), x_KxDxB.dtype)
        is_true = (index_c[:, None] == true_B[None]).astype(x_KxDxB.dtype)
        new = _chunk_stats(mean, logw.reshape(K, chunk, B), priority, is_true, w)
        return merge(stats, new), None

    xs = (jnp.arange(n_chunks * chunk).reshape(n_chunks, chunk), log_prior_C.reshape(n_chunks, chunk),
          mean_CxD.reshape(n_chunks, chunk, D), feature_arg.reshape((n_chunks, chunk) + feature_arg.shape[1:]),
          real_C.reshape(n_chunks, chunk))
    init = empty_stats(K, B, D if with_weights else 0, x_KxDxB.dtype)
    stats, _ = jax.lax.scan(body, init, xs)
    return stats


def point_chunk_stats(x_KxDxB, y_KxB, scale_B, log_prior_c, w_cxD, index_c, true_B, noise_std: float,
                      tol: float, with_weights: bool, real_c=None) -> Stats:
    """Stats of a chunk of point components (Σ = 0): the prediction is x·w_c, the predictive
    N(x·w_c, σ²); noiseless, every row is degenerate (c = 1) and must fit to tolerance."""
    K, D, B = x_KxDxB.shape
    c = w_cxD.shape[0]
    mean = jnp.einsum("kdb,cd->kcb", x_KxDxB, w_cxD)
    r = y_KxB[:, None] - mean
    if noise_std > 0:
        logp = -0.5 * jnp.log(2 * jnp.pi * noise_std**2) - 0.5 * (r / noise_std) ** 2
        degenerate, consistent = jnp.zeros(r.shape, bool), jnp.ones(r.shape, bool)
    else:
        logp = jnp.full(r.shape, -0.5 * jnp.log(2 * jnp.pi), r.dtype)
        degenerate, consistent = jnp.ones(r.shape, bool), jnp.abs(r) <= tol * scale_B[None, None]
    logw, priority = evidence_priority(logp.reshape(K, -1), degenerate.reshape(K, -1),
                                       consistent.reshape(K, -1), jnp.repeat(log_prior_c, B))
    priority = priority.reshape(K, c, B)
    if real_c is not None:
        priority = jnp.where(real_c[None, :, None], priority, -1)
    w = (jnp.broadcast_to(w_cxD[None, :, None, :], (K, c, B, D)) if with_weights
         else jnp.zeros((K, c, B, 0), x_KxDxB.dtype))
    is_true = (index_c[:, None] == true_B[None]).astype(x_KxDxB.dtype)
    return _chunk_stats(mean, logw.reshape(K, c, B), priority, is_true, w)


@functools.partial(jax.jit, static_argnames=("noise_std", "chunk", "with_weights"))
def _point_stats(x_KxDxB, y_KxB, scale_B, log_prior_M, w_MxD, true_B, noise_std: float, tol: float,
                 chunk: int, with_weights: bool) -> Stats:
    K, D, B = x_KxDxB.shape
    M = w_MxD.shape[0]
    n_chunks = -(-M // chunk)
    pad = n_chunks * chunk - M
    log_prior_M = jnp.concatenate([log_prior_M, jnp.full((pad,), -jnp.inf, log_prior_M.dtype)])
    w_MxD = jnp.concatenate([w_MxD, jnp.zeros((pad, D), w_MxD.dtype)])
    real = jnp.arange(n_chunks * chunk) < M

    def body(stats, inp):
        index_c, prior_c, w_cxD, real_c = inp
        new = point_chunk_stats(x_KxDxB, y_KxB, scale_B, prior_c, w_cxD, index_c, true_B, noise_std, tol,
                                with_weights, real_c)
        return merge(stats, new), None

    xs = (jnp.arange(n_chunks * chunk).reshape(n_chunks, chunk), log_prior_M.reshape(n_chunks, chunk),
          w_MxD.reshape(n_chunks, chunk, D), real.reshape(n_chunks, chunk))
    stats, _ = jax.lax.scan(body, empty_stats(K, B, D if with_weights else 0, x_KxDxB.dtype), xs)
    return stats


def family_stats(family: Family, x_KxDxB, y_KxB, scale_B, true_B, noise_std: float, tol: float,
                 with_weights: bool) -> Stats:
    f64 = jnp.float64
    if isinstance(family, GaussianComponents):
        dense = family.factor_CxDxR is not None
        arg = jnp.asarray(family.factor_CxDxR, f64) if dense else jnp.asarray(family.features_CxR, jnp.int32)
        return _gaussian_stats(x_KxDxB, y_KxB, scale_B, jnp.asarray(family.log_prior_C, f64),
                               jnp.asarray(family.mean_CxD, f64), arg, true_B, noise_std, tol,
                               min(family.chunk, len(family.log_prior_C)), with_weights, dense)
    if isinstance(family, PointComponents):
        return _point_stats(x_KxDxB, y_KxB, scale_B, jnp.asarray(family.log_prior_M, f64),
                            jnp.asarray(family.w_MxD, f64), true_B, noise_std, tol,
                            min(family.chunk, len(family.log_prior_M)), with_weights)
    return family.stats(x_KxDxB, y_KxB, scale_B, true_B, noise_std, tol, with_weights)


@precision.float64
def mixture_posterior(x_BxKxD, y_BxK, families: Sequence[Family], noise_std: float, *,
                      true_index_FxB: Sequence | None = None, with_weights: bool = False,
                      consistency_tol: float | None = None) -> MixturePosterior:
    """The Bayes prediction of y_k from the k examples before it, for every k, under the prior
    that puts mass exp(log_prior) on each component of each family (the log priors of all
    families together should sum to one in probability; they are not renormalized).

    true_index_FxB: per family, the index of the component that generated each prompt (-1:
    not in this family); gives `true_weight_BxK`. with_weights: also the posterior mean of w.
    consistency_tol: noiseless only (precision.consistency_tolerance(y.dtype) by default).
    """
    if consistency_tol is None:
        consistency_tol = precision.consistency_tolerance(np.asarray(y_BxK).dtype)
    x_KxDxB = jnp.transpose(jnp.asarray(x_BxKxD, jnp.float64), (1, 2, 0))
    y_KxB = jnp.asarray(y_BxK, jnp.float64).T
    K, D, B = x_KxDxB.shape
    scale_B = jnp.maximum(jnp.max(jnp.abs(y_KxB), axis=0), jnp.finfo(jnp.float64).tiny)
    per_family = []
    for i, family in enumerate(families):
        true_B = (jnp.full((B,), -1, jnp.int32) if true_index_FxB is None
                  else jnp.asarray(true_index_FxB[i], jnp.int32))
        per_family.append(family_stats(family, x_KxDxB, y_KxB, scale_B, true_B, float(noise_std),
                                       float(consistency_tol), with_weights))
    return finish(per_family, with_weights, true_index_FxB is not None)


def finish(per_family: list[Stats], with_weights: bool, with_true: bool) -> MixturePosterior:
    """The posterior from the online states of every family: predictions, w, weights."""
    total = per_family[0]
    for s in per_family[1:]:
        total = merge(total, s)
    m_safe = jnp.where(jnp.isfinite(total.max_KxB), total.max_KxB, 0.0)
    shares = [jnp.where((s.priority_KxB == total.priority_KxB) & jnp.isfinite(s.max_KxB),
                        jnp.exp(s.max_KxB - m_safe) * s.sum_KxB, 0.0) / total.sum_KxB for s in per_family]
    return MixturePosterior(
        yhat_BxK=(total.pred_KxB / total.sum_KxB).T,
        w_BxKxD=jnp.transpose(total.w_KxBxD / total.sum_KxB[..., None], (1, 0, 2)) if with_weights else None,
        true_weight_BxK=(total.true_KxB / total.sum_KxB).T if with_true else None,
        entropy_BxK=(jnp.log(total.sum_KxB) - total.ent_KxB / total.sum_KxB).T,
        family_weight_BxKxF=jnp.stack(shares, axis=-1).transpose(1, 0, 2))


@precision.float64
def component_posterior(x_BxKxD, y_BxK, family: GaussianComponents | PointComponents, noise_std: float, *,
                        consistency_tol: float | None = None) -> np.ndarray:
    """beta_BxKxC: the posterior weight of every component given the k examples before k (all
    C at once: for the small families of a Gaussian mixture, say). Rows sum to one."""
    if consistency_tol is None:
        consistency_tol = precision.consistency_tolerance(np.asarray(y_BxK).dtype)
    x_KxDxB = jnp.transpose(jnp.asarray(x_BxKxD, jnp.float64), (1, 2, 0))
    y_KxB = jnp.asarray(y_BxK, jnp.float64).T
    scale_B = jnp.maximum(jnp.max(jnp.abs(y_KxB), axis=0), jnp.finfo(jnp.float64).tiny)
    return _component_posterior(x_KxDxB, y_KxB, scale_B, family, float(noise_std), float(consistency_tol))


def _component_posterior(x_KxDxB, y_KxB, scale_B, family, noise_std: float, tol: float) -> Array:
    K, D, B = x_KxDxB.shape
    f64 = jnp.float64
    if isinstance(family, PointComponents):
        w_CxD = jnp.asarray(family.w_MxD, f64)
        log_prior_C = jnp.asarray(family.log_prior_M, f64)
        a_KxRxN, mean_KxCxB = jnp.zeros((K, 0, w_CxD.shape[0] * B), f64), None
    else:
        w_CxD = jnp.asarray(family.mean_CxD, f64)
        log_prior_C = jnp.asarray(family.log_prior_C, f64)
        if family.factor_CxDxR is not None:
            a = jnp.einsum("kdb,cdr->krcb", x_KxDxB, jnp.asarray(family.factor_CxDxR, f64))
        else:
            a = jnp.moveaxis(x_KxDxB[:, jnp.asarray(family.features_CxR), :], 1, 2)
        a_KxRxN = a.reshape(K, a.shape[1], -1)
    C = w_CxD.shape[0]
    t_KxN = (y_KxB[:, None] - jnp.einsum("kdb,cd->kcb", x_KxDxB, w_CxD)).reshape(K, -1)
    scale_N = jnp.broadcast_to(scale_B, (C, B)).reshape(-1)
    # Σ = 0 (points) is the R = 0 case of the same predictive: mean 0, variance σ² or a point mass
    pred = sequential_predictive(a_KxRxN, t_KxN, noise_std, scale_N, tol) if a_KxRxN.shape[1] else None
    if pred is None:
        if noise_std > 0:
            logp = -0.5 * jnp.log(2 * jnp.pi * noise_std**2) - 0.5 * (t_KxN / noise_std) ** 2
            degenerate, consistent = jnp.zeros(t_KxN.shape, bool), jnp.ones(t_KxN.shape, bool)
        else:
            logp = jnp.full(t_KxN.shape, -0.5 * jnp.log(2 * jnp.pi), f64)
            degenerate, consistent = jnp.ones(t_KxN.shape, bool), jnp.abs(t_KxN) <= tol * scale_N[None]
    else:
        logp, degenerate, consistent = pred.logp_KxN, pred.degenerate_KxN, pred.consistent_KxN
    logw, priority = evidence_priority(logp, degenerate, consistent, jnp.repeat(log_prior_C, B))
    logw, priority = logw.reshape(K, C, B), priority.reshape(K, C, B)
    top = priority == jnp.max(priority, axis=1, keepdims=True)
    logw = jnp.where(top, logw, -jnp.inf)
    beta = jnp.exp(logw - jax.scipy.special.logsumexp(logw, axis=1, keepdims=True))
    return jnp.transpose(beta, (2, 0, 1))
