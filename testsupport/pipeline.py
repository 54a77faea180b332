"""Stand-ins at the pipeline's seams, for tests that pin timing exactly: a live source that hands its
recording over faster than real time, and an analyzer whose speed the test controls."""
from __future__ import annotations

import asyncio
import threading
import time

import numpy as np

from streamer import sources
from streamer.segmenter import SpeechUpdate, Utterance

BLOCK = 512


class BurstSource:
    """A live source that hands its whole recording over at once, as a microphone would if the
    analysis stalled for that long: it never waits for the queue (FrameQueue.offer)."""

    name = "burst"
    live = True

    def __init__(self, audio: np.ndarray, released: asyncio.Event | None = None):
        self.audio = audio
        self.offered = asyncio.Event()
        self.released = released  # keep the source open until this is set (a microphone stays open)

    async def run(self, frames: sources.FrameQueue, report) -> None:
        for start in range(0, len(self.audio), BLOCK):
            frames.offer(self.audio[start : start + BLOCK])
            if start % (20 * BLOCK) == 0:
                await asyncio.sleep(0)  # let the segmenter run now and then, as a callback thread would
        self.offered.set()
        if self.released is not None:
            await self.released.wait()


class ControlledAnalyzer:
    """Stands in for Whisper + the bundle: `analyze` waits until `gate` is open and then takes
    `delay_s`; `partial` takes `partial_s`. Every call is recorded."""

    def __init__(self, delay_s: float = 0.0, partial_s: float = 0.0, gate: threading.Event | None = None):
        self.delay_s, self.partial_s = delay_s, partial_s
        self.gate = gate
        self.analyzed: list[int] = []
        self.partials: list[tuple[int, int]] = []  # (utterance id, newest utterance cut when it returned)
        self.session = None  # set by a test that wants to see the session's counters

    def models(self) -> dict:
        return {"asr": "controlled", "text": None, "audio": None, "multimodal": None, "stacker": None}

    def analyze(self, utterance: Utterance) -> dict:
        if self.gate is not None:
            self.gate.wait(30)
        time.sleep(self.delay_s)
        self.analyzed.append(utterance.id)
        return {"utterance_id": utterance.id, "start": round(utterance.start, 3), "end": round(utterance.end, 3),
                "speaker": utterance.speaker, "text": f"utterance {utterance.id}", "latency_ms": {"total": self.delay_s * 1000}}

    def partial(self, update: SpeechUpdate) -> dict:
        time.sleep(self.partial_s)
        self.partials.append((update.id, self.session.counters.last_id if self.session else 0))
        return {"utterance_id": update.id, "start": round(update.start, 3), "end": round(update.now, 3),
                "speaker": update.speaker, "text": "..."}
