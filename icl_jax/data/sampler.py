"""Which examples each training batch gathers: epochs of a seeded permutation, no example
repeated within an epoch.

The whole state is two integers, (epoch, position), kept as JSON in every checkpoint
(checkpointing.py), so a resumed run gathers exactly the examples the uninterrupted one
would, whatever the batch size after the resume.
"""

from __future__ import annotations

import numpy as np


class IndexSampler:
    def __init__(self, num_examples: int, seed: int, state: dict | None = None):
        if num_examples < 1:
            raise ValueError("an index sampler needs at least one example")
        self.num_examples, self.seed = num_examples, seed
        state = state or {"epoch": 0, "position": 0}
        self._epoch, self._position = int(state["epoch"]), int(state["position"])
        if not 0 <= self._position <= num_examples:
            raise ValueError(f"sampler position {self._position} is outside a split of {num_examples} "
                             f"examples: the checkpoint was written for another data set")
        self._order = self._permutation(self._epoch)

    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.num_examples)

    def state(self) -> dict:
        return {"epoch": self._epoch, "position": self._position}

    def take(self, count: int) -> np.ndarray:
        """The next `count` indices (int64), continuing into the next epochs as needed."""
        parts = []
        while count:
            if self._position == self.num_examples:
                self._epoch, self._position = self._epoch + 1, 0
                self._order = self._permutation(self._epoch)
            n = min(count, self.num_examples - self._position)
            parts.append(self._order[self._position:self._position + n])
            self._position += n
            count -= n
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)
