"""Image in-context tasks: the general-purpose in-context learning setting (docs/function_classes.md).

    python -m icl_jax.train --config=configs/images.py --workdir=runs/images
    python -m icl_jax.evaluate --workdir=runs/images

Every prompt takes examples of a real data set, multiplies each flattened, standardized input
by a random matrix drawn for that prompt and permutes the labels for that prompt; the model
predicts each query's (permuted) label from the examples before it, with cross-entropy on
every position. `evaluate` reports accuracy per k on the held-out test split with fresh
tasks, beside nearest neighbour, logistic regression trained in context by GD and the
majority label; on pool tasks when task.num_tasks > 0 (memorization: few tasks; learning
to learn: many, or 0 = unlimited); and on task.eval_datasets, data sets not seen in training.

Laptop default: scikit-learn's 8×8 digits (no download, runs on a fresh machine), projected
to D = 16, 30 points, the tiny model with a type channel, 3000 steps (15-25 minutes on 2
shared CPU cores). Expected at step 3000 (measured, 512 prompts): the training loss is still
on the plateau of this setting (2.3028, ln 10 = 2.3026) and the model at chance (accuracy
≈0.11 at every k), while nearest neighbour reaches 0.45 at k = 10 and 0.63 at k = 29 and
logistic regression 0.41 and 0.62. With --config.task.num_tasks=1 --config.task.n_dims=64
--config.train.steps=600 the model memorizes its one task: 0.97-1.0 accuracy on it at every
k, chance on fresh tasks.

Memorization against learning to learn over the number of tasks, and the levers tried
against the plateau (batch 128 and 512, the small model, fewer tasks; none left it toward
learning to learn in a laptop budget): docs/reproductions.md, section 6.

Reference (`:standard`): MNIST from tfds (prepare it once: `tfds build mnist
--file_format=array_record`; the run never downloads), 14×14 images projected to D = 196,
100 points, batch 128, unlimited tasks, evaluated on fashion_mnist, kmnist, cifar10 and
svhn_cropped (prepare those too). `--config.task.num_tasks=M` with a small M gives the
memorization side of the transition.
"""

from icl_jax import config as config_lib

# Memorization against learning-to-learn (Kirsch et al. 2022, docs/reproductions.md): the number
# of distinct tasks seen in training; evaluate scores the pool's own tasks (pool_tasks) and
# fresh ones (curves).
#   python -m icl_jax.sweep --config=configs/images.py:tasks --workdir=runs/images_tasks
#   python -m icl_jax.report --workdir=runs/images_tasks --metric=accuracy --k=20
SWEEPS = {"tasks": {"task.num_tasks": [1, 16, 256, 4096, 0]}}


def _laptop(c):
    config_lib.laptop(c, n_dims=16, steps=3000)
    c.task.dataset, c.task.image_size, c.task.eval_datasets = "digits", 8, ""
    c.task.n_points = c.model.n_positions = 30
    c.model.type_channel = True  # shortens the initial plateau of small models
    c.train.batch_size = 64
    c.eval.num_prompts = 512


def get_config(arg=None):
    c = config_lib.default_config()
    c.task.name = "images"
    c.task.dataset, c.task.image_size, c.task.n_dims = "mnist", 14, 196
    c.task.eval_datasets = "fashion_mnist,kmnist,cifar10,svhn_cropped"
    c.task.num_tasks = 0
    c.task.n_points = c.model.n_positions = 100
    c.curriculum.interval = 0  # no dimension or length curriculum: shapes come from the data
    c.train.batch_size = 128
    c.eval.num_prompts = 512  # logistic regression is fitted at every k of every prompt
    return config_lib.apply_arg(c, arg, _laptop)
