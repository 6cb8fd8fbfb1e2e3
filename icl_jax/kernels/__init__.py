"""Hand-written kernels, one folder per backend (cpu/); models/ops.py picks them (docs/kernels.md)."""
