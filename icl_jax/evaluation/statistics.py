"""Per-prompt errors to curves: means with paired, seeded bootstrap intervals.

Legend: N prompts, K prompt lengths, R bootstrap resamples.
"""

from __future__ import annotations

import numpy as np

from icl_jax import rng


def squared_errors(yhat_NxK: np.ndarray, y_NxK: np.ndarray) -> np.ndarray:
    return np.square(np.asarray(yhat_NxK, np.float64) - np.asarray(y_NxK, np.float64))


def normalized_squared_errors(predictions: dict[str, np.ndarray], y_NxK: np.ndarray,
                              normalizer: float) -> dict[str, np.ndarray]:
    """name -> squared errors / normalizer, N×K; a non-finite prediction is an error to report,
    never a number to average."""
    errors = {}
    for name, yhat in predictions.items():
        errors[name] = squared_errors(yhat, y_NxK) / normalizer
        if not np.all(np.isfinite(errors[name])):
            raise RuntimeError(f"{name} produced non-finite predictions on the evaluation prompts")
    return errors


def resample_counts(num_prompts: int, num_resamples: int, seed: int) -> np.ndarray:
    """counts_RxN: how often each prompt appears in each resample. The same counts serve every
    predictor, so intervals of different predictors come from the same resamples (paired)."""
    generator = np.random.default_rng([seed, rng.BOOTSTRAP])
    return generator.multinomial(num_prompts, np.full(num_prompts, 1.0 / num_prompts), size=num_resamples)


def curve(errors_NxK: np.ndarray, counts_RxN: np.ndarray, confidence: float = 0.9) -> dict[str, list[float]]:
    """Mean over prompts per k, and the percentile bootstrap interval of that mean."""
    means_RxK = counts_RxN @ errors_NxK / errors_NxK.shape[0]
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means_RxK, [tail, 100 - tail], axis=0)
    return {"mean": errors_NxK.mean(axis=0).tolist(), "ci_low": low.tolist(), "ci_high": high.tolist()}
