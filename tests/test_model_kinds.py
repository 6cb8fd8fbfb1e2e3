"""The sequence models besides the transformer (model.kind lstm, gru, mamba, hybrid, retnet).

Each is held to an independent NumPy loop written here from the equations, one token at a
time carrying a state (float64, on parameters perturbed away from their initial values so that
zero biases and unit norm scales cannot hide a mistake); the state that loop carries at the
last query is the model's state_size. Also: the presets match the transformer's parameter
counts, every kind is causal, the parallel scans equal their recurrences, bad settings are
UserErrors naming the key.
"""

import functools
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from icl_jax import config as config_lib
from icl_jax import models, run_model
from icl_jax.errors import UserError
from icl_jax.models import mamba, retnet
from tests.conftest import load_module, small_config

pytestmark = pytest.mark.timeout(300)

NEW_KINDS = ("lstm", "gru", "mamba", "hybrid", "retnet")
HEADLESS = ("lstm", "gru", "mamba")  # kinds that read no model.n_head
N_PROMPTS = 2
LINEAR_CONFIG = pathlib.Path(__file__).parents[1] / "configs" / "linear.py"


def kind_config(kind: str):
    """small_config (d=3, 7 points, 2 layers, width 32, 2 heads) for `kind`, validated."""
    c = small_config()
    c.model.kind = kind
    if kind in HEADLESS:
        c.model.n_head = 0
    if kind == "linear_attention":  # no width of its own
        c.model.n_embd = 0
    return config_lib.validate(c)


def _perturb(model: nnx.Module, seed: int) -> dict:
    """Adds noise to every parameter of `model` (in place); returns the parameters as a
    nested dict of float64 NumPy arrays."""
    state = nnx.state(model, nnx.Param)
    rng = np.random.default_rng(seed)

    def bump(a):
        a = np.asarray(a, np.float64)
        return (a + 0.5 * max(a.std(), 0.1) * rng.standard_normal(a.shape)).astype(np.float32)

    new = jax.tree.map(bump, nnx.to_pure_dict(state))
    nnx.replace_by_pure_dict(state, jax.tree.map(jnp.asarray, new))
    nnx.update(model, state)
    return jax.tree.map(lambda a: np.asarray(a, np.float64), new)


@functools.cache
def built(kind: str):
    """(config, model with perturbed parameters, those parameters as float64 NumPy)."""
    c = kind_config(kind)
    model = run_model.build(c, 0)
    return c, model, _perturb(model, seed=len(kind))


@functools.cache
def prompts():
    c = small_config()
    rng = np.random.default_rng(7)
    x = rng.standard_normal((N_PROMPTS, c.task.n_points, c.task.n_dims)).astype(np.float32)
    y = rng.standard_normal((N_PROMPTS, c.task.n_points)).astype(np.float32)
    return x, y


# ---------------------------------------------------------------------------------------------
# The reference: plain NumPy, float64, one token at a time.

def _sigmoid(a):
    return 1 / (1 + np.exp(-a))


def _silu(a):
    return a * _sigmoid(a)


def _softplus(a):
    return np.log1p(np.exp(a))


def _gelu_tanh(a):
    return 0.5 * a * (1 + np.tanh(np.sqrt(2 / np.pi) * (a + 0.044715 * a ** 3)))


def _dense(h, p):
    return h @ p["kernel"] + (p["bias"] if "bias" in p else 0.0)


def _layer_norm(h, p, eps=1e-5):
    centred = h - h.mean(-1, keepdims=True)
    return centred / np.sqrt((centred ** 2).mean(-1, keepdims=True) + eps) * p["scale"] + p["bias"]


def _rms_norm(h, p, eps=1e-5):
    return h / np.sqrt((h ** 2).mean(-1, keepdims=True) + eps) * p["scale"]


