"""Checks that need 8 CPU devices, run by tests/test_parallel.py in one fresh process:

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m tests.multidevice_checks DIR [NAME ...]

(the device count is fixed when JAX starts, so these cannot share the pytest process). Runs
the named checks (default: all of CHECKS) one after another, each in DIR/NAME, and writes
each one's outcome to DIR/results.json as it ends ("ok" or the traceback), so a failure names
its check and the others still run.
"""

import os
import pathlib
import re
import sys

assert "--xla_force_host_platform_device_count=8" in os.environ.get("XLA_FLAGS", ""), "run with 8 CPU devices"

import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

from icl_jax import parallel, tasks  # noqa: E402
from icl_jax.errors import UserError  # noqa: E402
from icl_jax.kernels.cpu import build  # noqa: E402
from icl_jax.training import loop, optimizer, step as step_lib  # noqa: E402
from tests.conftest import small_config  # noqa: E402

ONE, EIGHT = parallel.make_mesh(jax.devices()[:1]), parallel.make_mesh()


def _config(**train):
    c = small_config()
    c.train.steps, c.train.batch_size, c.train.checkpoint_every = 20, 16, 10
    c.train.update(train)
    return c


class Skipped(Exception):
    """A check (or its last part) that needs a C++ kernel which cannot be built here: reported as
    skipped with the reason, the policy of tests/conftest.py::require_kernel."""


def _require_cpu_kernels() -> None:
    """Raises Skipped where a C++ kernel cannot be built, or, where ICL_JAX_REQUIRE_CPU_KERNEL=1
    (.ci/run; test_parallel.py passes the environment through), the build error."""
    for name in ("causal_attention_cpu", "dense_grad_cpu", "layer_norm_cpu"):
        try:
            build.load(name)
        except build.KernelUnavailable as e:
            if os.environ.get("ICL_JAX_REQUIRE_CPU_KERNEL") == "1":
                raise
            raise Skipped(f"the CPU kernel {name} cannot be built here: {e}") from None


def _assert_close(a, b, rtol=1e-4, atol=5e-5):
    """Float32 tolerance after Adam: reduction order differs between meshes, and Adam turns a
    near-zero gradient's rounding into an update of up to lr (1e-3) — atol is 5% of one
    step; a wrong batch or update moves parameters by ~lr per step, 20× more."""
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=rtol, atol=atol)


def sharded_equals_single(workdir: pathlib.Path) -> None:
    c = _config()
    one = loop.train(c, workdir / "one", mesh=ONE)
    eight = loop.train(c, workdir / "eight", mesh=EIGHT)
    assert len(jax.tree.leaves(eight["params"])[0].sharding.device_set) == 8
    _assert_close(one["params"], eight["params"])
    losses = [[__import__("json").loads(line)["loss"] for line in (workdir / name / "metrics.jsonl").open()]
              for name in ("one", "eight")]
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)


def batch_is_sharded(workdir: pathlib.Path) -> None:
    c = _config()
    task = tasks.get_task(c.task)
    sharding = parallel.batch_sharding(EIGHT)
    sample = jax.jit(lambda step: step_lib.sample_batch(c, task, step, sharding))
    prompts = sample(3)
    for a in prompts:
        assert a.sharding.spec == P(parallel.DATA), a.sharding
        assert {s.data.shape[0] for s in a.addressable_shards} == {2}  # 16 prompts / 8 devices
    # Each device samples only its slice: no full-batch tensor in the compiled program...
    hlo = sample.lower(3).compile().as_text()
    assert "f32[2,7,3]" in hlo and "f32[16,7,3]" not in hlo
    # ...and the slices are exactly the single-device batch.
    single = jax.jit(lambda step: step_lib.sample_batch(c, task, step, parallel.batch_sharding(ONE)))(3)
    for a, b in zip(prompts, single):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def fsdp_equals_replicated(workdir: pathlib.Path) -> None:
    c = _config()
    replicated = loop.train(c, workdir / "replicated", mesh=EIGHT)
    c.parallel.shard_params = True
    sharded = loop.train(c, workdir / "sharded", mesh=EIGHT)
    kernel = sharded["params"]["blocks"][0]["mlp_in"]["kernel"]  # 32 × 128
    assert kernel.sharding.spec == P(None, parallel.DATA), kernel.sharding
    assert kernel.addressable_shards[0].data.shape == (32, 16)
    moments = [a for a in jax.tree.leaves(sharded["opt_state"]) if a.shape == kernel.shape]
    assert moments and all(a.sharding.spec == P(None, parallel.DATA) for a in moments)  # Adam's mu, nu
    _assert_close(replicated["params"], sharded["params"])


def checkpoints_move_between_topologies(workdir: pathlib.Path) -> None:
    c = _config(steps=30, schedule="constant")  # so that extending train.steps keeps the math
    straight = loop.train(c, workdir / "straight", mesh=ONE)
    for first, second, name in ((EIGHT, ONE, "8to1"), (ONE, EIGHT, "1to8")):
        c.train.steps = 10
        loop.train(c, workdir / name, mesh=first)
        c.train.steps = 30
        resumed = loop.train(c, workdir / name, mesh=second)
        assert len(jax.tree.leaves(resumed["params"])[0].sharding.device_set) == second.size
        _assert_close(straight["params"], resumed["params"])
    # FSDP-sharded checkpoint into a replicated single-device state, for evaluation too.
    c.parallel.shard_params, c.train.steps = True, 10
    trained = loop.train(c, workdir / "fsdp", mesh=EIGHT)
    from icl_jax import run_model

    for shard_params in (True, False):  # into the layout that wrote it, and replicated
        c.parallel.shard_params = shard_params
        step, _, params = run_model.restore_params(c, workdir / "fsdp", None)
        assert step == 10
        for u, v in zip(jax.tree.leaves(params), jax.tree.leaves(trained["params"]), strict=True):
            np.testing.assert_array_equal(np.asarray(u), np.asarray(v))  # the values that were saved


