"""Small file helpers: atomic writes, the run's config and library versions."""

from __future__ import annotations

import importlib.metadata
import io
import json
import os
import pathlib
import platform
import tempfile

import jax
import ml_collections
import numpy as np

from icl_jax.errors import UserError

# Keys that may change between a run and its resumption: they do not change the trained math
# (train.steps only while the learning-rate schedule does not depend on it; wandb.* only says
# where results are logged).
# model.size only says where the sized keys came from; the saved config holds their values.
RESUMABLE_CHANGES = ("model.size", "train.log_every", "train.checkpoint_every", "train.keep_last",
                     "train.keep_every", "train.batch_splits", "eval.", "parallel.", "data.", "wandb.")


def write_atomic(path: str | pathlib.Path, data: str | bytes) -> None:
    """Write to a temporary file beside `path`, then rename: readers never see half a file."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_json(path, obj) -> None:
    write_atomic(path, json.dumps(obj, indent=1) + "\n")


def write_npz(path, arrays: dict) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    write_atomic(path, buffer.getvalue())


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for dist in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "ml-collections", "numpy"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return versions


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def is_resumable(key: str, resumable=RESUMABLE_CHANGES) -> bool:
    """Whether `key` (like 'train.log_every') may change without changing what a run trains."""
    return any(key == r or (r.endswith(".") and key.startswith(r)) for r in resumable)


def flat_config(config: dict | ml_collections.ConfigDict) -> dict:
    """{'task.n_dims': 5, ...}"""
    return _flat(config.to_dict() if isinstance(config, ml_collections.ConfigDict) else config)


def record_run_config(workdir: str | pathlib.Path, config: ml_collections.ConfigDict) -> None:
    """Writes WORKDIR/config.json; if a run already lives there, refuses a config that would
    change what it trains (so resuming never mixes two experiments in one workdir)."""
    path = pathlib.Path(workdir) / "config.json"
    new = config.to_dict()
    if path.exists():
        old = with_schema_defaults(json.loads(path.read_text()))
        flat_old, flat_new = _flat(old), _flat(new)
        resumable = RESUMABLE_CHANGES + (("train.steps",) if config.train.schedule == "constant" else ())
        changed = sorted(k for k in set(flat_old) | set(flat_new)
                         if flat_old.get(k) != flat_new.get(k) and not is_resumable(k, resumable))
        if changed:
            details = ", ".join(f"{k}: {flat_old.get(k)!r} -> {flat_new.get(k)!r}" for k in changed)
            raise UserError(f"{workdir} holds a run with a different config ({details}); "
                            f"use another --workdir or the same config to resume")
    if jax.process_index() == 0:  # one writer on a shared workdir
        write_json(path, new)


def load_run_config(workdir: str | pathlib.Path) -> ml_collections.ConfigDict:
    path = pathlib.Path(workdir) / "config.json"
    if not path.exists():
        raise UserError(f"{path} not found: is {workdir} the --workdir of a training run?")
    return ml_collections.ConfigDict(with_schema_defaults(json.loads(path.read_text())))


def with_schema_defaults(saved: dict) -> dict:
    """A config saved before keys were added to the schema, completed with their defaults.
    A new key's default keeps the behaviour runs had before it existed, so old runs still
    evaluate and resume; keys the schema no longer has stay, for validate to name."""
    from icl_jax import config as config_lib  # config imports the task registry

    def merge(base: dict, over: dict) -> dict:
        for key, value in over.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                merge(base[key], value)
            else:
                base[key] = value
        return base

    return merge(config_lib.default_config().to_dict(),
                 _before_model_sizes(_moved_keys_in_place(saved, config_lib.MOVED_KEYS)))


def _before_model_sizes(saved: dict) -> dict:
    """A config saved before model.size existed held every sized key, the transformer's
    n_embd included where the kind has no width (linear_attention): dropped, as 0 says now."""
    model = saved.get("model", {})
    if "size" not in model and model.get("kind") == "linear_attention":
        model["n_embd"] = 0
    return saved


def _moved_keys_in_place(saved: dict, moved: dict[str, str]) -> dict:
    """`saved` with every key at an old path (config.MOVED_KEYS) put at its new one."""
    for old, new in moved.items():
        (old_section, old_key), (new_section, new_key) = old.split("."), new.split(".")
        if old_key in saved.get(old_section, {}):
            saved.setdefault(new_section, {})[new_key] = saved[old_section].pop(old_key)
    return saved
