"""C++ kernels for XLA:CPU, built for the host on first use (build.py)."""
