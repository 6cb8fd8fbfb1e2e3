"""Least squares and ridge regression fitted on every prefix of a prompt, in one jittable call.

Shape legend: x_BxKxD (B prompts, K points, D dims), y_BxK -> yhat_BxK; yhat[:, k] predicts
y_k from x_k with the k examples before it (exactly 0 for k = 0). Internally the prompt axis
is last (B: the SIMD lanes) and D or K comes first (x_DxKxB).

Why this is not a textbook solve per prefix:

* Precision. At the interpolation threshold k = D the prediction x_k . X_k^-1 y_k has
  condition number cond(X_k) (1e4..1e6 for the worst of ~1000 Gaussian 20x20 prompts), and
  the noisy mean squared error at k = D is dominated by exactly those prompts: a float32
  solver misses the float64 mean by 1e-4..3e-3. So everything runs in float64 under
  `jax.enable_x64` scoped to the traced body (not baselines/precision.float64, which returns
  numpy: callers jit this function), inputs and outputs float32, and the k <= D part uses an
  orthogonal method (the normal equations would square cond).
* Speed. On CPU a per-prompt LAPACK call costs 3..13 us per small matrix and a batched
  matmul ~6 us: too slow for 1280 x 41 problems. Everything here is elementwise code over
  the prompt lanes, run in chunks of `_CHUNK` prompts (`lax.map`) so that a chunk's state
  stays in L2; dot products over D are written as explicit sums (XLA:CPU vectorizes those
  ~3x better than `jnp.sum` over a middle axis, and `jnp.sum` over a leading axis is ~10x
  slower still). No LAPACK, so no two LAPACK chains in one jit (they can deadlock on CPU).
* XLA fusion. XLA will fuse a cheap producer into every consumer, recomputing it per
  element: a dot product feeding a rank-1 update gets recomputed D times. Loop-carried
  values are the reliable materialization points, so the rank-1 updates below are applied
  one step late, from the carry ("pending" updates).

Method, ridge = 0 (min-norm least squares):
  1. Modified Gram-Schmidt on the rows in order, right-looking (pivot j is row j; the rows
     after it are updated against q_j at once): X = L Q. Row j "opens" a basis vector if its
     residual is above _REL_TOL * the prompt's largest row norm, else it is dependent (q_j =
     0). The labels ride along as one more column (eta_k = y_k - the fit of the openers
     before k), so the k <= D predictions (min-norm interpolation) are a by-product. MGS in
     float64 is backward stable: ~1e-10 of the float64 SVD answer at cond(X_D) = 1e6.
  2. Past the openers (k > D), least squares in s = L u coordinates (u: coordinates in the
     basis Q, s: the fitted values of the opener rows): s has the prior N(y_openers, I), and
     every other row k is an observation y_k = c_k . s + N(0, 1) with c_k = L^-T (Q x_k), the
     coefficients of x_k on the opener rows (back substitution). Covariance recursive least
     squares from P = I, a well-conditioned start. Accuracy ~1e-16 * cond(X_D)^2 (D = 20
     Gaussian: float32 output rounding; cond(X_D) = 1e6: ~1e-4).
  Fast path (when every prompt of the batch has rows 0..D-1 independent): rows < D open,
  rows >= D are observations; the state is D x D. Otherwise (duplicated or zero rows, zeroed
  coordinates, D > K with dependent rows) `lax.cond` switches the whole batch to the general
  path: the same two steps with one slot per row (K x K): every row may open, openers are
  queries of the recursion (prediction, no update), dependent rows its observations
  (~7x the fast path's time; continuous inputs never need it).
Method, ridge > 0: the same recursion on the raw rows from w = 0, P = I / ridge: ridge
  regression without intercept, w = (X^T X + ridge I)^-1 X^T y (sklearn Ridge, no intercept).
  Covariance form: error ~1e-16 * |X|^2 / ridge, fine for ridge >= ~1e-8 |X|^2.

Speed (benchmarks/baselines.py, 1280 prompts x 41 lengths, D = 20, one CPU core):
~15 ms least squares, ~10 ms ridge; the float32 dd / Givens version this replaced took 135 /
55 ms. What is left: per scan step, ~10 small fusions over one chunk (~1 us each) plus the
rank-1 updates of the 21 x 20 x 64 residuals (MGS) and the 20 x 20 x 64 covariance (RLS),
bound by L2 bandwidth.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

Array = jax.Array

# A row whose MGS residual is below _REL_TOL * (largest row norm in its prompt) is dependent.
# Exactly dependent rows leave ~1e-15 relative in float64; float64 lstsq (rcond ~1e-14) counts
# anything above ~1e-13 as rank; float32 rounding leaves "dependent by construction" rows
# (x_a + x_b) ~1e-8 off. 1e-10 separates the first from the others.
_REL_TOL = 1e-10
# Prompts per lax.map step on CPU: a chunk's MGS / RLS state (~200 KB each) stays in L2, and
# XLA:CPU does not split fusions this small across threads (which costs more than it saves
# here). Measured with D = 20: 32 and 64 equal, 80 and more 1.1-1.7x slower.
_CHUNK = 64
_STAGE = 10  # MGS pivots per scan; rows that are done drop out between scans (2 scans: 5% faster than 1)


def _dsum(terms) -> Array:
    terms = list(terms)
    acc = terms[0]
    for t in terms[1:]:
        acc = acc + t
    return acc


def _all(terms) -> Array:
    return functools.reduce(jnp.logical_and, list(terms))


def _dot(a_DxB: Array, b_DxB: Array) -> Array:
    return _dsum(a_DxB[d] * b_DxB[d] for d in range(a_DxB.shape[0]))


# ----------------------------------------------------------------------------------------
# 1. right-looking modified Gram-Schmidt of the rows
# ----------------------------------------------------------------------------------------
def _mgs_scan(v_RxMxB, later_DxNxB, tol_B, pivots: range, D: int):
    """Pivots `pivots` (global row indices) over the rows pivots.start.. of v: per row its
    residual (v[:D]) and residual label (v[D]). Outputs per pivot j: the norm of its residual
    (0: dependent row, q_j = 0), the coefficients on q_j of the rows in v (0 for rows <= j)
    and of the later rows (if given)."""
    R, M, B = v_RxMxB.shape
    row_Mx1 = jnp.arange(M)[:, None] + pivots.start

    def step(carry, j):
        v, c_prev, q_prev = carry
        v = v - q_prev[:, None] * c_prev[None]  # the previous pivot's update, applied now
        vj = jax.lax.dynamic_index_in_dim(v, j - pivots.start, axis=1, keepdims=False)
        norm_B = _dot(vj[:D], vj[:D]) ** 0.5
        norm_B = jnp.where(norm_B > tol_B, norm_B, 0.0)
        q = vj * jnp.where(norm_B > 0.0, 1.0 / jnp.where(norm_B > 0.0, norm_B, 1.0), 0.0)[None]
        c_MxB = jnp.where(row_Mx1 > j, _dsum(v[d] * q[d][None] for d in range(D)), 0.0)
        if later_DxNxB is None:
            return (v, c_MxB, q), (norm_B, c_MxB)
        return (v, c_MxB, q), (norm_B, c_MxB, _dsum(later_DxNxB[d] * q[d][None] for d in range(D)))

    init = (v_RxMxB, jnp.zeros((M, B), v_RxMxB.dtype), jnp.zeros((R, B), v_RxMxB.dtype))
    (v, c, q), outs = jax.lax.scan(step, init, jnp.arange(pivots.start, pivots.stop))
    return v - q[:, None] * c[None], outs


def _mgs(x_DxMxB: Array, y_MxB: Array, tol_B: Array, n_pivots: int, later_DxNxB: Array | None = None,
         stage: int = _STAGE):
    """MGS with pivots 0..n_pivots-1 (row j opens q_j if its residual > tol).

    Returns yhat_MxB (row k: its fit from the openers before it, i.e. the min-norm
    interpolation prediction while rows 0..k-1 all opened), norms_PxB (0: dependent row),
    Lc_PxMxB (Lc[j, i]: coefficient of row i > j on q_j, 0 for i <= j: L below its diagonal)
    and A_PxNxB (coefficients of the later rows on each q_j) if later rows are given.
    """
    D, M, B = x_DxMxB.shape
    P = n_pivots
    if P == 0:  # a single row: nothing to pivot on
        return jnp.zeros((M, B), x_DxMxB.dtype), None, None, None
    v = jnp.concatenate([x_DxMxB, y_MxB[None]])
    yhat, outs = [jnp.zeros((1, B), v.dtype)], []
    for s in range(0, P, stage):
        pivots = range(s, min(P, s + stage))
        v, (n, c, *a) = _mgs_scan(v, later_DxNxB, tol_B, pivots, D)
        k = len(pivots)
        # rows s+1 .. s+k have now met every pivot before them: their residual label is final
        yhat.append(y_MxB[s + 1:s + 1 + k] - v[D, 1:1 + k])
        outs.append((n, jnp.pad(c, ((0, 0), (s, 0), (0, 0))), *a))
        v = v[:, k:]  # rows that are done drop out
    norms, Lc, *A = (jnp.concatenate(parts) for parts in zip(*outs))
    return jnp.concatenate(yhat)[:M], norms, Lc, (A[0] if A else None)


def _solve_upper(l_PxMxB: Array, norms_PxB: Array, a_PxNxB: Array) -> Array:
    """c_n = L^-T a_n for the N columns of a (back substitution from the last pivot, L from
    _mgs: Lc below the diagonal, norms on it; a dependent pivot (norm 0) gets c = 0). Staged
    like _mgs; each column's update applied one step late (XLA fusion)."""
    P, N, B = a_PxNxB.shape
    inv_PxB = jnp.where(norms_PxB > 0.0, 1.0 / jnp.where(norms_PxB > 0.0, norms_PxB, 1.0), 0.0)
    acc, parts = a_PxNxB, []
    for hi in range(P, 0, -_STAGE):
        lo = max(0, hi - _STAGE)

        def step(carry, j):
            acc, c_prev, l_prev = carry
            acc = acc - l_prev[:, None] * c_prev[None]
            c = jax.lax.dynamic_index_in_dim(acc, j, 0, keepdims=False) * inv_PxB[j][None]
            return (acc, c, l_PxMxB[:hi, j]), c  # L[j, i] for i < hi: row j of L

        init = (acc, jnp.zeros((N, B), acc.dtype), jnp.zeros((hi, B), acc.dtype))
        (acc, c, l), cs = jax.lax.scan(step, init, jnp.arange(hi - 1, lo - 1, -1))
        acc = (acc - l[:, None] * c[None])[:lo]
        parts.append(cs[::-1])
    return jnp.concatenate(parts[::-1])


