"""The analyses of icl_jax/analysis/: each measurement against a case with a known answer, and
all of them end to end on a tiny trained run."""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from icl_jax import baselines, models, tasks
from icl_jax.analysis import attention, common, gd_comparison, learning_curve, probes, shift, similarity, state
from icl_jax.baselines import gradient_descent
from icl_jax.errors import UserError
from icl_jax.models import linear_attention
from icl_jax.training import loop
from tests.conftest import run_cli_in_process, small_config

pytestmark = pytest.mark.timeout(600)


# ---- probes ----
def test_probe_r2_is_near_one_for_a_linearly_encoded_target_and_near_zero_otherwise():
    g = np.random.default_rng(0)
    n, e, t = 4000, 16, 5
    target = g.standard_normal((n, t))
    encoded = target @ g.standard_normal((t, e)) + 0.01 * g.standard_normal((n, e)) + 3.0  # offset: the bias matters
    unrelated = g.standard_normal((n, e))
    half = n // 2
    assert probes.probe_r2(encoded[:half], target[:half], encoded[half:], target[half:]) > 0.999
    r2_unrelated = probes.probe_r2(unrelated[:half], target[:half], unrelated[half:], target[half:])
    assert abs(r2_unrelated) < 0.03
    squared = np.concatenate([target**2, g.standard_normal((n, e - t))], axis=1)  # encoded, but not linearly
    assert probes.probe_r2(squared[:half], target[:half], squared[half:], target[half:]) < 0.03


def test_probe_targets():
    g = np.random.default_rng(1)
    x, w = g.standard_normal((5, 9, 3)), g.standard_normal((5, 3))
    y = np.einsum("nkd,nd->nk", x, w)
    t = probes.targets(x, y, w, k=6)
    np.testing.assert_allclose(t["least_squares_w"], w, atol=1e-8)  # 6 noiseless examples in 3-d: exact
    np.testing.assert_allclose(t["xty"][0], x[0, :6].T @ y[0, :6])
    np.testing.assert_array_equal(t["query_x"], x[:, 6])
    t2 = probes.targets(x, y, w, k=2)  # under-determined: the min-norm solution, in the row space
    w2 = t2["least_squares_w"][0]
    np.testing.assert_allclose(x[0, :2] @ w2, y[0, :2], atol=1e-10)
    normal = np.cross(x[0, 0], x[0, 1])
    assert abs(w2 @ normal) < 1e-10


# ---- distribution shifts ----
@pytest.fixture(scope="module")
def shifted():
    c = small_config(n_dims=6, n_points=13)
    return c, shift.shifted_prompts(c, 3000)


def test_skewed_covariance_has_the_asked_spectrum(shifted):
    c, s = shifted
    root = shift.skewed_covariance_root(jax.random.key(0), 6)
    eigenvalues = np.sort(np.linalg.eigvalsh(root @ root.T))[::-1]
    want = 1 / np.arange(1, 7) ** 2
    np.testing.assert_allclose(eigenvalues, want * 6 / want.sum(), rtol=1e-9)
    x = s["skewed_covariance"].x_NxKxD.reshape(-1, 6)
    sample = np.sort(np.linalg.eigvalsh(np.cov(x.T)))[::-1]
    np.testing.assert_allclose(sample, want * 6 / want.sum(), rtol=0.06, atol=0.01)
    assert np.trace(np.cov(x.T)) == pytest.approx(6, rel=0.03)


def test_half_subspace_orthant_and_scales(shifted):
    c, s = shifted
    x = s["half_subspace"].x_NxKxD
    assert all(np.linalg.matrix_rank(p) == 3 for p in x[:50])
    examples, query = s["orthant"].x_NxKxD, s["orthant"].query_NxKxD
    signs = np.sign(examples)
    assert np.all(signs == signs[:, :1])  # every example of a prompt in the prompt's orthant
    assert len({tuple(v) for v in signs[:, 0]}) > 20  # the orthant differs between prompts
    assert (query < 0).mean() == pytest.approx(0.5, abs=0.02)  # the query is not restricted
    base = s["x_scale_1"].x_NxKxD if "x_scale_1" in s else s["label_noise_0.5"].x_NxKxD
    np.testing.assert_allclose(s["x_scale_3"].x_NxKxD, 3 * base)
    np.testing.assert_allclose(s["w_scale_0.5"].target_NxK, 0.5 * s["label_noise_0.5"].target_NxK)
    noise = s["label_noise_1"].y_NxK - s["label_noise_1"].target_NxK
    assert noise.std() == pytest.approx(1.0, rel=0.02)


