"""Audio in, 16 kHz mono float32 out: the one decoder every part of the project reads audio with.

The live daemon (files played as if live), `analyze`, `trainer predict`, `trainer prepare` and
training all decode here, so a file gives the same samples to the model that is trained on it and
to the model that serves it, and `analyze FILE` gives the utterances a live run of FILE gives.

- Decoding: PyAV (FFmpeg), which reads every format people bring (wav, flac, mp3, m4a, ogg,
  video files) from a path or from bytes (AI Hub's ZIP members). Samples are taken as float
  32-bit at the file's own rate, so NaN samples in a float wav stay NaN (the caller decides what
  to do with them; faster-whisper's `decode_audio` goes through int16 and turns them into
  full-scale clicks) and no precision is lost before resampling.
- Channels are averaged (FFmpeg's downmix adds them at -3 dB, so two identical channels would
  come out 1.41x louder, past full scale), unless the caller asks for the channels apart.
- Resampling: soxr's streaming resampler at "HQ" quality, the same for every source.

`stream()` yields about a second at a time and holds no more than that, so an hour-long file
starts playing at once; `decode()` is exactly the concatenation of `stream()`.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np

from core.errors import UserError

SAMPLE_RATE = 16_000
CHUNK = SAMPLE_RATE  # samples per chunk `stream` yields (the last one may be shorter)
RESAMPLE_QUALITY = "HQ"
WAV_PROBE_BYTES = 4096

Source = str | os.PathLike | bytes | BinaryIO


class AudioError(UserError):
    """A file that cannot be decoded; the message names it and says what would work."""


def _name(source: Source) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return getattr(source, "name", None) or "the audio data"


def _is_wav(source: str | BinaryIO) -> bool:
    if isinstance(source, str):
        with open(source, "rb") as f:
            head = f.read(12)
    else:
        position = source.tell()
        head = source.read(12)
        source.seek(position)
    return head[:4] == b"RIFF" and head[8:12] == b"WAVE"


def _open(source: Source):
    import av

    if isinstance(source, bytes):
        source = io.BytesIO(source)
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if not path.is_file():
            raise AudioError(f"audio file {path} does not exist")
        source = str(path)
    # A WAV header says everything about its stream; FFmpeg's default probe decodes about a
    # second of audio to find out again (30 ms a clip, most of the cost of a 3 s AI Hub clip).
    options = {"probesize": str(WAV_PROBE_BYTES)} if _is_wav(source) else {}
    try:
        return av.open(source, mode="r", metadata_errors="ignore", options=options)
    except av.error.FFmpegError as exc:
        raise AudioError(f"cannot open {_name(source)} as audio ({exc.strerror or exc}); give a file FFmpeg can "
                         "decode (wav, flac, mp3, m4a, ogg, ...)") from None


def _frames(container) -> Iterator:
    """Decoded audio frames, skipping damaged packets as faster-whisper's decode_audio does."""
    import av

    for packet in container.demux(audio=0):
        try:
            yield from packet.decode()
        except av.error.InvalidDataError:
            continue


def stream(source: Source, *, mono: bool = True, chunk: int = CHUNK) -> Iterator[np.ndarray]:
    """`source` as consecutive 16 kHz float32 chunks of about `chunk` samples: shape (n,) when
    `mono`, else (n, channels). Raises AudioError (before or while yielding) for undecodable input."""
    import av
    import soxr

    name = _name(source)
    container = _open(source)
    with container:
        if not container.streams.audio:
            raise AudioError(f"{name} has no audio stream; give an audio file")
        to_float = av.AudioResampler(format="fltp")  # the file's own rate and channels, as float
        resampler, rate, width, pending, count = None, None, (), [], 0
        try:
            for frame in _frames(container):
                for planar in to_float.resample(frame):
                    block = _channels(planar.to_ndarray().T, mono)  # (samples,) or (samples, channels)
                    if rate is None:
                        rate, width = planar.sample_rate, block.shape[1:]
                        if rate != SAMPLE_RATE:
                            resampler = soxr.ResampleStream(rate, SAMPLE_RATE, block.shape[1] if width else 1,
                                                            dtype="float32", quality=RESAMPLE_QUALITY)
                    if resampler is not None:
                        block = resampler.resample_chunk(block)
                    pending.append(block)
                    count += len(block)
                if count >= chunk:
                    yield np.concatenate(pending)
                    pending, count = [], 0
        except av.error.FFmpegError as exc:
            raise AudioError(f"decoding {name} failed ({exc.strerror or exc}); the file is damaged or not audio") from None
        if resampler is not None:
            pending.append(resampler.resample_chunk(np.zeros((0, *width), np.float32), last=True))
        tail = np.concatenate(pending) if pending else np.zeros(0, np.float32)
        if len(tail):
            yield tail


def _channels(block: np.ndarray, mono: bool) -> np.ndarray:
    if mono:
        return np.ascontiguousarray(block.mean(axis=1, dtype=np.float32))
    return np.ascontiguousarray(block, dtype=np.float32)


def decode(source: Source, *, mono: bool = True) -> np.ndarray:
    """The whole of `source` as 16 kHz float32 (see `stream`); an empty array for a file without samples."""
    chunks = list(stream(source, mono=mono))
    if chunks:
        return np.concatenate(chunks)
    return np.zeros(0 if mono else (0, 1), dtype=np.float32)


def duration_s(source: Source) -> float | None:
    """The length the container says it has, in seconds, without decoding (None when it does not
    say, or cannot be opened: decoding will then tell what is wrong)."""
    try:
        container = _open(source)
    except AudioError:
        return None
    with container:
        if container.duration is not None:
            return container.duration / 1_000_000  # av.time_base: microseconds
        streams = container.streams.audio
        if streams and streams[0].duration is not None and streams[0].time_base is not None:
            return float(streams[0].duration * streams[0].time_base)
    return None