def _prompt_tokens(x_KxD, y_K):
    """The prompt's tokens as models/tokens.py lays them out (no type channel, real labels):
    x_k at token 2k, [y_k, 0, ..., 0] at token 2k + 1."""
    k, d = x_KxD.shape
    toks = np.zeros((2 * k, d))
    toks[0::2] = x_KxD
    toks[1::2, 0] = y_K
    return toks


def _layer_type(kind: str, p: dict) -> str:
    if kind in ("lstm", "gru", "retnet", "transformer"):
        return kind
    return "mamba" if "a_log" in p else "attention"  # hybrid: Mamba, then (attention, Mamba) pairs


def _initial_state(layer: str, p: dict, c):
    e = c.model.n_embd
    if layer == "lstm":
        return {"c": np.zeros(e), "h": np.zeros(e)}
    if layer == "gru":
        return {"h": np.zeros(e)}
    if layer == "mamba":
        inner, n = p["a_log"].shape
        return {"conv": np.zeros((p["conv_weight"].shape[0] - 1, inner)),  # the last W − 1 inputs
                "s": np.zeros((inner, n))}
    if layer in ("attention", "transformer"):
        return {"keys": [], "values": []}  # the cache grows a key and a value per token
    if layer == "retnet":
        f = e // c.model.n_head
        return {"S": np.zeros((c.model.n_head, f, f))}
    raise AssertionError(layer)


def _attend(h, p, state, n_head):
    """Causal softmax attention of token h over the cache (which it joins first): the heads'
    outputs side by side, before the output projection."""
    e = h.shape[-1]
    f = e // n_head
    qkv = _dense(_layer_norm(h, p["ln" if "ln" in p else "ln_1"]), p["qkv"])
    q, k, v = qkv[:e], qkv[e:2 * e], qkv[2 * e:]
    state["keys"].append(k)
    state["values"].append(v)
    keys, values = np.stack(state["keys"]), np.stack(state["values"])  # seen×E
    out = []
    for head in range(n_head):
        cols = slice(head * f, (head + 1) * f)
        logits = keys[:, cols] @ q[cols] / np.sqrt(f)
        w = np.exp(logits - logits.max())
        out.append((w / w.sum()) @ values[:, cols])
    return np.concatenate(out)


