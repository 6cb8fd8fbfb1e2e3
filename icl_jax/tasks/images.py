"""Image in-context tasks, the general-purpose in-context learning setting: every prompt takes
examples of a real data set, multiplies each flattened, standardized input by a random matrix
drawn for that prompt (entries N(0, 1/I)) and permutes the class labels at random for that
prompt; the model sees (A x_1, π(y_1)), ..., (A x_k, π(y_k)), A x_query and predicts π(y_query).

The host only gathers examples by index (icl_jax/data); resizing, standardization, the
projection and the permutation happen here, on device, inside the jitted step, keyed per
prompt. With task.num_tasks = M > 0 each prompt uses one of M fixed (projection, permutation)
pairs, member m keyed by derive(task.pool_seed, TASK_POOL, m): with few tasks a model
memorizes them, past a threshold it learns to learn. M = 0 draws a fresh pair per prompt.

Inputs are standardized per example (zero mean, unit variance over the I pixels), not with
data-set statistics: that needs no pass over the data and puts every data set — including
those never seen in training — on the same scale, |x|² = I, so A x has N(0, 1) entries.
Legend: B prompts, K points, H×W×C stored images, S = task.image_size, I = S·S·C flattened
input, D = task.n_dims (projected width), L = task.num_classes.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from icl_jax import data, rng
from icl_jax.data import feed
from icl_jax.errors import UserError
from icl_jax.tasks.base import Prompts

_PROJECTION, _PERMUTATION, _CHOICE = 0, 1, 2  # sub-streams of a prompt's or a task's key
_EVAL_CHUNK = 64  # prompts transformed per call at evaluation (A alone is chunk × I × D floats)


def flatten_standardized(images_BxKxHxWxC: jax.Array, size: int) -> jax.Array:
    """uint8 images -> x_BxKxI float32: resized to size×size (antialiased bilinear), flattened,
    and standardized per example. A constant image maps to zeros."""
    x = images_BxKxHxWxC.astype(jnp.float32)
    b, k, h, w, c = x.shape
    if (h, w) != (size, size):
        x = jax.image.resize(x, (b, k, size, size, c), method="linear", antialias=True)
    x = x.reshape(b, k, size * size * c)
    x = x - jnp.mean(x, axis=-1, keepdims=True)
    std = jnp.sqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True))
    return x / jnp.maximum(std, 1e-6)


def task_parameters(task_key: jax.Array, input_dim: int, n_dims: int, n_classes: int
                    ) -> tuple[jax.Array, jax.Array]:
    """(A_IxD with entries N(0, 1/I), permutation_L) of one task."""
    a = jax.random.normal(jax.random.fold_in(task_key, _PROJECTION), (input_dim, n_dims)) / np.sqrt(input_dim)
    return a, jax.random.permutation(jax.random.fold_in(task_key, _PERMUTATION), n_classes)


def prompt_keys(key: jax.Array, batch_size: int, first_index=0) -> jax.Array:
    """keys_B: prompt b's key is fold_in(key, first_index + b), so a prompt does not depend
    on how a set of prompts is split into batches."""
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(first_index + jnp.arange(batch_size))


@dataclasses.dataclass(frozen=True)
class ImageTask:
    name: str
    n_dims: int
    n_points: int
    label_classes: int
    dataset: str
    data_dir: str
    image_size: int
    num_tasks: int  # 0: a fresh task per prompt
    pool_seed: int
    eval_datasets: tuple[str, ...]
    in_memory: bool = False  # tfds sets: decode each split once, then gather by indexing
    family = "images"
    loss = "cross_entropy"
    host_fed = True  # examples come from the host (data/feed.py), not from `sample`

    @property
    def normalizer(self) -> float:
        return 1.0

    def source(self, split: str, dataset: str | None = None) -> data.ExampleSource:
        source = data.open_source(dataset or self.dataset, split, self.data_dir, self.in_memory)
        if source.num_classes > self.label_classes:
            raise UserError(f"data set {source.name!r} has {source.num_classes} classes; the model has "
                            f"task.num_classes={self.label_classes} label channels")
        return source

    def task_keys(self, keys_B: jax.Array, from_pool: bool) -> tuple[jax.Array, jax.Array]:
        """(task_keys_B, task_index_B): a pool member per prompt (index in [0, M)), or the
        prompt's own fresh task (index −1)."""
        if not from_pool:
            return keys_B, jnp.full(keys_B.shape, -1, jnp.int32)
        index_B = jax.vmap(lambda k: jax.random.randint(jax.random.fold_in(k, _CHOICE), (), 0, self.num_tasks))(keys_B)
        return jax.vmap(lambda i: rng.derive(self.pool_seed, rng.TASK_POOL, i))(index_B), index_B

    def prompts(self, key: jax.Array, images_BxKxHxWxC: jax.Array, labels_BxK: jax.Array,
                from_pool: bool | None = None, first_index=0) -> Prompts:
        """Prompts(x_BxKxD, y_BxK permuted labels, w_Bx1 task index) from gathered examples;
        prompt b is keyed by fold_in(key, first_index + b). `from_pool` (default: whether
        task.num_tasks > 0) picks pool tasks or fresh ones."""
        from_pool = self.num_tasks > 0 if from_pool is None else from_pool
        if from_pool and self.num_tasks < 1:
            raise ValueError("pool tasks need task.num_tasks > 0")
        x_BxKxI = flatten_standardized(images_BxKxHxWxC, self.image_size)
        task_keys_B, index_B = self.task_keys(prompt_keys(key, labels_BxK.shape[0], first_index), from_pool)
        params = functools.partial(task_parameters, input_dim=x_BxKxI.shape[-1], n_dims=self.n_dims,
                                   n_classes=self.label_classes)
        a_BxIxD, permutation_BxL = jax.vmap(params)(task_keys_B)
        x_BxKxD = jnp.einsum("bki,bid->bkd", x_BxKxI, a_BxIxD)
        y_BxK = jnp.take_along_axis(permutation_BxL, labels_BxK.astype(jnp.int32), axis=1)
        return Prompts(x_BxKxD, y_BxK.astype(jnp.int32), index_B[:, None].astype(jnp.float32))

    @functools.lru_cache(maxsize=4)
    def _jitted_prompts(self, from_pool: bool):
        """One compiled transform per task and kind of tasks, shared by every evaluation set."""
        return jax.jit(lambda key, images, labels, first: self.prompts(key, images, labels, from_pool, first))

    def eval_prompts(self, seed: int, num_prompts: int, dataset: str | None = None, split: str = "test",
                     from_pool: bool = False) -> Prompts:
        """Evaluation prompts (numpy) from `split` of `dataset` (default: the training set's
        held-out split): examples drawn from (seed, EVAL_DATA), fresh tasks unless `from_pool`."""
        source = self.source(split, dataset)
        indices_NxK = np.random.default_rng([seed, rng.EVAL_DATA]).integers(0, len(source), (num_prompts, self.n_points))
        root = rng.derive(seed, rng.EVAL_DATA)
        transform = self._jitted_prompts(from_pool)
        parts = []
        for start in range(0, num_prompts, _EVAL_CHUNK):
            rows = indices_NxK[start:start + _EVAL_CHUNK]
            pad = _EVAL_CHUNK - len(rows)  # one compiled shape: the last chunk is padded, then cut
            rows = np.concatenate([rows, np.repeat(rows[:1], pad, axis=0)])
            images, labels = feed.gather_batch(source, rows)
            p = transform(root, images, labels, start)
            parts.append([np.asarray(a)[:_EVAL_CHUNK - pad] for a in p])
        return Prompts(*(np.concatenate(arrays) for arrays in zip(*parts)))


