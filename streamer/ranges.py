"""A recording's audio.wav over HTTP, read from the file a range at a time, never all into memory.

An <audio> element asks for `Range: bytes=N-` and plays as it goes, so one hour of recording (115
MB) is served in pieces of at most RANGE_CHUNK bytes: an open-ended range gets the first piece
and the player asks for the next. The served file is the recorder's wav with a header rewritten to
match the data actually on disk (a crash leaves a stale header, streamer/recorder.py). A request
without `Range` (a download) gets the whole file, which websockets' HTTP responses hold in memory,
so only FULL_AT_ONCE of those are served at a time; others are told to retry. A range that is not
one `bytes=A-B` with sensible numbers gets 416, as RFC 9110 says.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from streamer import recorder

RANGE_CHUNK = 1 << 20  # bytes per ranged response
FULL_AT_ONCE = 2  # whole-file responses in memory at once
RANGE = re.compile(r"bytes=(\d{0,15})-(\d{0,15})")  # 15 digits: petabytes, far beyond any recording


class BadRange(ValueError):
    """The Range header cannot be satisfied; the message says why (answered with 416)."""


@dataclass(frozen=True)
class WavFile:
    """audio.wav as served: a fresh header followed by the data span of the file on disk."""

    path: Path
    header: bytes
    data_start: int
    data_length: int

    @classmethod
    def open(cls, path: Path) -> "WavFile":
        start, length = recorder.data_span(path)
        header = recorder.wav_header(length) if start == recorder.HEADER_BYTES else b""
        if not header:  # not the recorder's layout: the file as it is
            start, length = 0, path.stat().st_size
        return cls(path, header, start, length)

    @property
    def size(self) -> int:
        return len(self.header) + self.data_length

    def read(self, first: int, last: int) -> bytes:
        """Bytes first..last (inclusive) of the served file."""
        out = bytearray(self.header[first : last + 1])
        if last >= len(self.header):
            offset = max(first - len(self.header), 0)
            with open(self.path, "rb") as f:
                f.seek(self.data_start + offset)
                out += f.read(last + 1 - len(self.header) - offset)
        return bytes(out)


def requested(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) of one `Range: bytes=...` capped to RANGE_CHUNK, None without a Range header;
    BadRange for one that is malformed, multi-part or outside the file."""
    if header is None:
        return None
    match = RANGE.fullmatch(header.strip())
    if not match or match.groups() == ("", ""):
        raise BadRange(f"range {header[:40]!r} is not one byte range bytes=FIRST-LAST of the {size} bytes")
    first, last = match.groups()
    if first:
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
    else:  # the last N bytes
        start, end = max(size - int(last), 0), size - 1
    if start >= size or start > end:
        raise BadRange(f"range {header[:40]!r} is outside the {size} bytes")
    return start, min(end, start + RANGE_CHUNK - 1)
