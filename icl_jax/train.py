"""python -m icl_jax.train --config=configs/linear.py --workdir=DIR [--config.train.steps=100]

Trains (or resumes) the run in DIR, data-parallel over every local device; with --multihost,
over every device of every process (launch/ starts those). See the config file's docstring
for the expected result.
"""

import sys
import time

if __name__ == "__main__":
    from icl_jax import cpu_process

    cpu_process.prepare()  # may re-execute once, before jax is imported

_START = time.time()

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from icl_jax import cli, compilation_cache, parallel  # noqa: E402
from icl_jax import config as config_lib  # noqa: E402
from icl_jax.training import loop  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py[:arg]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory: checkpoints, metrics, config.")
_MULTIHOST = flags.DEFINE_bool("multihost", False, "Join a multi-process run via jax.distributed "
                               "(also: ICL_JAX_MULTIHOST=1); see launch/.")
flags.mark_flags_as_required(["config", "workdir"])


@cli.reports_user_errors
def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if parallel.multihost_requested(_MULTIHOST.value):
        parallel.initialize_multihost()  # before any other JAX call
    # A --config.curriculum.* flag is checked even where the config file turns the curriculum off.
    config_lib.validate(_CONFIG.value, curriculum_set=any(a.startswith("--config.curriculum.") for a in sys.argv))
    compilation_cache.enable()
    loop.train(_CONFIG.value, _WORKDIR.value, start_time=_START, raise_when_stopped=True)


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