# ---- the family's registry entry (tasks/__init__.py) ----
NAMES = ("images",)
FAMILY = "images"
HOST_FED = True  # make() takes config.data: where the data sets live and how they are read
# The keys of config.task this family reads besides name, n_dims and n_points: examples of a
# real data set, a random projection to n_dims and a label permutation per prompt. Where the
# data sets live and how they are read is config.data (icl_jax/config.py).
CONFIG_KEYS = {
    # a tfds name (mnist, fashion_mnist, kmnist, cifar10, svhn_cropped) or digits (scikit-learn, offline)
    "dataset": "digits",
    "image_size": 8,  # images are resized to image_size × image_size before flattening
    "num_classes": 10,  # label classes (one-hot label channels of the model)
    "num_tasks": 0,  # distinct (projection, permutation) tasks, keyed by task.pool_seed; 0 = a fresh one per prompt
    "pool_seed": 1,  # num_tasks > 0: the task pool is a function of this seed alone
    "eval_datasets": "",  # comma-separated data sets not seen in training, scored by evaluate on their test split
}


def eval_dataset_names(t) -> tuple[str, ...]:
    return tuple(name.strip() for name in t.eval_datasets.split(",") if name.strip())


def check_config(t) -> None:
    if not t.dataset:
        raise UserError("task.dataset must name a data set (a tfds name such as mnist, or digits)")
    if t.image_size < 1:
        raise UserError(f"task.image_size must be positive, got {t.image_size}")
    if t.num_classes < 2:
        raise UserError(f"task.num_classes must be at least 2, got {t.num_classes}")
    if not 0 <= t.num_tasks < 2**31:
        raise UserError(f"task.num_tasks must lie in [0, 2^31) (0: unlimited), got {t.num_tasks}")
    if t.dataset in eval_dataset_names(t):
        raise UserError(f"task.eval_datasets holds the training data set {t.dataset!r}; its held-out "
                        f"split is evaluated anyway, and eval_datasets is for data sets not seen in training")


def label_classes(t) -> int:
    return t.num_classes


def make(t, data) -> ImageTask:
    """data: config.data, where the data sets live and how they are read."""
    return ImageTask(t.name, t.n_dims, t.n_points, t.num_classes, t.dataset, data.data_dir, t.image_size,
                     t.num_tasks, t.pool_seed, eval_dataset_names(t), data.in_memory)