def test_orthogonal_and_repeated_queries(shifted):
    c, s = shifted
    o = s["orthogonal_query"]
    assert o.valid_k == (0, 6)
    for k in range(1, 6):
        dots = np.einsum("nid,nd->ni", o.x_NxKxD[:, :k], o.query_NxKxD[:, k])
        assert np.abs(dots).max() < 1e-9 * np.abs(o.x_NxKxD).max() ** 2 * 10
        np.testing.assert_allclose(np.linalg.norm(o.query_NxKxD[:, k], axis=-1),
                                   np.linalg.norm(o.x_NxKxD[:, k], axis=-1))
    r = s["query_repeats_input"]
    for k in range(1, 13):
        same = np.all(r.x_NxKxD[:, :k] == r.query_NxKxD[:, k][:, None], axis=-1)
        assert np.all(same.any(axis=1))
    chosen = [np.argmax(np.all(r.x_NxKxD[:, :12] == r.query_NxKxD[:, 12][:, None], axis=-1), axis=1)]
    assert len(np.unique(chosen)) == 12  # every earlier position gets chosen


def test_per_k_sequences_reproduce_a_causal_predictor():
    """With the query equal to x_k, one sequence per k gives the all-positions predictions."""
    g = np.random.default_rng(2)
    x, w = g.standard_normal((20, 8, 3)), g.standard_normal((20, 3))
    y = np.einsum("nkd,nd->nk", x, w)
    s = shift.Shifted(x, y, y, query_NxKxD=x.copy())
    predict = lambda x, y: np.asarray(baselines.least_squares(x, y, ridge=0.5))
    np.testing.assert_allclose(shift.predict_all(predict, s), predict(x.astype(np.float32), y.astype(np.float32)),
                               rtol=1e-5, atol=1e-5)


# ---- attention scores ----
def _causal_uniform(t):
    a = np.tril(np.ones((t, t)))
    return a / a.sum(-1, keepdims=True)


def test_induction_score_of_copying_and_uniform_attention():
    period, t = 8, 16
    copying = np.zeros((t, t))
    copying[np.arange(t), np.arange(t)] = 1.0
    rows = np.arange(period, t)
    copying[rows] = 0.0
    copying[rows, rows - period + 1] = 1.0
    a = np.stack([copying, _causal_uniform(t)])[None]  # 1 prompt × 2 heads
    score = attention.induction_score(a, period)
    assert score[0] == 1.0
    assert score[1] == pytest.approx(np.mean(1 / (rows + 1)))
    assert score[1] < 0.1


def test_nearest_neighbour_score():
    g = np.random.default_rng(3)
    x = g.standard_normal((4, 6, 2))
    t = 12
    nn = np.zeros((4, t, t))
    nn[:, np.arange(t), np.arange(t)] = 1.0
    for b in range(4):
        for k in range(2, 6):
            j = np.argmin(((x[b, :k] - x[b, k]) ** 2).sum(-1))
            nn[b, 2 * k] = 0.0
            nn[b, 2 * k, 2 * j + 1] = 1.0  # all on the neighbour's label token
    a = np.stack([nn, np.broadcast_to(_causal_uniform(t), (4, t, t))], axis=1)
    score, chance = attention.nearest_neighbour_score(a, x)
    assert score[0] == 1.0
    assert score[1] == pytest.approx(chance)
    assert chance == pytest.approx(np.mean([2 / (2 * k + 1) for k in range(2, 6)]))


def test_attention_weights_reproduce_the_blocks_and_trace_matches_the_model():
    for scan in (False, True):
        c = small_config()
        c.model.scan_layers = scan
        model = models.build(c.model, c.task.n_dims, tasks.label_classes(c.task), jax.random.key(0))
        x = jax.random.normal(jax.random.key(1), (3, 7, 3))
        y = jax.random.normal(jax.random.key(2), (3, 7))
        graphdef, state = nnx.split(model)
        trace, yhat = jax.jit(lambda s: (nnx.merge(graphdef, s).trace(x, y), nnx.merge(graphdef, s)(x, y)))(state)
        np.testing.assert_allclose(trace.yhat_BxK, yhat, atol=1e-5)
        assert len(trace.hidden_BxKxE) == 3 and trace.hidden_BxKxE[0].shape == (3, 7, 32)
        if scan:
            continue
        @jax.jit
        def both(state):
            model = nnx.merge(graphdef, state)
            h = model._embed(x, y)
            q, k, v = model.blocks[0].heads(h)
            fused = jax.nn.dot_product_attention(q, k, v, is_causal=True)
            return model.blocks[0].attention_weights(h), v, fused

        weights, v, fused = both(state)
        np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-6)
        assert np.all(np.asarray(jnp.triu(weights, 1)) == 0)
        mine = jnp.einsum("bhqk,bkhf->bqhf", weights, v)
        np.testing.assert_allclose(mine, fused, atol=1e-5)


