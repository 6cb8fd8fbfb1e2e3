"""Which algorithm did the model learn: analyses of a checkpoint, each a module with
`analyze(run, options) -> (result, figure)` (analysis/common.py loads the run).

`python -m icl_jax.analyze --workdir=DIR --what=NAME` writes DIR/analysis/NAME_step_<N>.json
and .png (learning_curve: DIR/analysis/learning_curve.json and .png, over every checkpoint;
spectrum: DIR/eval/spectrum_step_<N>.json and .png). `--what=state --workdir=DIR1,DIR2,...`
compares runs: OUT/state.json and .png (--out, default DIR1/analysis).
"""

# --what name -> module (imported on use)
ANALYSES = {
    "gd": "icl_jax.analysis.gd_comparison",  # the model against GD with the best step size
    "similarity": "icl_jax.analysis.similarity",  # prediction and implied-weight differences to each baseline
    "probes": "icl_jax.analysis.probes",  # linear readouts of w from the hidden states, per layer
    "shift": "icl_jax.analysis.shift",  # out-of-distribution prompts, model and baselines
    "attention": "icl_jax.analysis.attention",  # attention maps, induction and nearest-neighbour scores
    "learning_curve": "icl_jax.analysis.learning_curve",  # loss at chosen k against training step
    "spectrum": "icl_jax.analysis.spectrum",  # Fourier runs: power per frequency of the learned function
    "state": "icl_jax.analysis.state",  # several runs: error at k = 2d against the model's state size
}
