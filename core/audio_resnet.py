"""`resnet_mel` and `resnet_mfcc`: a compact ResNet on log-mel spectrograms or MFCCs.

The seed trained a ResNet on mel spectrograms (and one on MFCCs) and got 0.37 accuracy / 0.24
macro-F1, i.e. it predicted the majority class: it fed un-logged power spectrograms, padded to the
longest clip, with no normalisation and no class weighting. This version computes log-mel (dB)
on the device inside the network, trains on fixed-length random crops, normalises each
utterance (zero mean, unit variance over its real frames, so recording gain does not matter),
weights the loss by class frequency, optionally augments, and stops early on validation
macro-F1 (trainer/fit_resnet.py fits it; trainer/network_training.py has the loop and how to run
it on several GPUs).

The network is a ResNet-18-like stack: a stride-2 3x3 stem (a 128-mel input at full resolution
costs four times the compute for little gain), basic blocks in four stages (strides 1, 2, 2, 2),
width `w, 2w, 4w, 8w`, global average pooling over the real frames only, dropout and a linear
layer. The defaults (w = 32, two blocks per stage, 4 s crops) suit a GPU; tests use w = 8 and
one block per stage. At prediction a clip is cut into half-overlapping crop-length windows and
the window probabilities are averaged.

Weights are saved as safetensors plus a JSON config (features, network, training settings).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
import torch
from torch import nn

from core.audio_windows import windows
from core.device import inference_autocast, pick_device
from core.features import FeatureSettings, MelFeatures
from core.labels import LABELS
from core.models import Sample, sample_audio
from core.settings_json import JsonSettings, read_model_config

WEIGHTS = "model.safetensors"
CONFIG = "config.json"


@dataclass(frozen=True)
class ResNetSettings(JsonSettings):
    """The network's shape and input length."""

    what: ClassVar[str] = "ResNet"

    width: int = 32  # channels of the first stage; stages have width x (1, 2, 4, 8)
    blocks: tuple[int, ...] = (2, 2, 2, 2)  # basic blocks per stage
    dropout: float = 0.2
    crop_s: float = 4.0  # training crop and prediction window, seconds

    def __post_init__(self) -> None:
        if self.width < 1 or not self.blocks or min(self.blocks) < 1:
            raise ValueError(f"ResNet width and every stage's block count must be at least 1, got {self.width}, {self.blocks}")
        if self.crop_s <= 0:
            raise ValueError(f"crop_s must be positive, got {self.crop_s}")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ResNetSettings":
        settings = super().from_json(data)
        return replace(settings, blocks=tuple(settings.blocks))  # JSON gives a list


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


def normalise(feats: torch.Tensor, frame_lengths: torch.Tensor) -> torch.Tensor:
    """Per utterance: zero mean, unit variance over its real frames; padded frames become 0."""
    frames = torch.arange(feats.shape[-1], device=feats.device)
    valid = (frames[None, :] < frame_lengths[:, None])[:, None, :].to(feats.dtype)
    count = valid.sum(dim=(1, 2), keepdim=True) * feats.shape[1]
    mean = (feats * valid).sum(dim=(1, 2), keepdim=True) / count
    var = (((feats - mean) * valid) ** 2).sum(dim=(1, 2), keepdim=True) / count
    return (feats - mean) / torch.sqrt(var + 1e-5) * valid


