"""Training batches of a host-fed task (tasks/images.py): the host gathers the examples the
sampler names and puts them on the mesh, `depth` batches ahead of the device.

Legend: B prompts, K points per prompt, H×W×C image shape.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

from icl_jax import parallel
from icl_jax.data.prefetch import Prefetcher
from icl_jax.data.sampler import IndexSampler
from icl_jax.data.source import ExampleSource


class HostBatch(NamedTuple):
    images_BxKxHxWxC: jax.Array  # uint8, as stored
    labels_BxK: jax.Array  # int32 class indices, before the per-prompt permutation


def gather_batch(source: ExampleSource, indices_BxK: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    images_N, labels_N = source.gather(indices_BxK.reshape(-1))
    return images_N.reshape(indices_BxK.shape + images_N.shape[1:]), labels_N.reshape(indices_BxK.shape)


def to_mesh(arrays, mesh: jax.sharding.Mesh) -> HostBatch:
    """Host arrays (the same on every process) to global arrays split over the data axis;
    each device receives only its rows."""
    sharding = parallel.batch_sharding(mesh)
    return HostBatch(*(jax.make_array_from_callback(a.shape, sharding, lambda index, a=a: a[index])
                       for a in arrays))


class TrainFeed:
    """`next()` is the next batch; `state()` is the sampler state after the batches handed out
    so far — what a checkpoint of the current step must hold, whatever is prefetched."""

    def __init__(self, source: ExampleSource, batch_size: int, n_points: int, seed: int,
                 mesh: jax.sharding.Mesh, depth: int, state: dict | None = None):
        self._sampler = IndexSampler(len(source), seed, state)
        self._handed_out_state = self._sampler.state()
        shape = (batch_size, n_points)

        def produce():
            indices = self._sampler.take(batch_size * n_points).reshape(shape)
            after = self._sampler.state()
            return to_mesh(gather_batch(source, indices), mesh), after

        self._prefetcher = Prefetcher(produce, depth)

    def next(self) -> HostBatch:
        batch, self._handed_out_state = self._prefetcher.next()
        return batch

    def state(self) -> dict:
        return dict(self._handed_out_state)

    def close(self) -> None:
        self._prefetcher.close()
