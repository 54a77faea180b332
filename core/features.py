"""Log-mel and MFCC features in torch, batched, on CUDA when there is one.

Training and the streamer compute features the same way, from this module, so a model never sees
features at inference that differ from the ones it was trained on. torch (not librosa) because
the same code then runs on a GPU for a whole batch inside the training step, and torchaudio has no
build for current torch.

Defaults are the seed's (16 kHz, n_fft 400, hop 160, 128 mels) with librosa's conventions, so
`librosa.feature.melspectrogram` / `librosa.power_to_db` / `librosa.feature.mfcc` with the same
arguments are the reference (tests/test_features.py checks both):

- periodic Hann window of n_fft samples, frames centred (`center=True`) with zero padding
  (librosa >= 0.10's `pad_mode="constant"`), power spectrogram (|STFT|^2);
- mel filterbank on the Slaney mel scale with Slaney (area) normalisation, librosa's default;
  `mel_scale="htk", norm=None` gives the HTK filterbank that torchaudio's MelSpectrogram (the
  seed's) uses;
- decibels relative to 1.0 (`10 log10(max(S, 1e-10))`), floored `top_db` below the clip's own
  maximum, like `librosa.power_to_db(S, ref=1.0, top_db=80)`;
- MFCC = orthonormal DCT-II of that log-mel along the mel axis, first `n_mfcc` coefficients,
  like `librosa.feature.mfcc(..., dct_type=2, norm="ortho")`.

A batch is zero-padded waveforms plus each clip's length. Zero padding is what centring pads
with anyway, so a clip's valid frames come out the same alone or in a batch; the `top_db` floor
uses only valid frames; frames past a clip's end are returned but mean nothing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Sequence

import numpy as np
import torch
from torch import nn

from core.device import pick_device
from core.settings_json import JsonSettings

KINDS = ("logmel", "mfcc")
MEL_SCALES = ("slaney", "htk")
AMIN = 1e-10  # power floor before the log, librosa's default


@dataclass(frozen=True)
class FeatureSettings(JsonSettings):
    """Everything that defines a model's input features; saved with the model in its bundle."""

    what: ClassVar[str] = "feature"

    kind: str = "logmel"  # "logmel" or "mfcc"
    sample_rate: int = 16_000
    n_fft: int = 400
    hop_length: int = 160
    n_mels: int = 128
    fmin: float = 0.0
    fmax: float | None = None  # None = sample_rate / 2
    mel_scale: str = "slaney"  # "slaney" (librosa's default) or "htk" (torchaudio's)
    norm: str | None = "slaney"  # "slaney" (each filter has unit area) or None (peak 1)
    top_db: float | None = 80.0  # floor this many dB below the clip's maximum; None = no floor
    n_mfcc: int = 40  # coefficients kept when kind == "mfcc"

    def __post_init__(self) -> None:
        problems = []
        if self.kind not in KINDS:
            problems.append(f"kind {self.kind!r} is not one of {KINDS}")
        if self.mel_scale not in MEL_SCALES:
            problems.append(f"mel_scale {self.mel_scale!r} is not one of {MEL_SCALES}")
        if self.norm not in ("slaney", None):
            problems.append(f"norm {self.norm!r} must be 'slaney' or None")
        if self.n_fft < 2 or self.hop_length < 1 or self.n_mels < 1:
            problems.append("n_fft, hop_length and n_mels must be positive (n_fft at least 2)")
        fmax = self.sample_rate / 2 if self.fmax is None else self.fmax
        if not 0 <= self.fmin < fmax <= self.sample_rate / 2:
            problems.append(f"need 0 <= fmin < fmax <= sample_rate/2, got fmin={self.fmin}, fmax={self.fmax}")
        if self.kind == "mfcc" and not 1 <= self.n_mfcc <= self.n_mels:
            problems.append(f"n_mfcc {self.n_mfcc} must be between 1 and n_mels ({self.n_mels})")
        if problems:
            raise ValueError("invalid feature settings: " + "; ".join(problems))

    @property
    def n_features(self) -> int:
        """Rows of the feature matrix: mel bands or MFCC coefficients."""
        return self.n_mfcc if self.kind == "mfcc" else self.n_mels

    def n_frames(self, n_samples: int) -> int:
        """Frames a clip of n_samples gives with centred framing."""
        return 1 + n_samples // self.hop_length



def _hz_to_mel(hz: np.ndarray, scale: str) -> np.ndarray:
    if scale == "htk":
        return 2595.0 * np.log10(1.0 + hz / 700.0)
    # Slaney: linear below 1 kHz (200/3 Hz per mel), logarithmic above.
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    hz = np.asarray(hz, dtype=np.float64)
    return np.where(hz >= min_log_hz, min_log_mel + np.log(np.maximum(hz, 1e-12) / min_log_hz) / logstep, hz / f_sp)


def _mel_to_hz(mel: np.ndarray, scale: str) -> np.ndarray:
    if scale == "htk":
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return np.where(mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)), f_sp * mel)


