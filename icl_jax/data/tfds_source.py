"""A split of a tensorflow-datasets image set, read by random access (`tfds.data_source`:
ArrayRecord files, no TensorFlow at run time).

Nothing is downloaded: a data set that is not prepared on this machine stops the run with
the tfds command that prepares it and the folder that was searched.
"""

from __future__ import annotations

import concurrent.futures

import numpy as np

from icl_jax.errors import UserError

_READ_THREADS = 8  # image decoding (PIL/OpenCV) releases the GIL


def _tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise UserError("reading tfds data sets needs tensorflow-datasets: pip install -e '.[datasets]' "
                        "(or use task.dataset='digits', which needs no download)") from e
    return tfds


def prepare_command(name: str, data_dir: str) -> str:
    where = f" --data_dir={data_dir}" if data_dir else ""
    return f"tfds build {name}{where} --file_format=array_record"


def _not_prepared(name: str, data_dir: str, looked_in: str, detail: str) -> UserError:
    return UserError(
        f"data set {name!r} is not prepared for random access: looked in {looked_in} "
        f"(data.data_dir={data_dir!r}; empty means $TFDS_DATA_DIR or ~/tensorflow_datasets). "
        f"Nothing is downloaded during a run. Prepare it once, on a machine with network access "
        f"and TensorFlow installed (pip install tensorflow tensorflow-datasets), with:\n"
        f"  {prepare_command(name, data_dir)}\n"
        f"then copy that folder here or point data.data_dir at it.{detail}")


class TfdsSource:
    """ExampleSource (data/source.py) over one split of a prepared tfds data set."""

    def __init__(self, name: str, split: str, data_dir: str = "", in_memory: bool = False):
        """in_memory: decode the whole split once, here, and gather by indexing afterwards."""
        tfds = _tfds()
        try:
            builder = tfds.builder(name, data_dir=data_dir or None)
        except tfds.core.registered.DatasetNotFoundError as e:
            raise UserError(f"task.dataset={name!r} is not a tensorflow-datasets name "
                            f"(e.g. mnist, fashion_mnist, kmnist, cifar10, svhn_cropped, or digits)") from e
        try:
            self._records = tfds.data_source(name, split=split, data_dir=data_dir or None, download=False)
        except Exception as e:  # tfds raises several types for missing or non-ArrayRecord data
            if split not in (builder.info.splits or {split: None}):
                raise UserError(f"data set {name!r} has no split {split!r}; it has {sorted(builder.info.splits)}") from e
            # tfds's own error for a missing folder speaks of file formats; name the cause instead
            detail = (f" (it is there, but: {type(e).__name__}: {str(e)[:300]})" if builder.is_prepared()
                      else "")
            raise _not_prepared(name, data_dir, str(builder.data_dir), detail) from e
        features = builder.info.features
        if "image" not in features or "label" not in features:
            raise UserError(f"data set {name!r} has no 'image' and 'label' features: {sorted(features)}")
        self.name, self.split = name, split
        self.num_classes = int(features["label"].num_classes)
        self.image_shape = tuple(int(s) for s in features["image"].shape)
        if None in self.image_shape:
            raise UserError(f"data set {name!r} has images of varying size {self.image_shape}; "
                            f"the image tasks need one fixed shape")
        self._pool = concurrent.futures.ThreadPoolExecutor(_READ_THREADS)
        self._arrays = self._decode(np.arange(len(self._records))) if in_memory else None

    def __len__(self) -> int:
        return len(self._records)

    def _read(self, indices: np.ndarray) -> list[dict]:
        try:
            return list(self._records.__getitems__([int(i) for i in indices]))  # one batched ArrayRecord read
        except TypeError:  # tfds.testing.mock_data's source has no working batched read
            return [self._records[int(i)] for i in indices]

    def gather(self, indices_N: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        indices_N = np.asarray(indices_N).reshape(-1)
        if self._arrays is not None:
            return self._arrays[0][indices_N], self._arrays[1][indices_N]
        return self._decode(indices_N)

    def _decode(self, indices_N: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        chunks = np.array_split(indices_N, min(_READ_THREADS, max(len(indices_N) // 64, 1)))
        examples = [e for part in self._pool.map(self._read, chunks) for e in part]
        images = np.stack([np.asarray(e["image"], np.uint8).reshape(self.image_shape) for e in examples])
        labels = np.asarray([e["label"] for e in examples], np.int32)
        return images, labels
