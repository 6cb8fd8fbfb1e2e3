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
    c = config_lib.validate(_load("linear").get_config("standard"))
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
    c[section][name] = -1 if key == "model.n_layer" else 0  # a model size of 0 means "from the preset"
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

    saved = config_lib.validate(config_lib.default_config()).to_dict()  # as train saves it: sizes filled
    del saved["model"]["type_channel"], saved["eval"]["bootstrap_samples"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    loaded = config_lib.validate(files.load_run_config(tmp_path))
    assert loaded.model.type_channel is False and loaded.eval.bootstrap_samples == 1000
    files.record_run_config(tmp_path, loaded)  # resuming that run is not "a different config"
    saved["model"]["retired_key"] = 1
    (tmp_path / "config.json").write_text(json.dumps(saved))
    with pytest.raises(UserError, match="model.retired_key"):
        config_lib.validate(files.load_run_config(tmp_path))


def test_a_curriculum_start_past_its_end_is_refused_even_with_the_curriculum_off():
    """The command line's curriculum keys are checked where the config file turns the
    curriculum off (curriculum.interval=0), instead of being ignored without a word."""
    c = small_config()
    c.curriculum.interval, c.curriculum.dims_start = 0, 50
    config_lib.validate(c)  # a config file's unused curriculum values stay valid
    with pytest.raises(UserError, match=r"curriculum.dims_start=50 must lie in \[1, task.n_dims=3\].*interval=0"):
        config_lib.validate(c, curriculum_set=True)
    c.curriculum.dims_start, c.curriculum.points_start = 3, 8
    with pytest.raises(UserError, match=r"curriculum.points_start=8 must lie in \[1, task.n_points=7\]"):
        config_lib.validate(c, curriculum_set=True)


@pytest.mark.parametrize("case", ["workdir_is_a_file", "workdir_below_a_file", "dims_start_above_n_dims"])
def test_bad_train_inputs_are_one_line_errors(case, tmp_path):
    import subprocess
    import sys

    a_file = tmp_path / "a_file"
    a_file.write_text("not a run\n")
    args, message = {
        "workdir_is_a_file": ([f"--workdir={a_file}"], f"error: --workdir {a_file} is a file, not a directory"),
        "workdir_below_a_file": ([f"--workdir={a_file}/run"], f"error: cannot create --workdir {a_file}/run"),
        "dims_start_above_n_dims": ([f"--workdir={tmp_path / 'run'}", "--config.curriculum.dims_start=50",
                                     "--config.task.n_dims=5"],
                                    "error: curriculum.dims_start=50 must lie in [1, task.n_dims=5]"),
    }[case]
    r = subprocess.run([sys.executable, "-m", "icl_jax.train", "--config=configs/linear.py", *args], cwd=ROOT,
                       capture_output=True, text=True, timeout=50)
    assert r.returncode == 1 and r.stderr.startswith(message) and len(r.stderr.splitlines()) == 1, r.stderr[-3000:]
    assert a_file.read_text() == "not a run\n" and not (tmp_path / "run").exists()


@pytest.mark.parametrize("name, key, value, owner", [
    ("linear", "parity_size", 5, "boolean"),
    ("parity", "noise_std", 0.1, "linear and fourier and nonlinear"),
    ("fourier", "sparsity", 2, "linear"),
    ("images", "relu_hidden", 7, "nonlinear"),
])
def test_a_key_of_another_family_is_refused_naming_its_family(name, key, value, owner):
    c = small_config()
    c.task.name = name
    if name == "fourier":
        c.task.n_dims = 1
    c.task[key] = value
    with pytest.raises(UserError, match=rf"task.{key}={value!r} belongs to the {owner} family, "
                                        rf"but task.name='{name}'"):
        config_lib.validate(c)


def test_every_family_reads_its_own_keys_and_the_schema_is_their_union():
    from icl_jax import tasks
    from icl_jax.tasks import boolean, fourier, images, linear, nonlinear

    families = (linear, fourier, nonlinear, boolean, images)
    schema = set(config_lib.default_config().task.keys())
    assert schema == set(tasks.SHARED_KEYS).union(*(f.CONFIG_KEYS for f in families))
    for family in families:  # a key of the run's own family may be set freely
        c = small_config()
        c.task.name = family.NAMES[0]
        c.task.n_dims = 1 if family is fourier else c.task.n_dims
        for key, default in family.CONFIG_KEYS.items():
            c.task[key] = default
        config_lib.validate(c)


def test_pipeline_keys_live_in_data_and_their_old_paths_say_where():
    c = config_lib.default_config()
    assert (c.data.prefetch, c.data.in_memory, c.data.data_dir) == (4, False, "")
    for old, new in config_lib.MOVED_KEYS.items():
        with pytest.raises(UserError, match=f"'{old}' is now '{new}'"):
            config_lib.check_key(old)
    c.data.prefetch = 0
    with pytest.raises(UserError, match="data.prefetch"):
        config_lib.validate(c)


def test_a_run_saved_with_pipeline_keys_in_task_loads_and_resumes_with_them_in_data(tmp_path):
    import json

    from icl_jax import files

    saved = config_lib.validate(config_lib.default_config()).to_dict()  # as train saves it: sizes filled
    del saved["data"]
    saved["task"].update(prefetch=7, data_in_memory=True, data_dir="/datasets")
    (tmp_path / "config.json").write_text(json.dumps(saved))
    loaded = config_lib.validate(files.load_run_config(tmp_path))
    assert (loaded.data.prefetch, loaded.data.in_memory, loaded.data.data_dir) == (7, True, "/datasets")
    assert "prefetch" not in loaded.task
    loaded.data.prefetch = 2  # the pipeline does not change what a run trains: it may resume
    files.record_run_config(tmp_path, loaded)


def test_every_config_key_is_documented():
    text = (ROOT / "docs" / "configuration.md").read_text()
    missing = [path for path, _ in config_lib._flatten(config_lib.default_config())
               if f"`{path}`" not in text and f"`{path.split('.')[-1]}`" not in text]
    assert not missing, f"docs/configuration.md does not document {missing}"


def test_a_run_saved_before_model_sizes_keeps_its_sizes_and_resumes(tmp_path):
    """Before model.size, a config.json held the sizes themselves (and linear_attention runs
    the transformer's unused width): they load as they were and resume under today's config."""
    import json

    from icl_jax import files

    saved = config_lib.validate(small_config()).to_dict()
    del saved["model"]["size"], saved["model"]["ssm_state"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    loaded = config_lib.validate(files.load_run_config(tmp_path))
    assert (loaded.model.n_layer, loaded.model.n_head, loaded.model.n_embd) == (2, 2, 32)
    files.record_run_config(tmp_path, loaded)

    saved["model"].update(kind="linear_attention", n_layer=1, n_head=1, n_embd=256)
    (tmp_path / "config.json").write_text(json.dumps(saved))
    loaded = config_lib.validate(files.load_run_config(tmp_path))
    assert (loaded.model.n_layer, loaded.model.n_head, loaded.model.n_embd) == (1, 1, 0)


def test_the_size_preset_follows_the_kind_set_after_it():
    """configs/linear.py picks the tiny size; a kind set afterwards (the command line) gets its
    own tiny preset, and a width set by hand overrides the preset's."""
    c = _load("linear").get_config()
    c.model.kind = "lstm"
    config_lib.validate(c)
    assert (c.model.size, c.model.n_layer, c.model.n_embd, c.model.n_head) == ("tiny", 3, 80, 0)
    c = _load("linear").get_config()
    c.model.kind, c.model.n_embd = "mamba", 24
    config_lib.validate(c)
    assert (c.model.n_layer, c.model.n_embd) == (6, 24)

