"""The fitting side of the model contract, and every model `trainer train` knows.

core/models.py says what a trained model is (predict_proba, save, load); a fitter is what makes
one. Keeping the two apart is what lets the daemon load any bundle without importing a training
loop: the fitters (accelerate, transformers' Trainer, scikit-learn searches) live here, in the
trainer, and return the core's model classes.

    fitter.unavailable_reason() -> None, or why it cannot train here (weights it would download)
    fitter.fit(samples, y, eval_set=None) -> a core model; eval_set = (samples, y) for early stopping

MODELS maps each trainable model name to its role, its kind, how to build its fitter from the
[train] config, and the settings a finished training part depends on.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from core.models import EmotionModel, Sample
from trainer.config import TrainConfig


class Fitter(Protocol):
    kind: str

    def unavailable_reason(self) -> str | None: ...

    def fit(self, samples: Sequence[Sample], y: Sequence[str],
            eval_set: tuple[Sequence[Sample], Sequence[str]] | None = None) -> EmotionModel: ...


@dataclass(frozen=True)
class ModelSpec:
    """A model train knows: its role, its kind, and how to build a fresh fitter for it."""

    role: str
    kind: str
    build: Callable[[TrainConfig, Path], Fitter]  # (train config, part folder) -> fitter
    settings: Callable[[TrainConfig], dict[str, Any]]  # what a finished part depends on


def _e5_head(cfg: TrainConfig, part: Path) -> Fitter:
    from trainer.fit_e5_head import E5HeadFitter

    return E5HeadFitter(seed=cfg.seed)


def _text_hf(cfg: TrainConfig, part: Path) -> Fitter:
    from trainer.fit_text_hf import TextHFFitter

    c = cfg.text_hf
    return TextHFFitter(c.model, c.tokenizer, batch_size=c.batch_size, learning_rate=c.learning_rate, epochs=c.epochs,
                        patience=c.patience, max_length=c.max_length, weight_decay=c.weight_decay,
                        warmup_ratio=c.warmup_ratio, precision=cfg.precision, device=cfg.device, seed=cfg.seed,
                        checkpoint_dir=part / "checkpoints")


def _resnet(kind: str) -> Callable[[TrainConfig, Path], Fitter]:
    def build(cfg: TrainConfig, part: Path) -> Fitter:
        from trainer.fit_resnet import ResNetFitter

        return ResNetFitter(kind, getattr(cfg, kind), cfg.augment, seed=cfg.seed, device=cfg.device,
                            precision=cfg.precision)

    return build


def _wav2vec2(cfg: TrainConfig, part: Path) -> Fitter:
    from trainer.fit_wav2vec2 import Wav2Vec2Fitter

    return Wav2Vec2Fitter(cfg.wav2vec2, cfg.augment, seed=cfg.seed, device=cfg.device, precision=cfg.precision)


def _whisper_head(cfg: TrainConfig, part: Path) -> Fitter:
    from trainer.fit_whisper_head import WhisperHeadFitter

    return WhisperHeadFitter(cfg.whisper_head, device=cfg.device)


def _seed_multimodal(cfg: TrainConfig, part: Path) -> Fitter:
    from core.multimodal import FitSettings
    from trainer.fit_multimodal import MultimodalFitter

    c = cfg.seed_multimodal
    fit = FitSettings(epochs=c.epochs, patience=0, batch_size=c.batch_size, lr=c.lr, weight_decay=0.0,
                      balance_classes=False, seed=cfg.seed)
    return MultimodalFitter("seed_multimodal", c.text_encoder, fit, cfg.device)


def _fusion(cfg: TrainConfig, part: Path) -> Fitter:
    from core.multimodal import FitSettings
    from trainer.fit_multimodal import MultimodalFitter

    c = cfg.fusion
    fit = FitSettings(epochs=c.epochs, patience=c.patience, batch_size=c.batch_size, lr=c.lr, weight_decay=c.weight_decay,
                      hidden=c.hidden, dropout=c.dropout, aux_weight=c.aux_weight, seed=cfg.seed)
    return MultimodalFitter("fusion", c.text_encoder, fit, cfg.device)


def _section(name: str, *also: str) -> Callable[[TrainConfig], dict[str, Any]]:
    """The settings of [train.NAME] (and of the other tables it reads) as a part's fingerprint."""
    return lambda cfg: {key: asdict(getattr(cfg, key)) for key in (name, *also)}


MODELS: dict[str, ModelSpec] = {
    "e5_head": ModelSpec("text", "e5_head", _e5_head, lambda cfg: {}),
    "text_hf": ModelSpec("text", "text_hf", _text_hf, _section("text_hf")),
    "resnet_mel": ModelSpec("audio", "resnet_mel", _resnet("resnet_mel"), _section("resnet_mel", "augment")),
    "resnet_mfcc": ModelSpec("audio", "resnet_mfcc", _resnet("resnet_mfcc"), _section("resnet_mfcc", "augment")),
    "wav2vec2": ModelSpec("audio", "wav2vec2", _wav2vec2, _section("wav2vec2", "augment")),
    "whisper_head": ModelSpec("audio", "whisper_head", _whisper_head, _section("whisper_head")),
    "seed_multimodal": ModelSpec("multimodal", "seed_multimodal", _seed_multimodal, _section("seed_multimodal")),
    "fusion": ModelSpec("multimodal", "fusion", _fusion, _section("fusion")),
}
