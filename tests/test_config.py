import pathlib

import pytest

from icl_jax import config as config_lib
from icl_jax.errors import UserError
from tests.conftest import load_module, small_config

pytestmark = pytest.mark.timeout(60)
ROOT = pathlib.Path(__file__).resolve().parents[1]


def _load(name):
    return load_module(ROOT / "configs" / f"{name}.py")


@pytest.mark.parametrize("path", sorted(p.stem for p in (ROOT / "configs").glob("*.py")))
@pytest.mark.parametrize("arg", ["", "standard", "standard,small", "tiny"])
def test_every_config_file_validates(path, arg):
    config = _load(path).get_config(arg)
    config_lib.validate(config)
    assert _load(path).__doc__ and "python -m icl_jax.train" in _load(path).__doc__


def test_linear_standard_is_the_reference_run():
    c = _load("linear").get_config("standard")
    assert (c.task.n_dims, c.task.n_points) == (20, 41)
    assert (c.model.n_layer, c.model.n_head, c.model.n_embd) == (12, 8, 256)
    assert (c.train.batch_size, c.train.learning_rate, c.train.steps) == (64, 1e-4, 500_000)
    cu = c.curriculum
    assert (cu.dims_start, cu.dims_increment, cu.points_start, cu.points_increment, cu.interval) == (5, 1, 11, 2, 2000)


def test_unknown_config_argument():
    with pytest.raises(UserError, match="unknown config argument"):
        _load("linear").get_config("huge")


def _expect(config, message):
    with pytest.raises(UserError, match=message):
        config_lib.validate(config)


def test_unknown_key_is_named():
    c = small_config()
    c.unlock()
    c.task.n_dimz = 3
    _expect(c, "unknown config key 'task.n_dimz'")


def test_unknown_task_name_lists_the_known_ones():
    _expect(small_config(name="quadratic"), "unknown task.name 'quadratic'.*linear")


@pytest.mark.parametrize("key", ["task.n_dims", "task.n_points", "model.n_layer", "train.batch_size",
                                 "train.steps", "eval.num_prompts"])
def test_non_positive_sizes(key):
    c = small_config()
    section, name = key.split(".")
    c[section][name] = 0
    _expect(c, f"'{key}' must be positive")


def test_prompt_longer_than_model_positions():
    c = small_config()
    c.task.n_points = c.model.n_positions + 1
    _expect(c, "longer than the model accepts")


def test_wrong_type_and_inconsistent_values():
    c = small_config()
    c.model.n_embd = 33
    _expect(c, "not divisible")
    c = small_config()
    c.eval.seed = c.seed
    _expect(c, "eval.seed must differ")
    c = small_config(name="sparse_linear", sparsity=10)
    _expect(c, "task.sparsity=10")
    c = small_config()
    c.curriculum.interval, c.curriculum.dims_start = 10, 50
    _expect(c, "curriculum.dims_start")


def test_a_run_saved_before_new_keys_existed_still_loads(tmp_path):
    """config.json of an older version lacks keys added since: loading fills their defaults,
    and a saved key the schema no longer knows is named by validate."""
    import json

    from icl_jax import files

    saved = config_lib.default_config().to_dict()
    del saved["model"]["type_channel"], saved["eval"]["bootstrap_samples"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    loaded = config_lib.validate(files.load_run_config(tmp_path))
    assert loaded.model.type_channel is False and loaded.eval.bootstrap_samples == 1000
    files.record_run_config(tmp_path, loaded)  # resuming that run is not "a different config"
    saved["model"]["retired_key"] = 1
    (tmp_path / "config.json").write_text(json.dumps(saved))
    with pytest.raises(UserError, match="model.retired_key"):
        config_lib.validate(files.load_run_config(tmp_path))
