"""Voice embeddings: Resemblyzer's GE2E speaker encoder, run on the audio the pipeline already has.

The weights (`pretrained.pt`, 17 MB, Apache-2.0) ship inside the `resemblyzer` wheel, so speaker
attribution works offline. Only that file is used. Resemblyzer's own code decodes and resamples
with librosa and trims silences with webrtcvad, which differs from the project's one decoder
(core/audio.py) and VAD; the network is three LSTM layers and a projection, so it is written out
here and fed the 16 kHz float32 utterance audio the streamer, `analyze` and `trainer predict` hold.

What the encoder expects, from Resemblyzer's hparams and training: a power (not log) mel
spectrogram, 40 Slaney mel bands, 25 ms Hann windows every 10 ms, of audio whose volume was raised
to -30 dBFS (never lowered); partial utterances of 160 frames (1.6 s) are embedded and the
L2-normalised mean of their embeddings is the utterance's. Embeddings are non-negative and unit
length, so their dot product is the cosine similarity, between 0 and 1.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.attribution import unit
from core.device import pick_device
from core.errors import UserError
from core.features import FeatureSettings, mel_filterbank

SAMPLE_RATE = 16_000
MODEL_NAME = "resemblyzer-ge2e"  # written into voiceprints: an embedding is only comparable within one model
EMBEDDING_DIM = 256
N_FFT = 400  # 25 ms
HOP = 160  # 10 ms
N_MELS = 40
PARTIAL_FRAMES = 160  # 1.6 s, the length the encoder was trained on
PARTIAL_RATE = 1.3  # partial utterances per second of audio (Resemblyzer's default)
MIN_COVERAGE = 0.75  # a last partial is kept when at least this much of it is real audio
TARGET_DBFS = -30.0
INSTALL_HINT = ("install it with `bash scripts/setup.sh` (or `pip install --no-deps resemblyzer==0.1.4`), "
                "or turn speakers off with --speakers 0")


def weights_path() -> Path:
    """`pretrained.pt` inside the installed resemblyzer package, found without importing it (its
    __init__ imports webrtcvad and librosa, which the encoder does not need)."""
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"the speaker model is not installed (the resemblyzer package holds its weights); {INSTALL_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / "pretrained.pt"
    if not path.is_file():
        raise UserError(f"{path} is missing from the resemblyzer package; reinstall it: {INSTALL_HINT}")
    return path


class _Network(nn.Module):
    """GE2E: 3 LSTM layers of 256, the last hidden state projected to 256, ReLU, unit length."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(N_MELS, 256, 3, batch_first=True)
        self.linear = nn.Linear(256, EMBEDDING_DIM)

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(mels)
        raw = torch.relu(self.linear(hidden[-1]))
        return raw / torch.clamp(torch.linalg.vector_norm(raw, dim=1, keepdim=True), min=1e-12)


def normalise_volume(audio: np.ndarray) -> np.ndarray:
    """Raise quiet audio to TARGET_DBFS RMS (never lower it), as the encoder's training data was."""
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if len(audio) else 0.0
    if rms <= 0.0:
        return audio
    gain = 10 ** (TARGET_DBFS / 20) / rms
    return audio * np.float32(gain) if gain > 1.0 else audio


def partial_slices(n_samples: int) -> list[tuple[int, int]]:
    """Frame ranges [start, start + 160) of the partial utterances covering n_samples (Resemblyzer's
    compute_partial_slices: one every 1/1.3 s; the last kept when 75% of it is audio; at least one)."""
    n_frames = int(np.ceil((n_samples + 1) / HOP))
    step = int(round(SAMPLE_RATE / PARTIAL_RATE / HOP))
    starts = list(range(0, max(1, n_frames - PARTIAL_FRAMES + step + 1), step))
    coverage = (n_samples - starts[-1] * HOP) / (PARTIAL_FRAMES * HOP)
    if coverage < MIN_COVERAGE and len(starts) > 1:
        starts = starts[:-1]
    return [(s, s + PARTIAL_FRAMES) for s in starts]


class SpeakerEncoder:
    """Utterance audio -> 256-d unit voice embedding, on CPU or CUDA."""

    def __init__(self, device: str = "auto") -> None:
        self.device = pick_device(device)
        checkpoint = torch.load(weights_path(), map_location="cpu", weights_only=True)
        self.network = _Network()
        state = {k: v for k, v in checkpoint["model_state"].items() if not k.startswith("similarity_")}
        self.network.load_state_dict(state)
        self.network.to(self.device).eval()
        self._window = torch.hann_window(N_FFT, periodic=True, device=self.device)
        self._filterbank = mel_filterbank(FeatureSettings(n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS)).to(self.device)

    def mel(self, audio: np.ndarray) -> torch.Tensor:
        """(frames, 40) power mel spectrogram, as librosa.feature.melspectrogram(sr=16000, n_fft=400,
        hop_length=160, n_mels=40) computes it (tests/test_speakers.py checks)."""
        wave = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)).to(self.device)
        spec = torch.stft(wave, N_FFT, hop_length=HOP, win_length=N_FFT, window=self._window, center=True,
                          pad_mode="constant", return_complex=True)
        return (self._filterbank @ (spec.real.square() + spec.imag.square())).T

    def partials(self, audio: np.ndarray) -> np.ndarray:
        """Embeddings of the 1.6 s partial utterances of `audio` (n, 256): one every ~0.77 s."""
        audio = normalise_volume(np.asarray(audio, dtype=np.float32))
        slices = partial_slices(len(audio))
        needed = slices[-1][1] * HOP
        if needed > len(audio):
            audio = np.pad(audio, (0, needed - len(audio)))
        mel = self.mel(audio)
        batch = torch.stack([mel[a:b] for a, b in slices])
        with torch.no_grad():
            return self.network(batch).cpu().numpy()

    def embed(self, audio: np.ndarray) -> np.ndarray:
        """The utterance's embedding: the unit mean of its partial embeddings."""
        if len(audio) == 0:
            raise ValueError("cannot embed empty audio")
        return unit(self.partials(audio).mean(axis=0))

    def embed_windows(self, audio: np.ndarray, window: int, hop: int) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings of windows of `window` samples every `hop` samples, in one batch, and each
        window's start sample; for finding where the voice changes inside an utterance."""
        audio = normalise_volume(np.asarray(audio, dtype=np.float32))
        starts = np.arange(0, max(len(audio) - window, 0) + 1, hop)
        frames = window // HOP
        mel = self.mel(audio)
        batch = torch.stack([mel[s // HOP : s // HOP + frames] for s in starts])
        with torch.no_grad():
            return self.network(batch).cpu().numpy(), starts