# ---- GD comparison ----
def test_sensitivities_of_the_gd_construction_are_gds_weights():
    g = np.random.default_rng(4)
    x = g.uniform(-0.5, 0.5, (6, 9, 4)).astype(np.float32)
    y = np.einsum("nkd,nd->nk", x, g.standard_normal((6, 4))).astype(np.float32)
    graphdef, state = nnx.split(linear_attention.LinearAttentionModel(4, 2, 1, rngs=nnx.Rngs(0)))
    nnx.replace_by_pure_dict(state, linear_attention.gradient_descent_params(4, 2, 1, 3.0))
    s = gd_comparison.sensitivities(graphdef, nnx.to_pure_dict(state), x, y)
    w = np.asarray(gradient_descent.gradient_descent_weights(x, y, 3.0, 2))
    np.testing.assert_allclose(s, w, atol=1e-5)
    cos = gd_comparison.cosine(s, w)
    assert cos[:, 0].max() == 0.0 and cos[:, 1:].min() > 1 - 1e-6


# ---- end to end ----
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("analysis_run")
    c = small_config(n_dims=3, n_points=7)
    c.train.checkpoint_every = 40  # one checkpoint: the learning curve evaluates it once
    loop.train(c, workdir)
    return workdir


@pytest.mark.slow
def test_every_analysis_runs_on_a_tiny_trained_run(trained):
    run = common.load(trained)
    assert run.step == 40
    results = {}
    for name, module in [("gd", gd_comparison), ("similarity", similarity), ("probes", probes),
                         ("shift", shift), ("attention", attention)]:
        result, fig = module.analyze(run, 16, None)
        common.write(trained, f"{name}_step_{run.step}", result, fig)
        results[name] = json.loads((trained / "analysis" / f"{name}_step_40.json").read_text())
        assert (trained / "analysis" / f"{name}_step_40.png").stat().st_size > 1000
    gd = results["gd"]
    assert len(gd["sensitivity_cosine"]) == 7 and np.isfinite(gd["at_last_k"]["half_mse_model"])
    assert gd["at_last_k"]["half_mse_construction"] == pytest.approx(gd["at_last_k"]["half_mse_gd"], rel=1e-4)
    assert set(results["similarity"]["table"]["prediction_difference"]) >= {"least_squares", "ridge_1", "gd_1",
                                                                             "nearest_neighbor_1", "bayes"}
    assert len(results["probes"]["r2"]["true_w"]["k=3"]) == 3  # read-in + 2 layers
    assert len(results["shift"]["shifts"]) == len(shift.SHIFTS)
    assert len(results["attention"]["induction_score"]) == 2
    # values, recomputed here in float64 from the run's model and evaluation prompts (a
    # transformer: GD takes one step from 0, ŷ_k = x_k · η_k X_kᵀy_k / k)
    x, y, _, y_exact = common.linear_eval_set(run, "gd", 16)
    x64, y_exact = np.asarray(x, np.float64), np.asarray(y_exact, np.float64)
    model = np.asarray(jax.jit(lambda x, y: nnx.merge(run.graphdef, run.params)(x, y))(x, y), np.float64)
    eta, gd_yhat, ridge_yhat = np.array(gd["step_size_per_k"]), np.zeros_like(y_exact), np.zeros_like(y_exact)
    for k in range(1, 7):
        xty = np.einsum("nkd,nk->nd", x64[:, :k], y_exact[:, :k])
        gd_yhat[:, k] = np.einsum("nd,nd->n", x64[:, k], eta[k] * xty / k)
        w = np.linalg.solve(np.einsum("nkd,nke->nde", x64[:, :k], x64[:, :k]) + np.eye(3), xty[..., None])[..., 0]
        ridge_yhat[:, k] = np.einsum("nd,nd->n", x64[:, k], w)
    assert gd["gd_steps"] == 1 and eta[0] == 0 and np.all(eta[1:] > 0)
    np.testing.assert_allclose(gd["half_mse"]["model"], 0.5 * ((model - y_exact) ** 2).mean(0), rtol=1e-4)
    np.testing.assert_allclose(gd["half_mse"]["gd"], 0.5 * ((gd_yhat - y_exact) ** 2).mean(0), rtol=1e-4)
    normalizer = 3.0  # E[y²] = d, noiseless
    np.testing.assert_allclose(gd["prediction_difference"]["mean"], ((model - gd_yhat) ** 2).mean(0) / normalizer,
                               rtol=1e-3, atol=1e-9)
    difference = results["similarity"]["prediction_difference"]
    np.testing.assert_allclose(difference["zero"]["mean"], (model**2).mean(0) / normalizer, rtol=1e-4)
    np.testing.assert_allclose(difference["ridge_1"]["mean"], ((model - ridge_yhat) ** 2).mean(0) / normalizer,
                               rtol=1e-3)
    table = results["similarity"]["table"]["prediction_difference"]
    for k, name in results["similarity"]["table"]["closest"].items():
        assert table[name][k] == min(t[k] for t in table.values())
    r2 = np.array([v for by_k in results["probes"]["r2"].values() for v in by_k.values()], dtype=float)
    assert np.all(np.isfinite(r2)) and np.all(r2 <= 1)
    scores = np.array(results["attention"]["induction_score"], dtype=float)
    assert np.all((0 <= scores) & (scores <= 1))
    first, _ = learning_curve.analyze(trained, 16)
    assert first["steps"] == [40] and first["evaluated_now"] == [40]
    again, _ = learning_curve.analyze(trained, 16)
    assert again["evaluated_now"] == [] and again["model"] == first["model"]  # read back from eval/


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "icl_jax.analyze", *args], capture_output=True, text=True, timeout=300)


