"""Real test speech: espeak-ng sentences as 16 kHz mono PCM16 wav files.

espeak-ng's English is clear enough for Whisper to transcribe, so tests can check words, not just
shapes; its Korean is not (Whisper hears noise), so Korean tests check the pipeline, not the words.
Tests that use these helpers need the Debian package espeak-ng; `require_espeak()` skips with the
install command when it is absent.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SAMPLE_RATE = 16_000
# espeak-ng leaves ~0.1 s of near-silence around a sentence; samples this far below the sentence's
# peak are not speech when locating its true start and end.
TRIM_DB = 40.0

SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Please call me back when you get home tonight.",
    "I really enjoyed the concert in the park yesterday.",
    "We need to buy milk, bread and eggs for breakfast.",
    "My brother is moving to a new city next month.",
    "The weather has been cold and rainy all week.",
)


def require_espeak() -> str:
    import pytest

    path = shutil.which("espeak-ng")
    if path is None:
        pytest.skip("espeak-ng is not installed: apt-get install -y espeak-ng")
    return path


def synthesize(text: str, lang: str = "en", speed_wpm: int = 160) -> np.ndarray:
    """espeak-ng speech for `text` as 16 kHz mono float32 (deterministic for a given text)."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise RuntimeError("espeak-ng is not installed: apt-get install -y espeak-ng")
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        subprocess.run([espeak, "-v", lang, "-s", str(speed_wpm), "-w", str(raw), text], check=True, capture_output=True)
        audio, rate = sf.read(raw, dtype="float32")
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    return soxr.resample(audio, rate, SAMPLE_RATE).astype(np.float32)


def trim(audio: np.ndarray, top_db: float = TRIM_DB) -> np.ndarray:
    """The speech part of `audio`: from the first to the last sample within top_db of the peak."""
    floor = np.abs(audio).max() * 10 ** (-top_db / 20)
    loud = np.flatnonzero(np.abs(audio) > floor)
    return audio[loud[0] : loud[-1] + 1] if len(loud) else audio[:0]


def write_wav(audio: np.ndarray, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.clip(audio, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16")
    return path


def speak(text: str, path: str | Path, lang: str = "en") -> Path:
    """Write `text` spoken by espeak-ng to `path` as a 16 kHz mono PCM16 wav; return the path."""
    return write_wav(synthesize(text, lang), path)


def speech_with_silences(
    sentences: list[str] | tuple[str, ...],
    gap_s: float,
    path: str | Path,
    *,
    lang: str = "en",
    noise_db: float | None = None,
    seed: int = 0,
) -> tuple[Path, list[tuple[float, float]]]:
    """Sentences separated by `gap_s` of silence (also before the first and after the last).

    Returns the wav path and each sentence's true (start, end) in seconds, measured on the
    trimmed speech. `noise_db` adds white noise at that RMS level (dBFS) everywhere, so the gaps
    are a quiet room rather than digital zeros.
    """
    gap = np.zeros(int(round(gap_s * SAMPLE_RATE)), dtype=np.float32)
    pieces, truth, cursor = [gap], [], len(gap)
    for sentence in sentences:
        speech = trim(synthesize(sentence, lang))
        truth.append((cursor / SAMPLE_RATE, (cursor + len(speech)) / SAMPLE_RATE))
        pieces += [speech, gap]
        cursor += len(speech) + len(gap)
    audio = np.concatenate(pieces)
    if noise_db is not None:
        rng = np.random.default_rng(seed)
        audio = audio + rng.standard_normal(len(audio)).astype(np.float32) * np.float32(10 ** (noise_db / 20))
    return write_wav(audio, path), truth


def normalise_words(text: str) -> list[str]:
    """Lower-case words without punctuation, for word error rates."""
    return re.sub(r"[^\w\s']", " ", text.lower()).split()


def word_error_rate(reference: str, hypothesis: str) -> float:
    """(substitutions + deletions + insertions) / reference words, by edit distance over words."""
    ref, hyp = normalise_words(reference), normalise_words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1] / max(len(ref), 1)


def conversation(turns: list[list[str]], pause_in_turn_s: float, gap_s: float, noise_db: float = -60,
                 seed: int = 0) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Turns of sentences: `pause_in_turn_s` between the sentences of a turn (a breath, not an end),
    `gap_s` between turns and around them, in quiet room noise. Returns the audio and each turn's
    true (start, end) of speech."""
    gap = np.zeros(int(round(gap_s * SAMPLE_RATE)), np.float32)
    pause = np.zeros(int(round(pause_in_turn_s * SAMPLE_RATE)), np.float32)
    pieces, truth, cursor = [gap], [], len(gap)
    for turn in turns:
        start = cursor
        for i, sentence in enumerate(turn):
            if i:
                pieces.append(pause)
                cursor += len(pause)
            speech = trim(synthesize(sentence))
            pieces.append(speech)
            cursor += len(speech)
        truth.append((start / SAMPLE_RATE, cursor / SAMPLE_RATE))
        pieces.append(gap)
        cursor += len(gap)
    audio = np.concatenate(pieces)
    rng = np.random.default_rng(seed)
    return audio + rng.standard_normal(len(audio)).astype(np.float32) * np.float32(10 ** (noise_db / 20)), truth
