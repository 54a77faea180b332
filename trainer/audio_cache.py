"""The data layer's decode cache: every delivered clip decoded once, by core/audio.py (the decoder
the daemon uses too), to 16 kHz.

The cache keeps each decoded clip as a 16 kHz PCM16 wav (playable, half the size of float32,
and lossless for PCM16 sources apart from the resampling itself) plus an index of where it came
from, so a second ``prepare`` only stats files and a changed source is decoded again.
"""
from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from core.audio import SAMPLE_RATE, decode

# Bump when decoding changes (resampler quality, format): every cached clip is then redone.
CACHE_VERSION = 2  # 2: decoded by core/audio.py (PyAV + soxr streaming), as the daemon decodes


def save_wav(path: Path, samples: np.ndarray) -> None:
    """Write 16 kHz PCM16, atomically: an interrupted run never leaves a half file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    pcm = np.clip(samples, -1.0, 1.0)  # libsndfile wraps, not clips, out-of-range floats
    encoded = io.BytesIO()  # one write instead of libsndfile's many small ones: 3x faster here
    sf.write(encoded, pcm, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    tmp.write_bytes(encoded.getvalue())
    os.replace(tmp, path)


@dataclass(frozen=True)
class AudioSource:
    """Where one delivered wav lives: a member of a ZIP, or a plain file (``member`` is None)."""

    path: Path
    member: str | None = None
    fingerprint: str = ""  # changes whenever the source's content may have changed

    def read_bytes(self) -> bytes:
        if self.member is None:
            return self.path.read_bytes()
        return _zip(self.path).read(self.member)

    def describe(self) -> str:
        return f"{self.path}:{self.member}" if self.member else str(self.path)


_open_zips: dict[Path, zipfile.ZipFile] = {}


def _zip(path: Path) -> zipfile.ZipFile:
    """One open handle per ZIP per process: reopening a large central directory per clip is slow."""
    if path not in _open_zips:
        _open_zips[path] = zipfile.ZipFile(path)
    return _open_zips[path]


def close_zips() -> None:
    """Close this process's ZIP handles: a ZIP replaced on disk must not be read through a stale
    handle, and forked pool workers must not share one file offset."""
    while _open_zips:
        _open_zips.popitem()[1].close()


@dataclass(frozen=True)
class DecodeJob:
    source: AudioSource
    target: Path


@dataclass(frozen=True)
class DecodeResult:
    frames: int  # 16 kHz samples written; 0 with an error
    error: str | None = None  # "empty" for a zero-length clip, else why it could not be read


def decode_to_cache(job: DecodeJob) -> DecodeResult:
    """Decode one source into the cache. Runs in pool workers, so it never raises on bad audio."""
    try:
        data = job.source.read_bytes()
        samples = decode(data) if data else None
    except Exception as exc:  # AudioError, or whatever a damaged ZIP member raises
        return DecodeResult(0, f"{type(exc).__name__}: {exc}")
    if samples is None or samples.size == 0:  # a 0-byte file, or a header with no frames
        return DecodeResult(0, "empty")
    save_wav(job.target, samples)
    return DecodeResult(int(samples.size))


class AudioCache:
    """``index.json`` under the cache folder: key -> source fingerprint and 16 kHz length."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.index_path = folder / "index.json"
        self.entries: dict[str, dict] = {}
        if self.index_path.exists():
            try:
                data = json.loads(self.index_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                data = {}  # an unreadable index only costs a re-decode
            if data.get("version") == CACHE_VERSION:
                self.entries = data.get("entries", {})

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.wav"

    def lookup(self, key: str, fingerprint: str) -> int | None:
        """The cached clip's length in frames, or None when it must be (re)decoded."""
        entry = self.entries.get(key)
        if entry is None or entry["source"] != fingerprint or not self.path(key).is_file():
            return None
        return int(entry["frames"])

    def store(self, key: str, fingerprint: str, frames: int) -> None:
        self.entries[key] = {"source": fingerprint, "frames": frames}

    def save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.index_path.with_name("index.json.part")
        tmp.write_text(json.dumps({"version": CACHE_VERSION, "entries": self.entries}), encoding="utf-8")
        os.replace(tmp, self.index_path)
