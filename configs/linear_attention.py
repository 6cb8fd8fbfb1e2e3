"""One linear self-attention layer learns one step of gradient descent (von Oswald et al. 2023).

Linear regression with d = 10, N = 10 examples and one query, x ~ U(−½, ½)^d, w ~ N(0, I),
noiseless; the model is one linear self-attention layer (models/linear_attention.py) and
only the query after the N examples is scored (train.loss_positions = "last").
  python -m icl_jax.train --config=configs/linear_attention.py --workdir=runs/lsa
  python -m icl_jax.analyze --workdir=runs/lsa --what=gd
  expected (under two minutes of training on 2 CPU cores): the best single GD step gives
  ½·MSE ≈ 0.206 at η ≈ 6 at k = 10, and the trained layer reaches the same loss with the
  cosine of its sensitivity ∂ŷ/∂x_q to GD's above 0.999 (analysis/gd_*.json). Measured:
  η = 6.05, ½·MSE 0.2013 (model) and 0.2014 (GD) on the 2048 evaluation prompts, cosine
  0.9998; training took 72 s wall (27 s CPU) on a busy 2-core machine.
More layers (`--config.model.n_layer=3`, or ':tiny' for 3 layers and 2 heads) compare with
that many GD steps.
"""

from icl_jax import config as config_lib


def get_config(arg: str | None = None):
    c = config_lib.default_config()
    c.task.name, c.task.n_dims, c.task.n_points = "linear", 10, 11
    c.task.x_distribution = "uniform"
    c.model.kind, c.model.n_layer, c.model.n_head = "linear_attention", 1, 1
    c.model.n_positions = c.task.n_points
    c.curriculum.interval = 0
    c.train.loss_positions = "last"
    c.train.steps, c.train.batch_size, c.train.learning_rate = 2000, 512, 2e-3
    c.train.schedule = "cosine"  # the decay settles the parameters onto the GD solution
    c.train.log_every, c.train.checkpoint_every, c.train.keep_every = 250, 500, 500
    c.train.keep_last = 10
    c.eval.num_prompts = 2048
    # Already laptop-sized: 'standard' changes nothing; the model presets set n_layer, n_head.
    return config_lib.apply_arg(c, arg, lambda c: None)