def _step(layer: str, p: dict, h, state, c, t):
    """One token h (E) through one layer: (the layer's output, its new state)."""
    if layer == "lstm":  # flax's OptimizedLSTMCell: gates i | f | g | o, the bias on dense_h
        z = h @ p["cell"]["dense_i"]["kernel"] + _dense(state["h"], p["cell"]["dense_h"])
        i, f, g, o = np.split(z, 4)
        cell = _sigmoid(f) * state["c"] + _sigmoid(i) * np.tanh(g)
        out = _sigmoid(o) * np.tanh(cell)
        return out, {"c": cell, "h": out}
    if layer == "gru":  # flax's GRUCell: r | z | n, the bias on dense_i
        xr, xz, xn = np.split(_dense(h, p["cell"]["dense_i"]), 3)
        hr, hz, hn = np.split(state["h"] @ p["cell"]["dense_h"]["kernel"], 3)
        r, z = _sigmoid(xr + hr), _sigmoid(xz + hz)
        n = np.tanh(xn + r * hn)
        out = (1 - z) * n + z * state["h"]
        return out, {"h": out}
    if layer == "mamba":
        inner, n_state = p["a_log"].shape
        rank = p["dt_proj"]["kernel"].shape[0]
        uz = _rms_norm(h, p["norm"]) @ p["in_proj"]["kernel"]
        u, z = uz[:inner], uz[inner:]
        window = np.concatenate([state["conv"], u[None]])  # oldest first, this token last
        u = _silu(p["conv_bias"] + (p["conv_weight"] * window).sum(0))
        dbc = u @ p["x_proj"]["kernel"]
        delta = _softplus(_dense(dbc[:rank], p["dt_proj"]))
        b, cc = dbc[rank:rank + n_state], dbc[rank + n_state:]
        a = -np.exp(p["a_log"])
        s = np.exp(delta[:, None] * a) * state["s"] + (delta * u)[:, None] * b[None, :]
        y = s @ cc + p["d"] * u
        out = h + (y * _silu(z)) @ p["out_proj"]["kernel"]
        return out, {"conv": window[1:], "s": s}
    if layer == "attention":  # the hybrid's: attention alone, no MLP
        return h + _dense(_attend(h, p, state, c.model.n_head), p["out"]), state
    if layer == "transformer":
        h = h + _dense(_attend(h, p, state, c.model.n_head), p["attn_out"])
        return h + _dense(_gelu_tanh(_dense(_layer_norm(h, p["ln_2"]), p["mlp_in"])), p["mlp_out"]), state
    if layer == "retnet":
        e, n_head = h.shape[-1], c.model.n_head
        f = e // n_head
        q, k, v, g = np.split(_layer_norm(h, p["ln_1"]) @ p["qkvg"]["kernel"], 4)
        gamma = 1 - 2.0 ** (-5 - np.arange(n_head))
        heads = []
        S = state["S"].copy()
        angle = t * 10_000.0 ** (-np.arange(f // 2) / (f // 2))  # rotary: token t's q and k turned by t·θ_i

        def turned(a):
            return np.concatenate([a[:f // 2] * np.cos(angle) - a[f // 2:] * np.sin(angle),
                                   a[:f // 2] * np.sin(angle) + a[f // 2:] * np.cos(angle)])

        for j in range(n_head):
            cols = slice(j * f, (j + 1) * f)
            S[j] = gamma[j] * S[j] + np.outer(turned(k[cols]) / np.sqrt(f), v[cols])
            o = turned(q[cols]) @ S[j]
            heads.append((o - o.mean()) / np.sqrt(o.var() + 1e-5))  # group norm: one head, one token
        normed = np.concatenate(heads) * p["head_norm"]["scale"] + p["head_norm"]["bias"]
        h = h + (normed * _silu(g)) @ p["out"]["kernel"]
        h = h + _dense(_gelu_tanh(_dense(_layer_norm(h, p["ln_2"]), p["mlp_in"])), p["mlp_out"])
        return h, {"S": S}
    raise AssertionError(layer)


def reference(kind: str, params: dict, c, x_KxD, y_K):
    """(yhat_K, [stream at the x tokens after the read-in and after each layer, each K×E],
    floats of state carried when the last query has been read) of one prompt."""
    blocks = params["blocks"] if kind == "transformer" else params["layers"]
    layers = [(_layer_type(kind, blocks[i]), blocks[i]) for i in range(len(blocks))]
    states = [_initial_state(layer, p, c) for layer, p in layers]
    toks = _prompt_tokens(np.asarray(x_KxD, np.float64), np.asarray(y_K, np.float64))
    yhat, hidden = [], [[] for _ in range(len(layers) + 1)]
    for t in range(len(toks) - 1):  # the last y token reaches no prediction
        h = _dense(toks[t], params["read_in"])
        if kind == "transformer":
            h = h + params["wpe"][t]
        stream = [h]
        for i, (layer, p) in enumerate(layers):
            h, states[i] = _step(layer, p, h, states[i], c, t)
            stream.append(h)
        if t % 2 == 0:  # an x token: a prediction
            yhat.append(_dense(_layer_norm(h, params["ln_f"]), params["read_out"])[0])
            for i, a in enumerate(stream):
                hidden[i].append(a)
    # the loop ended on the last query (token 2K − 2): this is the state it reads it with
    floats = sum(np.size(a) for a in jax.tree.leaves(states))
    return np.array(yhat), [np.stack(a) for a in hidden], floats


@functools.cache
def model_outputs(kind: str):
    """(yhat_BxK from model(x, y), the trace's hidden states), jitted."""
    _, model, _ = built(kind)
    graphdef, state = nnx.split(model)

    @jax.jit
    def run(state, x, y):
        m = nnx.merge(graphdef, state)
        return m(x, y), m.trace(x, y).hidden_BxKxE

    x, y = prompts()
    yhat, hidden = run(state, jnp.asarray(x), jnp.asarray(y))
    return np.asarray(yhat), [np.asarray(a) for a in hidden]


@functools.cache
def reference_outputs(kind: str):
    c, _, params = built(kind)
    x, y = prompts()
    return [reference(kind, params, c, x[b], y[b]) for b in range(N_PROMPTS)]


# ---------------------------------------------------------------------------------------------
# 1. Presets


def _param_count(c) -> int:
    return models.param_count(nnx.state(nnx.eval_shape(lambda: run_model.build(c, 0)), nnx.Param))


@pytest.mark.parametrize("source", ["default", "laptop_linear"])
def test_presets_match_the_transformer_in_parameters(source):
    """Every kind's tiny/small/standard has the transformer's parameter count of that size,
    ±10 %, on the default config (linear, d=20, 101 positions) and the laptop linear one."""
    def config(size, kind):
        c = config_lib.default_config() if source == "default" else load_module(LINEAR_CONFIG).get_config()
        config_lib.apply_model_preset(c, size)
        c.model.kind = kind
        return config_lib.validate(c)

    off = {}
    for size in models.SIZES:
        target = _param_count(config(size, "transformer"))
        for kind in NEW_KINDS:
            c = config(size, kind)
            preset = models.kind_module(kind).PRESETS[kind][size]
            assert {key: c.model[key] for key in preset} == preset  # validate filled the preset
            count = _param_count(c)
            if abs(count / target - 1) > 0.10:
                off[(kind, size)] = (count, target)
    assert not off, f"(kind, size): (parameters, transformer's) beyond ±10 %: {off}"


def test_an_explicit_size_key_overrides_the_preset():
    c = config_lib.default_config()
    c.model.kind, c.model.size, c.model.n_embd = "lstm", "small", 96
    config_lib.validate(c)
    assert (c.model.n_layer, c.model.n_embd, c.model.n_head) == (6, 96, 0)


# ---------------------------------------------------------------------------------------------
# 2. Causality


@pytest.mark.parametrize("kind", NEW_KINDS)
def test_prediction_k_sees_only_the_examples_before_it_and_x_k(kind):
    """∂ŷ_k/∂y_j = 0 for j ≥ k and ∂ŷ_k/∂x_j = 0 for j > k, exactly, at every k; and ŷ_k
    depends on every earlier y_j and on x_k (so the test can fail)."""
    _, model, _ = built(kind)
    graphdef, state = nnx.split(model)
    x, y = (jnp.asarray(a[:1]) for a in prompts())
    n_points = x.shape[1]

    @jax.jit
    def grads(x, y, k):
        return jax.grad(lambda x, y: nnx.merge(graphdef, state)(x, y)[0, k], argnums=(0, 1))(x, y)

    for k in range(n_points):
        gx, gy = (np.asarray(g[0]) for g in grads(x, y, k))
        assert np.all(gy[k:] == 0), (k, gy)
        assert np.all(gx[k + 1:] == 0), (k, gx)
        assert np.all(gy[:k] != 0), (k, gy)
        assert np.any(gx[k] != 0), (k, gx)


# ---------------------------------------------------------------------------------------------
# 3. The models equal the sequential reference


@pytest.mark.parametrize("kind", NEW_KINDS + ("transformer",))
def test_model_equals_a_token_by_token_numpy_loop(kind):
    yhat, hidden = model_outputs(kind)
    for b, (want_yhat, want_hidden, _) in enumerate(reference_outputs(kind)):
        assert np.abs(want_yhat).max() > 0.1  # not a degenerate output
        np.testing.assert_allclose(yhat[b], want_yhat, rtol=1e-4, atol=1e-5, err_msg=f"{kind} prompt {b}")
        if kind == "transformer":
            continue  # its trace is tested in test_model.py
        assert len(hidden) == len(want_hidden)
        for i, (got, want) in enumerate(zip(hidden, want_hidden)):
            np.testing.assert_allclose(got[b], want, rtol=1e-4, atol=1e-5,
                                       err_msg=f"{kind} prompt {b}: stream after layer {i}")


@pytest.mark.parametrize("steps", [1, 9, 16])
def test_selective_scan_parallel_and_sequential_equal_a_loop(steps):
    rng = np.random.default_rng(steps)
    decay = rng.uniform(0.3, 1.0, (2, steps, 3, 4))
    drive = rng.standard_normal((2, steps, 3, 4))
    s, want = np.zeros((2, 3, 4)), []
    for t in range(steps):
        s = decay[:, t] * s + drive[:, t]
        want.append(s)
    want = np.stack(want, axis=1)
    args = (jnp.asarray(decay, jnp.float32), jnp.asarray(drive, jnp.float32))
    np.testing.assert_allclose(jax.jit(mamba.selective_scan)(*args), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(jax.jit(mamba.selective_scan_sequential)(*args), want, rtol=1e-5, atol=1e-5)


def test_retention_parallel_and_recurrent_equal_a_loop():
    rng = np.random.default_rng(0)
    b, h, t, f = 2, 3, 11, 4
    q, k, v = (rng.standard_normal((b, h, t, f)) for _ in range(3))
    gamma = np.asarray(retnet.decays(h), np.float64) - np.array([0.0, 0.2, 0.5])  # a sharp decay too
    want = np.zeros((b, h, t, f))
    for i in range(b):
        for j in range(h):
            S = np.zeros((f, f))
            for s in range(t):
                S = gamma[j] * S + np.outer(k[i, j, s], v[i, j, s])
                want[i, j, s] = q[i, j, s] @ S
    args = [jnp.asarray(a, jnp.float32) for a in (q, k, v, gamma)]
    np.testing.assert_allclose(jax.jit(retnet.retention)(*args), want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(jax.jit(retnet.retention_recurrent)(*args), want, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# 4. State size


@pytest.mark.parametrize("kind", NEW_KINDS + ("transformer",))
def test_state_size_is_what_the_loop_carries_at_the_last_query(kind):
    c, _, _ = built(kind)
    carried = {floats for _, _, floats in reference_outputs(kind)}
    assert carried == {models.state_size(c.model, c.task.n_dims, c.task.n_points)}


# ---------------------------------------------------------------------------------------------
# 5. Bad settings


@pytest.mark.parametrize("kind,key,value,named", [
    ("lstm", "n_head", 2, "model.n_head"),
    ("gru", "n_head", 2, "model.n_head"),
    ("mamba", "n_head", 2, "model.n_head"),
    ("mamba", "scan_layers", True, "model.scan_layers"),
    ("retnet", "scan_layers", True, "model.scan_layers"),
    ("hybrid", "scan_layers", True, "model.scan_layers"),
    ("lstm", "attention_impl", "einsum", "model.attention_impl"),
    ("retnet", "ssm_state", 8, "model.ssm_state"),
    ("transformer", "ssm_state", 8, "model.ssm_state"),
    ("hybrid", "ssm_state", 0, "model.ssm_state"),
    ("retnet", "n_embd", 31, "model.n_embd"),
    ("retnet", "n_embd", 30, "must be even"),
    ("mamba", "n_layer", -1, "model.n_layer"),
    ("rnn", "kind", "rnn", "model.kind"),
    ("lstm", "size", "huge", "model.size"),
])
def test_bad_settings_raise_a_user_error_naming_the_key(kind, key, value, named):
    c = small_config()
    c.model.kind = kind
    if kind in HEADLESS:
        c.model.n_head = 0
    c.model[key] = value
    with pytest.raises(UserError, match=re.escape(named)):
        config_lib.validate(c)


def test_every_kind_validates_and_an_unknown_preset_is_refused():
    for kind in NEW_KINDS:
        assert kind_config(kind).model.kind == kind
    with pytest.raises(UserError, match="huge"):
        config_lib.apply_model_preset(config_lib.default_config(), "huge")
