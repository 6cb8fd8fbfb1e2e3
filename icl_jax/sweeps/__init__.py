"""Sweeps: many ordinary runs from one command (`python -m icl_jax.sweep`), and one table and
plot over them (`python -m icl_jax.report`).

grid.py     which runs a sweep holds: axes from --sweep or a config file's SWEEPS, the
            Cartesian product, a machine's shard of it
runs.py     each run's resolved config, directory name, status and record
execute.py  runs them (train, then evaluate) as child processes, some at once
report.py   gathers every run's latest evaluation into a table and a plot
"""
