"""One Whisper for every session of the process (rooms, files in flight), transcribing in batches.

Each session's analyzer thread calls `transcribe` and waits; one thread owns the model and takes
whatever requests are waiting, plus those that arrive within `gather_ms` of the first, and hands
them to `core.asr.transcribe_many`, which encodes and decodes the ones with the same window as one
batch (on two CPU cores a batch of four 2-4 s utterances costs about the time of two alone). A
request never waits for a batch to fill: with one session talking it is decoded alone, as before.
Each request keeps its own language, settings and guards; a bad one fails alone.

Interim text (a `partial` while someone is still speaking) is a nicety; an `utterance` is the
product. So finished utterances go first, interim requests are decoded only when no utterance is
waiting, and an interim request that waited INTERIM_STALE_S gets no text (the speech has moved on
by then). Without this, rooms' interim requests queued ahead of other rooms' utterances: 4 rooms
at real time on 2 cores gave end_to_message p95 4.1 s against 1.6 s for 4 separate daemons, whose
operating system shared the cores out instead (bench/rooms_bench.py).
"""
from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from core.asr import Transcript, Whisper, transcribe_many
from core.config import AsrConfig

GATHER_MS = 5.0  # how long the first request of a batch waits for others
MAX_BATCH = 8
INTERIM_STALE_S = 1.0  # an interim request older than this gets no text (module docstring)


@dataclass
class _Request:
    audio: np.ndarray
    language: str | None
    config: AsrConfig
    interim: bool = False
    queued: float = field(default_factory=time.monotonic)
    result: Future = field(default_factory=Future)


@dataclass
class BatchStats:
    batches: int = 0
    requests: int = 0
    largest: int = 0
    interim_skipped: int = 0  # interim requests answered with no text because they went stale


class BatchedAsr:
    """Thread-safe `transcribe` over one Whisper, batching concurrent requests (module docstring)."""

    def __init__(self, whisper: Whisper, gather_ms: float = GATHER_MS, max_batch: int = MAX_BATCH) -> None:
        self.whisper = whisper
        self.gather_s = gather_ms / 1000
        self.max_batch = max_batch
        self.stats = BatchStats()
        self._finals: deque[_Request] = deque()
        self._interims: deque[_Request] = deque()
        self._ready = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._serve, name="asr-batches", daemon=True)
        self._thread.start()

    def transcribe(self, audio: np.ndarray, language: str | None, config: AsrConfig, *,
                   interim: bool = False) -> Transcript:
        """Whisper's transcript of `audio`; `interim` for a partial's text, which yields to utterances."""
        request = _Request(audio, language, config, interim)
        with self._ready:
            (self._interims if interim else self._finals).append(request)
            self._ready.notify()
        return request.result.result()

    def close(self) -> None:
        with self._ready:
            self._closing = True
            self._ready.notify()
        self._thread.join(timeout=30)

    def _serve(self) -> None:
        while batch := self._next_batch():
            self._run(batch)

    def _next_batch(self) -> list[_Request]:
        """Utterances waiting (and those that come within gather_s), else interim requests; [] once closed."""
        with self._ready:
            while True:
                self._ready.wait_for(lambda: self._finals or self._interims or self._closing)
                if not (self._finals or self._interims):
                    return []
                self._ready.wait_for(lambda: len(self._finals) >= self.max_batch, timeout=self.gather_s)
                while self._interims and time.monotonic() - self._interims[0].queued > INTERIM_STALE_S:
                    self.stats.interim_skipped += 1
                    stale = self._interims.popleft()
                    stale.result.set_result(_no_text(stale))
                source = self._finals or self._interims
                if source:
                    return [source.popleft() for _ in range(min(len(source), self.max_batch))]

    def _run(self, batch: list[_Request]) -> None:
        self.stats.batches += 1
        self.stats.requests += len(batch)
        self.stats.largest = max(self.stats.largest, len(batch))
        try:
            results = transcribe_many(self.whisper, [(r.audio, r.language, r.config) for r in batch])
        except Exception:  # one bad request (bad audio) must not fail the others: run them alone
            for request in batch:
                try:
                    request.result.set_result(transcribe_many(self.whisper, [(request.audio, request.language, request.config)])[0])
                except Exception as exc:
                    request.result.set_exception(exc)
            return
        for request, result in zip(batch, results):
            request.result.set_result(result)


def _no_text(request: _Request) -> Transcript:
    """What a stale interim request gets: no text, said in `filtered`."""
    return Transcript(text="", language=request.language or "", no_speech_prob=None, avg_logprob=None,
                      segments=[], duration_ms=0.0, filtered="stale")
