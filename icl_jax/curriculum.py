"""Curriculum on the active dimension and prompt length, as a pure function of the step.

Shapes never change during training: prompts always have task.n_points points and
task.n_dims coordinates. Coordinates past the active dimension are zero, and positions past
the active length are masked out of the loss; with causal attention, predictions at the
kept positions cannot see the masked ones, so this trains exactly what truncation would,
with one compiled step for the whole run.
"""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections

from icl_jax import tasks


def _grown(start: int, increment: int, full: int, interval: int, step):
    if not interval:
        return jnp.asarray(full, jnp.int32)
    grown = start + increment * (jnp.asarray(step, jnp.int32) // interval)
    return jnp.minimum(grown, full).astype(jnp.int32)


def active_dims(config: ml_collections.ConfigDict, step):
    """The active input dimension, or what the family grows instead (tasks.curriculum_key:
    the active frequencies of a Fourier series)."""
    cu = config.curriculum
    full = config.task[tasks.curriculum_key(config.task)]
    return _grown(cu.dims_start, cu.dims_increment, full, cu.interval, step)


def active_points(config: ml_collections.ConfigDict, step):
    cu = config.curriculum
    return _grown(cu.points_start, cu.points_increment, config.task.n_points, cu.interval, step)
