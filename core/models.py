"""The model contract: what every emotion model in a bundle is, and the one registry of their kinds.

A bundle holds one model per role (text, audio, multimodal) and a stacker over them. Prediction
follows scikit-learn's estimator shape, which is what a stacker needs from every model:

    model.predict_proba(samples) -> (n, len(model.labels)) rows that sum to 1, in LABELS order
    model.save(folder) -> settings worth recording in bundle.json
    Kind.load(folder, device) -> the model, ready to predict

Fitting is not part of a model here: each kind has a fitter in `trainer/` (see trainer/fitting.py)
that returns one of these, so loading a bundle for inference never imports a training loop. The
stacker is the same but predicts from the base models' probabilities (`predict_proba_from`).

Model classes are found by their `kind` string through MODEL_KINDS and imported lazily, so a
text-only bundle never imports the audio stack.
"""
from __future__ import annotations

import importlib
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, Sequence

import numpy as np

# kind -> "module:Class": one line per model kind.
MODEL_KINDS: dict[str, str] = {
    "e5_head": "core.text_e5:E5Head",
    "text_hf": "core.text_hf:HFTextClassifier",
    "resnet_mel": "core.audio_resnet:ResNetMel",
    "resnet_mfcc": "core.audio_resnet:ResNetMfcc",
    "wav2vec2": "core.audio_wav2vec:Wav2Vec2Classifier",
    "whisper_head": "core.audio_whisper:WhisperHead",
    "seed_multimodal": "core.multimodal:SeedMultimodal",
    "fusion": "core.multimodal:GatedFusionModel",
    "stacker": "core.stacker:Stacker",
}


@dataclass
class Sample:
    """One utterance as every model sees it: either part may be missing."""

    text: str | None = None
    audio: np.ndarray | None = None  # 16 kHz mono float32
    id: str = ""


class EmotionModel(Protocol):
    """A base model of a bundle (see the module docstring)."""

    kind: ClassVar[str]
    labels: tuple[str, ...]

    def predict_proba(self, samples: Sequence[Sample]) -> np.ndarray: ...

    def save(self, folder: Path) -> dict[str, Any]: ...

    @classmethod
    def load(cls, folder: Path, device: str = "cpu") -> "EmotionModel": ...


class Combiner(Protocol):
    """The stacker: one distribution from the base models' (role -> (n, labels)) probabilities."""

    kind: ClassVar[str]
    labels: tuple[str, ...]

    def predict_proba_from(self, per_role: dict[str, np.ndarray]) -> np.ndarray: ...

    def save(self, folder: Path) -> dict[str, Any]: ...

    @classmethod
    def load(cls, folder: Path, device: str = "cpu") -> "Combiner": ...


def model_class(kind: str) -> type:
    """The class of a registered kind, imported now."""
    module_name, _, class_name = MODEL_KINDS[kind].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def clean_text(text: str) -> str:
    """The text every text model sees: Unicode NFC (text from macOS files or some keyboards arrives
    as decomposed jamo, which no tokenizer or n-gram matches), without surrounding space."""
    return unicodedata.normalize("NFC", text).strip()


def sample_texts(samples: Sequence[Sample], what: str) -> list[str]:
    """Each sample's cleaned text; a sample without text is an error that names it."""
    missing = [s.id or f"#{i}" for i, s in enumerate(samples) if not (s.text or "").strip()]
    if missing:
        raise ValueError(f"{what} needs text; samples without it: {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    return [clean_text(s.text) for s in samples]  # type: ignore[arg-type]


def sample_audio(samples: Sequence[Sample], what: str = "audio models") -> list[np.ndarray]:
    """Each sample's 16 kHz audio as float32; a sample without audio is an error that names it."""
    missing = [s.id or f"#{i}" for i, s in enumerate(samples) if s.audio is None or len(s.audio) == 0]
    if missing:
        raise ValueError(f"{what} need audio; samples without it: {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    return [np.asarray(s.audio, dtype=np.float32) for s in samples]
