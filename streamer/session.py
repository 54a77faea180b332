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
import traceback
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
from streamer.rooms import Room
from streamer.segmenter import BadAudio, EagerEnd, Utterance
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
    eager_used: int = 0  # utterances published from their eager analysis
    eager_dropped: int = 0  # eager analyses thrown away because speech went on
    eager_dropped_asr_ms: float = 0.0  # the ASR time those cost


@dataclass
class Speculation:
    """An eager end's analysis, running or done: the utterance's body if the pause lasts."""

    utterance: Utterance
    body: asyncio.Future


@dataclass
class Job:
    """An utterance for the analyzer; with `speculation`, its body is already being computed."""

    utterance: Utterance
    speculation: Speculation | None = None


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
        room: Room | None = None,
    ) -> None:
        """`room`: the room this session is, when a server serves it (its clients, its /mic)."""
        self.config = config
        self.source = source
        self.segmenter = segmenter
        self.analyzer = analyzer
        self.log = log
        self.server = server
        self.recorder = recorder
        self.room = room
        self.frames = sources.FrameQueue(config.audio.queue_s)
        self.utterances: asyncio.Queue = asyncio.Queue(UTTERANCE_QUEUE)
        self.counters = Counters()
        self.state = "starting"
        self.end_reason: str | None = None
        self._partial: Any = None
        self._speculations: dict[int, Speculation] = {}  # utterance id -> its latest eager analysis
        self._bad_audio_reported = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._vad = ThreadPoolExecutor(1, thread_name_prefix="vad")
        self._asr = ThreadPoolExecutor(1, thread_name_prefix="analyzer")
        if room is not None and isinstance(source, sources.BrowserSource):
            room.browser = source

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

    def state_name(self) -> str:
        if self.end_reason:
            return "ended"
        if isinstance(self.source, (sources.BrowserSource, sources.MicSource)):
            return "listening" if self.source.connected else "waiting"
        return self.state

    def publish_status(self) -> None:
        self.log.publish("status", feed.status_body(
            self.segmenter.take_peak_level_db(), self.segmenter.speaking,
            self.lag_s(), self.frames.dropped_frames,
            self.server.clients_of(self.room.name) if self.server and self.room else 0,
            self.source.name, self.state_name()))

    # -- the pipeline -------------------------------------------------------------------------

    async def run(self) -> str:
        """Analyse until the source ends (or fails); returns the end reason. Cancel to stop."""
        self.state = "listening" if self.source.live else "analysing"
        self._loop = asyncio.get_running_loop()
        tasks = [asyncio.create_task(coro) for coro in (self._capture(), self._segment(), self._status())]
        analyse = asyncio.create_task(self._analyse())
        names = {tasks[0]: "capture", tasks[1]: "segmenter", tasks[2]: "status", analyse: "analysis"}
        try:
            pending = {*tasks, analyse}
            while analyse in pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                crashed = [task for task in done if task.exception() is not None]
                if crashed:  # a bug: say so in the feed and end the session, rather than hang or hide it
                    self._crashed(names[crashed[0]], crashed[0].exception())
                    break
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

    def _crashed(self, part: str, exc: BaseException) -> None:
        traceback.print_exception(exc, file=sys.stderr)
        self.end_reason = "failed"
        self.report("pipeline_failed", f"the session's {part} stopped ({type(exc).__name__}: {exc}); the session ends "
                    "here, everything before this message was analysed and recorded. Please report it with the log")

    def recording_failed(self, reason: str) -> None:
        """The recorder's failure callback (on the event loop): the session goes on without recording."""
        self.report("recording_failed", f"recording stopped: {reason}; the live analysis goes on, what was recorded "
                    "before this message is kept")

    async def _capture(self) -> None:
        try:
            await self.source.run(self.frames, self.report)
        except MicUnavailable as exc:
            if self.room is None:
                raise
            self.report("no_microphone", f"{exc}. Serving on: the dashboard's microphone button is the input now")
            self.source = sources.BrowserSource()
            self.room.browser = self.source
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
                speculation = self._speculations.pop(event.id, None)
                if speculation is not None and not speculation.utterance.same_as(event):
                    self._drop(speculation)
                    speculation = None
                await self.utterances.put(Job(event, speculation))
            elif isinstance(event, EagerEnd):
                self._speculate(loop, event.utterance)
            elif self.source.live:  # a SpeechUpdate: only the newest matters, and only live
                self._partial = event
                self._wake.set()

    # -- eager end of utterance ------------------------------------------------------------
    # After vad.eager_silence_ms of silence the segmenter says which utterance it will emit if the
    # pause lasts; it is analysed at once and shown as a partial. If the pause lasts, that analysis
    # is the utterance's (the same audio: no second ASR); if speech resumes, it is dropped.

    def _speculate(self, loop: asyncio.AbstractEventLoop, utterance: Utterance) -> None:
        if not self.source.live or not self.utterances.empty():
            return  # a file played fast, or analysis behind: nobody waits for an early result
        previous = self._speculations.pop(utterance.id, None)
        if previous is not None:
            self._drop(previous)
        speculation = Speculation(utterance, loop.run_in_executor(self._asr, self.analyzer.analyze, utterance))
        self._speculations[utterance.id] = speculation
        speculation.body.add_done_callback(lambda _future: self._speculated(speculation))

    def _speculated(self, speculation: Speculation) -> None:
        """The eager analysis is done: while its utterance has not been cut yet, show it as a partial."""
        future = speculation.body
        if self._speculations.get(speculation.utterance.id) is not speculation or future.cancelled():
            return
        if future.exception() is None and future.result() is not None:
            body = {k: v for k, v in future.result().items() if k != "latency_ms"}
            self.log.publish("partial", {**body, "eager": True})

    def _drop(self, speculation: Speculation) -> None:
        self.counters.eager_dropped += 1
        if speculation.body.cancel():  # not started yet: it costs nothing
            return

        def count(future: asyncio.Future) -> None:
            if not future.cancelled() and future.exception() is None and future.result() is not None:
                self.counters.eager_dropped_asr_ms += future.result()["latency_ms"].get("asr") or 0.0

        speculation.body.add_done_callback(count)

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
            await self._run_utterance(loop, utterance.utterance, utterance.speculation)

    async def _run_partial(self, loop: asyncio.AbstractEventLoop, update: Any) -> None:
        try:
            body = await loop.run_in_executor(self._asr, self.analyzer.partial, update)
        except Exception as exc:  # a failed preview is not worth stopping for; the utterance will say
            print(f"streamer: partial analysis failed: {exc!r}", file=sys.stderr)
            return
        if body is not None and update.id > self.counters.last_id:  # else the utterance overtook its preview
            self.log.publish("partial", body)

    async def _run_utterance(self, loop: asyncio.AbstractEventLoop, utterance: Utterance,
                             speculation: Speculation | None) -> None:
        try:
            if speculation is not None:  # the pause lasted: the eager analysis is this utterance's
                body = await speculation.body
                self.counters.eager_used += 1
            else:
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
        speech_end = utterance.speech_end if utterance.speech_end is not None else utterance.end
        waited_s = max(position - speech_end, 0.0) if self.source.live else 0.0
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
        c = self.counters
        summary = feed.session_end_body(reason, c.utterances, c.audio_s, self.frames.dropped_frames,
                                        {"used": c.eager_used, "dropped": c.eager_dropped,
                                         "dropped_asr_ms": round(c.eager_dropped_asr_ms, 1)})
        self.publish_status()
        self.log.publish("session_end", summary)
        if self.frames.dropped_frames:
            print(f"streamer: {self.frames.dropped_frames} audio frames ({self.frames.dropped_samples / SAMPLE_RATE:.1f} s) "
                  "were dropped because analysis fell behind", file=sys.stderr)
        if self.recorder is not None:
            self.recorder.close(summary)
        self._vad.shutdown(wait=False, cancel_futures=True)
        self._asr.shutdown(wait=False, cancel_futures=True)
