"""The only module that talks to orbax: save, find and restore training states.

Checkpoints live in WORKDIR/checkpoints/<step>. Orbax writes each into a temporary folder and
renames it when complete, so a crash never leaves a half-written checkpoint under a step
name. Retention: the `keep_last` newest, plus every step that is a multiple of `keep_every`
(for learning-curve evaluation).

A run whose examples come from the host (tasks/images.py) also keeps its input pipeline's
state in each checkpoint, as a small JSON item "data" beside the training state ("default");
a reader that wants only the state restores it the same way from either kind.
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp

from icl_jax.errors import UserError

_STATE, _DATA = "default", "data"  # "default": where a single-item checkpoint keeps its state


def checkpoint_dir(workdir: str | pathlib.Path) -> pathlib.Path:
    return pathlib.Path(workdir).absolute() / "checkpoints"


class Checkpoints:
    def __init__(self, workdir: str | pathlib.Path, *, keep_last: int | None = None,
                 keep_every: int | None = None, read_only: bool = False, with_data: bool = False):
        """with_data: every save also takes the host data state (a JSON-ready dict)."""
        self.directory = checkpoint_dir(workdir)
        self._with_data = with_data
        if read_only and not self.directory.is_dir():
            raise UserError(f"no checkpoints in {self.directory}: has a run been trained in this workdir?")
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep_last, keep_period=keep_every,
            read_only=read_only, create=not read_only,
            # Saves are synchronous: the next train step donates the state buffers.
            enable_async_checkpointing=False)
        self._manager = ocp.CheckpointManager(self.directory, options=options,
                                              item_names=(_STATE, _DATA) if with_data else None)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(self, step: int, state: Any, data: dict | None = None) -> None:
        if self._with_data != (data is not None):
            raise ValueError("pass `data` to save exactly when the Checkpoints were made with_data")
        args = ocp.args.StandardSave(state)
        if self._with_data:
            args = ocp.args.Composite(**{_STATE: args, _DATA: ocp.args.JsonSave(data)})
        self._manager.save(step, args=args, force=True)
        self._manager.wait_until_finished()

    def restore(self, step: int | None, like: Any) -> tuple[int, Any]:
        """Restores `step` (latest if None) into the structure, shapes and shardings of `like`."""
        steps = self.all_steps()
        if not steps:
            raise UserError(f"no checkpoint in {self.directory}")
        if step is None:
            step = steps[-1]
        elif step not in steps:
            raise UserError(f"no checkpoint for step {step} in {self.directory}; available: {steps}")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        args = ocp.args.StandardRestore(abstract)
        try:
            if self._with_data:
                return step, self._manager.restore(step, args=ocp.args.Composite(**{_STATE: args}))[_STATE]
            return step, self._manager.restore(step, args=args)
        except Exception as e:  # orbax raises many types for unreadable data
            raise UserError(
                f"checkpoint for step {step} in {self.directory} could not be read "
                f"({type(e).__name__}: {str(e)[:300]}); it may be corrupted or from a different "
                f"model config. Move it aside to use an earlier step.") from e

    def restore_data(self, step: int) -> dict:
        """The host data state saved with `step` (Checkpoints made with_data only)."""
        if not self._with_data:
            raise ValueError("restore_data needs Checkpoints made with_data")
        try:
            return self._manager.restore(step, args=ocp.args.Composite(**{_DATA: ocp.args.JsonRestore()}))[_DATA]
        except Exception as e:  # orbax raises many types for a missing or unreadable item
            raise UserError(f"checkpoint for step {step} in {self.directory} holds no readable data state "
                            f"({type(e).__name__}: {str(e)[:200]}); was it written by a run of another task?") from e

    def close(self) -> None:
        self._manager.close()