def mel_filterbank(settings: FeatureSettings) -> torch.Tensor:
    """Triangular mel filters, shape (n_mels, n_fft // 2 + 1), float32 (librosa.filters.mel's maths)."""
    fmax = settings.sample_rate / 2 if settings.fmax is None else settings.fmax
    fft_hz = np.fft.rfftfreq(settings.n_fft, d=1.0 / settings.sample_rate)
    mels = np.linspace(_hz_to_mel(np.array(settings.fmin), settings.mel_scale),
                       _hz_to_mel(np.array(fmax), settings.mel_scale), settings.n_mels + 2)
    edges_hz = _mel_to_hz(mels, settings.mel_scale)
    widths = np.diff(edges_hz)
    ramps = edges_hz[:, None] - fft_hz[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    if settings.norm == "slaney":
        weights *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]
    return torch.from_numpy(weights.astype(np.float32))


def dct_matrix(n_mfcc: int, n_mels: int) -> torch.Tensor:
    """Orthonormal DCT-II as a (n_mfcc, n_mels) matrix (scipy.fft.dct(type=2, norm="ortho") rows)."""
    n = np.arange(n_mels)
    k = np.arange(n_mfcc)[:, None]
    basis = np.cos(np.pi / n_mels * (n + 0.5) * k) * math.sqrt(2.0 / n_mels)
    basis[0] /= math.sqrt(2.0)
    return torch.from_numpy(basis.astype(np.float32))


class MelFeatures(nn.Module):
    """Waveform batch -> log-mel (dB) or MFCC batch, as a module so it moves with `.to(device)`.

    The filterbank, window and DCT are non-persistent buffers: rebuilt from FeatureSettings, never
    stored in a model's weights. Always computed in float32, also inside a bf16/fp16 autocast
    region: half-precision power spectra lose the quiet bands.
    """

    def __init__(self, settings: FeatureSettings | None = None):
        super().__init__()
        self.settings = settings or FeatureSettings()
        s = self.settings
        self.register_buffer("window", torch.hann_window(s.n_fft, periodic=True), persistent=False)
        self.register_buffer("filterbank", mel_filterbank(s), persistent=False)
        dct = dct_matrix(s.n_mfcc, s.n_mels) if s.kind == "mfcc" else torch.empty(0)
        self.register_buffer("dct", dct, persistent=False)

    def forward(self, waves: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, samples) float waves and their lengths -> ((batch, n_features, frames), frame counts)."""
        s = self.settings
        if waves.dim() != 2:
            raise ValueError(f"expected waves of shape (batch, samples), got {tuple(waves.shape)}")
        batch, n_samples = waves.shape
        if lengths is None:
            lengths = torch.full((batch,), n_samples, device=waves.device, dtype=torch.long)
        frame_lengths = 1 + torch.div(lengths.to(waves.device), s.hop_length, rounding_mode="floor")
        with torch.autocast(device_type=waves.device.type, enabled=False):
            spec = torch.stft(
                waves.float(), s.n_fft, hop_length=s.hop_length, win_length=s.n_fft, window=self.window,
                center=True, pad_mode="constant", return_complex=True,
            )
            power = spec.real.square() + spec.imag.square()
            db = 10.0 * torch.log10(torch.clamp(self.filterbank @ power, min=AMIN))
            if s.top_db is not None:
                frames = torch.arange(db.shape[-1], device=db.device)
                valid = (frames[None, :] < frame_lengths[:, None])[:, None, :]
                peak = db.masked_fill(~valid, -torch.inf).amax(dim=(1, 2), keepdim=True)
                db = torch.maximum(db, peak - s.top_db)
            if s.kind == "mfcc":
                db = torch.einsum("km,bmt->bkt", self.dct, db)
        return db, frame_lengths


def pad_batch(clips: Sequence[np.ndarray], device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad 1-D float clips into a (batch, longest) tensor on `device`, with their lengths."""
    if not clips:
        raise ValueError("no clips to pad")
    lengths = [len(c) for c in clips]
    if min(lengths) == 0:
        raise ValueError(f"clip {lengths.index(0)} of the batch is empty; drop empty audio before computing features")
    waves = np.zeros((len(clips), max(lengths)), dtype=np.float32)
    for row, clip in zip(waves, clips):
        row[: len(clip)] = clip
    return torch.from_numpy(waves).to(device), torch.tensor(lengths, device=device)


def compute_features(
    clips: Sequence[np.ndarray], settings: FeatureSettings | None = None, device: str = "auto"
) -> list[np.ndarray]:
    """Features of each 16 kHz mono clip as (n_features, frames) float32 arrays, computed as one batch.

    The convenience entry point for code outside a training step (the streamer, tests, benches);
    models keep a MelFeatures module on their own device instead.
    """
    module = MelFeatures(settings).to(pick_device(device))
    waves, lengths = pad_batch(clips, module.window.device)
    with torch.no_grad():
        feats, frames = module(waves, lengths)
    feats = feats.cpu().numpy()
    return [feats[i, :, : int(n)] for i, n in enumerate(frames.cpu())]
