"""The Lasso fitted on every prefix of every prompt: batched coordinate descent to a tolerance.

For the k examples before the query (scikit-learn's Lasso objective, no intercept):
    min_w (1/2k) |y_<k - X_<k w|^2 + α |w|_1,      yhat_k = x_k · w_k  (0 at k = 0).
All B·K problems run together (lanes last), in float64, on their Gram form (G = XᵀX/k, c =
Xᵀy/k): a coordinate update costs O(D) per problem and a sweep O(D^2). Every `check_every`
sweeps the duality gap of each problem is computed; a problem is converged when its gap is at
most tol · |y_<k|^2/k (scikit-learn's criterion).

Coordinate descent alone crawls on some problems: with two columns of nearly equal norm
(k = 1 is the extreme) the mass moves between them by a factor (b/a)^2 per sweep, and after
1000 sweeps 1% of the reference-size problems were still up to 50% off; near k = d the
conditioning does the same to noisy problems. So the lanes that have not converged after
`cd_sweeps` get, first, one exact solve on coordinate descent's support and signs (right for
most of them; the duality gap decides) and, where that fails, the Lasso homotopy (LARS with
the lasso modification): from α_0 = max|c| down to α the solution is piecewise linear,
w_A(a) = G_AA^-1 (c_A - a s_A), and the active set A changes only where an inactive
correlation reaches a or an active coefficient reaches 0. A handful of events per problem;
the active set stays linearly independent, so every solve is well posed. What is still not
converged after that (none in the tests) is reported in `converged_BxK`.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from icl_jax.baselines import precision

Array = jax.Array


class LassoFit(NamedTuple):
    yhat_BxK: np.ndarray
    w_BxKxD: np.ndarray
    converged_BxK: np.ndarray  # duality gap within tolerance
    sweeps: int  # coordinate sweeps run


@jax.jit
def _duality_gap(G_DxDxN, c_DxN, yy_N, w_DxN, alpha):
    """Gap of (1/2)|r|^2/n + α|w|_1 at w (all quantities divided by n), the dual point being the
    residual scaled into the feasible set (as in scikit-learn's enet_coordinate_descent)."""
    Gw = jnp.sum(G_DxDxN * w_DxN[None], axis=1)
    corr = c_DxN - Gw  # Xᵀr / n
    rr = jnp.maximum(yy_N - 2 * jnp.sum(c_DxN * w_DxN, 0) + jnp.sum(w_DxN * Gw, 0), 0.0)  # |r|^2 / n
    ry = yy_N - jnp.sum(c_DxN * w_DxN, 0)  # r·y / n
    dual_norm = jnp.max(jnp.abs(corr), axis=0)
    scale = jnp.where(dual_norm > alpha, alpha / jnp.where(dual_norm > 0, dual_norm, 1.0), 1.0)
    l1 = jnp.sum(jnp.abs(w_DxN), 0)
    return 0.5 * rr * (1 + scale**2) + alpha * l1 - scale * ry


@functools.partial(jax.jit, static_argnames=("check_every",))
def _coordinate_descent(G_DxDxN, c_DxN, yy_N, alpha_N, w_DxN, tol, max_sweeps, check_every: int):
    """Up to max_sweeps sweeps from w, stopping early once every lane's gap is within tol."""
    D, _, N = G_DxDxN.shape
    diag_DxN = jnp.stack([G_DxDxN[j, j] for j in range(D)])
    safe_diag = jnp.where(diag_DxN > 0, diag_DxN, 1.0)

    def sweep(carry):
        w, q = carry  # q = G w, kept up to date
        for j in range(D):
            rho = c_DxN[j] - q[j] + diag_DxN[j] * w[j]
            new = jnp.where(diag_DxN[j] > 0,
                            jnp.sign(rho) * jnp.maximum(jnp.abs(rho) - alpha_N, 0.0) / safe_diag[j], 0.0)
            q = q + G_DxDxN[:, j] * (new - w[j])[None]
            w = w.at[j].set(new)
        return w, q

    def converged(w):
        return _duality_gap(G_DxDxN, c_DxN, yy_N, w, alpha_N) <= tol * yy_N

    def body(state):
        w, q, sweeps, _ = state
        w, q = jax.lax.fori_loop(0, check_every, lambda _, wq: sweep(wq), (w, q))
        return w, q, sweeps + check_every, converged(w)

    def cond(state):
        return (state[2] < max_sweeps) & ~jnp.all(state[3])

    q = jnp.sum(G_DxDxN * w_DxN[None], axis=1)
    w, _, sweeps, ok = jax.lax.while_loop(cond, body, (w_DxN, q, jnp.int32(0), converged(w_DxN)))
    return w, ok, sweeps


@jax.jit
def _homotopy_step(G_NxDxD, c_NxD, alpha_N, level_N, active_NxD, sign_NxD, done_N):
    """One event of the lasso path (see the module docstring) for every lane not done: the
    solution at the current level is u - level * v on the active set."""
    N, D = c_NxD.shape
    both = active_NxD[:, :, None] & active_NxD[:, None, :]
    M = jnp.where(both, G_NxDxD, jnp.eye(D, dtype=G_NxDxD.dtype)[None])
    rhs = jnp.stack([jnp.where(active_NxD, c_NxD, 0.0), jnp.where(active_NxD, sign_NxD, 0.0)], -1)
    sol = jnp.linalg.solve(M, rhs)  # one LAPACK call, both right-hand sides
    u, v = jnp.where(active_NxD, sol[..., 0], 0.0), jnp.where(active_NxD, sol[..., 1], 0.0)
    p = c_NxD - jnp.einsum("nde,ne->nd", G_NxDxD, u)  # correlation at level a: p + a q
    q = jnp.einsum("nde,ne->nd", G_NxDxD, v)
    # Events strictly below the current level: the one just taken recurs at the level itself
    # (up to rounding), while a coordinate that just left may rightly re-enter with the other
    # sign further down, so no coordinate is excluded, only this relative margin.
    hi = level_N[:, None] * (1 - 1e-10)
    lo = alpha_N[:, None]

    def candidate(t, ok):
        return jnp.where(ok & (t < hi) & (t > lo) & jnp.isfinite(t), t, -jnp.inf)

    inactive = ~active_NxD & (jnp.diagonal(G_NxDxD, axis1=1, axis2=2) > 0)
    join_plus = candidate(p / (1 - q), inactive)  # correlation reaches +a
    join_minus = candidate(-p / (1 + q), inactive)  # ... or -a
    leave = candidate(u / jnp.where(v != 0, v, 1.0), active_NxD & (v != 0))  # w_i reaches 0
    events = jnp.stack([join_plus, join_minus, leave], 0)  # 3 x N x D
    flat = jnp.moveaxis(events, 0, 1).reshape(N, -1)
    best = jnp.argmax(flat, axis=1)
    nxt = jnp.max(flat, axis=1)
    kind, j = best // D, best % D
    finish = ~done_N & ~(nxt > alpha_N)
    move = ~done_N & ~finish
    onehot = (jnp.arange(D)[None] == j[:, None]) & move[:, None]
    active = jnp.where(onehot, kind[:, None] < 2, active_NxD)
    sign = jnp.where(onehot & (kind[:, None] == 0), 1.0, jnp.where(onehot & (kind[:, None] == 1), -1.0, sign_NxD))
    w = jnp.where(active_NxD, u - alpha_N[:, None] * v, 0.0)  # valid where `finish`
    return jnp.where(move, nxt, level_N), active, sign, done_N | finish, w, finish


@jax.jit
def _restricted_solve(G_NxDxD, c_NxD, alpha_N, w_NxD):
    """The exact optimum for w's support A and signs s, if they are the solution's:
    G_AA w_A = c_A - α s_A (accepted by the caller only where the duality gap then closes)."""
    D = c_NxD.shape[1]
    active = w_NxD != 0.0
    M = jnp.where(active[:, :, None] & active[:, None, :], G_NxDxD, jnp.eye(D, dtype=G_NxDxD.dtype)[None])
    rhs = jnp.where(active, c_NxD - alpha_N[:, None] * jnp.sign(w_NxD), 0.0)
    return jnp.where(active, jnp.linalg.solve(M, rhs[..., None])[..., 0], 0.0)


def _homotopy(G_NxDxD, c_NxD, alpha_N, max_events: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact lasso solutions w_NxD by the path from α_0 = max|c| (where w = 0) down to α."""
    N, D = c_NxD.shape
    level = np.max(np.abs(c_NxD), axis=1)
    j0 = np.argmax(np.abs(c_NxD), axis=1)
    active = np.zeros((N, D), bool)
    active[np.arange(N), j0] = True
    sign = np.zeros((N, D))
    sign[np.arange(N), j0] = np.sign(c_NxD[np.arange(N), j0])
    done = level <= alpha_N  # w = 0 is optimal
    w = np.zeros((N, D))
    for _ in range(max_events):
        level, active, sign, done_new, w_step, finish = _homotopy_step(
            G_NxDxD, c_NxD, alpha_N, level, active, sign, done)
        w = np.where(np.asarray(finish)[:, None], np.asarray(w_step), w)
        done = np.asarray(done_new)
        if done.all():
            break
    return w, done


@precision.float64
def lasso(x_BxKxD, y_BxK, alpha, *, tol: float = 1e-10, cd_sweeps: int = 20, check_every: int = 5,
          max_events: int | None = None) -> LassoFit:
    """Lasso on every prefix. alpha: a scalar, one value per k (alpha_K), or one per prompt and k
    (alpha_BxK: e.g. a grid of penalties on copies of the same prompts, in one call).

    Coordinate descent runs on every problem at once for up to cd_sweeps sweeps (most
    converge); the rest go, padded to a power of two to bound recompilation, to the exact
    finishes described in the module docstring.
    """
    x = jnp.asarray(x_BxKxD, jnp.float64)
    y = jnp.asarray(y_BxK, jnp.float64)
    B, K, D = x.shape
    max_events = 8 * D if max_events is None else max_events
    inv_k = 1.0 / jnp.maximum(jnp.arange(K), 1).astype(jnp.float64)

    def exclusive(a):
        return jnp.concatenate([jnp.zeros_like(a[:, :1]), jnp.cumsum(a, axis=1)[:, :-1]], axis=1)

    G = exclusive(jnp.einsum("bkd,bke->bkde", x, x)) * inv_k[:, None, None]
    c = exclusive(x * y[..., None]) * inv_k[:, None]
    yy = exclusive(y * y) * inv_k
    alpha = np.asarray(alpha, np.float64)
    alpha_BxK = np.broadcast_to(alpha if alpha.ndim == 2 else alpha * np.ones(K), (B, K))
    lanes = [np.asarray(a).reshape((B * K,) + a.shape[2:]) for a in (G, c, yy, alpha_BxK)]  # N first

    def padded(index):
        n = 1 << int(np.ceil(np.log2(max(index.size, 1))))
        return np.concatenate([index, np.full(n - index.size, index[0])])

    w_new, ok_new, ran = _coordinate_descent(*[np.moveaxis(a, 0, -1) for a in lanes], np.zeros((D, B * K)), tol,
                                             cd_sweeps, check_every)
    w, ok, sweeps = np.array(w_new).T, np.array(ok_new), int(ran)
    todo = np.flatnonzero(~ok)
    if todo.size:  # usually coordinate descent has found the support and signs already
        idx = padded(todo)
        Gn, cn, yyn, an = (a[idx] for a in lanes)
        w_try = np.asarray(_restricted_solve(Gn, cn, an, w[idx]))
        gap = np.asarray(_duality_gap(np.moveaxis(Gn, 0, -1), cn.T, yyn, w_try.T, an))
        good = (np.isfinite(gap) & (gap <= tol * yyn))[: todo.size]
        w[todo[good]] = w_try[: todo.size][good]
        ok[todo[good]] = True
        todo = todo[~good]
    if todo.size:
        idx = padded(todo)
        Gn, cn, yyn, an = (a[idx] for a in lanes)
        w_path, _ = _homotopy(Gn, cn, an, max_events)
        gap = np.asarray(_duality_gap(np.moveaxis(Gn, 0, -1), cn.T, yyn, w_path.T, an))
        better = (gap <= tol * yyn)[: todo.size]  # keep coordinate descent's w where the path failed
        w[todo[better]] = w_path[: todo.size][better]
        ok[todo] = better
    w = w.reshape(B, K, D)
    return LassoFit(np.einsum("bkd,bkd->bk", np.asarray(x), w), w, ok.reshape(B, K), sweeps)
