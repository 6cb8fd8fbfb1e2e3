"""Checkpoints keep the parameters as their own item, so evaluation and icl_jax.load restore a
model without the trainer; run directories written before that split (the whole train state in
one orbax item, "default", with or without the host data state "data") still evaluate, load and
resume bit-identically."""

import shutil
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx

import icl_jax
from icl_jax import parallel, run_model
from icl_jax.checkpointing import Checkpoints, checkpoint_dir
from icl_jax.errors import UserError
from icl_jax.evaluation import run
from icl_jax.training import loop, optimizer, step as step_lib
from tests.conftest import small_config

pytestmark = pytest.mark.timeout(300)


def _leaves_equal(a, b) -> bool:
    return all(np.array_equal(np.asarray(u), np.asarray(v)) for u, v in
               zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def _abstract_state(config):
    return step_lib.state_spec(config, optimizer.make_optimizer(config.train), parallel.make_mesh()).abstract


def _rewrite_in_the_old_format(workdir, config, with_data: bool, steps=None) -> None:
    """WORKDIR's checkpoints (those of `steps`, default all) as the code before the split wrote
    them, with orbax directly: the whole state as the single item "default", or beside "data"."""
    checkpoints = Checkpoints(workdir, with_data=with_data)
    steps = checkpoints.all_steps() if steps is None else steps
    states = {s: checkpoints.restore(s, like=_abstract_state(config))[1] for s in steps}
    data = {s: checkpoints.restore_data(s) for s in steps} if with_data else {}
    checkpoints.close()
    shutil.rmtree(checkpoint_dir(workdir))
    options = ocp.CheckpointManagerOptions(enable_async_checkpointing=False)
    manager = ocp.CheckpointManager(checkpoint_dir(workdir), options=options,
                                    item_names=("default", "data") if with_data else None)
    for s, state in states.items():
        args = ocp.args.StandardSave(state)
        if with_data:
            args = ocp.args.Composite(default=args, data=ocp.args.JsonSave(data[s]))
        manager.save(s, args=args)
    manager.wait_until_finished()
    manager.close()
    for s in steps:
        items = sorted(p.name for p in (checkpoint_dir(workdir) / str(s)).iterdir() if p.is_dir())
        assert items == (["data", "default"] if with_data else ["default"]), items


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """A linear run of 40 steps (checkpoints 20 and 40) in the current format, and its final state."""
    workdir = tmp_path_factory.mktemp("straight")
    return workdir, loop.train(small_config(), workdir)


def test_the_parameters_are_their_own_item_and_not_stored_twice(straight):
    workdir, final = straight
    step_path = checkpoint_dir(workdir) / "40"
    items = sorted(p.name for p in step_path.iterdir() if p.is_dir())
    assert items == ["params", "trainer"], items
    tree = lambda item: ocp.PyTreeCheckpointer().metadata(step_path / item).item_metadata.tree  # noqa: E731
    assert sorted(tree("trainer")) == ["nonfinite_step", "opt_state", "step"]
    assert _shapes_by_path(tree("params")) == _shapes_by_path(final["params"])


def _shapes_by_path(tree) -> dict[str, tuple]:
    """{"blocks/0/ln_1/scale": shape, ...}: orbax names dict keys as strings (block 0 as "0")."""
    return {"/".join(str(k.key) for k in path): tuple(leaf.shape)
            for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def test_load_gives_the_config_and_the_trained_model(straight):
    workdir, final = straight
    config, model = icl_jax.load(workdir)
    assert config.task.n_dims == 3 and config.train.steps == 40
    spec = step_lib.state_spec(config, optimizer.make_optimizer(config.train), parallel.make_mesh())
    x = np.random.default_rng(0).normal(size=(4, 7, 3)).astype(np.float32)
    y = np.random.default_rng(1).normal(size=(4, 7)).astype(np.float32)
    expected = nnx.merge(spec.graphdef, final["params"])(x, y)
    np.testing.assert_array_equal(np.asarray(model(x, y)), np.asarray(expected))
    _, earlier = icl_jax.load(workdir, step=20)
    assert not np.array_equal(np.asarray(earlier(x, y)), np.asarray(expected))


def test_load_on_a_missing_run_or_step_is_one_clear_user_error(tmp_path, straight):
    with pytest.raises(UserError, match="config.json not found: is .* the --workdir of a training run"):
        icl_jax.load(tmp_path / "nowhere")
    with pytest.raises(UserError, match=r"no checkpoint for step 7 in .*; available: \[20, 40\]"):
        icl_jax.load(straight[0], step=7)


def test_an_old_run_directory_evaluates_loads_and_resumes_bit_identically(tmp_path, straight):
    workdir, final = straight
    old = tmp_path / "old"
    shutil.copytree(workdir, old)
    _rewrite_in_the_old_format(old, small_config(), with_data=False)

    ours, theirs = (run.evaluate(w, num_prompts=8, verbose=False) for w in (workdir, old))
    assert ours["curves"]["model"] == theirs["curves"]["model"] and theirs["step"] == 40
    _, model = icl_jax.load(old)
    x, y = np.ones((2, 7, 3), np.float32), np.ones((2, 7), np.float32)
    np.testing.assert_array_equal(np.asarray(model(x, y)), np.asarray(icl_jax.load(workdir)[1](x, y)))

    resumed_dir = tmp_path / "resumed"
    shutil.copytree(workdir, resumed_dir)
    _rewrite_in_the_old_format(resumed_dir, small_config(), with_data=False, steps=[20])
    resumed = loop.train(small_config(), resumed_dir)
    assert int(resumed["step"]) == 40
    assert _leaves_equal(final["params"], resumed["params"])
    assert _leaves_equal(final["opt_state"], resumed["opt_state"])
    assert sorted(p.name for p in (checkpoint_dir(resumed_dir) / "40").iterdir() if p.is_dir()) == ["params", "trainer"]


@pytest.mark.slow
def test_an_old_host_fed_run_directory_with_its_data_state_loads_and_resumes(tmp_path):
    """The old layout of an image run: the state in "default", the host sampler in "data"."""
    c = small_config(name="images", dataset="digits", image_size=4, n_dims=16, n_points=7)
    c.train.steps, c.train.batch_size, c.train.schedule = 6, 8, "constant"
    c.train.checkpoint_every, c.train.log_every = 3, 3
    straight = loop.train(c, tmp_path / "straight")
    new = Checkpoints(tmp_path / "straight", with_data=True)
    data_at_3 = new.restore_data(3)
    new.close()

    old = tmp_path / "old"
    shutil.copytree(tmp_path / "straight", old)
    _rewrite_in_the_old_format(old, c, with_data=True, steps=[3])
    checkpoints = Checkpoints(old, with_data=True)
    assert checkpoints.restore_data(3) == data_at_3
    checkpoints.close()
    _, model = icl_jax.load(old)  # the parameters alone, from the whole-state item
    step, _, params = run_model.restore_params(c, old, None)
    assert step == 3 and _leaves_equal(params, nnx.to_pure_dict(nnx.state(model, nnx.Param)))
    resumed = loop.train(c, old)
    assert _leaves_equal(straight["params"], resumed["params"])
    assert _leaves_equal(straight["opt_state"], resumed["opt_state"])


def test_evaluation_and_load_import_nothing_from_training():
    """The wall: evaluate restores parameters, not the trainer."""
    script = ("import pkgutil, sys, icl_jax.evaluation as e\n"
              "import icl_jax.evaluate, icl_jax.run_model, icl_jax.analysis.common\n"
              "for m in pkgutil.iter_modules(e.__path__): __import__(f'icl_jax.evaluation.{m.name}')\n"
              "print(sorted(m for m in sys.modules if m.startswith('icl_jax.training')))")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=200)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip() == "[]", r.stdout
