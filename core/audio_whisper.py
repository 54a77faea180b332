"""`whisper_head`: a linear classifier on mean-pooled Whisper-encoder embeddings.

The streamer already runs Whisper's encoder on every utterance for ASR, so an emotion head on
its output costs almost nothing at run time and needs no weights beyond the embedded Whisper
base. Whisper's encoder has heard a lot of speech, so its states carry pitch, energy and voice
quality as well as words.

Embedding: the encoder input core/asr.py builds for the same utterance (`encoder_input` in
the window `window_seconds` picks: with `short_window = true` a short window, else Whisper's
30 s; the audio zero-padded before the log-mel), CTranslate2's `encode`, then the mean over the
encoder frames that cover real audio. Whisper's two stride-2 convolutions map n feature frames
to ceil(n / 2) encoder frames, so a clip of n frames owns the first ceil(n / 2) and the window's
padding is left out of the mean. Training therefore sees exactly the encoder output the streamer
computes for ASR, and the streamer can pool that output instead of encoding again
(`pool_encoder_output` + `predict_proba_embeddings`). Clips are cut at 30 s, Whisper's limit;
clips that share a window size are encoded in one batch.

Classifier: standardisation + multinomial logistic regression (scikit-learn, fitted by
trainer/fit_whisper_head.py), class-balanced. Saved as safetensors arrays (scaler, weights) and a JSON config naming the Whisper model used;
prediction is plain numpy, so loading needs neither scikit-learn nor pickle. Whisper itself is
loaded lazily through `core.asr.load_whisper` on first use, or handed in (`head.whisper =
model`) by a caller that already holds one.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

import numpy as np
from scipy.special import softmax

from core.audio import SAMPLE_RATE
from core.config import setting
from core.labels import LABELS
from core.models import Sample, sample_audio
from core.settings_json import JsonSettings, read_model_config

if TYPE_CHECKING:
    from core.asr import Whisper

WEIGHTS = "head.safetensors"
CONFIG = "config.json"


@dataclass(frozen=True)
class WhisperHeadSettings(JsonSettings):
    """[train.whisper_head]: which Whisper embeds, and how the head on it is fitted; saved with it."""

    what: ClassVar[str] = "whisper_head"

    asr_model: str = "embedded"  # the faster-whisper model whose encoder embeds (as asr.model)
    compute_type: str = "auto"  # CTranslate2 compute type (as asr.compute_type)
    short_window: bool = True  # encode in the daemon's short window (as asr.short_window); False = 30 s
    c: float = setting(1.0, above=0.0)  # inverse L2 strength of the logistic regression
    balance_classes: bool = True
    max_iter: int = setting(2000, min=10)

    def __post_init__(self) -> None:
        if self.c <= 0:
            raise ValueError(f"whisper_head c must be positive, got {self.c}")


def pool_encoder_output(encoder_output: Any, feature_frames: Sequence[int]) -> np.ndarray:
    """Mean over each clip's real encoder frames: (batch, frames, dim) StorageView or array -> (batch, dim).

    A CTranslate2 StorageView on the CPU converts with np.array; one on a GPU is copied to the
    CPU first. Each clip of n feature frames owns the first ceil(n / 2) encoder frames.
    """
    if hasattr(encoder_output, "to_device") and str(getattr(encoder_output, "device", "cpu")) != "cpu":
        import ctranslate2

        encoder_output = encoder_output.to_device(ctranslate2.Device.cpu)
    states = np.asarray(encoder_output, dtype=np.float32)
    if states.ndim != 3 or states.shape[0] != len(feature_frames):
        raise ValueError(f"expected encoder output (batch={len(feature_frames)}, frames, dim), got {states.shape}")
    pooled = np.empty((states.shape[0], states.shape[2]), dtype=np.float32)
    for i, n in enumerate(feature_frames):
        steps = min(max(1, -(-int(n) // 2)), states.shape[1])
        pooled[i] = states[i, :steps].mean(axis=0)
    return pooled


def whisper_embeddings(whisper: Whisper, clips: Sequence[np.ndarray], short_window: bool = True,
                       batch_size: int = 8) -> np.ndarray:
    """Mean-pooled encoder states of each 16 kHz clip, (n, d_model) float32, encoded exactly as
    core/asr.py encodes an utterance (same window, same zero padding of the audio)."""
    from core.asr import encoder_input, window_seconds

    model = whisper.model
    hop = model.feature_extractor.hop_length
    limit = model.feature_extractor.n_samples  # 30 s
    clips = [np.asarray(clip[:limit], dtype=np.float32) for clip in clips]
    by_window: dict[float, list[int]] = {}
    for i, clip in enumerate(clips):
        by_window.setdefault(window_seconds(len(clip) / SAMPLE_RATE, short_window), []).append(i)
    out = np.zeros((len(clips), 0), dtype=np.float32)
    for window_s, members in by_window.items():
        for start in range(0, len(members), batch_size):
            chunk = members[start : start + batch_size]
            batch = np.stack([encoder_input(whisper, clips[i], window_s) for i in chunk])
            pooled = pool_encoder_output(model.encode(batch), [-(-len(clips[i]) // hop) for i in chunk])
            if out.shape[1] == 0:
                out = np.zeros((len(clips), pooled.shape[1]), dtype=np.float32)
            out[chunk] = pooled
    return out



class WhisperHead:
    """Logistic regression on Whisper-encoder embeddings."""

    kind: ClassVar[str] = "whisper_head"

    def __init__(self, settings: WhisperHeadSettings | None = None, labels: Sequence[str] = LABELS,
                 whisper: Whisper | None = None, device: str = "auto"):
        self.settings = settings or WhisperHeadSettings()
        self.labels = tuple(labels)
        self.whisper = whisper  # core.asr.Whisper; loaded on first use when None
        self.device = device
        self.arrays: dict[str, np.ndarray] | None = None  # mean, scale, coef (n_labels, d), intercept

    def whisper_model(self) -> Whisper:
        """The Whisper that embeds: the one handed in, else loaded now from the saved asr settings."""
        if self.whisper is None:
            from core.asr import load_whisper
            from core.config import AsrConfig

            device = "cuda" if self.device.startswith("cuda") else self.device
            self.whisper = load_whisper(AsrConfig(model=self.settings.asr_model, device=device,
                                                  compute_type=self.settings.compute_type))
        return self.whisper

    def embed(self, samples: Sequence[Sample]) -> np.ndarray:
        return whisper_embeddings(self.whisper_model(), sample_audio(samples), self.settings.short_window)

    def predict_proba(self, samples: Sequence[Sample]) -> np.ndarray:
        if not samples:
            return np.zeros((0, len(self.labels)))
        return self.predict_proba_embeddings(self.embed(samples))

    def predict_proba_embeddings(self, embeddings: np.ndarray) -> np.ndarray:
        """For callers that already have pooled encoder output (the streamer's ASR pass)."""
        if self.arrays is None:
            raise RuntimeError("whisper_head has no weights: fit it (trainer/fit_whisper_head.py) or load it")
        a = self.arrays
        if embeddings.shape[1] != a["mean"].shape[0]:
            raise ValueError(
                f"whisper_head was trained on {a['mean'].shape[0]}-d embeddings of Whisper {self.settings.asr_model!r} "
                f"but got {embeddings.shape[1]}-d ones: use the same ASR model the head was trained with"
            )
        z = ((embeddings - a["mean"]) / a["scale"]) @ a["coef"].T + a["intercept"]
        return softmax(z, axis=1)

    def save(self, folder: Path) -> dict[str, Any]:
        from safetensors.numpy import save_file

        if self.arrays is None:
            raise RuntimeError("whisper_head has no weights: nothing to save")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: np.ascontiguousarray(v, dtype=np.float64) for k, v in self.arrays.items()}, str(folder / WEIGHTS))
        config = {"kind": self.kind, "labels": list(self.labels), "settings": self.settings.to_json()}
        (folder / CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        return {"settings": config["settings"], "embedding_dim": int(self.arrays["mean"].shape[0])}

    @classmethod
    def load(cls, folder: Path, device: str = "cpu") -> "WhisperHead":
        from safetensors.numpy import load_file

        folder = Path(folder)
        config = read_model_config(folder / CONFIG, cls.kind)
        head = cls(WhisperHeadSettings.from_json(config["settings"]), config["labels"], device=device)
        head.arrays = load_file(str(folder / WEIGHTS))
        return head
