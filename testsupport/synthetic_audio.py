"""Synthetic "emotional speech" for audio-model tests and benches: a learnable, label-dependent set.

Each class is a voiced buzz (a harmonic series) with its own pitch range, syllable rate and
loudness contour, plus per-clip jitter, a random gain (so only models that normalise per
utterance see through it) and background noise. Real speech has none of this tidiness; the set
exists to check that a model can learn anything at all and that save / load keeps it, not to say
how well it does on AI Hub data.
"""
from __future__ import annotations

import numpy as np

from core.bundle import Sample
from core.labels import LABELS

SAMPLE_RATE = 16_000
# label -> (pitch Hz, syllables per second, loudness-contour slope over the clip)
STYLES = {
    "angry": (210.0, 6.0, 0.6),
    "happiness": (280.0, 4.5, 0.0),
    "neutral": (150.0, 3.0, 0.0),
    "sadness": (110.0, 2.0, -0.6),
}


def synthetic_clip(label: str, rng: np.random.Generator, seconds: float | None = None) -> np.ndarray:
    f0, rate, slope = STYLES[label]
    seconds = seconds if seconds is not None else rng.uniform(1.0, 2.0)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    f0 *= rng.uniform(0.9, 1.1)
    pitch = f0 * (1 + 0.05 * np.sin(2 * np.pi * rng.uniform(0.5, 1.5) * t))  # gentle intonation
    phase = 2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE
    voice = sum(np.sin(k * phase) / k for k in range(1, 8))
    syllables = 0.5 * (1 + np.sin(2 * np.pi * rate * rng.uniform(0.9, 1.1) * t + rng.uniform(0, 2 * np.pi)))
    contour = np.clip(1 + slope * (t / t[-1] - 0.5), 0.1, None)
    wave = voice * syllables * contour
    wave = wave / np.abs(wave).max() * rng.uniform(0.05, 0.5)
    wave += rng.normal(0, 0.003, wave.shape)
    return wave.astype(np.float32)


def synthetic_set(per_class: int, seed: int = 0, seconds: float | None = None) -> tuple[list[Sample], list[str]]:
    """per_class clips of each label (1-2 s unless `seconds`), shuffled, as Samples and labels."""
    rng = np.random.default_rng(seed)
    labels = [label for label in LABELS for _ in range(per_class)]
    rng.shuffle(labels)
    samples = [Sample(audio=synthetic_clip(label, rng, seconds), id=f"syn{i}") for i, label in enumerate(labels)]
    return samples, labels
