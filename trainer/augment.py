"""The seed's waveform augmentations (noise, time stretch, pitch shift), for training only.

The seed added Gaussian noise at 0.005 x a random fraction of the peak, stretched time by a
fixed 0.8 and shifted pitch by a fixed 0.7 semitones. Here each is applied at random per
training example, with the rate and shift drawn from a range around the seed's values, so every
epoch sees different versions of a clip instead of three fixed copies. librosa's phase vocoder is
slow (tens of ms per clip), which is why the models run this in DataLoader workers and never at
inference; the streamer does not import this module.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from core.settings_json import JsonSettings


@dataclass(frozen=True)
class AugmentSettings(JsonSettings):
    """[train.augment]: probability and strength of each augmentation; all three may hit the same example."""

    what: ClassVar[str] = "augmentation"

    noise_p: float = 0.5
    noise_level: float = 0.005  # the seed's: noise std = level x U(0, 1) x peak amplitude
    stretch_p: float = 0.3
    stretch_min: float = 0.8  # rate < 1 slows down (the seed used 0.8)
    stretch_max: float = 1.25
    pitch_p: float = 0.3
    pitch_semitones: float = 1.0  # shift drawn from U(-x, x); the seed used +0.7

    def __post_init__(self) -> None:
        for name in ("noise_p", "stretch_p", "pitch_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"augmentation {name} must be a probability in [0, 1], got {getattr(self, name)}")
        if not 0 < self.stretch_min <= self.stretch_max:
            raise ValueError(f"need 0 < stretch_min <= stretch_max, got {self.stretch_min}, {self.stretch_max}")
        if self.noise_level < 0 or self.pitch_semitones < 0:
            raise ValueError("noise_level and pitch_semitones must not be negative")


def add_noise(wave: np.ndarray, rng: np.random.Generator, level: float = 0.005) -> np.ndarray:
    """Gaussian noise scaled to the clip's peak, so loud and quiet clips get the same SNR range."""
    amplitude = level * rng.uniform() * float(np.abs(wave).max(initial=0.0))
    return (wave + amplitude * rng.standard_normal(wave.shape)).astype(np.float32)


def time_stretch(wave: np.ndarray, rate: float) -> np.ndarray:
    """Faster (rate > 1) or slower speech at the same pitch."""
    import librosa  # heavy, and only training needs it: trainer/config.py imports this module

    return librosa.effects.time_stretch(y=wave, rate=rate).astype(np.float32)


def pitch_shift(wave: np.ndarray, semitones: float, sample_rate: int = 16_000) -> np.ndarray:
    """Higher or lower voice at the same speed."""
    import librosa

    return librosa.effects.pitch_shift(y=wave, sr=sample_rate, n_steps=semitones).astype(np.float32)


def augment(wave: np.ndarray, rng: np.random.Generator, settings: AugmentSettings, sample_rate: int = 16_000) -> np.ndarray:
    """One random training version of `wave`: each augmentation applied with its probability."""
    if wave.size < 2048:  # too short for librosa's phase vocoder; noise alone still works
        return add_noise(wave, rng, settings.noise_level) if rng.uniform() < settings.noise_p else wave
    if rng.uniform() < settings.stretch_p:
        wave = time_stretch(wave, rng.uniform(settings.stretch_min, settings.stretch_max))
    if rng.uniform() < settings.pitch_p:
        wave = pitch_shift(wave, rng.uniform(-settings.pitch_semitones, settings.pitch_semitones), sample_rate)
    if rng.uniform() < settings.noise_p:
        wave = add_noise(wave, rng, settings.noise_level)
    return wave
