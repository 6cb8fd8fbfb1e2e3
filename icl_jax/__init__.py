"""icl_jax: meta-trained in-context learners and the exact baselines they are compared with."""
