"""Fourier series on one period (docs/function_classes.md): x ~ U[-L, L] (scalar, n_dims = 1) and

    f(x) = a_0 + sum_{n <= N} a_n cos(nπx/L) + b_n sin(nπx/L),   coefficients N(0, 1/N),

so E[f²] = 1 + 1/N (x uniform on a whole period: E[cos²] = E[sin²] = 1/2). Classes:
  fourier          N fixed (task.fourier_max_frequency);
  fourier_mixture  each prompt draws its own N ~ U{1..N_max} (the simplicity-bias study).
The frequency curriculum reuses the dims curriculum as "active frequencies" (the x input has
no dimensions to grow): with `active` frequencies, fourier uses N = active and
fourier_mixture draws N ~ U{1..active}; coefficients past N are zero.

Task parameters per prompt (w_BxP, P = 2 N_max + 2): the coefficients in feature order
[a_0, a_1, b_1, a_2, b_2, ...] (see `features`), then N. The features are a function of x
alone, so every baseline can rebuild them (baselines/fourier.py).
Legend: B prompts, K points, F = 2 N_max + 1 features.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from icl_jax.tasks.base import Prompts

_X, _COEF, _NOISE, _ORDER = 0, 1, 2, 3


def features(x, max_frequency: int, half_period: float, xp=jnp):
    """φ(x)_...xF = [1, cos(πx/L), sin(πx/L), ..., cos(Nπx/L), sin(Nπx/L)]: frequency n owns
    columns 2n-1, 2n, so the first 2n+1 columns span the series up to frequency n. `xp`: jnp
    or np (np in float64 for exact labels)."""
    n = xp.arange(1, max_frequency + 1)
    angle = xp.asarray(x)[..., None] * n * (np.pi / half_period)
    pairs = xp.stack([xp.cos(angle), xp.sin(angle)], axis=-1).reshape(angle.shape[:-1] + (2 * max_frequency,))
    return xp.concatenate([xp.ones(pairs.shape[:-1] + (1,), pairs.dtype), pairs], axis=-1)


def frequency_of_column(max_frequency: int) -> np.ndarray:
    """F: the frequency n of each feature column (0 for the constant)."""
    return np.concatenate([[0], np.repeat(np.arange(1, max_frequency + 1), 2)])


def labels(x_BxK, w_BxP, max_frequency: int, half_period: float, xp=jnp):
    """f(x) for the prompts' own coefficients (w_BxP as sampled: coefficients, then N)."""
    phi = features(x_BxK, max_frequency, half_period, xp)
    return xp.einsum("bkf,bf->bk", phi, w_BxP[:, :2 * max_frequency + 1])


@dataclasses.dataclass(frozen=True)
class FourierTask:
    name: str
    n_points: int
    max_frequency: int  # N (fourier) or N_max (fourier_mixture)
    half_period: float  # L
    mixture: bool  # N ~ U{1..N_max} per prompt
    noise_std: float
    family = "fourier"
    loss = "squared"
    label_classes = 0
    n_dims = 1

    @property
    def normalizer(self) -> float:
        """E[y²] at the full frequency range: 1 + 1/N, averaged over N for the mixture."""
        ns = np.arange(1, self.max_frequency + 1) if self.mixture else np.array([self.max_frequency])
        return float(np.mean(1.0 + 1.0 / ns)) + self.noise_std**2

    def labels(self, x_BxKx1, w_BxP, xp=jnp):
        """f(x) of each prompt's own series (the regression families' common signature: x
        with its trailing input axis)."""
        return labels(x_BxKx1[..., 0], w_BxP, self.max_frequency, self.half_period, xp)

    @staticmethod
    def orders_B(w_BxP) -> np.ndarray:
        """N of each prompt: its last task parameter."""
        return np.asarray(w_BxP[:, -1]).round().astype(np.int64)

    def sample(self, key: jax.Array, batch_size: int, active_dims=None) -> Prompts:
        F = 2 * self.max_frequency + 1
        active = self.max_frequency if active_dims is None else jnp.minimum(active_dims, self.max_frequency)
        L = self.half_period
        x_BxK = jax.random.uniform(jax.random.fold_in(key, _X), (batch_size, self.n_points), minval=-L, maxval=L)
        if self.mixture:
            n_B = jax.random.randint(jax.random.fold_in(key, _ORDER), (batch_size,), 1, active + 1)
        else:
            n_B = jnp.full((batch_size,), active, jnp.int32)
        keep_BxF = jnp.asarray(frequency_of_column(self.max_frequency))[None] <= n_B[:, None]
        scale_B = jax.lax.rsqrt(n_B.astype(jnp.float32))
        coef_BxF = jax.random.normal(jax.random.fold_in(key, _COEF), (batch_size, F)) * scale_B[:, None] * keep_BxF
        w_BxP = jnp.concatenate([coef_BxF, n_B[:, None].astype(jnp.float32)], axis=1)
        y_BxK = labels(x_BxK, w_BxP, self.max_frequency, L)
        if self.noise_std:
            y_BxK = y_BxK + self.noise_std * jax.random.normal(jax.random.fold_in(key, _NOISE), y_BxK.shape)
        return Prompts(x_BxK[..., None], y_BxK, w_BxP)


# ---- the family's registry entry (tasks/__init__.py) ----
NAMES = ("fourier", "fourier_mixture")
FAMILY = "fourier"
# The keys of config.task this family reads besides name, n_dims (which must be 1) and
# n_points; the dims curriculum grows the active frequencies instead of n_dims.
CONFIG_KEYS = {
    "noise_std": 0.0,  # label noise σ
    "fourier_max_frequency": 10,  # fourier: N; fourier_mixture: N_max (N ~ U{1..N_max})
    "fourier_half_period": 5.0,  # L: x ~ U[-L, L], one period 2L
}


def check_config(t) -> None:
    from icl_jax.errors import UserError

    if t.n_dims != 1:
        raise UserError(f"task.n_dims must be 1 for {t.name} (x is a scalar), got {t.n_dims}")
    if t.fourier_max_frequency < 1:
        raise UserError(f"task.fourier_max_frequency must be >= 1, got {t.fourier_max_frequency}")
    if not t.fourier_half_period > 0:
        raise UserError(f"task.fourier_half_period must be positive, got {t.fourier_half_period}")
    if t.noise_std < 0:
        raise UserError(f"task.noise_std must be >= 0, got {t.noise_std}")


def label_classes(t) -> int:
    return 0


def curriculum_key(t) -> str:
    """The dims curriculum grows the active frequencies up to this task key."""
    return "fourier_max_frequency"


def make(t) -> FourierTask:
    return FourierTask(t.name, t.n_points, int(t.fourier_max_frequency), float(t.fourier_half_period),
                       t.name == "fourier_mixture", float(t.noise_std))
