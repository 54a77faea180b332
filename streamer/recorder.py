"""Recorded sessions: a folder per session, written as it goes so a crash loses almost nothing.

    DIR/ID/audio.wav    16 kHz mono PCM16, the audio exactly as the segmenter saw it
    DIR/ID/feed.jsonl   every numbered feed message, one per line, flushed per message
    DIR/ID/meta.json    id, start time, source, models, config (no token); the end summary last

A WAV header holds the data size, which is unknown until the end. The writer rewrites the size
fields every `SYNC_S` seconds of audio, so after a `kill -9` the header is at most that far
behind the file; readers (`read_audio`, streamer/ranges.py) trust the file size over a stale header.
feed.jsonl is flushed to the OS after every line: a killed process loses no line it wrote, at
worst a power cut loses the tail (no fsync per message, which would cost more than the message).
"""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np

from core.audio import SAMPLE_RATE
from core.errors import UserError
from streamer.feed import Entry, SessionLog

SYNC_S = 0.5
HEADER_BYTES = 44


def wav_header(data_bytes: int, rate: int = SAMPLE_RATE) -> bytes:
    return (
        b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
        + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
        + b"data" + struct.pack("<I", data_bytes)
    )


class WavWriter:
    """A 16 kHz mono PCM16 wav whose header is kept close to the truth while it grows."""

    def __init__(self, path: Path) -> None:
        self._file: BinaryIO = open(path, "wb")
        self._file.write(wav_header(0))
        self.samples = 0
        self._synced = 0

    def write(self, samples: np.ndarray) -> None:
        pcm = np.clip(np.round(samples * 32768.0), -32768, 32767).astype("<i2")  # exact for PCM16 input
        self._file.write(pcm.tobytes())
        self.samples += len(pcm)
        if self.samples - self._synced >= SYNC_S * SAMPLE_RATE:
            self.sync()

    def sync(self) -> None:
        data_bytes = self.samples * 2
        self._file.seek(4)
        self._file.write(struct.pack("<I", 36 + data_bytes))
        self._file.seek(40)
        self._file.write(struct.pack("<I", data_bytes))
        self._file.seek(0, os.SEEK_END)
        self._file.flush()
        self._synced = self.samples

    def close(self) -> None:
        if not self._file.closed:
            self.sync()
            self._file.close()


def data_span(path: Path) -> tuple[int, int]:
    """(offset, length) of the PCM16 data, taking the file's real size over its header's."""
    with open(path, "rb") as f:
        head = f.read(4096)
        size = os.fstat(f.fileno()).st_size
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise UserError(f"{path} is not a WAV file; a recorded session's audio.wav starts with RIFF/WAVE")
    pos, fmt = 12, None
    while pos + 8 <= len(head):
        chunk, chunk_size = head[pos : pos + 4], struct.unpack("<I", head[pos + 4 : pos + 8])[0]
        if chunk == b"fmt ":
            fmt = struct.unpack("<HHIIHH", head[pos + 8 : pos + 24])
        elif chunk == b"data":
            if fmt is None or fmt[0] != 1 or fmt[1] != 1 or fmt[2] != SAMPLE_RATE or fmt[5] != 16:
                raise UserError(f"{path} is not 16 kHz mono PCM16 (fmt {fmt}); it was not written by the recorder")
            start = pos + 8
            length = size - start  # a stale or zero size after a crash: the file size wins
            return start, length - length % 2
        pos += 8 + chunk_size + chunk_size % 2
    raise UserError(f"{path} has no audio data chunk; the recording is empty or damaged")


