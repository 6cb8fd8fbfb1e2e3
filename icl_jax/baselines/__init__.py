"""In-context regression baselines: (x_BxKxD, y_BxK) -> yhat_BxK, every prefix at once.

yhat[:, k] predicts y_k from x_k using only the k examples before it (0 when k = 0, or the
prior mean). Modules: regression (least squares, ridge), simple (averaging, nearest
neighbours, zero), gradient_descent, lasso, gaussian_posterior, mixture (every mixture
class), enumeration (sign vectors), bayes (the exact posterior of each task class),
fourier (Fourier-series posteriors), nonlinear (greedy trees), neural_net (a 2-layer net
trained in context).
Functions named like their module are imported from the module (`from
icl_jax.baselines.lasso import lasso`): re-exporting them here would hide the module.
"""

from icl_jax.baselines.regression import least_squares
from icl_jax.baselines.simple import averaging, nearest_neighbors, zero

__all__ = ["averaging", "least_squares", "nearest_neighbors", "zero"]
