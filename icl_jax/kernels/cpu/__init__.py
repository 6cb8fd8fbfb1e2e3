"""C++ kernels for XLA:CPU, built for the host when a model selects them (build.py); the model
reaches them through icl_jax/models/ops.py alone (docs/kernels.md)."""