# ----------------------------------------------------------------------------------------
# 2. covariance recursive least squares
# ----------------------------------------------------------------------------------------
def _rls(c_DxNxB: Array, y_NxB: Array, w_DxB: Array, p_DxDxB: Array, data_NxB: Array | None = None) -> Array:
    """A-priori prediction c_k . w of every row, then (where data_NxB, default everywhere)
    the update of the Gaussian posterior (w, P) with the observation y_k = c_k . w + N(0, 1).
    The update of w is applied one step late (else XLA recomputes c_k . w for each of its D
    entries)."""
    D, N, B = c_DxNxB.shape

    def step(carry, k):
        w, p, g_prev, coef_prev = carry
        w = w + g_prev * coef_prev[None]
        c = jax.lax.dynamic_index_in_dim(c_DxNxB, k, axis=1, keepdims=False)
        g = _dsum(p[:, d] * c[d][None] for d in range(D))  # P c
        pred = _dot(w, c)
        gamma = 1.0 / (1.0 + _dot(c, g))
        if data_NxB is not None:
            gamma = jnp.where(jax.lax.dynamic_index_in_dim(data_NxB, k, 0, keepdims=False), gamma, 0.0)
        coef = (jax.lax.dynamic_index_in_dim(y_NxB, k, 0, keepdims=False) - pred) * gamma
        return (w, p - g[:, None] * (g * gamma[None])[None], g, coef), pred

    init = (w_DxB, p_DxDxB, jnp.zeros_like(w_DxB), jnp.zeros((B,), w_DxB.dtype))
    _, pred_NxB = jax.lax.scan(step, init, jnp.arange(N))
    return pred_NxB


