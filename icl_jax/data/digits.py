"""scikit-learn's 8×8 handwritten digits (1797 images, 10 classes), shipped with the library:
a real data set that needs no download, behind the same interface as the tfds sets.

The data set has no split of its own; a fixed permutation (seed 0) puts 80% in "train" and
the rest in "test", so held-out evaluation works as for the tfds sets.
"""

from __future__ import annotations

import functools

import numpy as np

from icl_jax.data.source import ArraySource
from icl_jax.errors import UserError

SPLITS = ("train", "test")
_TRAIN_FRACTION = 0.8


@functools.lru_cache(maxsize=1)
def _all() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # scikit-learn comes with the [datasets] extra, not the core install
        raise UserError("task.dataset='digits' needs scikit-learn: pip install -e '.[datasets]' "
                        "(or pip install scikit-learn)") from e
    digits = load_digits()
    # Pixel values are 0..16 integers stored as floats: exact in uint8.
    images = digits.images.astype(np.uint8)[..., None]
    return images, digits.target.astype(np.int32)


def load(split: str) -> ArraySource:
    if split not in SPLITS:
        raise UserError(f"the digits data set has splits {SPLITS}, not {split!r}")
    images, labels = _all()
    order = np.random.default_rng(0).permutation(len(labels))
    cut = int(round(_TRAIN_FRACTION * len(labels)))
    chosen = order[:cut] if split == "train" else order[cut:]
    return ArraySource("digits", split, 10, images[chosen], labels[chosen])
