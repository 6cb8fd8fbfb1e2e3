"""Least squares and ridge regression fitted on every prefix of a prompt, in one jittable call.

Shape legend: x_BxKxD (B prompts, K points, D dims), y_BxK -> yhat_BxK; yhat[:, k] predicts
y_k from x_k with the k examples before it (exactly 0 for k = 0).

Why this is not a textbook solve per prefix:

* Float32 is not enough at the interpolation threshold k = D. There the prediction
  x_k . X_k^-1 y_k has condition number cond(X_k) (1e4..1e6 for the worst of ~1000
  Gaussian 20x20 prompts) and the noisy mean squared error at k = D is dominated by exactly
  those prompts: any backward-stable float32 method (LAPACK sgelsy, float32 CGS2 + forward
  substitution) misses the float64 mean by 1e-4..3e-3. So for k <= D, ridge = 0, the
  Gram-Schmidt residuals and the triangular solve run in double-float32 ("dd", hi + lo,
  ~48 bits, built from error-free TwoSum / TwoProduct), which agrees with float64 to ~1e-6
  relative even for cond(X_k) = 1e6.
* Orthogonal methods only (Gram-Schmidt, Givens): the normal equations square cond.
* No LAPACK (no jnp.linalg / jax.scipy.linalg) and no dot/matmul: on CPU a jitted function
  holding two independent LAPACK chains can deadlock, TPU matmuls default to bfloat16 passes,
  and elementwise ops + sums behave the same on every backend.
* Internally the batch axis is last: B is the long, contiguous, SIMD-friendly axis (the
  Gram-Schmidt scan ran 1.8x faster than batch-first with D = 20 minor).

Method, ridge = 0:
  1. Gram-Schmidt on the ROWS of X in order, each row projected twice (CGS2). The projection
     coefficients are float32 but the residual x_j - sum_s c_s q_s is formed exactly (dd),
     so x_j = sum_s L_js q_s + v_j holds to ~1e-14 |x| whatever the coefficients, and the
     second pass leaves ~u^2 |x| of v_j inside span(q). A row whose residual is below a
     dd-level tolerance is dependent (zero rows, duplicates, zeroed trailing coordinates) and
     gets no basis vector; every independent row opens the next free "slot" s. In slot
     coordinates L is a lower staircase.
  2. While rows 0..k-1 are all independent (k <= D on generic data) slot j is row j and
     X_k = L_k Q_k with L_k square lower-triangular, so one dd forward substitution
     z = L^-1 y serves every prefix: yhat_k = sum_{j<k} L_kj z_j.
  3. Otherwise (k > D, or after a dependent row): square-root recursive least squares in
     slot coordinates (float32). (R, u = Q^T y) absorb one row at a time by D Givens
     rotations and the prediction x_k . R^-1 u is read off the rotations (see
     `_rls_predictions`). Slots nobody filled stay exactly zero in R, which makes the result
     the minimum-norm solution. float32 is enough there (cond(X_k) is far smaller once
     k > D): per-k MSE within 6e-6 relative of float64 in the tests.
Method, ridge > 0: the same recursion on the raw rows from R_0 = sqrt(ridge) I: ridge
  regression without intercept, w = (X^T X + ridge I)^-1 X^T y (sklearn Ridge, no intercept).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

Array = jax.Array
DD = tuple[Array, Array]  # double-float32 value hi + lo

_F32_EPS = float(jnp.finfo(jnp.float32).eps)
# A row whose dd Gram-Schmidt residual is below _REL_TOL * (largest row norm in its prompt)
# is dependent. Exactly dependent float32 rows leave <= ~6e-14 relative; float64 lstsq
# (rcond ~1e-14) counts anything above ~1e-13 as rank; float32 rounding makes "dependent by
# construction" rows (x_a + x_b) ~1e-8 off. 1e-10 leaves >1000x margin to the first.
_REL_TOL = 1e-10


# ----------------------------------------------------------------------------------------
# double-float32 arithmetic.
# XLA fuses a * b + c into an FMA on CPU and GPU (checked: jit(a*b+c) == fma on this CPU),
# and a fused product may be re-evaluated per use, so textbook TwoProduct (p = fl(a*b),
# err = ...-p) silently breaks. Here every multiplication whose result meets an addition is
# EXACT by construction (12-bit x 12-bit halves, split by bit masking, not by Veltkamp's
# multiply), so contraction cannot change any value; TwoSum only adds.
# ----------------------------------------------------------------------------------------
def _two_sum(a: Array, b: Array) -> DD:
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _fast_two_sum(a: Array, b: Array) -> DD:  # exact when |a| >= |b|
    s = a + b
    return s, b - (s - a)


def _split(a: Array) -> DD:
    """a = hi + lo exactly, hi keeping the top 12 of 24 significand bits (lo <= 12 bits)."""
    bits = jax.lax.bitcast_convert_type(a, jnp.uint32)
    hi = jax.lax.bitcast_convert_type(bits & jnp.uint32(0xFFFFF000), jnp.float32)
    return hi, a - hi


def _prod_split(ah: Array, al: Array, bh: Array, bl: Array) -> DD:
    """(ah + al) * (bh + bl) as an unnormalized dd; all four partial products are exact."""
    m, r = _two_sum(ah * bl, al * bh)
    h, e = _two_sum(ah * bh, m)
    return h, e + (r + al * bl)


def _two_prod(a: Array, b: Array) -> DD:
    return _prod_split(*_split(a), *_split(b))


def _dd_add(x: DD, y: DD) -> DD:
    # "Sloppy" add: error ~u^2 (|x| + |y|), not u^2 |x + y|. Backward stability of the
    # Gram-Schmidt update needs no more, at half the cost of the accurate add.
    s, e = _two_sum(x[0], y[0])
    return _fast_two_sum(s, e + (x[1] + y[1]))


def _dd_neg(x: DD) -> DD:
    return -x[0], -x[1]


def _dd_mul_f(x: DD, b: Array) -> DD:
    p, e = _two_prod(x[0], b)
    return _two_sum(p, e + x[1] * b)


def _dd_div(x: DD, y: DD) -> DD:
    # long division: the remainder of the float32 quotient is formed exactly, divided again
    q1 = x[0] / y[0]
    r = _dd_add(x, _dd_neg(_dd_mul_f(y, q1)))
    return _fast_two_sum(q1, r[0] / y[0])


def _dd_tree_sum(p: Array, e: Array) -> DD:
    """sum over axis 0 of the unnormalized dd terms p + e (pairwise; the rounding error of
    every float32 add of the p's is caught by TwoSum and folded into the e's)."""
    while p.shape[0] > 1:
        n = p.shape[0] // 2
        s, err = _two_sum(p[:n], p[n:2 * n])
        lo = e[:n] + e[n:2 * n] + err
        if p.shape[0] % 2:
            s, lo = jnp.concatenate([s, p[2 * n:]]), jnp.concatenate([lo, e[2 * n:]])
        p, e = s, lo
    return _two_sum(p[0], e[0])


# ----------------------------------------------------------------------------------------
# 1. row Gram-Schmidt with slot compaction
# ----------------------------------------------------------------------------------------
def _row_gram_schmidt(x_KxDxB: Array, q_SxDxB: DD, count_B: Array, tol_B: Array, exact: bool):
    """CGS2 on the rows of x in order, continuing from the slot basis q (S = D slots,
    unfilled slots exactly 0) holding count_B vectors.

    Returns the final (q, count_B), the coordinates L_KxSxB of every row in the basis of the
    rows up to and including it (dd if `exact`, else lo = 0), and active_KxB (the row opened
    a new slot). exact: residuals formed in dd; else plain float32 (with a float32 `tol`).
    """
    K, D, B = x_KxDxB.shape
    slots_Sx1 = jnp.arange(D)[:, None]
    zeros_DxB = jnp.zeros((D, B), x_KxDxB.dtype)

    def step(carry, x_DxB):
        qh, qhh, qhl, ql, count_B = carry  # q = qh + ql, qh = qhh + qhl split (all SxDxB)
        v, coef = (x_DxB, zeros_DxB), (zeros_DxB, zeros_DxB)
        for _ in range(2):  # pass 1 leaves ~u|x| of v inside span(q), pass 2 ~u^2|x|
            # One materialized value: the same c must enter both coef and the projection
            # (were XLA to recompute the sum per consumer, the roundings could differ).
            c_SxB = jax.lax.optimization_barrier(jnp.sum(qh * v[0][None], axis=1))
            if exact:  # sum_s c_s q_s with exact products (q_hi pre-split) and dd sums
                ch, cl = _split(c_SxB)
                p, e = _prod_split(ch[:, None], cl[:, None], qhh, qhl)
                v = _dd_add(v, _dd_neg(_dd_tree_sum(p, e + c_SxB[:, None] * ql)))
                coef = _dd_add(coef, (c_SxB, jnp.zeros_like(c_SxB)))
            else:
                v = (v[0] - jnp.sum(qh * c_SxB[:, None], axis=0), v[1])
                coef = (coef[0] + c_SxB, coef[1])
        norm_B = jnp.sqrt(jnp.sum(v[0] * v[0], axis=0))
        active_B = (norm_B > tol_B) & (count_B < D)
        safe_1xB = jnp.where(active_B, norm_B, 1.0)[None]
        # Any nonzero scale keeps the factorization exact (L_jj q_j = v_j); unit norm only
        # makes the two projection passes of the later rows converge.
        if exact:
            nq = _dd_div(v, (safe_1xB, jnp.zeros_like(safe_1xB)))
        else:
            nq = (v[0] / safe_1xB, zeros_DxB)
        nqhh, nqhl = _split(nq[0])
        new_SxB = (slots_Sx1 == count_B[None]) & active_B[None]
        put = lambda new_DxB, old_SxDxB: jnp.where(new_SxB[:, None], new_DxB[None], old_SxDxB)
        carry = (put(nq[0], qh), put(nqhh, qhh), put(nqhl, qhl), put(nq[1], ql),
                 count_B + active_B)
        # Unfilled slots have q = 0 exactly, so coef is exactly 0 there: L is a staircase.
        coef = (jnp.where(new_SxB, norm_B[None], coef[0]), jnp.where(new_SxB, 0.0, coef[1]))
        return carry, (coef, active_B)

    qhh, qhl = _split(q_SxDxB[0])
    init = (q_SxDxB[0], qhh, qhl, q_SxDxB[1], count_B)
    (qh, _, _, ql, count_B), (l_KxSxB, active_KxB) = jax.lax.scan(step, init, x_KxDxB)
    return (qh, ql), count_B, l_KxSxB, active_KxB


# ----------------------------------------------------------------------------------------
# 2. interpolation (k <= D): one dd forward substitution serves every prefix
# ----------------------------------------------------------------------------------------
def _interpolation_predictions(l_MxSxB: DD, y_MxB: Array) -> Array:
    """yhat_MxB for queries k < M, valid where rows 0..k-1 are all independent (then slot j
    is row j and L[:k, :k] is lower-triangular with a nonzero diagonal)."""
    M, S, B = l_MxSxB[0].shape

    def step(z_SxB, inp):
        lh, ll, y_B, diag_Sx1 = inp
        # z_j = 0 for slots j >= this row, so the full dot is sum_{j<k} L_kj z_j
        p, e = _two_prod(lh, z_SxB[0])
        acc = _dd_tree_sum(p, e + (lh * z_SxB[1] + ll * z_SxB[0]))
        d = (jnp.sum(jnp.where(diag_Sx1, lh, 0.0), 0), jnp.sum(jnp.where(diag_Sx1, ll, 0.0), 0))
        # The diagonal is exactly 0 (dependent row, or query row D: no slot) or >= tol.
        ok_B = d[0] != 0.0
        zj = _dd_div(_dd_add((y_B, jnp.zeros_like(y_B)), _dd_neg(acc)),
                     (jnp.where(ok_B, d[0], 1.0), d[1]))
        zj = (jnp.where(ok_B, zj[0], 0.0)[None], jnp.where(ok_B, zj[1], 0.0)[None])
        z_SxB = (jnp.where(diag_Sx1, zj[0], z_SxB[0]), jnp.where(diag_Sx1, zj[1], z_SxB[1]))
        return z_SxB, acc[0]

    diag_MxSx1 = (jnp.arange(M)[:, None] == jnp.arange(S)[None, :])[:, :, None]
    z0 = (jnp.zeros((S, B), y_MxB.dtype), jnp.zeros((S, B), y_MxB.dtype))
    _, yhat_MxB = jax.lax.scan(step, z0, (l_MxSxB[0], l_MxSxB[1], y_MxB, diag_MxSx1))
    return yhat_MxB


# ----------------------------------------------------------------------------------------
# 3. square-root recursive least squares (Givens QR updating), float32, pipelined
# ----------------------------------------------------------------------------------------
def _rls_predictions(a_KxDxB: Array, y_KxB: Array, sqrt_ridge: float) -> Array:
    """yhat_KxB: row k predicted by the fit to rows j < k, (R, u) started at sqrt_ridge * I.

    Folding row (a, t) rotates it against pivot rows i = 0..D-1 of R (Givens c_i, s_i).
    What is left of t after the last pivot equals prod_i c_i * (t - a . R^-1 u), the
    a-priori error times the rotation product (McWhirter's QR-RLS): the prediction comes out
    of the rotations themselves, no back substitution. A rotation with R_ii = 0 (ridge 0: the
    row opens a new slot) has c_i = 0; that slot is empty in the min-norm fit, so the
    prediction is the one read just before it: freeze t / prod c there.

    Pipelined like a systolic array: at tick tau pivot i works on row tau - i, so a tick is
    one DxDxB op over all pivots and the scan has K + D - 1 ticks instead of K * D tiny
    sequential rotations. Each pivot row still meets rows 0, 1, 2, ... in order: the
    arithmetic is exactly that of sequential Givens updating.
    """
    K, D, B = a_KxDxB.shape
    dt = a_KxDxB.dtype
    eye_DxDx1 = jnp.eye(D, dtype=dt)[:, :, None]

    def shift_in(first_1x, stages_Dx):  # stage i receives what left stage i - 1
        return jnp.concatenate([first_1x, stages_Dx[:-1]], axis=0)

    def tick(carry, inp):
        r, u, rows, t, g, frozen, alpha = carry
        a_DxB, y_B = inp
        rows = shift_in(a_DxB[None], rows)  # DxDxB: the row at pivot i
        t = shift_in(y_B[None], t)  # DxB: its target, rotated so far
        g = shift_in(jnp.ones((1, B), dt), g)  # product of its cosines so far
        frozen = shift_in(jnp.zeros((1, B), bool), frozen)
        alpha = shift_in(jnp.zeros((1, B), dt), alpha)
        piv = jnp.sum(r * eye_DxDx1, axis=1)  # DxB: R_ii
        a_i = jnp.sum(rows * eye_DxDx1, axis=1)  # DxB: entry i of the row at pivot i
        rho = jnp.hypot(piv, a_i)  # no overflow in r^2 + a^2
        ok = rho > 0.0  # both zero: identity (an empty slot stays empty)
        safe = jnp.where(ok, rho, 1.0)
        c = jnp.where(ok, piv / safe, 1.0)
        s = jnp.where(ok, a_i / safe, 0.0)
        opens = ok & (piv == 0.0)  # only possible for ridge 0
        alpha = jnp.where(opens & ~frozen, t / g, alpha)
        r, rows = c[:, None] * r + s[:, None] * rows, c[:, None] * rows - s[:, None] * r
        u, t = c * u + s * t, c * t - s * u
        g, frozen = g * c, frozen | opens
        # the row leaving the last pivot is done: its a-priori error
        err_B = jnp.where(frozen[-1], alpha[-1], t[-1] / jnp.where(frozen[-1], 1.0, g[-1]))
        return (r, u, rows, t, g, frozen, alpha), err_B

    zeros_DxB = jnp.zeros((D, B), dt)
    init = (jnp.broadcast_to(sqrt_ridge * eye_DxDx1, (D, D, B)), zeros_DxB,
            jnp.zeros((D, D, B), dt), zeros_DxB, jnp.ones((D, B), dt),
            jnp.zeros((D, B), bool), zeros_DxB)
    drain = D - 1  # zero rows flush the pipeline (they rotate nothing: s = 0)
    a_TxDxB = jnp.pad(a_KxDxB, ((0, drain), (0, 0), (0, 0)))
    y_TxB = jnp.pad(y_KxB, ((0, drain), (0, 0)))
    _, err_TxB = jax.lax.scan(tick, init, (a_TxDxB, y_TxB))
    return y_KxB - err_TxB[drain:]


# ----------------------------------------------------------------------------------------
@functools.partial(jax.jit, static_argnames=("ridge",))
def least_squares(x_BxKxD: Array, y_BxK: Array, ridge: float = 0.0) -> Array:
    """Min-norm least squares (ridge = 0) or ridge regression without intercept (ridge > 0)
    fitted on every prefix: x_BxKxD, y_BxK -> yhat_BxK (float32, yhat[:, 0] = 0).

    `ridge` is STATIC: a Python float; each distinct value compiles once (it picks the
    algorithm: the dd interpolation path only exists for ridge == 0).
    """
    ridge = float(ridge)
    if not ridge >= 0.0:
        raise ValueError(f"ridge must be >= 0, got {ridge}")
    x_KxDxB = jnp.transpose(jnp.asarray(x_BxKxD, jnp.float32), (1, 2, 0))
    y_KxB = jnp.asarray(y_BxK, jnp.float32).T
    K, D, B = x_KxDxB.shape
    first_Kx1 = (jnp.arange(K) == 0)[:, None]  # no examples yet: predict exactly 0
    if ridge > 0.0:
        # R_0 = sqrt(ridge) I is never singular: no slots, no rank logic needed.
        yhat_KxB = _rls_predictions(x_KxDxB, y_KxB, ridge**0.5)
        return jnp.where(first_Kx1, 0.0, yhat_KxB).T

    scale_B = jnp.sqrt(jnp.max(jnp.sum(x_KxDxB * x_KxDxB, axis=1), axis=0))
    M = min(K, D + 1)  # queries k <= D can interpolate; rows 0..D need dd accuracy
    zeros_SxDxB = jnp.zeros((D, D, B), jnp.float32)
    q, count_B, l_MxSxB, active_MxB = _row_gram_schmidt(
        x_KxDxB[:M], (zeros_SxDxB, zeros_SxDxB), jnp.zeros((B,), jnp.int32),
        _REL_TOL * scale_B, exact=True)
    interp_MxB = _interpolation_predictions(l_MxSxB, y_KxB[:M])
    lh_KxSxB, active_KxB = l_MxSxB[0], active_MxB
    if K > M:
        # Later rows only feed the float32 recursion, and open slots only in rank-deficient
        # prompts: float32 Gram-Schmidt with a float32-level tolerance is enough for them.
        # Once every prompt has filled all D slots (the generic case) no row can open one and
        # its slot coordinates are a single projection: a third of the runtime saved.
        def spanning():
            l_late = jnp.einsum("sdb,kdb->ksb", q[0], x_KxDxB[M:], precision=jax.lax.Precision.HIGHEST)
            return l_late, jnp.zeros((K - M, B), bool)

        def general():
            _, _, l_late, active_late = _row_gram_schmidt(
                x_KxDxB[M:], (q[0], jnp.zeros_like(q[0])), count_B,
                10 * K * _F32_EPS * scale_B, exact=False)
            return l_late[0], active_late

        l_late, active_late = jax.lax.cond(jnp.all(count_B == D), spanning, general)
        lh_KxSxB = jnp.concatenate([lh_KxSxB, l_late], axis=0)
        active_KxB = jnp.concatenate([active_KxB, active_late], axis=0)
    rls_KxB = _rls_predictions(lh_KxSxB, y_KxB, 0.0)
    interp_KxB = jnp.pad(interp_MxB, ((0, K - M), (0, 0)))
    n_before_KxB = jnp.cumsum(active_KxB, axis=0) - active_KxB  # independent rows before k
    use_interp = (jnp.arange(K) < M)[:, None] & (n_before_KxB == jnp.arange(K)[:, None])
    return jnp.where(first_Kx1, 0.0, jnp.where(use_interp, interp_KxB, rls_KxB)).T
