import contextlib
import io
import json
import pathlib
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from icl_jax.errors import UserError
from icl_jax.evaluation import run, statistics
from icl_jax.training import loop
from tests.conftest import run_cli_in_process, small_config

pytestmark = pytest.mark.timeout(300)
ROOT = pathlib.Path(__file__).resolve().parents[1]
NAMES = ["model", "bayes", "least_squares", "ridge", "averaging", "nearest_neighbors", "zero", "gd_1", "gd_10"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run")
    loop.train(small_config(noise_std=0.25), workdir)
    return workdir


@pytest.fixture(scope="module")
def evaluated(trained):
    """(result, what it printed) of evaluate on the trained run, once for the module."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        result = run.evaluate(trained, verbose=True)
    return result, printed.getvalue()


def _non_finite(tree, path="") -> list[str]:
    """The paths of the non-finite numbers in a JSON tree (json writes them as NaN, Infinity)."""
    if isinstance(tree, dict):
        return [p for key, value in tree.items() for p in _non_finite(value, f"{path}/{key}")]
    if isinstance(tree, list):
        return [p for i, value in enumerate(tree) for p in _non_finite(value, f"{path}[{i}]")]
    return [path] if isinstance(tree, float) and not np.isfinite(tree) else []


def test_evaluate_end_to_end(trained, evaluated):
    result, _ = evaluated
    on_disk = json.loads((trained / "eval" / "step_40.json").read_text())
    assert not _non_finite(on_disk), _non_finite(on_disk)  # every mean, interval, difference and probe
    assert on_disk == json.loads(json.dumps(result))
    assert (trained / "eval" / "step_40.png").stat().st_size > 10_000
    assert on_disk["task"] == "linear" and on_disk["step"] == 40 and on_disk["num_prompts"] == 64
    assert on_disk["normalizer"] == pytest.approx(3 + 0.25**2)
    assert on_disk["k"] == list(range(7))
    assert sorted(on_disk["curves"]) == sorted(NAMES)
    for name in NAMES:
        c = on_disk["curves"][name]
        assert len(c["mean"]) == len(c["ci_low"]) == len(c["ci_high"]) == 7
        assert np.all(np.array(c["ci_low"]) <= np.array(c["mean"]) + 1e-12)
        assert np.all(np.array(c["mean"]) <= np.array(c["ci_high"]) + 1e-12)
        # normalized squared errors: ≥ 0 and bounded (the largest, averaging's at k = 1, is ≈ 8)
        assert 0 <= min(c["ci_low"]) and max(c["ci_high"]) < 30, (name, c)
    curves = {n: np.array(on_disk["curves"][n]["mean"]) for n in NAMES}
    # a tuned step size (GD) or the posterior (ridge, bayes) does no worse than predicting 0,
    # which GD with step size 0 would do, on the same prompts — a diverging GD fails here
    for name in ("gd_1", "gd_10", "ridge", "bayes"):
        assert np.all(curves[name] <= curves["zero"] + 0.2), (name, curves[name], curves["zero"])
    # d=3, σ²=1/16: ridge (the posterior mean) is best on average past k=d, least squares
    # is close to noise level at k=2d, every predictor knows nothing at k=0.
    for name in ("least_squares", "ridge", "averaging", "nearest_neighbors"):
        assert curves[name][0] == curves["zero"][0]
    assert curves["least_squares"][-1] < 0.1 and curves["ridge"][-1] <= curves["least_squares"][-1] + 1e-6
    errors = np.load(trained / "eval" / "step_40_errors.npz")
    np.testing.assert_allclose(errors["ridge"].mean(0), curves["ridge"], rtol=1e-5)
    # the exact posterior of a Gaussian prior is ridge with λ = σ²
    assert on_disk["bayes"] == {"name": "bayes", "exact": True}
    np.testing.assert_allclose(curves["bayes"], curves["ridge"], rtol=1e-4)
    assert on_disk["least_squares_unbounded_k"] == [2, 3, 4]
    assert on_disk["baseline_info"]["gd_1"]["steps"] == 1
    assert len(on_disk["baseline_info"]["gd_10"]["step_size_per_k"]) == 7
    # every pair of predictors, per k; identical predictors differ by zero
    assert len(on_disk["prediction_differences"]) == len(NAMES) * (len(NAMES) - 1) // 2
    assert max(on_disk["prediction_differences"]["bayes|ridge"]["mean"]) < 1e-6
    assert min(on_disk["prediction_differences"]["model|zero"]["mean"][1:]) > 0
    probe = on_disk["weight_probe"]
    assert probe["k"] == [1, 3, 6] and probe["n_probes"] == 6 and probe["num_prompts"] == 64
    assert len(probe["model_linearity_r2"]) == 3
    assert set(probe["agreement"]) == {"least_squares", "ridge", "averaging", "zero", "gd_1", "gd_10", "bayes",
                                       "true_w"}
    for name, a in probe["agreement"].items():
        assert len(a["cosine"]) == len(a["squared_error"]) == 3 and np.all(np.isfinite(a["squared_error"])), name
    # ridge and the posterior have the same w
    np.testing.assert_allclose(probe["agreement"]["ridge"]["squared_error"],
                               probe["agreement"]["bayes"]["squared_error"], rtol=1e-4)


def test_evaluate_reports_the_model_it_scored(trained, evaluated):
    """The "model" entry, against the run's parameters restored and counted here, and the state
    size of the transformer's key-value cache: 2 layers × (key + value) × width 32 × 13 tokens."""
    from flax import nnx

    from icl_jax import models, run_model

    result, printed = evaluated
    config, model = run_model.load(trained)
    parameters = sum(a.size for a in jax.tree.leaves(nnx.state(model, nnx.Param)))
    want = {"kind": "transformer", "size": "tiny", "n_layer": 2, "n_head": 2, "n_embd": 32,
            "parameters": models.param_count(nnx.state(model, nnx.Param)),
            "state_floats": models.state_size(config.model, 3, 7)}
    assert result["model"] == want and want["parameters"] == parameters > 10_000
    assert want["state_floats"] == 2 * 2 * 32 * 13
    assert json.loads((trained / "eval" / "step_40.json").read_text())["model"] == want
    line = f"model: transformer tiny (2×32, 2 heads), {parameters:,} parameters, state 1,664 floats per prompt"
    assert printed.splitlines()[0] == line, printed[:500]  # before the table


@pytest.mark.slow
@pytest.mark.parametrize("task", [dict(name="sparse_linear", sparsity=2), dict(name="gaussian_mixture")])
def test_evaluate_mixture_classes_report_component_weights(tmp_path, task):
    loop.train(small_config(**task), tmp_path)
    result = run.evaluate(tmp_path, verbose=False)
    weight = np.array(result["bayes"]["true_component_weight"]["mean"])
    assert result["bayes"]["exact"] and weight[0] == pytest.approx(1 / 3 if task["name"] == "sparse_linear" else 0.5)
    assert weight[-1] > 0.99
    if task["name"] == "gaussian_mixture":
        shares = np.array([result["bayes"]["component_weights"][c] for c in ("0", "1")])
        np.testing.assert_allclose(shares.sum(0), 1.0, atol=1e-9)
    else:
        assert "lasso" in result["curves"] and min(result["baseline_info"]["lasso"]["converged_fraction_per_k"]) == 1.0
        assert max(result["curves"]["bayes"]["mean"][3:]) < 1e-12  # noiseless, s = 2: zero from k = 3


def test_the_zero_predictor_scores_one_on_average():
    """The normalizer is E[y²]: on many prompts the zero predictor's curve is 1 at every k."""
    c = small_config(noise_std=0.5)
    from icl_jax import tasks
    from icl_jax.evaluation import prompts

    _, y, _ = prompts.eval_prompts(c, 4000)
    ratio = statistics.squared_errors(np.zeros_like(y), y).mean(0) / tasks.get_task(c.task).normalizer
    np.testing.assert_allclose(ratio, 1.0, atol=0.06)


def test_bootstrap_interval_covers_the_mean_and_is_paired():
    errors = np.random.default_rng(0).exponential(size=(500, 4))
    counts = statistics.resample_counts(500, 400, seed=3)
    assert np.all(counts.sum(1) == 500)
    c = statistics.curve(errors, counts)
    half_width = (np.array(c["ci_high"]) - np.array(c["ci_low"])) / 2
    np.testing.assert_allclose(half_width, 1.645 * errors.std(0) / np.sqrt(500), rtol=0.2)
    np.testing.assert_array_equal(counts, statistics.resample_counts(500, 400, seed=3))


def test_eval_prompts_differ_from_training_batches():
    from icl_jax import rng, tasks
    from icl_jax.evaluation import prompts

    c = small_config()
    eval_x = prompts.eval_prompts(c, 16).x_BxKxD
    train_x = tasks.get_task(c.task).sample(rng.derive(c.seed, rng.TRAIN_DATA, 0), 16).x_BxKxD
    assert not np.allclose(eval_x, np.asarray(train_x))
    np.testing.assert_array_equal(eval_x, prompts.eval_prompts(c, 16).x_BxKxD)


def test_missing_workdir_and_missing_step(tmp_path, trained):
    with pytest.raises(UserError, match="config.json not found"):
        run.evaluate(tmp_path)
    with pytest.raises(UserError, match="no checkpoint for step 7"):
        run.evaluate(trained, step=7)


def test_corrupted_checkpoint_is_reported_and_left_alone(tmp_path, trained):
    workdir = tmp_path / "copy"
    shutil.copytree(trained, workdir)
    for f in (workdir / "checkpoints" / "40").rglob("*"):
        if f.is_file() and f.stat().st_size > 100 and "metadata" not in f.name:
            f.write_bytes(b"\0" * f.stat().st_size)
    snapshot = {p: p.read_bytes() for p in workdir.rglob("*") if p.is_file()}
    with pytest.raises(UserError, match="checkpoint for step 40 .* could not be read"):
        run.evaluate(workdir, step=40, verbose=False)
    assert {p: p.read_bytes() for p in workdir.rglob("*") if p.is_file()} == snapshot


def _cli(*args, cwd=ROOT):
    """A bad-input call of a command, in this process (cheap: no interpreter or JAX start)."""
    return run_cli_in_process(*args, cwd=cwd)


def _cli_subprocess(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=240)


def test_cli_errors_are_one_clear_line(tmp_path):
    train = ("icl_jax.train", "--config=configs/linear.py")
    cases = [(("icl_jax.evaluate", f"--workdir={tmp_path}"), "config.json not found"),
             ((*train, f"--workdir={tmp_path / 'a'}", "--config.task.name=quadratic"), "unknown task.name 'quadratic'"),
             ((*train, f"--workdir={tmp_path / 'b'}", "--config.task.n_dimz=3"),
              "unknown config key 'task.n_dimz' (did you mean 'task.n_dims'?)"),
             ((*train, f"--workdir={tmp_path / 'c'}", "--config.task.n_points=500"), "longer than the model accepts"),
             (("icl_jax.train", "--config=configs/linear.py:huge", f"--workdir={tmp_path / 'd'}"),
              "unknown config argument(s) ['huge']"),
             (("icl_jax.train", "--config=configs/nope.py", f"--workdir={tmp_path / 'e'}"), "No such file")]
    for args, message in cases:  # every call: a non-zero exit, the message on one "error:" line, no traceback
        r = _cli(*args)
        assert r.returncode != 0, (args, r.returncode)
        assert "Traceback" not in r.stderr, (args, r.stderr[-3000:])
        assert any(line.startswith("error:") and message in line for line in r.stderr.splitlines()), (args, r.stderr)
    assert not (tmp_path / "a").exists() and not (tmp_path / "c" / "checkpoints").exists()


def test_evaluate_cli_on_a_workdir_without_checkpoints(tmp_path):
    from icl_jax import files

    files.write_json(tmp_path / "config.json", small_config().to_dict())
    r = _cli_subprocess("icl_jax.evaluate", f"--workdir={tmp_path}")  # the real program's exit, once
    assert r.returncode != 0 and "no checkpoints in" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "eval").exists()
