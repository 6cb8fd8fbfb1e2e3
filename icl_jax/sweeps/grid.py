"""Which runs a sweep holds.

An axis is a config key and the values it takes: `--sweep="task.pool_size=[16,256]"` on the
command line, or a named sweep of the config file (`--config=configs/task_pool.py:NAME`), the
file's module-level `SWEEPS = {NAME: {key: [values], ...}}` (axes, multiplied) or
`{NAME: [{key: value, ...}, ...]}` (the points themselves). A sweep's points are the product
of all its axes in the order given, the last axis varying fastest; a machine's shard takes
every n-th of them.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import itertools
import os
import pathlib

from icl_jax import config as config_lib
from icl_jax.errors import UserError

Point = dict  # config key -> value, the keys one run sets beyond its config file


@dataclasses.dataclass(frozen=True)
class ConfigSource:
    """`--config=FILE[:ARG]` with the named sweeps taken out of ARG."""
    file: pathlib.Path
    arg: str  # what the file's get_config receives, "" for none

    @property
    def flag(self) -> str:
        return f"{self.file}:{self.arg}" if self.arg else str(self.file)

    def load(self):
        return _module(self.file).get_config(self.arg or None)


def _module(path: pathlib.Path):
    if not path.is_file():
        raise UserError(f"config file {path} does not exist")
    spec = importlib.util.spec_from_file_location(f"_icl_jax_sweep_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def split_config_flag(flag: str) -> tuple[ConfigSource, list[Point]]:
    """'configs/x.py:standard,NAME' -> (the source with arg 'standard', the points of the
    file's sweep NAME). At most one named sweep."""
    file, _, arg = flag.partition(":")
    path = pathlib.Path(file)
    named = getattr(_module(path), "SWEEPS", {})
    words = [w for w in arg.split(",") if w]
    names = [w for w in words if w in named]
    if len(names) > 1:
        raise UserError(f"--config names {len(names)} sweeps of {file} ({', '.join(names)}); name one")
    source = ConfigSource(path, ",".join(w for w in words if w not in named))
    if not names:
        return source, [{}]
    spec = named[names[0]]
    points = [dict(p) for p in spec] if isinstance(spec, (list, tuple)) else product(list(spec.items()))
    if not points:
        raise UserError(f"sweep {names[0]!r} of {file} has no points")
    return source, points


def parse_axis(text: str) -> tuple[str, list]:
    """'task.pool_size=[16,256]' -> ('task.pool_size', [16, 256]); a single value is an axis
    of one. Values are Python literals; a bare word is a string (task.name=[parity,majority])."""
    key, eq, values = text.partition("=")
    key = key.strip()
    if not eq or not key:
        raise UserError(f"--sweep={text!r}: expected KEY=[v1,v2,...]")
    config_lib.check_key(key)
    values = values.strip()
    body = values[1:-1] if values.startswith("[") and values.endswith("]") else values
    parsed = [_literal(v.strip()) for v in _split_top_level(body) if v.strip()]
    if not parsed:
        raise UserError(f"--sweep={text!r}: no values")
    if len(set(map(repr, parsed))) != len(parsed):
        raise UserError(f"--sweep={text!r}: a value appears twice")
    return key, parsed


def _split_top_level(text: str) -> list[str]:
    parts, depth, current, quote = [], 0, "", None
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(current)
            current = ""
            continue
        current += ch
    return parts + [current]


def _literal(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare word: a string value


def product(axes: list[tuple[str, list]]) -> list[Point]:
    keys = [k for k, _ in axes]
    if len(set(keys)) != len(keys):
        raise UserError(f"a key is swept twice: {sorted(k for k in keys if keys.count(k) > 1)}")
    return [dict(zip(keys, values)) for values in itertools.product(*(v for _, v in axes))]


def combine(named: list[Point], axes: list[tuple[str, list]]) -> list[Point]:
    """The named sweep's points times the command line's axes (which win on a shared key)."""
    return [{**p, **q} for p in named for q in product(axes)]


def parse_shard(text: str | None, environ=os.environ) -> tuple[int, int]:
    """'i/n' (0 <= i < n) -> (i, n). Unset: a SLURM job array's task among the array's tasks
    when run in one, else (0, 1)."""
    if not text:
        if "SLURM_ARRAY_TASK_ID" in environ and "SLURM_ARRAY_TASK_COUNT" in environ:
            first = int(environ.get("SLURM_ARRAY_TASK_MIN", 0))
            return _checked_shard(int(environ["SLURM_ARRAY_TASK_ID"]) - first,
                                  int(environ["SLURM_ARRAY_TASK_COUNT"]), "SLURM_ARRAY_TASK_ID")
        return 0, 1
    index, slash, count = text.partition("/")
    try:
        return _checked_shard(int(index), int(count), "--shard")
    except ValueError:
        raise UserError(f"--shard={text!r}: expected i/n, e.g. 0/4") from None


def _checked_shard(index: int, count: int, what: str) -> tuple[int, int]:
    if not 0 <= index < count:
        raise UserError(f"{what}: shard {index} of {count} does not exist (0 <= i < n)")
    return index, count


def shard(items: list, index: int, count: int) -> list:
    """Every count-th item from `index`: shards are disjoint, cover the list and differ in
    size by at most one."""
    return items[index::count]
