"""Task registry: a task config (config.task) to a sampler (tasks/base.py's Task).

Each family module lists its NAMES and gives check_config(t), label_classes(t) and make(t);
adding a family is one line in _FAMILIES.
"""

from __future__ import annotations

import ml_collections

from icl_jax.errors import UserError
from icl_jax.tasks import boolean, fourier, images, linear, nonlinear
from icl_jax.tasks.base import LOSSES, Prompts, Task
from icl_jax.tasks.linear import LinearTask

_FAMILIES = (linear, fourier, nonlinear, boolean, images)
_BY_NAME = {name: family for family in _FAMILIES for name in family.NAMES}
TASK_NAMES = tuple(_BY_NAME)


def _family(t: ml_collections.ConfigDict):
    if t.name not in _BY_NAME:
        raise UserError(f"unknown task.name {t.name!r}; known tasks: {', '.join(TASK_NAMES)}")
    return _BY_NAME[t.name]


def check_task_config(t: ml_collections.ConfigDict) -> None:
    _family(t).check_config(t)


def label_classes(t: ml_collections.ConfigDict) -> int:
    """How many one-hot label channels the y tokens carry (0: the label itself), known from
    the config alone so that the model can be built without building the task."""
    return _family(t).label_classes(t)


def curriculum_key(t: ml_collections.ConfigDict) -> str:
    """The task key the dims curriculum grows to: "n_dims" (the active input dimension),
    unless the family says otherwise (Fourier series: the active frequencies)."""
    family = _family(t)
    return family.curriculum_key(t) if hasattr(family, "curriculum_key") else "n_dims"


def get_task(t: ml_collections.ConfigDict) -> Task:
    family = _family(t)
    family.check_config(t)
    return family.make(t)


__all__ = ["LOSSES", "TASK_NAMES", "LinearTask", "Prompts", "Task", "check_task_config", "curriculum_key", "get_task",
           "label_classes"]
