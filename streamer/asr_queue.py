"""One Whisper for every session of the process (rooms, files in flight), transcribing in batches.

Each session's analyzer thread calls `transcribe` and waits; one thread owns the model and takes
whatever requests are waiting, plus those that arrive within `gather_ms` of the first, and hands
them to `core.asr.transcribe_many`, which encodes and decodes the ones with the same window as one
batch (on two CPU cores a batch of four 2-4 s utterances costs about the time of two alone). A
request never waits for a batch to fill: with one session talking it is decoded alone, as before.
Each request keeps its own language, settings and guards; a bad one fails alone.
"""
from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from core.asr import Transcript, Whisper, transcribe_many
from core.config import AsrConfig

GATHER_MS = 5.0  # how long the first request of a batch waits for others
MAX_BATCH = 8


@dataclass
class _Request:
    audio: np.ndarray
    language: str | None
    config: AsrConfig
    result: Future = field(default_factory=Future)


@dataclass
class BatchStats:
    batches: int = 0
    requests: int = 0
    largest: int = 0


class BatchedAsr:
    """Thread-safe `transcribe` over one Whisper, batching concurrent requests (module docstring)."""

    def __init__(self, whisper: Whisper, gather_ms: float = GATHER_MS, max_batch: int = MAX_BATCH) -> None:
        self.whisper = whisper
        self.gather_s = gather_ms / 1000
        self.max_batch = max_batch
        self.stats = BatchStats()
        self._requests: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="asr-batches", daemon=True)
        self._thread.start()

    def transcribe(self, audio: np.ndarray, language: str | None, config: AsrConfig) -> Transcript:
        request = _Request(audio, language, config)
        self._requests.put(request)
        return request.result.result()

    def close(self) -> None:
        self._requests.put(None)
        self._thread.join(timeout=30)

    def _serve(self) -> None:
        while (first := self._requests.get()) is not None:
            batch, closing = [first], False
            deadline = time.monotonic() + self.gather_s
            while len(batch) < self.max_batch:
                try:
                    more = self._requests.get(timeout=max(deadline - time.monotonic(), 0.0))
                except queue.Empty:
                    break
                if more is None:
                    closing = True
                    break
                batch.append(more)
            self._run(batch)
            if closing:
                return

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
