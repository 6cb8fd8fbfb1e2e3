"""Classic in-context regression baselines: (x_BxKxD, y_BxK) -> yhat_BxK, every prefix at once.

yhat[:, k] predicts y_k from x_k using only the k examples before it (0 when k = 0).
"""

from icl_jax.baselines.regression import least_squares
from icl_jax.baselines.simple import averaging, nearest_neighbors, zero

__all__ = ["averaging", "least_squares", "nearest_neighbors", "zero"]
