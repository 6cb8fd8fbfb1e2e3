"""Every task class trains and evaluates end to end (a few steps each, the tiny test model),
`python -m icl_jax.analyze --what=spectrum` on a Fourier run, and every config file builds its task and model.

The linear, sparse and mixture classes, conjunction and images have end-to-end tests of their
own (test_evaluate.py, test_boolean_evaluate.py, test_images_training.py); these are the rest.
"""

import json
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import nnx

from icl_jax import config as config_lib
from icl_jax import parallel, tasks
from icl_jax.evaluation import run
from icl_jax.training import loop, optimizer, step as step_lib
from tests.conftest import load_module, run_cli_in_process, small_config

pytestmark = pytest.mark.timeout(300)
ROOT = pathlib.Path(__file__).resolve().parents[1]

# name -> (task keys, the baselines its scorer must report beside the model)
CLASSES = {
    "fourier": (dict(n_dims=1, fourier_max_frequency=2), {"bayes", "label_mean", "nearest_neighbors", "zero"}),
    "fourier_mixture": (dict(n_dims=1, fourier_max_frequency=2),
                        {"bayes", "least_squares_true_N", "least_squares_max_N", "nearest_neighbors", "zero"}),
    "relu_net": (dict(relu_hidden=8), {"neural_net", "least_squares", "nearest_neighbors", "zero"}),
    "decision_tree": (dict(tree_depth=2), {"neural_net", "least_squares", "nearest_neighbors", "zero"}),
    "sign_vector": ({}, {"bayes", "least_squares", "ridge", "zero"}),
    "task_pool": (dict(pool_size=8, noise_std=0.5), {"bayes", "least_squares", "ridge", "zero"}),
    "anisotropic_linear": (dict(weight_spectrum_decay=2.0), {"bayes", "least_squares", "ridge", "gd_1", "zero"}),
    "parity": (dict(n_dims=4), {"bayes", "nn_1", "averaging", "majority"}),
    "sparse_parity": (dict(n_dims=4, parity_size=2), {"bayes", "nn_1", "averaging", "majority"}),
}


def _config(name):
    keys, _ = CLASSES[name]
    c = small_config(name=name, **keys)
    c.curriculum.dims_start = 1  # the Fourier classes grow frequencies, not dimensions
    c.model.n_layer = 1  # compiles faster; the model is not what these tests check
    c.train.steps, c.train.log_every, c.train.checkpoint_every, c.train.warmup_steps = 6, 3, 6, 2
    c.eval.num_prompts, c.eval.batch_size, c.eval.bootstrap_samples = 16, 16, 20
    return config_lib.validate(c)


@pytest.fixture(scope="module")
def fourier_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("fourier")
    loop.train(_config("fourier"), workdir)
    return workdir


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CLASSES))
def test_a_few_steps_then_evaluate(name, tmp_path, request):
    c = _config(name)
    if name == "fourier":  # the run the spectrum test reads too
        workdir = request.getfixturevalue("fourier_run")
    else:
        workdir = tmp_path
        loop.train(c, workdir)
    lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [3, 6] and all(np.isfinite(r["loss"]) for r in lines)
    result = run.evaluate(workdir, verbose=False)
    on_disk = json.loads((workdir / "eval" / "step_6.json").read_text())
    assert on_disk == json.loads(json.dumps(result))
    assert on_disk["task"] == name and on_disk["step"] == 6 and on_disk["k"] == list(range(c.task.n_points))
    assert (workdir / "eval" / "step_6.png").stat().st_size > 10_000
    missing = (CLASSES[name][1] | {"model"}) - set(on_disk["curves"])
    assert not missing, (missing, sorted(on_disk["curves"]))
    for baseline, curve in on_disk["curves"].items():
        assert len(curve["mean"]) == c.task.n_points and np.all(np.isfinite(curve["mean"])), baseline
    if tasks.get_task(c.task).family == "boolean":  # the exact posterior: a probability of error
        assert on_disk["bayes"]["exact"] and 0 <= min(on_disk["curves"]["bayes"]["mean"]) <= 0.5


@pytest.mark.slow
def test_spectrum_command_on_a_fourier_run(fourier_run):
    r = subprocess.run([sys.executable, "-m", "icl_jax.analyze", "--what=spectrum", f"--workdir={fourier_run}",
                        "--num_prompts=4", "--grid=8"], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "mean frequency" in r.stdout and "true functions" in r.stdout
    result = json.loads((fourier_run / "eval" / "spectrum_step_6.json").read_text())
    assert result["step"] == 6 and result["frequency"] == [0, 1, 2, 3, 4]  # 0..grid/2
    assert (fourier_run / "eval" / "spectrum_step_6.png").exists()
    for name, power in result["normalized_power"].items():  # per k, a distribution over frequencies
        np.testing.assert_allclose(np.sum(power, axis=1), 1.0, atol=1e-5, err_msg=name)
    np.testing.assert_allclose(np.sum(result["true_functions"]), 1.0, atol=1e-5)
    # a grid that cannot resolve N_max is refused in one line (a linear run: tests/test_analysis.py)
    r = run_cli_in_process("icl_jax.analyze", "--what=spectrum", f"--workdir={fourier_run}", "--grid=4")
    assert r.returncode == 1 and "error: --grid must exceed 2·N_max = 4" in r.stderr


@pytest.mark.parametrize("path", sorted(p.stem for p in (ROOT / "configs").glob("*.py")))
@pytest.mark.parametrize("arg", ["", "standard"])
def test_every_config_file_builds_its_task_and_model(path, arg):
    """Shapes only (jax.eval_shape): the task samples a batch of the config's prompt shape and
    the model, built from the config, maps it to one prediction per position."""
    c = load_module(ROOT / "configs" / f"{path}.py").get_config(arg)
    config_lib.validate(c)
    task = tasks.get_task(c.task)
    shape = (2, c.task.n_points, c.task.n_dims)
    if getattr(task, "host_fed", False):  # images: prompts made from a data set's examples (task.prompts)
        prompts = tasks.Prompts(jax.ShapeDtypeStruct(shape, np.float32), jax.ShapeDtypeStruct(shape[:2], np.int32),
                                jax.ShapeDtypeStruct((2, 1), np.float32))
    else:
        prompts = jax.eval_shape(lambda key: task.sample(key, 2), jax.random.key(0))
    assert prompts.x_BxKxD.shape == shape and prompts.y_BxK.shape == shape[:2]
    spec = step_lib.state_spec(c, optimizer.make_optimizer(c.train), parallel.make_mesh())  # params, Adam's state
    yhat = jax.eval_shape(lambda p, x, y: nnx.merge(spec.graphdef, p)(x, y), spec.abstract["params"],
                          prompts.x_BxKxD, prompts.y_BxK)
    classes = tasks.label_classes(c.task)
    assert yhat.shape == ((2, c.task.n_points, classes) if classes else (2, c.task.n_points))
