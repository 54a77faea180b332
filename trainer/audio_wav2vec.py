"""`wav2vec2`: fine-tune any transformers audio-classification checkpoint with transformers' Trainer.

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
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
import torch

from trainer.audio_resnet import label_indices, sample_audio
from trainer.audio_windows import windows
from trainer.bundle import Sample
from trainer.errors import UserError
from trainer.features import pick_device
from trainer.labels import LABELS
from trainer.settings_json import JsonSettings, read_model_config

SAMPLE_RATE = 16_000
HF_FOLDER = "hf"
CONFIG = "config.json"


@dataclass(frozen=True)
class Wav2Vec2Settings(JsonSettings):
    what: ClassVar[str] = "wav2vec2"

    checkpoint: str = "kresnik/wav2vec2-large-xlsr-korean"  # hub name or local folder
    crop_s: float = 6.0  # training crop and prediction window, seconds
    batch_size: int = 8  # per device
    grad_accum: int = 2
    lr: float = 3e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_epochs: int = 10
    patience: int = 3  # epochs without a better validation macro-F1
    val_fraction: float = 0.1
    freeze_feature_encoder: bool = True  # the CNN front end; standard for small fine-tuning sets
    balance_classes: bool = True
    augment: bool = False
    gradient_checkpointing: bool = False  # trade compute for memory on large checkpoints
    num_workers: int = 0
    seed: int = 13
    device: str = "auto"
    precision: str = "auto"

    def __post_init__(self) -> None:
        if self.crop_s <= 0 or self.batch_size < 1 or self.grad_accum < 1 or self.max_epochs < 1:
            raise ValueError("wav2vec2 crop_s, batch_size, grad_accum and max_epochs must be positive")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")



class _Crops(torch.utils.data.Dataset):
    """Random crops of (optionally augmented) clips: the training set."""

    def __init__(self, waves: list[np.ndarray], y: list[int], size: int, augmentation):
        self.waves, self.y, self.size, self.augmentation = waves, y, size, augmentation

    def __len__(self) -> int:
        return len(self.waves)

    def __getitem__(self, index: int) -> dict[str, Any]:
        from trainer.augment import augment

        rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, ()).item()))
        wave = self.waves[index]
        if self.augmentation is not None:
            wave = augment(wave, rng, self.augmentation, SAMPLE_RATE)
        if len(wave) > self.size:
            start = int(rng.integers(0, len(wave) - self.size + 1))
            wave = wave[start : start + self.size]
        return {"input_values": wave, "labels": self.y[index]}


class _Windows(torch.utils.data.Dataset):
    """Every window of every clip, in order: the validation set (labels repeat per window)."""

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


def _per_clip(window_probs: np.ndarray, owner: list[int], n_clips: int) -> np.ndarray:
    out = np.zeros((n_clips, window_probs.shape[1]))
    np.add.at(out, np.asarray(owner), window_probs)
    return out / np.bincount(owner, minlength=n_clips)[:, None]


class Wav2Vec2Classifier:
    """A fine-tuned transformers audio classifier (wav2vec 2.0, HuBERT, WavLM, ...)."""

    kind: ClassVar[str] = "wav2vec2"

    def __init__(self, settings: Wav2Vec2Settings | None = None, labels: Sequence[str] = LABELS,
                 predict_batch_size: int = 16):
        self.settings = settings or Wav2Vec2Settings()
        self.labels = tuple(labels)
        self.predict_batch_size = predict_batch_size
        self.model = None
        self.extractor = None
        self.history: list[dict[str, Any]] = []

    @property
    def crop_samples(self) -> int:
        return int(round(self.settings.crop_s * SAMPLE_RATE))

    def _load_pretrained(self, source: str | Path) -> None:
        from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

        try:
            self.extractor = AutoFeatureExtractor.from_pretrained(str(source))
            self.model = AutoModelForAudioClassification.from_pretrained(
                str(source), num_labels=len(self.labels), ignore_mismatched_sizes=True,
                label2id={label: i for i, label in enumerate(self.labels)},
                id2label={i: label for i, label in enumerate(self.labels)},
            )
        except (OSError, ValueError) as exc:
            raise UserError(
                f"cannot load the audio checkpoint {source!s} ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
                "pass a local folder with the model and its preprocessor_config.json, or a hub name on a machine that can download it"
            ) from None
        if getattr(self.extractor, "sampling_rate", SAMPLE_RATE) != SAMPLE_RATE:
            raise UserError(f"{source} expects {self.extractor.sampling_rate} Hz audio; this project's audio is 16 kHz")

    def _collate(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self.extractor([item["input_values"] for item in items], sampling_rate=SAMPLE_RATE,
                               padding=True, return_tensors="pt")
        batch["labels"] = torch.tensor([item["labels"] for item in items])
        return dict(batch)

    def fit(self, samples: Sequence[Sample], y: Sequence[str],
            eval_set: tuple[Sequence[Sample], Sequence[str]] | None = None) -> "Wav2Vec2Classifier":
        """Fine-tune from `settings.checkpoint`; early stopping on `eval_set` or a held-out fraction."""
        from transformers import EarlyStoppingCallback, Trainer, TrainingArguments

        from trainer.audio_training import class_weights, macro_f1, resolve_precision, split_validation
        from trainer.augment import AugmentSettings

        s = self.settings
        waves, targets = sample_audio(samples), label_indices(list(y), self.labels)
        if eval_set is not None:
            val_waves, val_y = sample_audio(eval_set[0]), label_indices(list(eval_set[1]), self.labels)
        else:
            train_idx, val_idx = split_validation(targets, s.val_fraction, s.seed)
            val_waves, val_y = [waves[i] for i in val_idx], [targets[i] for i in val_idx]
            waves, targets = [waves[i] for i in train_idx], [targets[i] for i in train_idx]

        torch.manual_seed(s.seed)
        self._load_pretrained(s.checkpoint)
        if s.freeze_feature_encoder and hasattr(self.model, "freeze_feature_encoder"):
            self.model.freeze_feature_encoder()
        if s.gradient_checkpointing:
            self.model.gradient_checkpointing_enable()

        device = pick_device(s.device)
        mode = resolve_precision(s.precision, device.type)
        weight = class_weights(targets, len(self.labels)) if s.balance_classes else None

        def loss_fn(outputs, labels, num_items_in_batch=None):
            logits = outputs["logits"].float()
            total = torch.nn.functional.cross_entropy(logits, labels, weight=None if weight is None else weight.to(logits.device),
                                                      reduction="sum")
            return total / (num_items_in_batch if num_items_in_batch is not None else len(labels))

        val_set = _Windows(val_waves, val_y, self.crop_samples) if val_waves else None

        def metrics(prediction) -> dict[str, float]:
            logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
            probs = torch.softmax(torch.from_numpy(np.asarray(logits, dtype=np.float32)), dim=-1).numpy()
            return {"macro_f1": macro_f1(val_y, _per_clip(probs, val_set.owner, len(val_y)))}

        with tempfile.TemporaryDirectory(prefix="wav2vec2-") as work:
            args = TrainingArguments(
                output_dir=work, per_device_train_batch_size=s.batch_size, per_device_eval_batch_size=s.batch_size,
                gradient_accumulation_steps=s.grad_accum, learning_rate=s.lr, weight_decay=s.weight_decay,
                warmup_steps=s.warmup_ratio, num_train_epochs=s.max_epochs, seed=s.seed,
                bf16=mode == "bf16", fp16=mode == "fp16", use_cpu=device.type == "cpu",
                eval_strategy="epoch" if val_set else "no", save_strategy="epoch" if val_set else "no",
                load_best_model_at_end=val_set is not None, metric_for_best_model="macro_f1", greater_is_better=True,
                save_total_limit=1, save_only_model=True, logging_strategy="epoch", report_to="none",
                disable_tqdm=True, dataloader_num_workers=s.num_workers, remove_unused_columns=False,
            )
            augmentation = AugmentSettings() if s.augment else None
            trainer = Trainer(
                model=self.model, args=args, data_collator=self._collate,
                train_dataset=_Crops(waves, targets, self.crop_samples, augmentation), eval_dataset=val_set,
                compute_loss_func=loss_fn, compute_metrics=metrics if val_set else None,
                callbacks=[EarlyStoppingCallback(s.patience)] if val_set else [],
            )
            trainer.train()
            self.history = [entry for entry in trainer.state.log_history if "eval_macro_f1" in entry or "loss" in entry]
            self.model = trainer.model
        self.model.eval()
        return self

    def predict_proba(self, samples: Sequence[Sample]) -> np.ndarray:
        from trainer.audio_training import autocast_dtype, resolve_precision

        if self.model is None:
            raise RuntimeError("wav2vec2 model is not trained: call fit() or load() first")
        if not samples:
            return np.zeros((0, len(self.labels)))
        waves = sample_audio(samples)
        items = _Windows(waves, [0] * len(waves), self.crop_samples)
        device = next(self.model.parameters()).device
        dtype = autocast_dtype(resolve_precision(self.settings.precision, device.type))
        probs = np.zeros((len(items), len(self.labels)))
        self.model.eval()
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            for start in range(0, len(items), self.predict_batch_size):
                batch = self._collate([items[i] for i in range(start, min(start + self.predict_batch_size, len(items)))])
                batch.pop("labels")
                logits = self.model(**{k: v.to(device) for k, v in batch.items()}).logits
                probs[start : start + len(logits)] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        return _per_clip(probs, items.owner, len(waves))

    def save(self, folder: Path) -> dict[str, Any]:
        if self.model is None:
            raise RuntimeError("wav2vec2 model is not trained: nothing to save")
        folder = Path(folder)
        self.model.save_pretrained(folder / HF_FOLDER, safe_serialization=True)
        self.extractor.save_pretrained(folder / HF_FOLDER)
        config = {"kind": self.kind, "labels": list(self.labels), "settings": self.settings.to_json(), "history": self.history}
        (folder / CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        return {"settings": config["settings"], "architecture": self.model.config.model_type}

    @classmethod
    def load(cls, folder: Path, device: str = "cpu") -> "Wav2Vec2Classifier":
        folder = Path(folder)
        config = read_model_config(folder / CONFIG, cls.kind)
        model = cls(Wav2Vec2Settings.from_json(config["settings"]), config["labels"])
        model.history = config.get("history", [])
        model._load_pretrained(folder / HF_FOLDER)
        model.model = model.model.to(pick_device(device)).eval()
        return model
