"""The benchmark scripts' arithmetic (never their timings: this machine is shared)."""

import pathlib
import sys

import pytest

from icl_jax import config as config_lib
from tests.conftest import load_module

pytestmark = pytest.mark.timeout(60)
ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_standard_model_costs_313_gflop_per_step():
    """The field's figure for the standard size: 12 layers, width 256, batch 64, 82 tokens;
    less, computed, the 41 y tokens' out and MLP products, queries and read-out in the last
    block: 41 × 64 × 6 × (9 × 256² + 2 × 82 × 256 + 256) FLOPs."""
    model_flops = load_module(ROOT / "benchmarks" / "train_step.py").model_flops
    config = config_lib.default_config()
    assert model_flops(config, every_token=True) == pytest.approx(313e9, rel=0.002)
    skipped = 41 * 64 * 6 * (9 * 256**2 + 2 * 82 * 256 + 256)
    assert model_flops(config) == model_flops(config, every_token=True) - skipped
    assert model_flops(config) == pytest.approx(303.3e9, rel=0.002)


def _interpreter(tmp_path, body: str) -> str:
    """A stand-in for --torch_python: an executable Python script with this body."""
    path = tmp_path / "python"
    path.write_text(f"#!{sys.executable}\nimport json, sys\n{body}\n")
    path.chmod(0o755)
    return str(path)


def test_pytorch_reference_trains_the_same_model_and_task(tmp_path):
    """The reference process is handed the preset's depth, heads and width and the task's
    shapes, then times the steps asked for."""
    against = load_module(ROOT / "benchmarks" / "against_pytorch.py")
    serve = _interpreter(tmp_path, "print(json.dumps({'argv': sys.argv[1:]}), flush=True)\n"
                                   "for line in sys.stdin:\n    print(json.dumps([0.25] * int(line)), flush=True)")
    config = config_lib.default_config()
    config_lib.apply_model_preset(config, "small")
    reference = against.TorchStep(serve, config, "compile", warmup=2)
    args = reference.about["argv"]
    assert args[0].endswith("pytorch_model.py")
    assert set(args[1:]) == {"--mode=compile", "--serve", "--n_layer=6", "--n_head=4", "--n_embd=128",
                             "--n_dims=20", "--n_points=41", "--batch_size=64", "--warmup=2"}
    assert reference.steps(3) == [0.25, 0.25, 0.25]
    reference.close()


def test_pytorch_reference_without_torch_says_how_to_install_it(tmp_path):
    against = load_module(ROOT / "benchmarks" / "against_pytorch.py")
    no_torch = _interpreter(tmp_path, "sys.exit(\"ModuleNotFoundError: No module named 'torch'\")")
    with pytest.raises(SystemExit, match=r"No module named 'torch'.*pip install torch transformers"):
        against.check_torch(no_torch)
    failing = _interpreter(tmp_path, "sys.exit('RuntimeError: out of memory')")
    with pytest.raises(SystemExit, match="(?s)the PyTorch reference failed.*out of memory"):
        against.TorchStep(failing, config_lib.default_config(), "eager", warmup=0)
