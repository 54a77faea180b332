"""Synthetic two-voice conversations for speaker tests and the speakers benchmark.

Two espeak-ng voices that differ in pitch and formants (VOICES: en-us+m3, a low male variant, and
en-us+f2, a female one; measured with the encoder: same-voice sentences >= 0.80 similar, the two
voices <= 0.70; en-gb+f4 is *not* a second voice here, espeak renders it like en-gb) take turns;
`sox_shift` makes a pitch-shifted copy of a voice with sox, a third voice for the tests of more
voices than max_speakers. Each helper returns the audio and the truth: (start, end, speaker) of
every turn, measured on trimmed speech.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf

from testsupport.speech import SAMPLE_RATE, SENTENCES, synthesize, trim

VOICES = ("en-us+m3", "en-us+f2")
BACKCHANNELS = ("Yes.", "Okay.", "I see.", "Right.", "Mm hmm.")


@dataclass(frozen=True)
class Turn:
    start: float
    end: float
    speaker: int  # index into the voices used


@lru_cache(maxsize=256)
def _speech(text: str, voice: str) -> np.ndarray:
    return trim(synthesize(text, voice))


def require_sox() -> str:
    import pytest

    path = shutil.which("sox")
    if path is None:
        pytest.skip("sox is not installed: apt-get install -y sox")
    return path


def sox_shift(audio: np.ndarray, cents: int) -> np.ndarray:
    """`audio` pitch-shifted by `cents` with sox (formants move too: another voice)."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.wav", Path(tmp) / "out.wav"
        sf.write(src, audio, SAMPLE_RATE, subtype="FLOAT")
        subprocess.run(["sox", str(src), str(dst), "pitch", str(cents)], check=True, capture_output=True)
        shifted, _rate = sf.read(dst, dtype="float32")
    return shifted


def conversation(turns: list[tuple[int, str]], gap_s: float, voices: tuple[str, ...] = VOICES,
                 lead_s: float = 0.5, noise_db: float | None = -60.0, seed: int = 0,
                 shifts: dict[int, int] | None = None) -> tuple[np.ndarray, list[Turn]]:
    """Mono audio of `turns` ((speaker index, text), ...) with `gap_s` of room between turns
    (0 = the next voice starts at once). `shifts` maps a speaker index to a sox pitch shift in
    cents applied to that voice."""
    pieces, truth = [np.zeros(int(lead_s * SAMPLE_RATE), np.float32)], []
    cursor = len(pieces[0])
    gap = np.zeros(int(round(gap_s * SAMPLE_RATE)), np.float32)
    for i, (speaker, text) in enumerate(turns):
        speech = _speech(text, voices[speaker])
        if shifts and speaker in shifts:
            speech = sox_shift(speech, shifts[speaker])
        if i:
            pieces.append(gap)
            cursor += len(gap)
        truth.append(Turn(cursor / SAMPLE_RATE, (cursor + len(speech)) / SAMPLE_RATE, speaker))
        pieces.append(speech)
        cursor += len(speech)
    pieces.append(np.zeros(int(lead_s * SAMPLE_RATE), np.float32))
    audio = np.concatenate(pieces)
    if noise_db is not None:
        rng = np.random.default_rng(seed)
        audio = audio + rng.standard_normal(len(audio)).astype(np.float32) * np.float32(10 ** (noise_db / 20))
    return audio.astype(np.float32), truth


def alternating(n_turns: int, gap_s: float, backchannel_every: int = 0, **kwargs) -> tuple[np.ndarray, list[Turn]]:
    """Speakers 0 and 1 taking turns with SENTENCES; every `backchannel_every`-th turn (when set) is
    a short backchannel (<= 1 s) instead."""
    turns = []
    for i in range(n_turns):
        if backchannel_every and i % backchannel_every == backchannel_every - 1:
            turns.append((i % 2, BACKCHANNELS[i % len(BACKCHANNELS)]))
        else:
            turns.append((i % 2, SENTENCES[i % len(SENTENCES)]))
    return conversation(turns, gap_s, **kwargs)


def stereo(audio_by_channel: tuple[np.ndarray, np.ndarray], bleed_db: float = -18.0) -> np.ndarray:
    """Two microphones: each channel is its own voice plus the other's at `bleed_db`."""
    a, b = audio_by_channel
    n = max(len(a), len(b))
    a, b = np.pad(a, (0, n - len(a))), np.pad(b, (0, n - len(b)))
    bleed = np.float32(10 ** (bleed_db / 20))
    return np.stack([a + bleed * b, b + bleed * a], axis=1).astype(np.float32)


def write(audio: np.ndarray, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.clip(audio, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16")
    return path
