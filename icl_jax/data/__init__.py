"""Host-side data for tasks built on real data sets (tasks/images.py): sources that gather
examples by index (tfds ArrayRecord or in memory), the resumable index sampler, and the
prefetching that keeps the device from waiting on the host."""

from __future__ import annotations

from icl_jax.data import digits
from icl_jax.data.source import ArraySource, ExampleSource


def open_source(name: str, split: str, data_dir: str = "", in_memory: bool = False) -> ExampleSource:
    """One split of `name`: the scikit-learn digits (always in memory), or a prepared tfds
    data set, read by random access or (in_memory) decoded once and then indexed."""
    if name == "digits":
        return digits.load(split)
    from icl_jax.data.tfds_source import TfdsSource  # tfds imports only when a tfds set is used

    return TfdsSource(name, split, data_dir, in_memory)


__all__ = ["ArraySource", "ExampleSource", "open_source"]
