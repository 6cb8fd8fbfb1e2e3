"""One run of a sweep: its resolved config, its directory, how far it got.

A run lives in WORKDIR/<name>-<hash>: the name spells the values of the keys the sweep varies
(`pool_size=16+seed=0`), the hash is of its resolved config (every key that changes what is
trained, files.RESUMABLE_CHANGES left out), so the same point always lands in the same
directory and a changed config file or command line makes new runs instead of reusing old
ones. The directory is an ordinary run directory; `sweep_point.json` beside config.json says
how the sweep made it.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import pathlib
import re

import ml_collections

from icl_jax import config as config_lib
from icl_jax import files
from icl_jax.errors import UserError
from icl_jax.sweeps.grid import ConfigSource, Point

POINT_FILE = "sweep_point.json"


class Status(enum.Enum):
    NEW = "not started"
    UNFINISHED = "unfinished"  # trained part of train.steps
    UNEVALUATED = "trained, not evaluated"
    FINISHED = "finished"  # trained to train.steps and evaluated there


@dataclasses.dataclass(frozen=True)
class Run:
    name: str  # the directory's name under the sweep's workdir
    point: Point
    config: ml_collections.ConfigDict  # resolved and validated: what train will write

    @property
    def steps(self) -> int:
        return self.config.train.steps

    def train_flags(self, source: ConfigSource) -> list[str]:
        return [f"--config={source.flag}"] + [f"--config.{k}={_flag_value(v)}" for k, v in self.point.items()]


def resolve(source: ConfigSource, point: Point) -> ml_collections.ConfigDict:
    """The config `train --config=SOURCE --config.KEY=VALUE...` would run, validated."""
    config = source.load()
    for key, value in point.items():
        config_lib.check_key(key)
        _set(config, key, value)
    curriculum_set = any(k.startswith("curriculum.") for k in point)
    return config_lib.validate(config, curriculum_set=curriculum_set)


def _set(config, key: str, value) -> None:
    *parents, leaf = key.split(".")
    for part in parents:
        config = config[part]
    old = config[leaf]
    if isinstance(old, bool) != isinstance(value, bool) or (
            not isinstance(value, type(old)) and not (isinstance(old, float) and isinstance(value, int))):
        raise UserError(f"sweep value {value!r} for {key!r} must be {type(old).__name__}")
    config[leaf] = float(value) if isinstance(old, float) else value


def _flag_value(value) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def config_hash(config: ml_collections.ConfigDict) -> str:
    trained = {k: v for k, v in files.flat_config(config).items() if not files.is_resumable(k)}
    return hashlib.sha256(json.dumps(trained, sort_keys=True).encode()).hexdigest()[:8]


def run_name(point: Point, varied: list[str], config: ml_collections.ConfigDict) -> str:
    """'pool_size=16+seed=0-1a2b3c4d': the varied keys' last parts and values, then the hash.
    No commas: analyze --workdir takes a comma-separated list."""
    shown = "+".join(f"{k.rsplit('.', 1)[-1]}={point[k]}" for k in varied if k in point)
    shown = re.sub(r"[^A-Za-z0-9_.=+-]", "_", shown) or "run"
    return f"{shown}-{config_hash(config)}"


def make_runs(source: ConfigSource, points: list[Point], sweep_name: str = "",
              workdir: pathlib.Path | None = None) -> list[Run]:
    """Every point resolved (a bad key or value stops the sweep before anything runs);
    points that resolve to the same config are one run. A run whose config already has a
    directory in `workdir` keeps it, whatever its name says (a grid given another axis or
    order names its runs differently; it must not train them again). Runs that log to W&B
    without a group of their own are grouped under `sweep_name` (a logging key: the hash stays)."""
    existing = {}
    if workdir is not None and pathlib.Path(workdir).is_dir():
        existing = {p.name.rsplit("-", 1)[-1]: p.name for p in sorted(pathlib.Path(workdir).iterdir())
                    if p.is_dir() and (p / POINT_FILE).exists()}
    varied = [k for k in dict.fromkeys(k for p in points for k in p)
              if len({repr(p.get(k)) for p in points}) > 1]
    runs, seen = [], set()
    for point in points:
        try:
            config = resolve(source, point)
        except UserError as e:
            raise UserError(f"sweep point {point}: {e}") from None
        if config.wandb.project and not config.wandb.group and sweep_name:
            point = {**point, "wandb.group": sweep_name}
            config.wandb.group = sweep_name
        name = run_name(point, varied, config)
        run = Run(existing.get(name.rsplit("-", 1)[-1], name), point, config)
        if run.name not in seen:
            seen.add(run.name)
            runs.append(run)
    return runs


def status(run_dir: pathlib.Path, steps: int) -> tuple[Status, int | None]:
    """How far the run in `run_dir` got, and its latest checkpoint step. Read from the files
    alone (no JAX): a step directory is complete once Orbax has renamed it to its number."""
    if (run_dir / "eval" / f"step_{steps}.json").exists():
        return Status.FINISHED, steps
    saved = checkpoint_steps(run_dir)
    if not saved:
        return (Status.UNFINISHED if (run_dir / "config.json").exists() else Status.NEW), None
    return (Status.UNEVALUATED if saved[-1] >= steps else Status.UNFINISHED), saved[-1]


def checkpoint_steps(run_dir: pathlib.Path) -> list[int]:
    directory = run_dir / "checkpoints"
    if not directory.is_dir():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.is_dir() and p.name.isdigit())


def write_point(run_dir: pathlib.Path, run: Run, source: ConfigSource, sweep: str) -> None:
    files.write_json(run_dir / POINT_FILE, {"sweep": sweep, "config": source.flag, "point": run.point,
                                            "hash": config_hash(run.config)})
