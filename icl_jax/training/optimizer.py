"""Adam with an optional warm-up, cosine decay and global-norm clipping, from config.train."""

import ml_collections
import optax


def learning_rate_schedule(train: ml_collections.ConfigDict) -> optax.Schedule:
    if train.schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(
            0.0, train.learning_rate, max(train.warmup_steps, 1), max(train.steps, train.warmup_steps + 1))
    if train.warmup_steps:
        return optax.join_schedules(
            [optax.linear_schedule(0.0, train.learning_rate, train.warmup_steps),
             optax.constant_schedule(train.learning_rate)],
            [train.warmup_steps])
    return optax.constant_schedule(train.learning_rate)


def make_optimizer(train: ml_collections.ConfigDict) -> optax.GradientTransformation:
    adam = optax.adam(learning_rate_schedule(train))
    return optax.chain(optax.clip_by_global_norm(train.grad_clip), adam) if train.grad_clip else adam