class AudioResNet(nn.Module):
    """(batch, samples) waves and their lengths -> (batch, n_classes) logits."""

    def __init__(self, features: FeatureSettings, settings: ResNetSettings, n_classes: int):
        super().__init__()
        self.features = MelFeatures(features)
        w = settings.width
        self.stem = nn.Sequential(nn.Conv2d(1, w, 3, 2, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU())
        layers, cin = [], w
        for stage, count in enumerate(settings.blocks):
            cout = w * 2 ** min(stage, 3)
            for i in range(count):
                layers.append(BasicBlock(cin, cout, stride=2 if stage > 0 and i == 0 else 1))
                cin = cout
        self.stages = nn.Sequential(*layers)
        self.time_stride = 2 ** len(settings.blocks)  # the stem and every stage after the first halve time
        self.dropout = nn.Dropout(settings.dropout)
        self.head = nn.Linear(cin, n_classes)

    def forward(self, waves: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        feats, frame_lengths = self.features(waves, lengths)
        x = self.stages(self.stem(normalise(feats, frame_lengths).unsqueeze(1)))
        # Average over frequency, then over the time steps that saw real audio only.
        x = x.mean(dim=2)
        steps = torch.clamp(torch.div(frame_lengths + self.time_stride - 1, self.time_stride, rounding_mode="floor"), 1, x.shape[-1])
        mask = (torch.arange(x.shape[-1], device=x.device)[None, :] < steps[:, None]).to(x.dtype)
        pooled = (x * mask[:, None, :]).sum(dim=-1) / steps[:, None].to(x.dtype)
        return self.head(self.dropout(pooled))


def crop_samples(network: ResNetSettings, features: FeatureSettings) -> int:
    """The training crop and prediction window in samples."""
    return int(round(network.crop_s * features.sample_rate))


def predict_windows(net: nn.Module, waves: Sequence[np.ndarray], crop: int, n_labels: int, precision: str,
                    batch_size: int = 64) -> np.ndarray:
    """Probabilities per clip, averaged over its half-overlapping windows (core/audio_windows.py)."""
    device = next(net.parameters()).device
    owner, chunks, lengths = [], [], []
    for i, wave in enumerate(waves):
        parts, sizes = windows(wave, crop)
        owner += [i] * len(parts)
        chunks += parts
        lengths += sizes
    probs = np.zeros((len(chunks), n_labels))
    with torch.no_grad(), inference_autocast(precision, device):
        for start in range(0, len(chunks), batch_size):
            stop = start + batch_size
            batch = torch.from_numpy(np.stack(chunks[start:stop])).to(device)
            logits = net(batch, torch.tensor(lengths[start:stop], device=device))
            probs[start:stop] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
    out = np.zeros((len(waves), n_labels))
    np.add.at(out, np.array(owner), probs)
    return out / np.bincount(owner, minlength=len(waves))[:, None]


class ResNetMel:
    """A ResNet on per-utterance-normalised log-mel spectrograms."""

    kind: ClassVar[str] = "resnet_mel"
    feature_kind: ClassVar[str] = "logmel"

    def __init__(self, net: AudioResNet, network: ResNetSettings, features: FeatureSettings,
                 labels: Sequence[str] = LABELS, precision: str = "auto", record: dict[str, Any] | None = None,
                 predict_batch_size: int = 64):
        self.net = net.eval()
        self.network, self.features, self.labels = network, features, tuple(labels)
        self.precision = precision  # autocast at prediction: the precision it was trained in
        self.record = record or {"training": {}, "history": []}  # how it was trained, kept in config.json
        self.predict_batch_size = predict_batch_size

    @classmethod
    def build_network(cls, network: ResNetSettings, features: FeatureSettings | None = None,
                      labels: Sequence[str] = LABELS) -> tuple[AudioResNet, FeatureSettings]:
        """A fresh, untrained network of this kind, and the features it reads."""
        features = replace(features or FeatureSettings(), kind=cls.feature_kind)
        return AudioResNet(features, network, len(labels)), features

    @property
    def crop_samples(self) -> int:
        return crop_samples(self.network, self.features)

    def predict_proba(self, samples: Sequence[Sample]) -> np.ndarray:
        if not samples:
            return np.zeros((0, len(self.labels)))
        self.net.eval()
        return predict_windows(self.net, sample_audio(samples), self.crop_samples, len(self.labels),
                               self.precision, self.predict_batch_size)

    def save(self, folder: Path) -> dict[str, Any]:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        save_file(state, str(folder / WEIGHTS))
        config = {
            "kind": self.kind,
            "labels": list(self.labels),
            "features": self.features.to_json(),
            "network": self.network.to_json(),
            "training": {**self.record.get("training", {}), "precision": self.precision},
            "history": self.record.get("history", []),
        }
        (folder / CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        return {"features": config["features"], "network": config["network"], "training": config["training"]}

    @classmethod
    def load(cls, folder: Path, device: str = "cpu") -> "ResNetMel":
        from safetensors.torch import load_file

        folder = Path(folder)
        config = read_model_config(folder / CONFIG, cls.kind)
        network, features = ResNetSettings.from_json(config["network"]), FeatureSettings.from_json(config["features"])
        net = AudioResNet(features, network, len(config["labels"]))
        net.load_state_dict(load_file(str(folder / WEIGHTS)))
        training = config.get("training", {})
        return cls(net.to(pick_device(device)), network, features, config["labels"], training.get("precision", "auto"),
                   {"training": training, "history": config.get("history", [])})


class ResNetMfcc(ResNetMel):
    """The same ResNet on MFCCs (the seed's MFCC variant)."""

    kind: ClassVar[str] = "resnet_mfcc"
    feature_kind: ClassVar[str] = "mfcc"
