"""Fitting `resnet_mel` / `resnet_mfcc` (core/audio_resnet.py) from scratch with the accelerate loop
of trainer/network_training.py: random fixed-length crops, optional augmentation, class-weighted
loss, early stopping on validation macro-F1 over whole clips (windows averaged, as at prediction).
"""
from __future__ import annotations

from dataclasses import asdict, fields
from typing import Sequence

import torch

from core.audio_resnet import (
    ResNetMel,
    ResNetMfcc,
    ResNetSettings,
    crop_samples,
    predict_windows,
)
from core.features import FeatureSettings
from core.labels import LABELS
from core.models import Sample
from trainer.augment import AugmentSettings
from trainer.config import NetworkTraining, ResNetTrainConfig
from trainer.evaluate import macro_f1

KINDS: dict[str, type[ResNetMel]] = {"resnet_mel": ResNetMel, "resnet_mfcc": ResNetMfcc}


class ResNetFitter:
    """Trains a fresh network of `kind` with the settings of [train.resnet_mel] / [train.resnet_mfcc]."""

    def __init__(self, kind: str = "resnet_mel", config: ResNetTrainConfig | None = None,
                 augmentation: AugmentSettings | None = None, features: FeatureSettings | None = None,
                 seed: int = 13, device: str = "auto", precision: str = "auto"):
        self.kind = kind
        self.cls = KINDS[kind]
        self.config = config or ResNetTrainConfig()
        self.augmentation = augmentation or AugmentSettings()
        self.features = features
        self.seed, self.device, self.precision = seed, device, precision

    def unavailable_reason(self) -> str | None:
        return None  # trained from scratch: nothing to download

    @property
    def network(self) -> ResNetSettings:
        c = self.config
        return ResNetSettings(width=c.width, blocks=tuple(c.blocks), dropout=c.dropout, crop_s=c.crop_s)

    @property
    def training(self) -> NetworkTraining:
        return NetworkTraining(**{f.name: getattr(self.config, f.name) for f in fields(NetworkTraining)})

    def fit(self, samples: Sequence[Sample], y: Sequence[str],
            eval_set: tuple[Sequence[Sample], Sequence[str]] | None = None) -> ResNetMel:
        """Train from scratch. Early stopping uses `eval_set`, else a stratified
        `val_fraction` of the given samples (then not trained on)."""
        from trainer.network_training import (
            CropDataset,
            audio_and_validation,
            train_network,
        )

        network, training = self.network, self.training
        waves, targets, val_waves, val_y = audio_and_validation(samples, y, eval_set, training.val_fraction, self.seed)

        net, features = self.cls.build_network(network, self.features)
        crop = crop_samples(network, features)

        def validate(trained: torch.nn.Module) -> float:
            return macro_f1(val_y, predict_windows(trained, val_waves, crop, len(LABELS), self.precision))

        torch.manual_seed(self.seed)
        dataset = CropDataset(waves, targets, crop, self.augmentation if training.augment else None,
                              features.sample_rate)
        net, history = train_network(net, dataset, len(LABELS), training, validate if val_waves else None,
                                     seed=self.seed, device=self.device, precision=self.precision)
        record = {"training": {**asdict(training), "seed": self.seed}, "history": history}
        return self.cls(net, network, features, LABELS, self.precision, record)
