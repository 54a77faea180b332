"""Fixed-length windows of a clip: a random crop for training, overlapping windows for prediction.

Audio models train on windows of one length (batches of equal shapes, bounded memory). At
prediction a clip shorter than the window is zero-padded and a longer one is cut into windows
that overlap by half, the last one flush with the clip's end; the model averages its
probabilities over them, so a 12 s utterance is judged on all of it, not on its first seconds.
"""
from __future__ import annotations

import numpy as np


def random_crop(wave: np.ndarray, size: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """A `size`-sample window at a random place, and how many of its samples are real audio.

    A shorter clip is placed at a random offset in zeros and the real length counts from the
    window's start to the clip's end, so the features' valid-frame mask covers the whole clip.
    """
    out = np.zeros(size, dtype=np.float32)
    if len(wave) >= size:
        start = int(rng.integers(0, len(wave) - size + 1))
        out[:] = wave[start : start + size]
        return out, size
    offset = int(rng.integers(0, size - len(wave) + 1))
    out[offset : offset + len(wave)] = wave
    return out, offset + len(wave)


def windows(wave: np.ndarray, size: int) -> tuple[list[np.ndarray], list[int]]:
    """Windows of `size` samples covering the clip (half overlap) and the real samples in each."""
    if len(wave) <= size:
        out = np.zeros(size, dtype=np.float32)
        out[: len(wave)] = wave
        return [out], [len(wave)]
    hop = max(1, size // 2)
    starts = list(range(0, len(wave) - size + 1, hop))
    if starts[-1] != len(wave) - size:
        starts.append(len(wave) - size)
    return [np.asarray(wave[s : s + size], dtype=np.float32) for s in starts], [size] * len(starts)