def test_cli_writes_an_analysis_and_reports_bad_input_in_one_line(trained, tmp_path):
    done = _cli(f"--workdir={trained}", "--what=attention", "--num_prompts=8")
    assert done.returncode == 0, done.stderr
    assert (trained / "analysis" / "attention_step_40.png").exists()
    # bad input, in this process (no interpreter or JAX start per call)
    bad = run_cli_in_process("icl_jax.analyze", f"--workdir={trained}", "--what=nope")
    assert bad.returncode == 1 and bad.stderr.strip().splitlines()[-1].startswith("error: unknown --what='nope'")
    bad_k = run_cli_in_process("icl_jax.analyze", f"--workdir={trained}", "--what=probes", "--k=99")
    assert bad_k.returncode == 1 and "--k values [99]" in bad_k.stderr
    missing = run_cli_in_process("icl_jax.analyze", f"--workdir={tmp_path}", "--what=gd")
    assert missing.returncode == 1 and "config.json not found" in missing.stderr


def test_spectrum_refuses_a_run_that_is_not_a_fourier_series(trained):
    """--what=spectrum on a linear run: one line naming the task (a Fourier run: test_every_task_end_to_end.py)."""
    r = run_cli_in_process("icl_jax.analyze", f"--workdir={trained}", "--what=spectrum")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1] == ("error: the spectrum is defined for Fourier-series runs, "
                                                 "this run's task is 'linear'")
    assert not (trained / "eval" / "spectrum_step_40.json").exists()


# ---- state size against error at k = 2d, over runs ----
@pytest.fixture(scope="module")
def trained_lstm(tmp_path_factory):
    """A second kind beside `trained`'s transformer, same task: a 2×16 LSTM, 10 steps."""
    workdir = tmp_path_factory.mktemp("analysis_lstm")
    c = small_config(n_dims=3, n_points=7)
    c.model.kind, c.model.n_head, c.model.n_embd = "lstm", 0, 16  # no heads
    c.train.steps, c.train.checkpoint_every, c.train.warmup_steps = 10, 10, 2
    loop.train(c, workdir)
    return workdir


