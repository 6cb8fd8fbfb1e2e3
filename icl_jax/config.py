"""The config schema: every key a run may set, its default, and the checks on its value.

A config file in `configs/` starts from `default_config()` and changes values; it never adds
keys. `validate` rejects keys outside this schema and impossible values, naming the key.
"""

from __future__ import annotations

import difflib

import ml_collections

from icl_jax.errors import UserError

# How a transformer block's operations may run (icl_jax/models/ops.py picks among them).
ATTENTION_IMPLS = ("auto", "cpu_kernel", "einsum", "xla", "cudnn")
DENSE_IMPLS = ("auto", "cpu_kernel", "xla")
WANDB_MODES = ("online", "offline", "disabled")  # wandb.init's modes


def default_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0  # root of every training key: params, data (see icl_jax/rng.py)

    from icl_jax import tasks  # the families declare their own keys

    c.task = ml_collections.ConfigDict()
    c.task.name = "linear"  # a function class: tasks.TASK_NAMES (icl_jax/tasks/__init__.py)
    c.task.n_dims = 20
    c.task.n_points = 41  # in-context examples per prompt, query included
    # Every family's own keys (the CONFIG_KEYS of icl_jax/tasks/<family>.py, listed in
    # docs/configuration.md); setting a key of another family than task.name's is an error.
    for key, default in tasks.config_keys().items():
        c.task[key] = default

    c.data = ml_collections.ConfigDict()  # the input pipeline of host-fed tasks (images)
    c.data.data_dir = ""  # tfds data_dir of prepared data sets; "" = $TFDS_DATA_DIR or ~/tensorflow_datasets
    c.data.prefetch = 4  # training batches gathered ahead of the device
    c.data.in_memory = False  # tfds sets: decode each split into memory once (the listed sets: 47-225 MB)

    c.model = ml_collections.ConfigDict()
    c.model.kind = "transformer"  # or linear_attention, lstm, gru, mamba, hybrid, retnet (docs/models.md)
    # tiny | small | standard: the kind's preset, matched to the transformer's of that name in
    # parameter count (the transformer's are the field's GPT-2 sizes: 3/2/64, 6/4/128, 12/8/256).
    c.model.size = "standard"
    c.model.n_layer = 0  # 0: model.size's preset for model.kind; a positive value overrides it
    c.model.n_head = 0  # as n_layer (kinds with attention or retention heads)
    c.model.n_embd = 0  # as n_layer (every kind but linear_attention)
    c.model.n_positions = 101  # most in-context points the model accepts (2 tokens each)
    c.model.type_channel = False  # an extra input channel marking y tokens (models/tokens.py)
    c.model.compute_dtype = "float32"  # or bfloat16: matmuls only; parameters stay float32
    c.model.remat = False  # recompute each block in the backward pass (memory for compute)
    c.model.scan_layers = False  # scan one block over stacked layers: depth-independent compile
    c.model.attention_impl = "auto"  # CPU: the C++ kernel where a compiler builds it, else einsum; elsewhere jax.nn.dot_product_attention's choice; or cpu_kernel | einsum | xla | cudnn
    c.model.ssm_state = 16  # mamba, hybrid: the state's numbers per channel (N of the Mamba paper)
    c.model.dense_impl = "auto"  # CPU: the blocks' layer norms and weight/bias gradients in C++ kernels where they build and apply (float32; width 16·k, output width 64·k), else XLA; or cpu_kernel | xla

    c.train = ml_collections.ConfigDict()
    c.train.steps = 500_000
    c.train.batch_size = 64
    c.train.learning_rate = 1e-4
    c.train.warmup_steps = 0
    c.train.loss_positions = "all"  # or "last": only the last active position is scored (one query per prompt)
    c.train.schedule = "constant"  # constant | cosine (decays to 0 at train.steps)
    c.train.grad_clip = 0.0  # global-norm clip; 0 disables
    # Each device's batch differentiated as this many equal, independent parts in one step
    # (the same mean gradient); 0 = auto: 2 on CPU, where XLA overlaps the parts, else 1.
    c.train.batch_splits = 0
    c.train.log_every = 100
    c.train.checkpoint_every = 2000
    c.train.keep_last = 3  # most recent checkpoints kept...
    c.train.keep_every = 50_000  # ...plus every checkpoint whose step is a multiple of this

    c.curriculum = ml_collections.ConfigDict()
    c.curriculum.dims_start = 5
    c.curriculum.dims_increment = 1
    c.curriculum.points_start = 11
    c.curriculum.points_increment = 2
    c.curriculum.interval = 2000  # steps between increments; 0 disables the curriculum

    c.parallel = ml_collections.ConfigDict()
    # Shard parameters and optimizer state over the devices too (FSDP-style), not only the batch.
    c.parallel.shard_params = False

    c.eval = ml_collections.ConfigDict()
    c.eval.seed = 1_000_003  # distinct from every training seed (validated)
    c.eval.num_prompts = 1280
    c.eval.batch_size = 256  # prompts per model forward pass
    c.eval.bootstrap_samples = 1000

    c.wandb = ml_collections.ConfigDict()  # optional Weights & Biases logging (icl_jax/wandb_writer.py)
    c.wandb.project = ""  # "" = no W&B logging; else the W&B project
    c.wandb.entity = ""  # W&B entity (user or team); "" = wandb's default
    c.wandb.group = ""  # runs grouped together in the UI; icl_jax.sweep sets it to the sweep's name
    c.wandb.mode = "online"  # online | offline (written under WORKDIR/wandb, `wandb sync` later) | disabled
    return c


