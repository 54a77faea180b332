"""The `Session` pipeline: one source analysed into one session log, as asyncio glue. Four tasks share the event loop and two one-thread executors:

    source --FrameQueue--> segment (VAD thread) --utterance queue--> analyse (analyzer thread) --> log
                                   |                                                               |
                                recorder (audio.wav)                  server fan-out, recorder (feed.jsonl)
    status: about once a second, into the log

The event loop itself only moves data, so the server answers while Whisper works. Both queues
are bounded: when the analyzer falls behind, the segmenter waits on the utterance queue, the frame
queue fills, and a live source's blocks are dropped and counted rather than stalling capture.
"""
from __future__ import annotations

import asyncio
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.audio import SAMPLE_RATE
from core.labels import LABELS
from streamer import feed, sources
from streamer.config import Config
from streamer.devices import MicUnavailable
from streamer.recorder import Recorder
from streamer.segmenter import BadAudio, Utterance
from streamer.server import FeedServer
from streamer.speakers import describe

UTTERANCE_QUEUE = 4  # utterances waiting for the analyzer before the segmenter waits too
STATUS_EVERY_S = 1.0
BATCH_S = 1.0  # most audio handed to the segmenter in one call


@dataclass
class Counters:
    utterances: int = 0
    audio_s: float = 0.0
    # utterance id -> (loop time it left the segmenter, audio seconds consumed by then)
    emitted: dict[int, tuple[float, float]] = field(default_factory=dict)
    last_id: int = 0  # the newest utterance that left the segmenter: older previews are stale


