"""evaluate on a Boolean run: error-rate curves, accuracy, logistic loss, in the shared layout."""

import json

import numpy as np
import pytest

from icl_jax.evaluation import boolean_scoring, run
from icl_jax.training import loop
from tests.conftest import small_config

pytestmark = pytest.mark.timeout(300)


def test_zero_one_errors_count_ties_as_coin_flips():
    errors = boolean_scoring.zero_one_errors(np.array([[0.3, -2.0, 0.0]]), np.array([[1.0, 1.0, -1.0]]), 0.5)
    np.testing.assert_array_equal(errors, [[0.0, 1.0, 0.5]])


@pytest.mark.slow  # trains 40 steps and runs every baseline: ~20 s of CPU
def test_evaluate_a_conjunction_run(tmp_path):
    config = small_config(name="conjunction", n_dims=4, n_points=9)
    config.model.n_positions = 9
    loop.train(config, tmp_path)
    result = run.evaluate(tmp_path, verbose=False)
    on_disk = json.loads((tmp_path / "eval" / "step_40.json").read_text())
    assert on_disk == json.loads(json.dumps(result))
    assert on_disk["metric"].startswith("error rate") and on_disk["k"] == list(range(9))
    names = ["model", "bayes", "elimination", "nn_1", "nn_3", "averaging", "majority", "mlp_gd"]
    assert sorted(on_disk["curves"]) == sorted(names)
    assert on_disk["bayes"]["exact"] and on_disk["bayes"]["method"] == "enumeration of 81 hypotheses"
    for name in names:
        error, accuracy = np.array(on_disk["curves"][name]["mean"]), np.array(on_disk["accuracy"][name]["mean"])
        np.testing.assert_allclose(error + accuracy, 1.0)
        assert np.all(np.array(on_disk["accuracy"][name]["ci_low"]) <= accuracy + 1e-12)
    errors = np.load(tmp_path / "eval" / "step_40_errors.npz")
    assert set(np.unique(errors["model"])) <= {0.0, 1.0} and set(np.unique(errors["nn_1"])) <= {0.0, 0.5, 1.0}
    # nothing seen: nearest neighbours and the majority class are coin flips at k = 0
    assert on_disk["curves"]["nn_1"]["mean"][0] == on_disk["curves"]["majority"]["mean"][0] == 0.5
    bayes = np.array(on_disk["curves"]["bayes"]["mean"])
    assert bayes[-1] <= np.array(on_disk["curves"]["averaging"]["mean"])[-1]
    loss = on_disk["logistic_loss"]
    assert set(loss) == {"model", "bayes"} and all(np.isfinite(loss["bayes"]["mean"]))
    assert len(on_disk["positive_fraction"]) == 9 and on_disk["model_zero_logits"] == 0
    # agreement with the model per k, from the per-prompt errors: labels are ±1 and no model
    # logit is 0, so two signs agree exactly where both are right or both wrong (a baseline's
    # tie, error 1/2, agrees with neither)
    agreement = on_disk["agreement_with_model"]
    assert set(agreement) == set(names) - {"model"}
    for name in agreement:
        np.testing.assert_allclose(agreement[name], (errors[name] == errors["model"]).mean(0), atol=1e-12)
    assert min(agreement["bayes"]) < 1 and max(agreement["nn_1"]) > 0  # not all one value