def _eye(n: int, B: int, dtype) -> Array:
    return jnp.broadcast_to(jnp.eye(n, dtype=dtype)[:, :, None], (n, n, B))


# ----------------------------------------------------------------------------------------
# per chunk of prompts: x_DxKxB, y_KxB (float64) -> yhat_KxB
# ----------------------------------------------------------------------------------------
def _tolerance(x_DxKxB: Array) -> Array:
    norms_KxB = _dsum(x_DxKxB[d] * x_DxKxB[d] for d in range(x_DxKxB.shape[0]))
    return _REL_TOL * jnp.sqrt(functools.reduce(jnp.maximum, list(norms_KxB)))


def _fast_least_squares(x_DxKxB: Array, y_KxB: Array) -> tuple[Array, Array]:
    """(yhat_KxB, valid_B): valid where rows 0..min(K-1, D)-1 all open (generic prompts)."""
    D, K, B = x_DxKxB.shape
    M = min(K, D + 1)  # row D is the first query past the interpolation threshold
    later = x_DxKxB[:, D:] if K > D else None
    yhat_MxB, norms, Lc, A = _mgs(x_DxKxB[:, :M], y_KxB[:M], _tolerance(x_DxKxB), M - 1, later)
    valid_B = _all(norms[j] > 0.0 for j in range(M - 1)) if norms is not None else jnp.ones((B,), bool)
    if K <= D:
        return yhat_MxB, valid_B
    c_DxNxB = _solve_upper(Lc, norms, A)
    pred_NxB = _rls(c_DxNxB, y_KxB[D:], y_KxB[:D], _eye(D, B, x_DxKxB.dtype))
    return jnp.concatenate([yhat_MxB[:D], pred_NxB]), valid_B