def pcm16(path: str | Path) -> np.ndarray:
    """A recorded audio.wav's samples as int16, mapped rather than read: an hour is 115 MB."""
    path = Path(path)
    start, length = data_span(path)
    if length == 0:
        return np.zeros(0, dtype="<i2")
    return np.memmap(path, dtype="<i2", mode="r", offset=start, shape=(length // 2,))


def read_audio(path: str | Path) -> np.ndarray:
    """A recorded audio.wav as float32 16 kHz, repaired from the file size if it was cut off."""
    return pcm16(path).astype(np.float32) / 32768.0


def read_feed(folder: str | Path) -> list[dict[str, Any]]:
    """The recorded messages; a last line cut off mid-write (a crash) is left out."""
    path = Path(folder) / "feed.jsonl"
    if not path.is_file():
        raise UserError(f"{path} does not exist; pass a folder written by `streamer run --record DIR` (DIR/SESSION_ID)")
    lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
    messages = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            messages.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):  # no newline after it: the write the crash interrupted
                break
            raise UserError(f"{path} line {number} is not JSON; the recording is damaged there") from None
    return messages


def read_meta(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / "meta.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path} does not exist; {folder} is not a recorded session folder") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON ({exc}); the recording's metadata is damaged") from None


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def list_sessions(root: Path) -> list[dict[str, Any]]:
    """The sessions under a record dir, newest first, for `GET /api/sessions`."""
    sessions = []
    if not root.is_dir():
        return sessions
    for folder in sorted(root.iterdir(), reverse=True):
        if folder.is_symlink() or not (folder / "meta.json").is_file():
            continue
        try:
            meta = read_meta(folder)
        except UserError:
            continue
        summary = meta.get("end") or {}
        duration = summary.get("duration")
        if duration is None and (folder / "audio.wav").is_file():
            duration = round(max((folder / "audio.wav").stat().st_size - HEADER_BYTES, 0) / 2 / SAMPLE_RATE, 3)
        utterances = summary.get("utterances")
        if utterances is None and (folder / "feed.jsonl").is_file():
            try:
                utterances = sum(m.get("type") == "utterance" for m in read_feed(folder))
            except UserError:
                utterances = None
        sessions.append({"id": folder.name, "started": meta.get("started"), "duration": duration,
                         "utterances": utterances, "models": meta.get("models"), "room": meta.get("room")})
    return sessions


class Recorder:
    """Writes one session folder while the session runs.

    A recording that cannot be written (the disk filled, the folder went away, an I/O error) stops
    recording, not the session: what was written stays, the files are closed, meta.json says when
    and why recording stopped (when even that can still be written), and `on_failure` tells the
    session, which says so in the feed. Live analysis goes on.
    """

    def __init__(self, root: str | Path, log: SessionLog, meta: dict[str, Any],
                 on_failure: Callable[[str], None] | None = None) -> None:
        self.folder = Path(root) / log.session_id
        self._log = log
        self._on_failure = on_failure
        self.failed: str | None = None
        try:
            self.folder.mkdir(parents=True)
        except FileExistsError:
            raise UserError(f"{self.folder} already exists; record into another folder") from None
        except OSError as exc:
            raise UserError(f"cannot create {self.folder} ({exc.strerror}); pick a writable --record folder") from None
        self.meta = {"id": log.session_id, "started": log.started.isoformat(timespec="seconds"), **meta}
        try:
            _write_json_atomic(self.folder / "meta.json", self.meta)
            self.audio = WavWriter(self.folder / "audio.wav")
            self._feed = open(self.folder / "feed.jsonl", "w", encoding="utf-8")
        except OSError as exc:
            raise UserError(f"cannot write the recording in {self.folder} ({exc.strerror}); free some space or "
                            "pick another --record folder") from None
        log.listen(self._on_entry)

    def _guarded(self, write: Callable[[], None]) -> None:
        if self.failed:
            return
        try:
            write()
        except OSError as exc:
            self._stop(f"{exc.strerror or exc} ({self.folder})")

    def _stop(self, reason: str) -> None:
        """Stop recording for good, keeping what was written."""
        self.failed = reason
        for handle in (self.audio, self._feed):
            try:
                handle.close()
            except OSError:
                pass  # the data that did reach the disk stays readable: readers repair the header
        self.meta["recording_stopped"] = {"t": self._log.now(), "reason": reason}
        try:
            _write_json_atomic(self.folder / "meta.json", self.meta)
        except OSError:
            pass  # a full disk may not take even that; list_sessions copes with a meta.json without "end"
        if self._on_failure is not None:
            self._on_failure(reason)

    def _on_entry(self, entry: Entry) -> None:
        def write() -> None:
            self._feed.write(entry.text + "\n")
            self._feed.flush()

        if not self._feed.closed:
            self._guarded(write)

    def write_audio(self, samples: np.ndarray) -> None:
        self._guarded(lambda: self.audio.write(samples))

    def close(self, summary: dict[str, Any]) -> None:
        """Finish the files and add the end summary to meta.json."""
        if self.failed:
            return

        def finish() -> None:
            self.audio.close()
            self._feed.close()
            self.meta["end"] = summary
            _write_json_atomic(self.folder / "meta.json", self.meta)

        self._guarded(finish)
