"""What the image tasks read: a split of a labelled image data set with random access.

Every source gives uint8 images of one shape and integer labels, gathered by example index;
resizing, standardization, projection and label permutation happen on device
(tasks/images.py), so the host does nothing but gather.
Legend: N examples gathered, H×W×C image shape.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

import numpy as np


class ExampleSource(Protocol):
    name: str  # the data set, e.g. "mnist" or "digits"
    split: str
    num_classes: int
    image_shape: tuple[int, int, int]  # H, W, C

    def __len__(self) -> int: ...

    def gather(self, indices_N: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(images_NxHxWxC uint8, labels_N int32) of the examples at `indices_N`."""


@dataclasses.dataclass(frozen=True)
class ArraySource:
    """A split held in memory as arrays (the scikit-learn digits, or any small set)."""

    name: str
    split: str
    num_classes: int
    images_NxHxWxC: np.ndarray
    labels_N: np.ndarray

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images_NxHxWxC.shape[1:])

    def __len__(self) -> int:
        return len(self.labels_N)

    def gather(self, indices_N: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.images_NxHxWxC[indices_N], self.labels_N[indices_N]
