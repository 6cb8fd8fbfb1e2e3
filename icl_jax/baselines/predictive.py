"""The sequential posterior predictive of a Gaussian-linear model, for every prefix at once.

Whitened model on N independent lanes (lane = one component of a mixture on one prompt):
    v ~ N(0, I_R),   t_k = a_k · v + σ ε_k,   ε_k ~ N(0, 1).
For every k it returns the predictive distribution of t_k given the rows j < k, which is
all the mixture solver needs: the prediction (its mean) and the evidence, because
log p(t_0..t_{k-1}) = sum_{j<k} log p(t_j | t_<j). A prior N(μ, Σ = F Fᵀ) on w with
y = x·w + σε is this model with a = x F and t = y - x·μ (see mixture.py).

Layout: a_KxRxN, t_KxN, lanes last (the long, SIMD-friendly axis), float64 (precision.py).

σ > 0: square-root RLS, R_0 = σ I, one Givens rotation per pivot (orthogonal updates: the
  normal equations would square the conditioning). With c_i the cosines applied to row k,
  γ = prod c_i and τ the target left after the last pivot: predictive variance σ²/γ²,
  a-priori error τ/γ, so log p = -½ log(2πσ²) + log γ - ½ (τ/σ)² (McWhirter's QR-RLS:
  no back substitution, no cancellation).
σ = 0: the limit σ → 0, which is not "a small σ" (docs/baselines.md): a row either adds a new
  direction (innovative: the predictive has finite variance ν², ν = its distance to the span
  of the earlier rows) or lies in their span (degenerate: the predictive is a point mass,
  variance σ² c with c = 1/γ², and the row is consistent or not). The evidence of a
  component is then σ^(-#degenerate) × (finite part) × [all degenerate rows consistent], so
  mixtures compare components by (consistent, #degenerate) first and by the finite part
  second (mixture.py). To get ν and the min-norm prediction right the rows are first put in
  an orthonormal basis of their own span (Gram-Schmidt, twice projected, with a relative
  rank tolerance), in which a new direction is a new coordinate; the Givens recursion then
  runs from R_0 = 0 in those coordinates (as in regression.py).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array

# A row whose Gram-Schmidt residual is below this fraction of the lane's largest row norm
# lies in the span of the earlier rows. Exactly dependent rows (zero rows, duplicates,
# inactive coordinates) leave ~1e-16 in float64; float32-rounded "x_a + x_b" rows ~1e-8.
RANK_TOL = 1e-10


class Predictive(NamedTuple):
    mean_KxN: Array  # E[t_k | t_<k]
    logp_KxN: Array  # log p(t_k | t_<k); for σ = 0 its finite part (see module docstring)
    degenerate_KxN: Array  # bool, σ = 0 only: row k lies in the span of the earlier rows
    consistent_KxN: Array  # bool, σ = 0 only: ... and its residual is within tolerance
    weights_KxRxN: Array | None  # posterior mean of v given t_<k (optional)


def _rotate(rows: list, u: list, a_RxN: Array, t_N: Array, guarded: bool):
    """Absorb one row into the triangular factor (rows[i] holds R_i,i.. as an (R-i)xN array)
    and its rotated target u. Returns rows, u, the target left over, the cosine product and,
    when guarded (σ = 0), the a-priori error frozen where the row opened an empty pivot."""
    g = jnp.ones_like(t_N)
    e_open = jnp.zeros_like(t_N)
    tail = a_RxN
    for i in range(len(rows)):
        r = rows[i]
        piv, ai = r[0], tail[0]
        rho = jnp.hypot(piv, ai)
        if guarded:  # an empty pivot meeting a zero entry: identity (the slot stays empty)
            ok = rho > 0.0
            safe = jnp.where(ok, rho, 1.0)
            c, s = jnp.where(ok, piv / safe, 1.0), jnp.where(ok, ai / safe, 0.0)
            # Opening an empty pivot consumes the row (c = 0): its a-priori error is t / g
            # now; g > 0 here because a row opens at most one pivot (slot coordinates).
            e_open = jnp.where((piv == 0.0) & (ai != 0.0), t_N / jnp.where(g > 0, g, 1.0), e_open)
        else:
            c, s = piv / rho, ai / rho
        rows[i] = c * r + s * tail
        tail = (c * tail - s * r)[1:]
        u[i], t_N = c * u[i] + s * t_N, c * t_N - s * u[i]
        g = g * c
    return rows, u, t_N, g, e_open


def _back_substitute(rows: list, u: list) -> Array:
    """v_RxN = R^-1 u, with v_i = 0 where R_ii = 0 (an empty slot: the min-norm solution)."""
    R = len(rows)
    v = [None] * R
    for i in reversed(range(R)):
        acc = u[i]
        for j in range(i + 1, R):
            acc = acc - rows[i][j - i] * v[j]
        d = rows[i][0]
        v[i] = jnp.where(d != 0.0, acc / jnp.where(d != 0.0, d, 1.0), 0.0)
    return jnp.stack(v)


def _gram_schmidt_row(q_SxRxN: Array, count_N: Array, a_RxN: Array, tol_N: Array):
    """Coordinates of row a in the orthonormal slot basis q (unfilled slots are exactly 0),
    opening slot `count` when a leaves the span by more than tol. Two projection passes:
    one leaves ~u·|a| of a inside the span, two ~u²·|a|."""
    S = q_SxRxN.shape[0]
    v, coef = a_RxN, jnp.zeros_like(a_RxN)
    for _ in range(2):
        c_SxN = jnp.sum(q_SxRxN * v[None], axis=1)
        v = v - jnp.sum(q_SxRxN * c_SxN[:, None], axis=0)
        coef = coef + c_SxN
    nu = jnp.sqrt(jnp.sum(v * v, axis=0))
    opens = (nu > tol_N) & (count_N < S)
    new_SxN = (jnp.arange(S)[:, None] == count_N[None]) & opens[None]
    q_SxRxN = jnp.where(new_SxN[:, None], (v / jnp.where(opens, nu, 1.0))[None], q_SxRxN)
    coef = jnp.where(new_SxN, nu, coef)
    return q_SxRxN, count_N + opens, coef, opens, nu


@functools.partial(jax.jit, static_argnames=("noise_std", "with_weights"))
def sequential_predictive(a_KxRxN: Array, t_KxN: Array, noise_std: float, scale_N: Array,
                          consistency_tol: float, with_weights: bool = False) -> Predictive:
    """The predictive of t_k given t_<k for every k (k = 0: the prior predictive).

    noise_std is static (it selects the algorithm). scale_N: a per-lane label scale (e.g. the
    prompt's largest |y|): a σ = 0 degenerate row is consistent when its residual, in units
    of its own predictive scale (γ × residual), is at most consistency_tol * scale.
    """
    K, R, N = a_KxRxN.shape
    dt = a_KxRxN.dtype
    noisy = noise_std > 0.0
    rows0 = [jnp.zeros((R - i, N), dt).at[0].set(noise_std) for i in range(R)]
    u0 = [jnp.zeros((N,), dt) for _ in range(R)]
    row_norm_N = jnp.sqrt(jnp.max(jnp.sum(a_KxRxN * a_KxRxN, axis=1), axis=0))
    tol_N = RANK_TOL * row_norm_N
    false_N = jnp.zeros((N,), bool)

    def step(carry, inp):
        rows, u, q, count = carry
        a_RxN, t_N = inp
        rows, u = list(rows), list(u)
        weights = None
        if with_weights:  # posterior mean before this row: from rows < k
            v_RxN = _back_substitute(rows, u)
            weights = v_RxN if noisy else jnp.sum(q * v_RxN[:, None], axis=0)
        if noisy:
            rows, u, t_out, g, _ = _rotate(rows, u, a_RxN, t_N, guarded=False)
            e = t_out / g
            logp = -0.5 * math.log(2 * math.pi * noise_std**2) + jnp.log(g) - 0.5 * (t_out / noise_std) ** 2
            out = (t_N - e, logp, false_N, ~false_N)
        else:
            def spanning(rows, u, q, count):
                # Every lane's slots are filled (the usual case after R rows): the row is in
                # the span, its slot coordinates are one projection, and no pivot is empty,
                # so neither Gram-Schmidt nor the guards are needed.
                coef = jnp.sum(q * a_RxN[None], axis=1)
                rows, u, t_out, g, _ = _rotate(rows, u, coef, t_N, guarded=False)
                return rows, u, q, count, t_out, g, jnp.zeros_like(g), false_N, jnp.ones_like(g)

            def general(rows, u, q, count):
                q, count, coef, opened, nu = _gram_schmidt_row(q, count, a_RxN, tol_N)
                rows, u, t_out, g, e_open = _rotate(rows, u, coef, t_N, guarded=True)
                return rows, u, q, count, t_out, g, e_open, opened, nu

            rows, u, q, count, t_out, g, e_open, opened, nu = jax.lax.cond(
                jnp.all(count == R), spanning, general, rows, u, q, count)
            safe_g = jnp.where(opened, 1.0, g)  # g > 0 on rows that open nothing
            safe_nu = jnp.where(opened, nu, 1.0)
            e = jnp.where(opened, e_open, t_out / safe_g)
            logp = jnp.where(opened,
                             -0.5 * jnp.log(2 * math.pi * safe_nu**2) - 0.5 * (e_open / safe_nu) ** 2,
                             -0.5 * math.log(2 * math.pi) + jnp.log(safe_g))
            consistent = opened | (jnp.abs(t_out) <= consistency_tol * scale_N)
            out = (t_N - e, logp, ~opened, consistent)
        return (rows, u, q, count), out + ((weights,) if with_weights else ())

    q0 = jnp.zeros((0 if noisy else R, R, N), dt)
    init = (rows0, u0, q0, jnp.zeros((N,), jnp.int32))
    _, outs = jax.lax.scan(step, init, (a_KxRxN, t_KxN))
    return Predictive(*outs[:4], outs[4] if with_weights else None)
