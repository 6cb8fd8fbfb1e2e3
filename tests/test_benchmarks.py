"""The benchmark scripts' arithmetic (never their timings: this machine is shared)."""

import importlib.util
import pathlib

import pytest

from icl_jax import config as config_lib

pytestmark = pytest.mark.timeout(60)
ROOT = pathlib.Path(__file__).resolve().parents[1]


def _module(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_standard_model_costs_313_gflop_per_step():
    """The field's figure for the standard size: 12 layers, width 256, batch 64, 82 tokens."""
    flops = _module("train_step").model_flops(config_lib.default_config())
    assert flops == pytest.approx(313e9, rel=0.002)
