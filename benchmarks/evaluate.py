"""Wall time of `evaluate` on a tiny run, split into the model's forward passes and each baseline.

    python benchmarks/evaluate.py [--workdir=DIR] [--num_prompts=1280]

Without --workdir it trains the default laptop config (configs/linear.py) for 20 steps in a
temporary directory first; the model's size, not its training, sets the forward-pass time.
Each predictor's time includes its compilation (evaluate runs each once), as a user sees it.
"""

from __future__ import annotations

if __name__ == "__main__":  # measure the host memory behaviour `python -m icl_jax.train` gets
    from icl_jax import cpu_process

    cpu_process.prepare()

import argparse
import importlib.util
import pathlib
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _default_config():
    spec = importlib.util.spec_from_file_location("linear_config", ROOT / "configs" / "linear.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    config.train.steps, config.train.log_every = 20, 20
    return config


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--num_prompts", type=int, default=1280)
    args = parser.parse_args()

    from icl_jax.evaluation import run
    from icl_jax.training import loop

    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir
        if workdir is None:
            workdir = pathlib.Path(tmp) / "run"
            loop.train(_default_config(), workdir)
        start = time.perf_counter()
        result = run.evaluate(workdir, num_prompts=args.num_prompts, verbose=False)
        total = time.perf_counter() - start
    print(f"evaluate on {result['task']} d={result['n_dims']}, {result['num_prompts']} prompts × "
          f"{len(result['k'])} lengths: {total:.2f} s in all")
    for name, seconds in sorted(result["seconds"].items(), key=lambda item: -item[1]):
        print(f"  {name:>24}: {seconds:6.2f} s  ({seconds / total:.0%})")
    rest = total - sum(result["seconds"].values())
    print(f"  {'restore, prompts, files':>24}: {rest:6.2f} s  ({rest / total:.0%})")


if __name__ == "__main__":
    main()
