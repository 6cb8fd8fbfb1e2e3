"""Task registry: a task config (config.task) to a sampler (tasks/base.py's Task).

Each family module lists its NAMES, its FAMILY name and its CONFIG_KEYS (the keys of
config.task it reads besides name, n_dims and n_points, with their defaults), and gives
check_config(t), label_classes(t) and make(t) (make(t, data) for a family whose examples the
host reads, HOST_FED); adding a family is one line in _FAMILIES.
"""

from __future__ import annotations

import ml_collections

from icl_jax.errors import UserError
from icl_jax.tasks import boolean, fourier, images, linear, nonlinear
from icl_jax.tasks.base import LOSSES, Prompts, RegressionTask, Task
from icl_jax.tasks.linear import LinearTask

_FAMILIES = (linear, fourier, nonlinear, boolean, images)
_BY_NAME = {name: family for family in _FAMILIES for name in family.NAMES}
TASK_NAMES = tuple(_BY_NAME)
SHARED_KEYS = ("name", "n_dims", "n_points")  # every family's


def config_keys() -> dict:
    """Every family's task keys with their defaults: the schema of config.task besides
    SHARED_KEYS. A key that several families read has one default."""
    keys: dict = {}
    for family in _FAMILIES:
        for key, default in family.CONFIG_KEYS.items():
            if key in keys and keys[key] != default:
                raise AssertionError(f"task.{key} has two defaults, {keys[key]!r} and {default!r}")
            keys[key] = default
    return keys


def _owners(key: str) -> list[str]:
    return [family.FAMILY for family in _FAMILIES if key in family.CONFIG_KEYS]


def _family(t: ml_collections.ConfigDict):
    if t.name not in _BY_NAME:
        raise UserError(f"unknown task.name {t.name!r}; known tasks: {', '.join(TASK_NAMES)}")
    return _BY_NAME[t.name]


def check_task_config(t: ml_collections.ConfigDict) -> None:
    """The family's own checks, after refusing a key that another family reads set away
    from its default: it would be ignored, which is never what the user meant."""
    family, defaults = _family(t), config_keys()
    for key, value in t.items():
        if key in SHARED_KEYS or key in family.CONFIG_KEYS or key not in defaults or value == defaults[key]:
            continue
        owners = " and ".join(_owners(key))
        raise UserError(f"task.{key}={value!r} belongs to the {owners} family, but task.name={t.name!r} is in the "
                        f"{family.FAMILY} family, which does not read it; its keys are: "
                        f"{', '.join(sorted(family.CONFIG_KEYS)) or 'none besides name, n_dims, n_points'}")
    family.check_config(t)


def label_classes(t: ml_collections.ConfigDict) -> int:
    """How many one-hot label channels the y tokens carry (0: the label itself), known from
    the config alone so that the model can be built without building the task."""
    return _family(t).label_classes(t)


def curriculum_key(t: ml_collections.ConfigDict) -> str:
    """The task key the dims curriculum grows to: "n_dims" (the active input dimension),
    unless the family says otherwise (Fourier series: the active frequencies)."""
    family = _family(t)
    return family.curriculum_key(t) if hasattr(family, "curriculum_key") else "n_dims"


def get_task(t: ml_collections.ConfigDict, data: ml_collections.ConfigDict | None = None) -> Task:
    """The task of config.task `t`; `data` (config.data) says where host-fed families read their
    examples from (None: the defaults)."""
    family = _family(t)
    family.check_config(t)
    if not getattr(family, "HOST_FED", False):
        return family.make(t)
    if data is None:
        from icl_jax import config  # late: config builds its task schema from this registry

        data = config.default_config().data
    return family.make(t, data)


__all__ = ["LOSSES", "SHARED_KEYS", "TASK_NAMES", "config_keys", "LinearTask", "Prompts", "RegressionTask", "Task", "check_task_config", "curriculum_key", "get_task",
           "label_classes"]