class Session:
    """One source, analysed into one session log until the source ends or the task is cancelled."""

    def __init__(
        self,
        config: Config,
        source: sources.Source,
        segmenter: Any,
        analyzer: Any,
        log: feed.SessionLog,
        *,
        server: FeedServer | None = None,
        recorder: Recorder | None = None,
    ) -> None:
        self.config = config
        self.source = source
        self.segmenter = segmenter
        self.analyzer = analyzer
        self.log = log
        self.server = server
        self.recorder = recorder
        self.frames = sources.FrameQueue(config.audio.queue_s)
        self.utterances: asyncio.Queue = asyncio.Queue(UTTERANCE_QUEUE)
        self.counters = Counters()
        self.state = "starting"
        self.end_reason: str | None = None
        self._partial: Any = None
        self._bad_audio_reported = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._vad = ThreadPoolExecutor(1, thread_name_prefix="vad")
        self._asr = ThreadPoolExecutor(1, thread_name_prefix="analyzer")
        if server is not None and isinstance(source, sources.BrowserSource):
            server.browser = source

    # -- what clients see ---------------------------------------------------------------------

    def hello(self) -> dict[str, Any]:
        return feed.hello_body(LABELS, self.analyzer.models(), self.config.asr.language, self.source.name,
                               self.log.started, speakers=describe(self.config, self.segmenter))

    def report(self, code: str, message: str, **extra: Any) -> None:
        print(f"streamer: {message}", file=sys.stderr, flush=True)
        self.log.publish("error", feed.error_body(code, message, **extra))

    def lag_s(self) -> float:
        now = asyncio.get_running_loop().time()
        waiting = min((t for t, _ in self.counters.emitted.values()), default=now)
        return self.frames.queued_s + (now - waiting)

    def _state(self) -> str:
        if self.end_reason:
            return "ended"
        if isinstance(self.source, sources.BrowserSource):
            return "listening" if self.source.connected else "waiting"
        return self.state

    def publish_status(self) -> None:
        self.log.publish("status", feed.status_body(
            self.segmenter.take_peak_level_db(), self.segmenter.speaking,
            self.lag_s(), self.frames.dropped_frames, self.server.clients if self.server else 0,
            self.source.name, self._state()))

    # -- the pipeline -------------------------------------------------------------------------

    async def run(self) -> str:
        """Analyse until the source ends (or fails); returns the end reason. Cancel to stop."""
        self.state = "listening" if self.source.live else "analysing"
        self._loop = asyncio.get_running_loop()
        tasks = [asyncio.create_task(coro) for coro in (self._capture(), self._segment(), self._status())]
        analyse = asyncio.create_task(self._analyse())
        try:
            pending = {*tasks, analyse}
            while analyse in pending:  # a task that crashed is a bug: raise it rather than hang
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task.exception() is not None:
                        raise task.exception()
            self.end_reason = self.end_reason or "source ended"
        except asyncio.CancelledError:
            self.end_reason = "shutdown"
            raise
        finally:
            for task in (*tasks, analyse):
                task.cancel()
            await asyncio.gather(*tasks, analyse, return_exceptions=True)
            self._finish()
        return self.end_reason

    async def _capture(self) -> None:
        try:
            await self.source.run(self.frames, self.report)
        except MicUnavailable as exc:
            if self.server is None:
                raise
            self.report("no_microphone", f"{exc}. Serving on: the dashboard's microphone button is the input now")
            self.source = sources.BrowserSource()
            self.server.browser = self.source
            await self.source.run(self.frames, self.report)
        except sources.SourceError as exc:
            self.end_reason = "source failed"
            self.report("source_failed", str(exc))
        finally:
            self.frames.close()

    async def _segment(self) -> None:
        loop = asyncio.get_running_loop()
        batch = int(BATCH_S * SAMPLE_RATE)
        while (block := await self.frames.get(batch)) is not None:
            if self.recorder is not None:  # split channels are recorded as their mix
                self.recorder.write_audio(block if block.ndim == 1 else block.mean(axis=1))
            self.counters.audio_s += len(block) / SAMPLE_RATE
            await self._route(await loop.run_in_executor(self._vad, self._push, block))
        await self._route(await loop.run_in_executor(self._vad, self.segmenter.flush))
        await self.utterances.put(None)

    def _push(self, block: Any) -> list[Any]:
        """Segment a block; samples that are not finite (a broken driver) become silence, said once."""
        try:
            return self.segmenter.push(block)
        except BadAudio as exc:
            if not self._bad_audio_reported:
                self._bad_audio_reported = True
                self._loop.call_soon_threadsafe(self.report, "bad_audio", f"{self.source.name}: {exc}; played as silence")
            return self.segmenter.push(np.nan_to_num(block, nan=0.0, posinf=0.0, neginf=0.0))

    async def _route(self, events: list[Any]) -> None:
        loop = asyncio.get_running_loop()
        for event in events:
            if isinstance(event, Utterance):
                self.counters.emitted[event.id] = (loop.time(), self.segmenter.position)
                self.counters.last_id = max(self.counters.last_id, event.id)
                if self._partial is not None and self._partial.id <= event.id:
                    self._partial = None
                await self.utterances.put(event)
            elif self.source.live:  # a SpeechUpdate: only the newest matters, and only live
                self._partial = event
                self._wake.set()

    async def _analyse(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if self.utterances.empty() and self._partial is not None:
                update, self._partial = self._partial, None
                await self._run_partial(loop, update)
                continue
            if self.utterances.empty():
                self._wake.clear()
                getter = asyncio.ensure_future(self.utterances.get())
                waker = asyncio.ensure_future(self._wake.wait())
                done, _ = await asyncio.wait({getter, waker}, return_when=asyncio.FIRST_COMPLETED)
                waker.cancel()
                if getter not in done:
                    getter.cancel()
                    continue
                utterance = getter.result()
            else:
                utterance = self.utterances.get_nowait()
            if utterance is None:
                return
            await self._run_utterance(loop, utterance)

    async def _run_partial(self, loop: asyncio.AbstractEventLoop, update: Any) -> None:
        try:
            body = await loop.run_in_executor(self._asr, self.analyzer.partial, update)
        except Exception as exc:  # a failed preview is not worth stopping for; the utterance will say
            print(f"streamer: partial analysis failed: {exc!r}", file=sys.stderr)
            return
        if body is not None and update.id > self.counters.last_id:  # else the utterance overtook its preview
            self.log.publish("partial", body)

    async def _run_utterance(self, loop: asyncio.AbstractEventLoop, utterance: Any) -> None:
        try:
            body = await loop.run_in_executor(self._asr, self.analyzer.analyze, utterance)
        except Exception as exc:
            self.report("analysis_failed", f"utterance {utterance.id} could not be analysed ({exc!r}); going on",
                        utterance_id=utterance.id)
            return
        finally:
            emitted, position = self.counters.emitted.pop(utterance.id, (loop.time(), utterance.end))
        if body is None:
            return  # no speech after all (Whisper's no-speech filter)
        # Live audio: the silence the segmenter had to hear after the speech also counts.
        waited_s = max(position - utterance.end, 0.0) if self.source.live else 0.0
        latency = dict(body.get("latency_ms") or {})
        latency["end_to_message"] = round((loop.time() - emitted + waited_s) * 1000.0, 1)
        self.counters.utterances += 1
        self.log.publish("utterance", {**body, "latency_ms": latency})

    async def _status(self) -> None:
        while True:
            await asyncio.sleep(STATUS_EVERY_S)
            self.publish_status()

    def _finish(self) -> None:
        reason = self.end_reason or "shutdown"
        summary = feed.session_end_body(reason, self.counters.utterances, self.counters.audio_s,
                                        self.frames.dropped_frames)
        self.publish_status()
        self.log.publish("session_end", summary)
        if self.frames.dropped_frames:
            print(f"streamer: {self.frames.dropped_frames} audio frames ({self.frames.dropped_samples / SAMPLE_RATE:.1f} s) "
                  "were dropped because analysis fell behind", file=sys.stderr)
        if self.recorder is not None:
            self.recorder.close(summary)
        self._vad.shutdown(wait=False, cancel_futures=True)
        self._asr.shutdown(wait=False, cancel_futures=True)