def apply_model_preset(config: ml_collections.ConfigDict, name: str) -> None:
    """model.size = name, with the sized keys back at 0 (from the preset): validate fills
    them for whatever model.kind the run ends up with, the command line's included."""
    from icl_jax import models  # late: the schema needs no model

    if name not in models.SIZES:
        raise UserError(f"unknown model preset {name!r}; known: {', '.join(models.SIZES)}")
    config.model.size = name
    for key in models.SIZED_KEYS:
        config.model[key] = 0


def _flatten(cfg, prefix=""):
    for key, value in cfg.items():
        path = f"{prefix}{key}"
        if isinstance(value, ml_collections.ConfigDict):
            yield from _flatten(value, path + ".")
        else:
            yield path, value


# Keys that moved, old path -> new path: old run directories are read with them moved
# (files.with_schema_defaults), and a command line naming the old path is told the new one.
MOVED_KEYS = {"task.prefetch": "data.prefetch", "task.data_in_memory": "data.in_memory",
              "task.data_dir": "data.data_dir"}


def check_key(path: str, schema: dict | None = None) -> None:
    """Raises UserError unless `path` (like 'task.n_dims') is a key of the schema."""
    schema = dict(_flatten(default_config())) if schema is None else schema
    if path in MOVED_KEYS:
        raise UserError(f"config key {path!r} is now {MOVED_KEYS[path]!r}")
    if path not in schema:
        close = difflib.get_close_matches(path, list(schema), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserError(f"unknown config key {path!r}{hint}")


def _check_keys(config: ml_collections.ConfigDict) -> None:
    schema = dict(_flatten(default_config()))
    for path, value in _flatten(config):
        check_key(path, schema)
        expected = type(schema[path])
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            continue
        if not isinstance(value, expected) or isinstance(value, bool) != isinstance(schema[path], bool):
            raise UserError(
                f"config key {path!r} must be {expected.__name__}, got {value!r} ({type(value).__name__})"
            )


def _positive(config, *paths: str) -> None:
    for path in paths:
        value = config
        for part in path.split("."):
            value = value[part]
        if not value > 0:
            raise UserError(f"config key {path!r} must be positive, got {value!r}")


def validate(config: ml_collections.ConfigDict, curriculum_set: bool = False) -> ml_collections.ConfigDict:
    """Raises UserError naming the first bad key; returns the config for chaining. Fills the
    model's sized keys left at 0 from model.size's preset for model.kind (models.complete).

    The curriculum's start values are checked when it is on (curriculum.interval > 0), or when
    `curriculum_set` says the command line set curriculum keys: a curriculum turned off in the
    config file must not hide, say, a dims_start above task.n_dims."""
    from icl_jax import models, tasks  # the registries know which task names and model kinds exist

    _check_keys(config)
    t, m, tr, cu, ev = config.task, config.model, config.train, config.curriculum, config.eval
    _positive(config, "task.n_dims", "task.n_points", "model.n_positions", "train.steps", "train.batch_size",
              "train.learning_rate", "train.log_every", "train.checkpoint_every",
              "train.keep_last", "train.keep_every", "eval.num_prompts", "eval.batch_size",
              "eval.bootstrap_samples", "data.prefetch")
    tasks.check_task_config(t)
    if t.n_points > m.n_positions:
        raise UserError(
            f"task.n_points={t.n_points} is longer than the model accepts "
            f"(model.n_positions={m.n_positions})"
        )
    if m.ssm_state < 1:
        raise UserError(f"model.ssm_state must be positive, got {m.ssm_state!r}")
    models.complete(m, default_config().model, tasks.label_classes(t))
    if tr.loss_positions not in ("all", "last"):
        raise UserError(f"train.loss_positions must be 'all' or 'last', got {tr.loss_positions!r}")
    if m.compute_dtype not in ("float32", "bfloat16"):
        raise UserError(f"model.compute_dtype must be 'float32' or 'bfloat16', got {m.compute_dtype!r}")
    for key, known in (("attention_impl", ATTENTION_IMPLS), ("dense_impl", DENSE_IMPLS)):
        if m[key] not in known:
            raise UserError(f"model.{key} must be one of {', '.join(known)}, got {m[key]!r}")
    if tr.schedule not in ("constant", "cosine"):
        raise UserError(f"train.schedule must be 'constant' or 'cosine', got {tr.schedule!r}")
    if tr.warmup_steps < 0 or tr.grad_clip < 0:
        raise UserError("train.warmup_steps and train.grad_clip must be >= 0")
    if tr.batch_splits < 0:
        raise UserError(f"train.batch_splits must be >= 0 (0: auto), got {tr.batch_splits}")
    if cu.interval < 0:
        raise UserError(f"curriculum.interval must be >= 0, got {cu.interval}")
    if cu.interval or curriculum_set:
        grown = tasks.curriculum_key(t)  # n_dims, or what the family grows instead
        off = "" if cu.interval else " (and the curriculum is off here: curriculum.interval=0)"
        if not 1 <= cu.dims_start <= t[grown]:
            raise UserError(f"curriculum.dims_start={cu.dims_start} must lie in [1, task.{grown}={t[grown]}]{off}")
        if not 1 <= cu.points_start <= t.n_points:
            raise UserError(
                f"curriculum.points_start={cu.points_start} must lie in [1, task.n_points={t.n_points}]{off}"
            )
        if cu.dims_increment < 0 or cu.points_increment < 0:
            raise UserError("curriculum increments must be >= 0")
    if config.wandb.mode not in WANDB_MODES:
        raise UserError(f"wandb.mode must be one of {', '.join(WANDB_MODES)}, got {config.wandb.mode!r}")
    if ev.seed == config.seed:
        raise UserError(f"eval.seed must differ from the training seed (both are {config.seed})")
    return config


def laptop(config: ml_collections.ConfigDict, *, n_dims: int, steps: int) -> None:
    """The CPU-laptop version of an experiment: the tiny model, a short prompt (2d+1 points),
    no curriculum and a larger learning rate with warm-up, so it learns in a few minutes."""
    apply_model_preset(config, "tiny")
    config.task.n_dims, config.task.n_points = n_dims, 2 * n_dims + 1
    config.model.n_positions = config.task.n_points
    config.curriculum.interval = 0
    config.train.steps, config.train.learning_rate, config.train.warmup_steps = steps, 1e-3, 200
    config.train.schedule = "cosine"
    config.train.log_every, config.train.checkpoint_every, config.train.keep_every = 500, 1000, 5000


def apply_arg(config: ml_collections.ConfigDict, arg: str | None, laptop_fn) -> ml_collections.ConfigDict:
    """The text after ':' in --config=configs/X.py:ARG, comma separated.

    'standard' keeps the reference sizes of the file (else `laptop_fn(config)` shrinks them);
    'tiny' | 'small' | 'standard_model' pick the model size afterwards.
    """
    words = [w for w in (arg or "").split(",") if w]
    unknown = [w for w in words if w not in ("standard", "tiny", "small", "standard_model")]
    if unknown:
        raise UserError(f"unknown config argument(s) {unknown}; known: standard, tiny, small, standard_model")
    if "standard" not in words:
        laptop_fn(config)
    for w in words:
        if w in ("tiny", "small"):
            apply_model_preset(config, w)
        elif w == "standard_model":
            apply_model_preset(config, "standard")
    return config