def split_batch_stays_on_its_devices(workdir: pathlib.Path) -> None:
    """train.batch_splits takes each part from every device's own rows: the step's only
    collective is the gradient all-reduce, and the parts train as the whole batch does."""
    c = _config(batch_splits=2)
    task, tx = tasks.get_task(c.task), optimizer.make_optimizer(c.train)
    spec = step_lib.state_spec(c, tx, EIGHT)
    hlo = step_lib.make_train_step(c, spec, task, tx, EIGHT).lower(spec.abstract).compile().as_text()
    collectives = re.findall(r"(all-reduce|all-gather|all-to-all|collective-permute|reduce-scatter)[(-]", hlo)
    assert set(collectives) == {"all-reduce"}, collectives
    whole = loop.train(_config(batch_splits=1), workdir / "whole", mesh=EIGHT)
    split = loop.train(c, workdir / "split", mesh=EIGHT)
    _assert_close(whole["params"], split["params"])
    _require_cpu_kernels()  # the C++ kernels too run on each device's own prompts
    # the projection of one device's half: 16 prompts / 8 devices / 2 halves, 14 tokens, 2 heads
    assert "icl_causal_attention_cpu_forward" in hlo and "f32[1,14,3,2,16]" in hlo
    # mlp_in's weight gradient (32 -> 128 wide, the one layer of output width 64·n) from the
    # same half's 14 tokens (7 x tokens in the last block), summed by the all-reduce above
    shapes = dict(re.findall(r"%([\w.\-]+) = (\S+) ", hlo))
    x_shapes = [shapes[m] for m in re.findall(r'custom-call\(%([\w.\-]+), [^)]*\), custom_call_target="icl_dense_weight_grad_cpu"', hlo)]
    assert sorted(s.split("{")[0] for s in x_shapes) == ["f32[14,32]"] * 2 + ["f32[7,32]"] * 2, x_shapes
    # and the layer norms, on the same rows (ln_2 of the last block on its 7 x tokens)
    normalized = re.findall(r"(\(f32\[\d+,32\])[^=]*custom-call\([^)]*\), custom_call_target=\"icl_normalize_cpu\"", hlo)
    assert sorted(normalized) == ["(f32[14,32]"] * 6 + ["(f32[7,32]"] * 2, normalized


def indivisible_batch_is_refused(workdir: pathlib.Path) -> None:
    c = _config(batch_size=12)
    try:
        loop.train(c, workdir, mesh=EIGHT)
    except UserError as e:
        assert "train.batch_size=12 does not divide evenly over the 8 devices" in str(e), e
        assert not (workdir / "checkpoints").exists()
    else:
        raise AssertionError("batch 12 on 8 devices was accepted")


def every_kind_trained_on_eight_restores_on_one(workdir: pathlib.Path) -> None:
    """Each model kind trains data-parallel on 8 devices, and its checkpoint restores on one
    device with the values that were saved. (That 8 devices train as one does not depend on
    the model: sharded_equals_single checks it once.)"""
    from icl_jax import run_model
    from tests.test_model_kinds_training import KINDS, kind_config

    for kind in KINDS:
        c = kind_config(kind)
        c.train.steps = 10
        eight = loop.train(c, workdir / kind / "eight", mesh=EIGHT)
        assert len(jax.tree.leaves(eight["params"])[0].sharding.device_set) == 8
        step, _, params = run_model.restore_params(c, workdir / kind / "eight", None, mesh=ONE)
        assert step == 10 and len(jax.tree.leaves(params)[0].sharding.device_set) == 1
        for u, v in zip(jax.tree.leaves(params), jax.tree.leaves(eight["params"]), strict=True):
            np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


CHECKS = ["sharded_equals_single", "batch_is_sharded", "fsdp_equals_replicated",
          "checkpoints_move_between_topologies", "split_batch_stays_on_its_devices", "indivisible_batch_is_refused",
          "every_kind_trained_on_eight_restores_on_one"]


if __name__ == "__main__":
    import json
    import time
    import traceback

    directory, names = pathlib.Path(sys.argv[1]), sys.argv[2:] or CHECKS
    results = dict.fromkeys(names, "did not finish: the process ended during or before it")
    for name in names:
        start = time.time()
        try:
            (directory / name).mkdir(parents=True)
            globals()[name](directory / name)
            results[name] = "ok"
        except Skipped as e:  # what ran passed; the rest cannot run here
            results[name] = f"skipped: {e}"
        except Exception:  # noqa: BLE001  (reported per check; the next one still runs)
            results[name] = traceback.format_exc()
        print(f"{name}: {results[name] if results[name] == 'ok' or results[name].startswith('skipped: ') else 'FAILED'}"
              f" ({time.time() - start:.1f}s)", flush=True)
        (directory / "results.json").write_text(json.dumps(results, indent=1))
