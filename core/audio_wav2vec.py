"""`wav2vec2`: a fine-tuned transformers audio-classification checkpoint (trainer/fit_wav2vec2.py
fine-tunes one with transformers' Trainer).

For users who can download weights: a hub name (`kresnik/wav2vec2-large-xlsr-korean`,
`facebook/wav2vec2-base`, HuBERT, WavLM, ...) or a local folder holding a checkpoint and its
preprocessor config. A CTC or pre-training checkpoint gets a fresh classification head. The
seed listed wav2vec 2.0 but reported no result for it.

transformers' Trainer brings bf16/fp16, gradient accumulation and multi-GPU (DDP under
`torchrun` / `accelerate launch`, no code change). Training sees random fixed-length crops (and,
optionally, the seed's augmentations); validation and prediction cut each clip into
half-overlapping windows of the same length and average the window probabilities per clip, and
early stopping keeps the epoch with the best validation macro-F1.

Saved as the transformers folder (safetensors weights, config, preprocessor config) under `hf/`
plus `config.json` with the settings; nothing is pickled.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
import torch

from core.audio import SAMPLE_RATE
from core.audio_windows import windows
from core.device import inference_autocast, pick_device
from core.errors import UserError
from core.labels import LABELS
from core.models import Sample, sample_audio
from core.settings_json import read_model_config

HF_FOLDER = "hf"
CONFIG = "config.json"


class Windows(torch.utils.data.Dataset):
    """Every window of every clip, in order: what prediction and validation run on (labels repeat per window)."""

    def __init__(self, waves: list[np.ndarray], y: list[int], size: int):
        self.items = []
        self.owner = []
        for i, (wave, label) in enumerate(zip(waves, y)):
            parts, lengths = windows(wave, size)
            self.items += [{"input_values": p[:n], "labels": label} for p, n in zip(parts, lengths)]
            self.owner += [i] * len(parts)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.items[index]


def load_pretrained(source: str | Path, labels: Sequence[str] = LABELS) -> tuple[Any, Any]:
    """(model, feature extractor) of a checkpoint folder or hub name, with a head for `labels`."""
    from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

    try:
        extractor = AutoFeatureExtractor.from_pretrained(str(source))
        model = AutoModelForAudioClassification.from_pretrained(
            str(source), num_labels=len(labels), ignore_mismatched_sizes=True,
            label2id={label: i for i, label in enumerate(labels)},
            id2label={i: label for i, label in enumerate(labels)},
        )
    except (OSError, ValueError) as exc:
        raise UserError(
            f"cannot load the audio checkpoint {source!s} ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
            "pass a local folder with the model and its preprocessor_config.json, or a hub name on a machine that can download it"
        ) from None
    if getattr(extractor, "sampling_rate", SAMPLE_RATE) != SAMPLE_RATE:
        raise UserError(f"{source} expects {extractor.sampling_rate} Hz audio; this project's audio is 16 kHz")
    return model, extractor


def collate(extractor: Any, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """A padded batch of windows (and their labels) as the model takes it."""
    batch = extractor([item["input_values"] for item in items], sampling_rate=SAMPLE_RATE, padding=True,
                      return_tensors="pt")
    batch["labels"] = torch.tensor([item["labels"] for item in items])
    return dict(batch)


def per_clip(window_probs: np.ndarray, owner: list[int], n_clips: int) -> np.ndarray:
    out = np.zeros((n_clips, window_probs.shape[1]))
    np.add.at(out, np.asarray(owner), window_probs)
    return out / np.bincount(owner, minlength=n_clips)[:, None]


class Wav2Vec2Classifier:
    """A fine-tuned transformers audio classifier (wav2vec 2.0, HuBERT, WavLM, ...)."""

    kind: ClassVar[str] = "wav2vec2"

    def __init__(self, model: Any, extractor: Any, crop_s: float = 6.0, labels: Sequence[str] = LABELS,
                 precision: str = "auto", record: dict[str, Any] | None = None, predict_batch_size: int = 16):
        self.model, self.extractor = model, extractor
        self.crop_s, self.labels, self.precision = crop_s, tuple(labels), precision
        self.record = record or {"settings": {}, "history": []}  # how it was fine-tuned, kept in config.json
        self.predict_batch_size = predict_batch_size

    @property
    def crop_samples(self) -> int:
        return int(round(self.crop_s * SAMPLE_RATE))

    def predict_proba(self, samples: Sequence[Sample]) -> np.ndarray:
        if not samples:
            return np.zeros((0, len(self.labels)))
        waves = sample_audio(samples)
        items = Windows(waves, [0] * len(waves), self.crop_samples)
        device = next(self.model.parameters()).device
        probs = np.zeros((len(items), len(self.labels)))
        self.model.eval()
        with torch.no_grad(), inference_autocast(self.precision, device):
            for start in range(0, len(items), self.predict_batch_size):
                batch = collate(self.extractor, [items[i] for i in range(start, min(start + self.predict_batch_size, len(items)))])
                batch.pop("labels")
                logits = self.model(**{k: v.to(device) for k, v in batch.items()}).logits
                probs[start : start + len(logits)] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        return per_clip(probs, items.owner, len(waves))

    def save(self, folder: Path) -> dict[str, Any]:
        folder = Path(folder)
        self.model.save_pretrained(folder / HF_FOLDER, safe_serialization=True)
        self.extractor.save_pretrained(folder / HF_FOLDER)
        settings = {**self.record.get("settings", {}), "crop_s": self.crop_s, "precision": self.precision}
        config = {"kind": self.kind, "labels": list(self.labels), "settings": settings,
                  "history": self.record.get("history", [])}
        (folder / CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        return {"settings": settings, "architecture": self.model.config.model_type}

    @classmethod
    def load(cls, folder: Path, device: str = "cpu") -> "Wav2Vec2Classifier":
        folder = Path(folder)
        config = read_model_config(folder / CONFIG, cls.kind)
        settings = config.get("settings", {})
        model, extractor = load_pretrained(folder / HF_FOLDER, config["labels"])
        return cls(model.to(pick_device(device)).eval(), extractor, float(settings.get("crop_s", 6.0)), config["labels"],
                   settings.get("precision", "auto"), {"settings": settings, "history": config.get("history", [])})
