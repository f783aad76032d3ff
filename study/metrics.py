"""srs-benchmark's metrics of predicted recall against outcomes: log loss, RMSE(bins), AUC.

Plain functions of arrays so that anyone can score their own predictions the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy.stats import rankdata

__all__ = ["METRICS", "auc", "log_loss", "rmse_bins"]

EPS = 1e-6
"""Predictions are clipped to [EPS, 1 - EPS] so that a confident miss costs a finite loss."""


def log_loss(p: np.ndarray, y: np.ndarray) -> float:
    """Mean binary cross-entropy of predictions ``p`` for outcomes ``y`` (1 = recalled)."""
    p = np.clip(p, EPS, 1 - EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def _geometric_bin(values: np.ndarray, scale: float, base: float, decimals: int) -> np.ndarray:
    """srs-benchmark's bin value: ``scale * base ** floor(log_base(x))``, rounded."""
    k = np.floor(np.log(np.maximum(values, 1.0)) / math.log(base))
    return np.round(scale * base**k, decimals)


def rmse_bins(
    p: np.ndarray,
    y: np.ndarray,
    elapsed: np.ndarray,
    review_number: np.ndarray,
    lapses: np.ndarray,
) -> float:
    """srs-benchmark's RMSE(bins): calibration gap per bin, weighted by the bin's size.

    Bins: whole elapsed days on 2.48 * 3.62**k, review number on 1.99 * 1.89**k, lapse
    count on 1.65 * 1.73**k (0 lapses its own bin).
    """
    keys = np.stack(
        [
            _geometric_bin(np.floor(elapsed), 2.48, 3.62, 2),
            _geometric_bin(review_number, 1.99, 1.89, 0),
            np.where(lapses > 0, _geometric_bin(lapses, 1.65, 1.73, 0), 0.0),
        ],
        axis=1,
    )
    _, bin_index = np.unique(keys, axis=0, return_inverse=True)
    bin_index = bin_index.ravel()
    counts = np.bincount(bin_index)
    mean_p = np.bincount(bin_index, weights=p) / counts
    mean_y = np.bincount(bin_index, weights=y) / counts
    return float(math.sqrt(np.sum(counts * (mean_p - mean_y) ** 2) / np.sum(counts)))


def auc(p: np.ndarray, y: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney form; ties count half); NaN with one class."""
    positives = int(np.sum(y == 1))
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = rankdata(p)
    return float(
        (np.sum(ranks[y == 1]) - positives * (positives + 1) / 2) / (positives * negatives)
    )


METRICS: dict[str, Callable[[np.ndarray], float]] = {
    "log_loss": lambda rows: log_loss(rows[:, 0], rows[:, 1]),
    "rmse_bins": lambda rows: rmse_bins(rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3], rows[:, 4]),
    "auc": lambda rows: auc(rows[:, 0], rows[:, 1]),
}
"""Each metric of ``scored_reviews`` rows, by name."""
