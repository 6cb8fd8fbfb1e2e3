"""Runs a producer on a background thread, a fixed number of results ahead of the consumer,
so that gathering and transferring the next batches overlaps the device's current step."""

from __future__ import annotations

import queue
import threading
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class Prefetcher(Generic[T]):
    def __init__(self, produce: Callable[[], T], depth: int):
        if depth < 1:
            raise ValueError(f"prefetch depth must be >= 1, got {depth}")
        self._produce = produce
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="icl_jax-prefetch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                item = (self._produce(), None)
            except BaseException as e:  # handed to the consumer, who raises it
                item = (None, e)
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if item[1] is not None:
                return

    def next(self) -> T:
        value, error = self._queue.get()
        if error is not None:
            raise error
        return value

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
