"""python -m icl_jax.evaluate --workdir=DIR [--step=N] [--num_prompts=1280]

Scores a checkpoint of the run in DIR and the baselines on the same seeded prompts; prints a
table and writes DIR/eval/step_<N>.{json,png}.
"""

if __name__ == "__main__":
    from icl_jax import cpu_process

    cpu_process.prepare()  # may re-execute once, before jax is imported

from absl import app, flags  # noqa: E402

from icl_jax import cli, compilation_cache, parallel  # noqa: E402
from icl_jax.evaluation import run  # noqa: E402

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory written by icl_jax.train.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
_NUM_PROMPTS = flags.DEFINE_integer("num_prompts", None, "Evaluation prompts (default: config.eval.num_prompts).")
_MULTIHOST = flags.DEFINE_bool("multihost", False, "Run as one process of a multi-process job "
                               "(also: ICL_JAX_MULTIHOST=1): each evaluates locally, process 0 writes.")
flags.mark_flag_as_required("workdir")


@cli.reports_user_errors
def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if parallel.multihost_requested(_MULTIHOST.value):
        parallel.initialize_multihost()  # before any other JAX call
    compilation_cache.enable()
    run.evaluate(_WORKDIR.value, _STEP.value, _NUM_PROMPTS.value)


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
