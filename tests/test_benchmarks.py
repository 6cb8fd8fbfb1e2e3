"""The benchmark scripts' arithmetic (never their timings: this machine is shared)."""

import pathlib

import pytest

from icl_jax import config as config_lib
from tests.conftest import load_module

pytestmark = pytest.mark.timeout(60)
ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_standard_model_costs_313_gflop_per_step():
    """The field's figure for the standard size: 12 layers, width 256, batch 64, 82 tokens."""
    flops = load_module(ROOT / "benchmarks" / "train_step.py").model_flops(config_lib.default_config())
    assert flops == pytest.approx(313e9, rel=0.002)
