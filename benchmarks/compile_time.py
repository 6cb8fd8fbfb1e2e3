"""Compile time of the train step against depth, with and without `model.scan_layers`.

    python benchmarks/compile_time.py [--depths=4,12,24] [--width=256]

Unrolled, XLA compiles every block separately (time grows with depth); scanned, one block is
compiled and looped over stacked parameters (time stays flat).
"""

from __future__ import annotations

import argparse
import time

import jax

from icl_jax import config as config_lib
from icl_jax import parallel, tasks
from icl_jax.training import optimizer, step as step_lib


def compile_seconds(config) -> float:
    mesh = parallel.make_mesh()
    task, tx = tasks.get_task(config.task, config.data), optimizer.make_optimizer(config.train)
    spec = step_lib.state_spec(config, tx, mesh)
    train_step = step_lib.make_train_step(config, spec, task, tx, mesh)
    start = time.perf_counter()
    train_step.lower(spec.abstract).compile()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depths", default="4,12,24")
    parser.add_argument("--width", type=int, default=256)
    args = parser.parse_args()
    print(f"train-step compile time, reference linear task, width {args.width}, jax {jax.__version__}")
    print(f"{'layers':>6} {'unrolled s':>11} {'scanned s':>10}")
    for depth in map(int, args.depths.split(",")):
        row = []
        for scan in (False, True):
            config = config_lib.default_config()
            config.model.n_layer, config.model.n_embd, config.model.scan_layers = depth, args.width, scan
            row.append(compile_seconds(config_lib.validate(config)))
        print(f"{depth:>6} {row[0]:>11.1f} {row[1]:>10.1f}", flush=True)


if __name__ == "__main__":
    main()