def _general_least_squares(x_DxKxB: Array, y_KxB: Array) -> Array:
    """Any rank, any order of dependent rows: one slot per row (K x K state)."""
    D, K, B = x_DxKxB.shape
    _, norms, Lc, _ = _mgs(x_DxKxB, y_KxB, _tolerance(x_DxKxB), K, stage=K)  # one scan: compiles faster
    if norms is None:
        return jnp.zeros((K, B), x_DxKxB.dtype)
    opens_KxB = norms > 0.0
    # c_k = L^-T (coefficients of row k on the q's before it); openers are queries, not data
    c_KxKxB = _solve_upper(Lc, norms, Lc)
    return _rls(c_KxKxB, y_KxB, jnp.where(opens_KxB, y_KxB, 0.0), _eye(K, B, x_DxKxB.dtype), ~opens_KxB)


def _ridge(x_DxKxB: Array, y_KxB: Array, ridge: float) -> Array:
    D, K, B = x_DxKxB.shape
    return _rls(x_DxKxB, y_KxB, jnp.zeros((D, B), x_DxKxB.dtype), _eye(D, B, x_DxKxB.dtype) / ridge)


def _chunked(fn, x_BxKxD: Array, y_BxK: Array):
    """fn(x_DxKxC, y_KxC) -> pytree of ...xC arrays, over chunks of C prompts (float64)."""
    B, K, D = x_BxKxD.shape
    chunk = min(_CHUNK, B) if jax.default_backend() == "cpu" else B  # cache blocking is for CPUs
    n = -(-B // chunk)
    pad = n * chunk - B
    x = jnp.pad(x_BxKxD, ((0, pad), (0, 0), (0, 0)), mode="edge")
    y = jnp.pad(y_BxK, ((0, pad), (0, 0)), mode="edge")

    def one(xy):
        x_CxKxD, y_CxK = xy
        out = fn(jnp.transpose(x_CxKxD, (2, 1, 0)).astype(jnp.float64), y_CxK.T.astype(jnp.float64))
        return jax.tree.map(lambda a: jnp.moveaxis(a, -1, 0), out)

    out = jax.lax.map(one, (x.reshape(n, chunk, K, D), y.reshape(n, chunk, K)))
    return jax.tree.map(lambda a: a.reshape((n * chunk,) + a.shape[2:])[:B], out)


@functools.partial(jax.jit, static_argnames=("ridge",))
def least_squares(x_BxKxD: Array, y_BxK: Array, ridge: float = 0.0) -> Array:
    """Min-norm least squares (ridge = 0) or ridge regression without intercept (ridge > 0)
    fitted on every prefix: x_BxKxD, y_BxK -> yhat_BxK (float32, yhat[:, 0] = 0).

    `ridge` is STATIC: a Python float; each distinct value compiles once.
    """
    ridge = float(ridge)
    if not ridge >= 0.0:
        raise ValueError(f"ridge must be >= 0, got {ridge}")
    x = jnp.asarray(x_BxKxD, jnp.float32)
    y = jnp.asarray(y_BxK, jnp.float32)
    with jax.enable_x64(True):
        if ridge > 0.0:
            yhat = _chunked(functools.partial(_ridge, ridge=ridge), x, y)
        else:
            yhat, valid = _chunked(_fast_least_squares, x, y)
            yhat = jax.lax.cond(jnp.all(valid), lambda: yhat,
                                lambda: _chunked(_general_least_squares, x, y))
        return yhat.at[:, 0].set(0.0).astype(jnp.float32)
