"""Fine-tuning a transformers audio checkpoint (wav2vec 2.0, HuBERT, WavLM, ...) into a `wav2vec2`
model (core/audio_wav2vec.py) with transformers' Trainer.

The Trainer brings bf16/fp16, gradient accumulation and multi-GPU (DDP under `torchrun` /
`accelerate launch`, no code change). Training sees random fixed-length crops (and, optionally,
the seed's augmentations); validation cuts each clip into the half-overlapping windows prediction
uses and averages them per clip, and early stopping keeps the epoch with the best validation
macro-F1. A CTC or pre-training checkpoint gets a fresh classification head.
"""
from __future__ import annotations

import tempfile
from dataclasses import asdict
from typing import Any, ClassVar, Sequence

import numpy as np
import torch

from core.audio import SAMPLE_RATE
from core.audio_wav2vec import (
    Wav2Vec2Classifier,
    Windows,
    collate,
    load_pretrained,
    per_clip,
)
from core.device import pick_device, resolve_precision
from core.hub import unavailable_reason
from core.labels import LABELS
from core.models import Sample
from trainer.augment import AugmentSettings
from trainer.config import Wav2Vec2TrainConfig
from trainer.evaluate import macro_f1


class _Crops(torch.utils.data.Dataset):
    """Random crops of (optionally augmented) clips: the training set."""

    def __init__(self, waves: list[np.ndarray], y: list[int], size: int, augmentation: AugmentSettings | None):
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


class Wav2Vec2Fitter:
    """Fine-tunes [train.wav2vec2] checkpoint on (samples, labels)."""

    kind: ClassVar[str] = "wav2vec2"

    def __init__(self, config: Wav2Vec2TrainConfig | None = None, augmentation: AugmentSettings | None = None,
                 seed: int = 13, device: str = "auto", precision: str = "auto"):
        self.config = config or Wav2Vec2TrainConfig()
        self.augmentation = augmentation or AugmentSettings()
        self.seed, self.device, self.precision = seed, device, precision

    def unavailable_reason(self) -> str | None:
        return unavailable_reason(self.config.checkpoint)

    def fit(self, samples: Sequence[Sample], y: Sequence[str],
            eval_set: tuple[Sequence[Sample], Sequence[str]] | None = None) -> Wav2Vec2Classifier:
        """Fine-tune from the checkpoint; early stopping on `eval_set` or a held-out fraction."""
        from transformers import EarlyStoppingCallback, Trainer, TrainingArguments

        from trainer.network_training import audio_and_validation, class_weights

        s = self.config
        crop = int(round(s.crop_s * SAMPLE_RATE))
        waves, targets, val_waves, val_y = audio_and_validation(samples, y, eval_set, s.val_fraction, self.seed)

        torch.manual_seed(self.seed)
        model, extractor = load_pretrained(s.checkpoint, LABELS)
        if s.freeze_feature_encoder and hasattr(model, "freeze_feature_encoder"):
            model.freeze_feature_encoder()
        if s.gradient_checkpointing:
            model.gradient_checkpointing_enable()

        device = pick_device(self.device)
        mode = resolve_precision(self.precision, device.type)
        weight = class_weights(targets, len(LABELS)) if s.balance_classes else None

        def loss_fn(outputs, labels, num_items_in_batch=None):
            logits = outputs["logits"].float()
            total = torch.nn.functional.cross_entropy(logits, labels, weight=None if weight is None else weight.to(logits.device),
                                                      reduction="sum")
            return total / (num_items_in_batch if num_items_in_batch is not None else len(labels))

        val_set = Windows(val_waves, val_y, crop) if val_waves else None

        def metrics(prediction) -> dict[str, float]:
            logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
            probs = torch.softmax(torch.from_numpy(np.asarray(logits, dtype=np.float32)), dim=-1).numpy()
            return {"macro_f1": macro_f1(val_y, per_clip(probs, val_set.owner, len(val_y)))}

        with tempfile.TemporaryDirectory(prefix="wav2vec2-") as work:
            args = TrainingArguments(
                output_dir=work, per_device_train_batch_size=s.batch_size, per_device_eval_batch_size=s.batch_size,
                gradient_accumulation_steps=s.grad_accum, learning_rate=s.lr, weight_decay=s.weight_decay,
                warmup_steps=s.warmup_ratio, num_train_epochs=s.max_epochs, seed=self.seed,
                bf16=mode == "bf16", fp16=mode == "fp16", use_cpu=device.type == "cpu",
                eval_strategy="epoch" if val_set else "no", save_strategy="epoch" if val_set else "no",
                load_best_model_at_end=val_set is not None, metric_for_best_model="macro_f1", greater_is_better=True,
                save_total_limit=1, save_only_model=True, logging_strategy="epoch", report_to="none",
                disable_tqdm=True, dataloader_num_workers=s.num_workers, remove_unused_columns=False,
            )
            trainer = Trainer(
                model=model, args=args, data_collator=lambda items: collate(extractor, items),
                train_dataset=_Crops(waves, targets, crop, self.augmentation if s.augment else None), eval_dataset=val_set,
                compute_loss_func=loss_fn, compute_metrics=metrics if val_set else None,
                callbacks=[EarlyStoppingCallback(s.patience)] if val_set else [],
            )
            trainer.train()
            history = [entry for entry in trainer.state.log_history if "eval_macro_f1" in entry or "loss" in entry]
        record = {"settings": {**asdict(s), "seed": self.seed}, "history": history}
        return Wav2Vec2Classifier(trainer.model.eval(), extractor, s.crop_s, LABELS, self.precision, record)
