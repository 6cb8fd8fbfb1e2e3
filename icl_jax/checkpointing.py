"""The only module that talks to orbax: save, find and restore training states.

Checkpoints live in WORKDIR/checkpoints/<step>. Orbax writes each into a temporary folder and
renames it when complete, so a crash never leaves a half-written checkpoint under a step
name. Retention: the `keep_last` newest, plus every step that is a multiple of `keep_every`
(for learning-curve evaluation).

A train state is a dict with a "params" entry. Each checkpoint keeps the parameters as their
own item, "params", and the rest of the state (step, optimizer state, ...) as "trainer", so a
reader that wants the model restores "params" alone, without knowing the optimizer. A run
whose examples come from the host (tasks/images.py) also keeps its input pipeline's state, as
a small JSON item "data".

Checkpoints written before the split hold the whole state in one item, "default" (with or
without "data"); they are still read, both whole (to resume) and for their parameters alone.
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp

from icl_jax.errors import UserError

_PARAMS, _TRAINER, _DATA = "params", "trainer", "data"
_WHOLE_STATE = "default"  # checkpoints written before the split: the whole state, one item
_ITEMS = (_PARAMS, _TRAINER, _DATA, _WHOLE_STATE)


def checkpoint_dir(workdir: str | pathlib.Path) -> pathlib.Path:
    return pathlib.Path(workdir).absolute() / "checkpoints"


def _abstract(like: Any) -> Any:
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, like)


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
        # Every item name of either layout: the manager then reads both (a save writes a subset).
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=_ITEMS)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(self, step: int, state: dict, data: dict | None = None) -> None:
        if self._with_data != (data is not None):
            raise ValueError("pass `data` to save exactly when the Checkpoints were made with_data")
        trainer = {key: value for key, value in state.items() if key != _PARAMS}
        items = {_PARAMS: ocp.args.StandardSave(state[_PARAMS]), _TRAINER: ocp.args.StandardSave(trainer)}
        if self._with_data:
            items[_DATA] = ocp.args.JsonSave(data)
        self._manager.save(step, args=ocp.args.Composite(**items), force=True)
        self._manager.wait_until_finished()

    def restore(self, step: int | None, like: dict) -> tuple[int, dict]:
        """The whole train state of `step` (latest if None), in the structure, shapes and
        shardings of `like`: what a resumed run continues from."""
        step = self._existing(step)
        if self._holds_whole_state(step):
            return step, self._read(step, _WHOLE_STATE, self._pytree_restore(_abstract(like)))
        trainer = _abstract({key: value for key, value in like.items() if key != _PARAMS})
        restored = self._read_items(step, {_PARAMS: ocp.args.StandardRestore(_abstract(like[_PARAMS])),
                                           _TRAINER: ocp.args.StandardRestore(trainer)})
        return step, {_PARAMS: restored[_PARAMS], **restored[_TRAINER]}

    def restore_params(self, step: int | None, like: Any) -> tuple[int, Any]:
        """The parameters alone of `step` (latest if None), in the structure, shapes and
        shardings of `like` (the parameters'): what evaluation and analyses restore."""
        step = self._existing(step)
        if self._holds_whole_state(step):
            only_params = self._pytree_restore({_PARAMS: _abstract(like)}, partial=True)
            return step, self._read(step, _WHOLE_STATE, only_params)[_PARAMS]
        return step, self._read(step, _PARAMS, ocp.args.StandardRestore(_abstract(like)))

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

    def _existing(self, step: int | None) -> int:
        steps = self.all_steps()
        if not steps:
            raise UserError(f"no checkpoint in {self.directory}")
        if step is None:
            return steps[-1]
        if step not in steps:
            raise UserError(f"no checkpoint for step {step} in {self.directory}; available: {steps}")
        return step

    def _holds_whole_state(self, step: int) -> bool:
        """Whether `step` was written before the split (one item with the whole state)."""
        step_path = ocp.step.standard_name_format().find_step(self.directory, step).path
        return not (step_path / _PARAMS).exists() and (step_path / _WHOLE_STATE).exists()

    @staticmethod
    def _pytree_restore(abstract: Any, partial: bool = False) -> ocp.args.PyTreeRestore:
        """Restores into `abstract`; `partial`: the subtree it names of a larger saved tree. The
        whole-state item is always read with PyTreeRestore (StandardRestore has no partial
        restore), as an orbax manager binds one kind of args to an item."""
        return ocp.args.PyTreeRestore(item=abstract, restore_args=ocp.checkpoint_utils.construct_restore_args(abstract),
                                      partial_restore=partial)

    def _read(self, step: int, item: str, args: ocp.args.CheckpointArgs) -> Any:
        return self._read_items(step, {item: args})[item]

    def _read_items(self, step: int, items: dict[str, ocp.args.CheckpointArgs]) -> dict:
        try:
            return self._manager.restore(step, args=ocp.args.Composite(**items))
        except Exception as e:  # orbax raises many types for unreadable data
            raise UserError(
                f"checkpoint for step {step} in {self.directory} could not be read "
                f"({type(e).__name__}: {str(e)[:300]}); it may be corrupted or from a different "
                f"model config. Move it aside to use an earlier step.") from e
