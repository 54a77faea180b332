"""The label vocabulary every model, bundle, feed message and export shares.

Order matters: probability vectors everywhere are in LABELS order, and `label_indices` is the one
place a label becomes a column number.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

# The four classes the seed kept ("basic emotions most clearly expressed"), alphabetical.
LABELS: tuple[str, ...] = ("angry", "happiness", "neutral", "sadness")


def label_indices(y: Sequence[str] | np.ndarray, labels: Sequence[str] = LABELS) -> np.ndarray:
    """Labels (strings) as indices into `labels`; integer arrays pass through."""
    y = np.asarray(y)
    if y.dtype.kind in "iu":
        return y.astype(int)
    index = {label: i for i, label in enumerate(labels)}
    unknown = sorted(set(y.tolist()) - set(index))
    if unknown:
        raise ValueError(f"labels {unknown} are not in {list(labels)}")
    return np.array([index[label] for label in y.tolist()], dtype=int)
