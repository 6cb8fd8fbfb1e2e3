"""Which model a run trains: model_config.kind picks the module whose build(...) makes it.

Every model has the same call, model(x_BxKxD, y_BxK) -> yhat_BxK (logits with label
classes), and a trace(x, y) for the analyses (hidden states at the query, attention weights).
A model knows nothing of tasks: what it needs of one is the input width and the label classes.

A kind is one module of this package (KINDS names it) with
    PRESETS      {kind: {size: {key: value}}}: the model.size presets ("tiny", "small",
                 "standard") of each kind it holds, matched in parameter count to the
                 transformer's of the same name
    OPTIONS      the model keys it reads besides kind, size, n_layer and n_positions
    build(model_config, input_width, label_classes, key) -> the model
    state_size(model_config, input_width, n_points) -> floats per prompt it holds about the
                 context when it reads the last query
and, where it refuses some settings, check(model_config, label_classes) raising UserError.
Adding a kind touches this package and its tests only (docs/models.md).
"""

from __future__ import annotations

import importlib
from types import ModuleType

import jax
import ml_collections

from icl_jax.errors import UserError

# model.kind -> the module under icl_jax/models/ that holds it
KINDS = {
    "transformer": "transformer",
    "linear_attention": "linear_attention",
    "lstm": "recurrent",
    "gru": "recurrent",
    "mamba": "mamba",
    "hybrid": "hybrid",
    "retnet": "retnet",
}
SIZES = ("tiny", "small", "standard")
# Filled from model.size's preset where 0; a positive value set by the config wins.
SIZED_KEYS = ("n_layer", "n_head", "n_embd")


def kind_module(kind: str) -> ModuleType:
    if kind not in KINDS:
        raise UserError(f"unknown model.kind {kind!r}; known: {', '.join(KINDS)}")
    return importlib.import_module(f"icl_jax.models.{KINDS[kind]}")  # late: the package imports no model


def complete(model_config: ml_collections.ConfigDict, defaults: ml_collections.ConfigDict,
             label_classes: int = 0) -> None:
    """Checks model_config (config.model) against its kind and fills, in place, the sized
    keys it leaves at 0 from the kind's preset for model.size. `defaults` is the schema's
    model section: a key the kind does not read must keep its default there."""
    m = model_config
    module = kind_module(m.kind)
    if m.size not in SIZES:
        raise UserError(f"model.size must be one of {', '.join(SIZES)}, got {m.size!r}")
    preset = module.PRESETS[m.kind][m.size]
    reads = set(preset) | set(module.OPTIONS) | {"kind", "size", "n_layer", "n_positions"}
    for key in m.keys():
        if key not in reads and m[key] != defaults[key]:
            raise UserError(f"model.{key}={m[key]!r} does not apply to model.kind={m.kind!r} "
                            f"(it reads {', '.join(sorted(reads - {'kind', 'size'}))})")
    for key in SIZED_KEYS:
        if key in preset and not m[key]:
            m[key] = preset[key]
        if key in reads and not m[key] > 0:
            raise UserError(f"config key 'model.{key}' must be positive, got {m[key]!r}")
    if "n_head" in reads and "n_embd" in reads and m.n_embd % m.n_head:
        raise UserError(f"model.n_embd={m.n_embd} is not divisible by model.n_head={m.n_head}")
    if hasattr(module, "check"):
        module.check(m, label_classes)


def build(model_config: ml_collections.ConfigDict, input_width: int, label_classes: int = 0,
          key: jax.Array | int = 0):
    """The model of `model_config` (config.model, completed) for inputs of `input_width`
    coordinates and `label_classes` one-hot label classes (0: real-valued labels), its
    parameters drawn from `key`."""
    return kind_module(model_config.kind).build(model_config, input_width, label_classes, key)


def state_size(model_config: ml_collections.ConfigDict, input_width: int, n_points: int) -> int:
    """Floats per prompt the model holds about the context when it reads the query of a prompt
    of n_points points: a recurrent model's state, a transformer's key-value cache."""
    return int(kind_module(model_config.kind).state_size(model_config, input_width, n_points))


def param_count(params) -> int:
    return sum(int(p.size) for p in jax.tree.leaves(params))


def describe(model_config: ml_collections.ConfigDict, params, input_width: int, n_points: int) -> str:
    """'lstm tiny (3×80), 155,281 parameters, state 480 floats per prompt': the run's start
    line and evaluate's."""
    m = model_config
    shape = f"{m.n_layer}×{m.n_embd}" if m.n_embd else f"{m.n_layer} layers"
    heads = f", {m.n_head} heads" if m.n_head else ""
    return (f"{m.kind} {m.size} ({shape}{heads}), {param_count(params):,} parameters, "
            f"state {state_size(m, input_width, n_points):,} floats per prompt")
