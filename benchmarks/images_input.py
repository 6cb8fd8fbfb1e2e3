"""Does the device wait on the host? Train-step time of an image task with real data (the
host gathers examples, prefetched on a background thread) against the same step on a fixed
synthetic batch already on the device, and their ratio.

    python benchmarks/images_input.py [--arg=] [--steps=30] [--rounds=3] [--batch_size=64]
                                      [--dataset=digits] [--mock_tfds] [--in_memory]

--arg is the text after ':' in --config=configs/images.py:ARG ('' is the laptop default);
--mock_tfds reads --dataset through tfds.testing.mock_data (random records, no files: it
measures the tfds reader's overhead, not disk). Runs of consecutive steps alternate between
the two inputs, each timed from the first dispatch to the last result, so the background
thread has exactly the overlap training gives it; the median run of each kind is reported.
"""

from __future__ import annotations

import argparse
import contextlib
import pathlib
import statistics
import time

import jax
import numpy as np

from icl_jax import config as config_lib
from icl_jax import parallel, tasks
from icl_jax.data import feed as data_feed
from icl_jax.training import optimizer, step as step_lib


def load_config(arg: str):
    import importlib.util

    path = pathlib.Path(__file__).resolve().parents[1] / "configs" / "images.py"
    spec = importlib.util.spec_from_file_location("images_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def _run(step_fn, state, next_batch, steps: int):
    start = time.perf_counter()
    for _ in range(steps):
        state, metrics = step_fn(state, next_batch())
    jax.block_until_ready(metrics["loss"])
    return (time.perf_counter() - start) / steps, state


def benchmark(config, steps: int, rounds: int) -> dict:
    mesh = parallel.make_mesh()
    task, tx = tasks.get_task(config.task, config.data), optimizer.make_optimizer(config.train)
    spec = step_lib.state_spec(config, tx, mesh)
    state = spec.init()
    step_fn = step_lib.make_train_step(config, spec, task, tx, mesh)  # from the host examples it is given
    source = task.source("train")
    feed = data_feed.TrainFeed(source, config.train.batch_size, task.n_points, config.seed, mesh,
                               config.data.prefetch)
    try:
        generator = np.random.default_rng(0)
        shape = (config.train.batch_size, task.n_points)
        synthetic = data_feed.to_mesh((generator.integers(0, 256, shape + source.image_shape, dtype=np.uint8),
                                       generator.integers(0, source.num_classes, shape).astype(np.int32)), mesh)
        _, state = _run(step_fn, state, feed.next, 3)  # compile, fill the prefetch queue
        _, state = _run(step_fn, state, lambda: synthetic, 3)
        real, fixed = [], []
        for _ in range(rounds):
            t, state = _run(step_fn, state, feed.next, steps)
            real.append(t)
            t, state = _run(step_fn, state, lambda: synthetic, steps)
            fixed.append(t)
    finally:
        feed.close()
    start = time.perf_counter()
    for _ in range(steps):
        data_feed.gather_batch(source, np.zeros(shape, np.int64) + np.arange(shape[1]))
    gather = (time.perf_counter() - start) / steps
    return {"real_s": statistics.median(real), "synthetic_s": statistics.median(fixed), "gather_s": gather,
            "real_runs": real, "synthetic_runs": fixed}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arg", default="", help="config argument of configs/images.py ('' = laptop)")
    parser.add_argument("--steps", type=int, default=30, help="steps per timed run")
    parser.add_argument("--rounds", type=int, default=3, help="timed runs of each kind")
    parser.add_argument("--batch_size", type=int, default=None)
    parser.add_argument("--dataset", default=None)
    parser.add_argument("--mock_tfds", action="store_true")
    parser.add_argument("--in_memory", action="store_true", help="data.in_memory=True")
    args = parser.parse_args()
    config = load_config(args.arg)
    if args.batch_size:
        config.train.batch_size = args.batch_size
    if args.dataset:
        config.task.dataset = args.dataset
    config.data.in_memory = args.in_memory
    config_lib.validate(config)
    mock = contextlib.nullcontext()
    if args.mock_tfds:
        import tensorflow_datasets as tfds

        mock = tfds.testing.mock_data(num_examples=2000)
    with mock:
        r = benchmark(config, args.steps, args.rounds)
    t = config.task
    print(f"{jax.devices()[0].device_kind} ×{jax.device_count()}, jax {jax.__version__}; {t.dataset}"
          f"{' (tfds mock)' if args.mock_tfds else ''}, batch {config.train.batch_size} × {t.n_points} points, "
          f"D={t.n_dims}, model {config.model.n_layer}/{config.model.n_head}/{config.model.n_embd}, "
          f"prefetch {config.data.prefetch}{', split in memory' if config.data.in_memory else ''}")
    print(f"step with real data:        {r['real_s'] * 1e3:8.1f} ms  (runs: "
          f"{', '.join(f'{x * 1e3:.1f}' for x in r['real_runs'])})")
    print(f"step with synthetic inputs: {r['synthetic_s'] * 1e3:8.1f} ms  (runs: "
          f"{', '.join(f'{x * 1e3:.1f}' for x in r['synthetic_runs'])})")
    print(f"host gather alone:          {r['gather_s'] * 1e3:8.1f} ms per batch")
    print(f"real / synthetic = {r['real_s'] / r['synthetic_s']:.3f}")


if __name__ == "__main__":
    main()
