"""Where audio comes from: a microphone, a file, a recorded session, or the browser.

Every source turns its input into 16 kHz mono float32 blocks and hands them to one `FrameQueue`.
The queue is the line between capture and analysis and it is bounded: a live source (microphone,
browser, a file played at real time) never waits on it; when analysis has fallen so far behind
that the queue is full, the block is dropped and counted, which the session reports in `status`
and `session_end`. A file played as fast as possible (`--fast`) is not live: it waits for room,
so nothing is dropped and the file is analysed whole.

Files are decoded a second at a time by core/audio.py, the decoder `analyze`, `trainer predict`
and training use too, so a file played here gives the samples every other part of the project
sees. A recorded session's own audio.wav is read by the recorder, which repairs a header a crash
left behind.
"""
from __future__ import annotations

import asyncio
import sys
from collections import deque
from pathlib import Path
from typing import Callable, Iterator, Protocol

import numpy as np

from core import audio
from core.audio import SAMPLE_RATE
from streamer import devices, recorder

CHUNK = SAMPLE_RATE  # hand over a second at a time when there is no clock to follow
LOST_AFTER_S = 2.0  # a microphone that delivers nothing this long is gone
CHECK_S = 0.25
RETRY_S = 1.0

Report = Callable[[str, str], None]  # (code, message) -> a session-wide `error` message


class SourceError(Exception):
    """The source cannot go on; the message says what was wrong and what to do."""


class Source(Protocol):
    name: str  # as shown in hello and status: "mic", "file:PATH", "session:DIR", "browser"
    live: bool  # True: drop blocks when analysis is behind; False: wait for it

    async def run(self, frames: "FrameQueue", report: Report) -> None:
        """Feed `frames` until the input ends (returns) or fails (SourceError)."""
        ...


class FrameQueue:
    """Bounded hand-over of audio blocks from capture to analysis, counted in samples."""

    def __init__(self, max_seconds: float) -> None:
        self.max_samples = int(max_seconds * SAMPLE_RATE)
        self._blocks: deque[np.ndarray] = deque()
        self.samples = 0
        self.dropped_frames = 0
        self.dropped_samples = 0
        self.closed = False
        self._changed = asyncio.Event()

    @property
    def queued_s(self) -> float:
        return self.samples / SAMPLE_RATE

    def offer(self, block: np.ndarray) -> bool:
        """Queue a block without waiting; False (and counted) when the queue is full."""
        if self.samples + len(block) > self.max_samples:
            self.dropped_frames += 1
            self.dropped_samples += len(block)
            return False
        self._append(block)
        return True

    async def put(self, block: np.ndarray) -> None:
        """Queue a block, waiting for room (sources that are not live)."""
        while self.samples and self.samples + len(block) > self.max_samples and not self.closed:
            self._changed.clear()
            await self._changed.wait()
        self._append(block)

    def _append(self, block: np.ndarray) -> None:
        self._blocks.append(block)
        self.samples += len(block)
        self._changed.set()

    async def get(self, max_samples: int) -> np.ndarray | None:
        """The queued audio, up to about `max_samples`, waiting for some; None once closed and empty."""
        while not self._blocks:
            if self.closed:
                return None
            self._changed.clear()
            await self._changed.wait()
        taken = [self._blocks.popleft()]
        count = len(taken[0])
        while self._blocks and count + len(self._blocks[0]) <= max_samples:
            taken.append(self._blocks.popleft())
            count += len(taken[-1])
        self.samples -= count
        self._changed.set()
        return taken[0] if len(taken) == 1 else np.concatenate(taken)

    def close(self) -> None:
        """No more input: `get` drains what is queued, then returns None."""
        self.closed = True
        self._changed.set()


def decode_file(path: audio.Source, mono: bool = True) -> Iterator[np.ndarray]:
    """Any file FFmpeg reads (a path or its bytes), as ~1 s chunks of 16 kHz float32 (core/audio.py):
    (n,) when `mono`, else (n, channels)."""
    try:
        yield from audio.stream(path, mono=mono)
    except audio.AudioError as exc:
        raise SourceError(str(exc)) from None


def session_chunks(folder: Path) -> Iterator[np.ndarray]:
    """A recorded session's audio.wav (repaired if cut off) as ~1 s float32 chunks."""
    pcm = recorder.pcm16(folder / "audio.wav")
    for start in range(0, len(pcm), CHUNK):
        yield pcm[start : start + CHUNK].astype(np.float32) / 32768.0


class PlaybackSource:
    """Audio from a file or a recorded session, at real time (live) or as fast as possible."""

    def __init__(self, name: str, chunks: Callable[[], Iterator[np.ndarray]], realtime: bool, block: int) -> None:
        self.name = name
        self.live = realtime
        self._chunks = chunks
        self._block = block
        self.played_s = 0.0

    async def run(self, frames: FrameQueue, report: Report) -> None:
        loop = asyncio.get_running_loop()
        chunks = self._chunks()  # a generator: opening and decoding happen in next(), off the loop
        start, sent, bad = loop.time(), 0, 0
        while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
            finite = np.isfinite(chunk)
            if not finite.all():
                if not bad:
                    first = int(np.argmin(finite if finite.ndim == 1 else finite.all(axis=1)))
                    report("bad_audio", f"{self.name} has NaN or infinite samples (first at {(sent + first) / SAMPLE_RATE:.2f} s); "
                           "they are played as silence. Check how the file was made")
                bad += int((~finite).sum())
                chunk = np.where(finite, chunk, np.float32(0.0))
            if not self.live:
                await frames.put(chunk)
                sent += len(chunk)
                continue
            for i in range(0, len(chunk), self._block):
                frames.offer(chunk[i : i + self._block])
                sent += len(chunk[i : i + self._block])
                delay = start + sent / SAMPLE_RATE - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            self.played_s = sent / SAMPLE_RATE
        self.played_s = sent / SAMPLE_RATE


