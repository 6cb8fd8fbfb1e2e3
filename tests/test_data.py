"""The host data path of the image tasks: sources, the resumable sampler, prefetching, and the
message for a data set that is not prepared."""

import threading

import numpy as np
import pytest
import tensorflow_datasets as tfds

from icl_jax import data, parallel
from icl_jax.data import digits, feed
from icl_jax.data.prefetch import Prefetcher
from icl_jax.data.sampler import IndexSampler
from icl_jax.errors import UserError

pytestmark = pytest.mark.timeout(120)


def test_sampler_visits_every_example_once_per_epoch():
    sampler = IndexSampler(10, seed=3)
    first, second = sampler.take(10), sampler.take(10)
    assert sorted(first) == sorted(second) == list(range(10))
    assert not np.array_equal(first, second)  # a new permutation each epoch
    assert sampler.state() == {"epoch": 1, "position": 10}


def test_sampler_resumes_exactly_from_its_state_whatever_the_take_sizes():
    straight = IndexSampler(13, seed=5)
    expected = straight.take(50)
    interrupted = IndexSampler(13, seed=5)
    head = interrupted.take(17)
    resumed = IndexSampler(13, seed=5, state=dict(interrupted.state()))
    tail = np.concatenate([resumed.take(20), resumed.take(13)])
    np.testing.assert_array_equal(np.concatenate([head, tail]), expected)


def test_sampler_rejects_a_state_from_a_larger_data_set():
    with pytest.raises(ValueError, match="another data set"):
        IndexSampler(5, seed=0, state={"epoch": 0, "position": 9})


def test_digits_splits_are_disjoint_and_hold_the_scikit_learn_images():
    from sklearn.datasets import load_digits

    train, test = digits.load("train"), digits.load("test")
    assert len(train) + len(test) == 1797 and len(test) == 359
    assert train.image_shape == (8, 8, 1) and train.num_classes == 10
    reference = load_digits()
    flat = {tuple(img.ravel()): int(lab) for img, lab in zip(reference.images.astype(np.uint8), reference.target)}
    images, labels = test.gather(np.arange(20))
    assert images.dtype == np.uint8 and labels.dtype == np.int32
    assert all(flat[tuple(img.ravel())] == lab for img, lab in zip(images, labels))
    train_rows = {tuple(img.ravel()) for img in train.images_NxHxWxC}
    test_rows = [tuple(img.ravel()) for img in test.images_NxHxWxC]
    # a few digits images are exact duplicates in scikit-learn; nearly all test rows are new
    assert sum(r in train_rows for r in test_rows) <= 5


def test_tfds_source_reads_mock_data_by_index():
    with tfds.testing.mock_data(num_examples=12):
        source = data.open_source("mnist", "train")
        assert (len(source), source.image_shape, source.num_classes) == (12, (28, 28, 1), 10)
        images, labels = feed.gather_batch(source, np.array([[0, 3], [3, 11]]))
        assert images.shape == (2, 2, 28, 28, 1) and images.dtype == np.uint8
        np.testing.assert_array_equal(images[0, 1], images[1, 0])  # same index, same record
        assert labels.shape == (2, 2) and labels.min() >= 0 and labels.max() < 10


def test_a_data_set_that_is_not_prepared_names_the_command_and_the_folder(tmp_path):
    with pytest.raises(UserError) as raised:
        data.open_source("mnist", "train", str(tmp_path))
    message = str(raised.value)
    assert f"tfds build mnist --data_dir={tmp_path} --file_format=array_record" in message
    assert str(tmp_path / "mnist") in message and "not prepared" in message
    assert not any(tmp_path.rglob("*.array_record*"))  # nothing was downloaded or written


def test_an_unknown_data_set_name_is_a_user_error():
    with pytest.raises(UserError, match="not a tensorflow-datasets name"):
        data.open_source("no_such_images", "train")


def test_prefetcher_keeps_order_and_reraises_the_producers_error():
    counter = iter(range(5))

    def produce():
        value = next(counter)
        if value == 3:
            raise RuntimeError("disk gone")
        return value

    prefetcher = Prefetcher(produce, depth=2)
    assert [prefetcher.next() for _ in range(3)] == [0, 1, 2]
    with pytest.raises(RuntimeError, match="disk gone"):
        prefetcher.next()
    prefetcher.close()


def test_train_feed_state_follows_the_batches_handed_out_not_the_prefetched_ones():
    source = digits.load("test")
    mesh = parallel.make_mesh()
    train_feed = feed.TrainFeed(source, batch_size=4, n_points=5, seed=0, mesh=mesh, depth=3)
    try:
        batches = [train_feed.next() for _ in range(2)]
        state = train_feed.state()
    finally:
        train_feed.close()
    assert state == {"epoch": 0, "position": 40}  # 2 batches of 4 × 5, whatever was prefetched
    reference = IndexSampler(len(source), seed=0)
    for batch in batches:
        images, labels = feed.gather_batch(source, reference.take(20).reshape(4, 5))
        np.testing.assert_array_equal(np.asarray(batch.images_BxKxHxWxC), images)
        np.testing.assert_array_equal(np.asarray(batch.labels_BxK), labels)
    assert not any(t.name == "icl_jax-prefetch" and t.is_alive() for t in threading.enumerate())


def test_tfds_split_held_in_memory_gathers_what_random_access_reads():
    with tfds.testing.mock_data(num_examples=30):
        random_access = data.open_source("mnist", "test")
        in_memory = data.open_source("mnist", "test", in_memory=True)
        indices = np.array([29, 0, 7, 7])
        for a, b in zip(random_access.gather(indices), in_memory.gather(indices)):
            np.testing.assert_array_equal(a, b)