def test_state_analysis_over_two_kinds(trained, trained_lstm, tmp_path):
    from icl_jax import files, run_model
    from icl_jax.evaluation import prompts

    result, _ = state.analyze([trained, trained_lstm], num_prompts=16)
    rows = result["rows"]
    assert [r["kind"] for r in rows] == ["transformer", "lstm"] and [r["step"] for r in rows] == [40, 10]
    assert [(r["n_layer"], r["n_head"], r["n_embd"]) for r in rows] == [(2, 2, 32), (2, 0, 16)]
    assert result["k_target"] == 6 and all(r["k"] == 6 and r["k_is_2d"] for r in rows)
    assert result["reference_state_floats"] == 7.5  # d²/2 + d, d = 3
    for r, workdir in zip(rows, (trained, trained_lstm)):
        config, model = run_model.load(workdir)
        params = nnx.state(model, nnx.Param)
        assert r["state_floats"] == models.state_size(config.model, 3, 7)
        assert r["parameters"] == models.param_count(params) == sum(a.size for a in jax.tree.leaves(params))
    assert [r["state_floats"] for r in rows] == [2 * 2 * 32 * 13, 2 * 2 * 16]  # KV cache; LSTM h and c
    # the LSTM's error at k = 6, recomputed: squared error against x·w in float64, over E[y²] = d
    config, model = run_model.load(trained_lstm)
    x, y, w = prompts.eval_prompts(config, 16)
    yhat = np.asarray(jax.jit(lambda x, y: model(x, y))(x, y), np.float64)
    y_exact = np.einsum("nkd,nd->nk", np.asarray(x, np.float64), np.asarray(w, np.float64))
    want = ((yhat[:, 6] - y_exact[:, 6]) ** 2).mean() / 3.0
    assert rows[1]["error"] == pytest.approx(want, rel=1e-5)
    assert rows[1]["ci_low"] <= rows[1]["error"] <= rows[1]["ci_high"]
    table = state.table(result)
    assert "lstm" in table and "64" in table and f"{rows[1]['error']:.4f}" in table and "*" not in table
    # a single run works; a run of another dimension, or a directory that is no run, is refused
    single, _ = state.analyze([trained_lstm], num_prompts=16)
    assert single["rows"] == rows[1:]
    other = tmp_path / "other_d"
    saved = json.loads((trained_lstm / "config.json").read_text())
    saved["task"]["n_dims"] = 4
    files.write_json(other / "config.json", saved)
    with pytest.raises(UserError, match=f"{trained} is linear d=3, {other} is linear d=4"):
        state.analyze([trained, other])
    with pytest.raises(UserError, match=f"is {tmp_path / 'none'} the --workdir of a training run"):
        state.analyze([trained, tmp_path / "none"])
    # the CLI, once: the default --out is the first run's analysis/
    done = _cli("--what=state", f"--workdir={trained},{trained_lstm}", "--num_prompts=16")
    assert done.returncode == 0, done.stderr[-3000:]
    on_disk = json.loads((trained / "analysis" / "state.json").read_text())
    assert [r["kind"] for r in on_disk["rows"]] == ["transformer", "lstm"]
    for mine, theirs in zip(on_disk["rows"], rows):
        assert mine["state_floats"] == theirs["state_floats"] and mine["parameters"] == theirs["parameters"]
        assert mine["error"] == pytest.approx(theirs["error"], rel=1e-5)
    assert (trained / "analysis" / "state.png").stat().st_size > 10_000
    assert "lstm" in done.stdout and "state.json" in done.stdout


def test_state_analysis_k_error_measure_and_bad_flags(trained, tmp_path):
    """A prompt shorter than 2d + 1: the last k, marked. A Boolean task: the error rate as
    evaluate counts it (a logit of 0 is wrong). Flags that do not go with --what=state."""
    from types import SimpleNamespace

    assert [state.target_k(3, n) for n in (7, 9, 5, 2)] == [6, 6, 4, 1]
    row = dict(workdir="r", step=1, kind="gru", size="tiny", n_layer=1, n_head=0, n_embd=8, parameters=9,
               state_floats=8, k=4, k_is_2d=False, error=0.5, ci_low=0.4, ci_high=0.6)
    table = state.table({"metric": "m", "k_target": 6, "task": "linear", "n_dims": 3, "rows": [row]})
    assert "   4*" in table and "shorter than 2d + 1" in table
    c = small_config(name="conjunction", n_dims=4, n_points=5)
    task = tasks.get_task(c.task)
    y = np.array([[1.0, -1.0, 1.0, -1.0]])
    logits = np.array([[2.0, -0.5, 0.0, 3.0]])  # right, right, undecided (wrong), wrong
    fake = SimpleNamespace(task=task, predict=lambda x, y: logits)
    np.testing.assert_array_equal(state.model_errors(fake, np.zeros((1, 4, 4)), y, None), [[0, 0, 1, 1]])
    assert state.metric("boolean") == "error rate (1 − accuracy)"
    for args, message in [(("--what=gd", f"--workdir={trained},{trained}"), "go with --what=state only"),
                          (("--what=state", f"--workdir={trained}", "--k=3"), "--k does not apply"),
                          (("--what=gd", f"--workdir={trained}", f"--out={tmp_path}"), "--out goes with")]:
        r = run_cli_in_process("icl_jax.analyze", *args)
        assert r.returncode == 1 and message in r.stderr.strip().splitlines()[-1], (args, r.stderr)