def file_source(path: str, realtime: bool, block: int, mono: bool = True) -> PlaybackSource:
    file = Path(path).expanduser()
    return PlaybackSource(f"file:{path}", lambda: decode_file(file, mono), realtime, block)


def session_source(folder: str, realtime: bool, block: int) -> PlaybackSource:
    path = Path(folder).expanduser()
    return PlaybackSource(f"session:{folder}", lambda: session_chunks(path), realtime, block)


class MicSource:
    """A PortAudio input device; the audio callback only copies the block into the queue.

    A microphone that goes away mid-session (unplugged, its driver reset) is noticed when its stream
    stops or no block has come for LOST_AFTER_S; the session gets a `microphone_lost` error and the
    status says `waiting`; the device list is scanned again every RETRY_S and capture resumes on the
    same device (by the same --device spec) when it is back.
    """

    live = True

    def __init__(self, device: str, block: int, channels: int = 1) -> None:
        self.name = "mic"
        self._spec = device
        self._block = block
        self._channels = channels  # 2 for split channels: blocks are then (samples, 2)
        self.device: devices.InputDevice | None = None
        self.connected = False
        self._last_block = 0.0

    def open(self):
        """Choose and open the device now, so a missing microphone is known before serving."""
        sd = devices.portaudio()
        self.device = devices.choose(devices.input_devices(sd), self._spec)
        return sd

    def _start(self, sd, frames: FrameQueue, loop: asyncio.AbstractEventLoop):
        """An open, started input stream on self.device; MicUnavailable when it cannot be opened."""
        import soxr

        try:
            sd.check_input_settings(device=self.device.index, channels=self._channels, samplerate=SAMPLE_RATE, dtype="float32")
            rate, resampler = SAMPLE_RATE, None
        except sd.PortAudioError:  # the device has no 16 kHz mode: capture at its own rate
            rate = int(self.device.default_samplerate)
            resampler = soxr.ResampleStream(rate, SAMPLE_RATE, self._channels, dtype="float32")

        def callback(indata: np.ndarray, frame_count: int, time_info, status) -> None:
            self._last_block = loop.time()
            block = indata[:, 0].copy() if self._channels == 1 else indata[:, : self._channels].copy()
            if resampler is not None:
                block = resampler.resample_chunk(block)
            loop.call_soon_threadsafe(frames.offer, block)

        try:
            stream = sd.InputStream(device=self.device.index, channels=self._channels, samplerate=rate, dtype="float32",
                                    blocksize=int(self._block * rate / SAMPLE_RATE), callback=callback)
            stream.start()
        except sd.PortAudioError as exc:
            raise devices.MicUnavailable(f"cannot open microphone {self.device.name!r} ({exc}); {devices.ALTERNATIVES}") from None
        self._last_block = loop.time()
        self.connected = True
        return stream

    async def run(self, frames: FrameQueue, report: Report) -> None:
        loop = asyncio.get_running_loop()
        sd = self.open()
        stream = self._start(sd, frames, loop)
        try:
            while True:
                while stream.active and loop.time() - self._last_block < LOST_AFTER_S:
                    await asyncio.sleep(CHECK_S)
                self.connected = False
                _close_quietly(stream)
                report("microphone_lost", f"microphone {self.device.name!r} stopped delivering audio (unplugged?); "
                       "capture resumes on its own when it is back")
                stream = await self._reopen(sd, frames, loop)
                print(f"streamer: microphone {self.device.name!r} is back; capturing again", file=sys.stderr, flush=True)
        finally:  # the session ends or cancels this task
            self.connected = False
            _close_quietly(stream)

    async def _reopen(self, sd, frames: FrameQueue, loop: asyncio.AbstractEventLoop):
        """Scan for the device every RETRY_S until it can be opened again."""
        while True:
            await asyncio.sleep(RETRY_S)
            try:
                devices.rescan(sd)
                self.device = devices.choose(devices.input_devices(sd), self._spec)
                return self._start(sd, frames, loop)
            except devices.MicUnavailable:
                continue


def _close_quietly(stream) -> None:
    try:
        stream.close()
    except Exception:  # a stream whose device vanished may fail to close; there is nothing left to save
        pass


class BrowserSource:
    """The dashboard's microphone: binary PCM16 LE 16 kHz mono frames arriving on /mic.

    One browser at a time feeds the session; it is live, so frames that arrive while analysis is
    too far behind are dropped and counted like a microphone's.
    """

    name = "browser"
    live = True

    def __init__(self) -> None:
        self.connected = False
        self._frames: FrameQueue | None = None

    def attach(self) -> str | None:
        """Claim the input for a /mic connection; the reason for refusing it, or None."""
        if self.connected:
            return "another browser microphone is already connected; close it first"
        self.connected = True
        return None

    def detach(self) -> None:
        self.connected = False

    def feed(self, frame: bytes | str) -> str | None:
        """Queue one frame; what was wrong with it, or None."""
        if isinstance(frame, str):
            return "text frames are not audio; send binary frames of PCM16 little-endian mono 16 kHz samples"
        if len(frame) % 2:
            return f"a frame of {len(frame)} bytes is not whole 16-bit samples; send PCM16 little-endian mono 16 kHz"
        if self._frames is not None and frame:
            self._frames.offer(np.frombuffer(frame, dtype="<i2").astype(np.float32) / 32768.0)
        return None

    async def run(self, frames: FrameQueue, report: Report) -> None:
        self._frames = frames
        await asyncio.Event().wait()  # the browser never ends the session; shutdown does
