"""The Session pipeline in process: the real segmenter on real (espeak-ng) speech, a source adapter
that hands audio over faster than real time, and an analyzer whose speed the test controls, so the
seams between capture, VAD and analysis are pinned exactly without running Whisper.
"""
from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from core.audio import SAMPLE_RATE, decode
from streamer import feed, sources
from streamer.config import Config, override
from streamer.segmenter import Segmenter
from streamer.session import UTTERANCE_QUEUE, Session
from testsupport.pipeline import BurstSource, ControlledAnalyzer
from testsupport.speech import SENTENCES, require_espeak, speech_with_silences


@pytest.fixture(scope="module")
def speech_file(tmp_path_factory):
    """Six sentences with a second of silence around each."""
    require_espeak()
    path, _spans = speech_with_silences(SENTENCES, 1.0, tmp_path_factory.mktemp("speech") / "talk.wav")
    return path


@pytest.fixture(scope="module")
def speech(speech_file) -> np.ndarray:
    return decode(speech_file)


def session_for(source, analyzer, queue_s: float = 20.0) -> tuple[Session, feed.SessionLog]:
    config = override(Config(), {"audio.queue_s": queue_s})
    log = feed.SessionLog("test-session")
    return Session(config, source, Segmenter(config.vad), analyzer, log), log


def of_type(log: feed.SessionLog, type_: str) -> list[dict]:
    return [e.message for e in log.after(0) if e.message["type"] == type_]


def test_a_file_waits_for_a_slow_analyzer_and_loses_nothing(speech, speech_file):
    """A file played as fast as possible is not live: the segmenter waits on the bounded utterance
    queue, the frame queue fills, and the file waits for room, so every utterance comes out."""
    path = speech_file
    analyzer = ControlledAnalyzer(delay_s=0.15)
    session, log = session_for(sources.file_source(str(path), realtime=False, block=512), analyzer, queue_s=1.0)
    most_waiting = 0

    async def main() -> str:
        nonlocal most_waiting
        running = asyncio.create_task(session.run())
        while not running.done():
            most_waiting = max(most_waiting, session.utterances.qsize())
            assert session.frames.samples <= session.frames.max_samples + SAMPLE_RATE  # one chunk may top it up
            await asyncio.sleep(0.01)
        return await running

    assert asyncio.run(main()) == "source ended"
    end = of_type(log, "session_end")[-1]
    assert end["dropped_frames"] == 0 and session.frames.dropped_samples == 0
    assert [m["utterance_id"] for m in of_type(log, "utterance")] == list(range(1, len(SENTENCES) + 1))
    assert analyzer.analyzed == list(range(1, len(SENTENCES) + 1))
    assert end["duration"] == pytest.approx(len(speech) / SAMPLE_RATE, abs=1e-3)
    assert most_waiting == UTTERANCE_QUEUE  # the segmenter really did have to wait


def test_a_live_source_drops_what_does_not_fit_and_counts_it_exactly(speech):
    """Analysis stalls; the live source keeps offering. What the segmenter did not take and the
    queue could not hold is dropped, counted in status and session_end, and never analysed."""
    gate = threading.Event()
    analyzer = ControlledAnalyzer(gate=gate)
    audio = np.concatenate([speech, speech])  # twelve utterances: more than analyzer + queue + one in hand
    source = BurstSource(audio)
    session, log = session_for(source, analyzer, queue_s=1.0)

    async def main() -> tuple[str, int, int]:
        running = asyncio.create_task(session.run())
        await source.offered.wait()
        await asyncio.sleep(0.3)  # the VAD thread finishes what it already took
        consumed = int(round(session.counters.audio_s * SAMPLE_RATE))
        waiting = session.frames.samples
        session.publish_status()
        gate.set()
        return await running, consumed, waiting

    reason, consumed, waiting = asyncio.run(main())
    frames = session.frames
    assert reason == "source ended" and frames.dropped_frames > 0
    assert frames.dropped_samples + waiting + consumed == len(audio)  # every sample accounted for, at the stall
    assert waiting <= frames.max_samples
    end = of_type(log, "session_end")[-1]
    assert end["dropped_frames"] == frames.dropped_frames
    assert end["duration"] == pytest.approx((len(audio) - frames.dropped_samples) / SAMPLE_RATE, abs=1e-3)
    assert of_type(log, "status")[-2]["dropped_frames"] == frames.dropped_frames
    published = [m["utterance_id"] for m in of_type(log, "utterance")]
    assert published == sorted(published) and len(published) < 2 * len(SENTENCES)


def test_lag_is_the_queued_audio_plus_the_oldest_utterance_still_waiting(speech):
    gate = threading.Event()
    source = BurstSource(speech, released=asyncio.Event())
    session, log = session_for(source, ControlledAnalyzer(gate=gate), queue_s=30.0)

    async def main() -> tuple[float, float, float]:
        running = asyncio.create_task(session.run())
        await source.offered.wait()
        await asyncio.sleep(0.5)
        loop = asyncio.get_running_loop()
        oldest = min(t for t, _ in session.counters.emitted.values())
        lag, expected = session.lag_s(), session.frames.queued_s + (loop.time() - oldest)
        gate.set()
        source.released.set()
        await running
        return lag, expected, session.lag_s()

    lag, expected, after = asyncio.run(main())
    assert lag == pytest.approx(expected, abs=0.005) and lag >= 0.5
    assert after == pytest.approx(0.0, abs=0.01)  # nothing waits once everything is analysed


def test_a_partial_overtaken_by_its_utterance_is_never_published(speech):
    """A preview still computing when its utterance is cut must not appear after (or instead of)
    the finished utterance."""
    analyzer = ControlledAnalyzer(partial_s=0.4)
    source = BurstSource(speech)
    session, log = session_for(source, analyzer)
    analyzer.session = session
    asyncio.run(session.run())
    messages = [e.message for e in log.after(0)]
    finished: set[int] = set()
    for message in messages:
        if message["type"] == "utterance":
            finished.add(message["utterance_id"])
        elif message["type"] == "partial":
            assert message["utterance_id"] not in finished, message
    overtaken = [i for i, newest in analyzer.partials if newest >= i]
    assert overtaken, analyzer.partials  # previews ran, and at least one lost the race to its utterance
    for i in set(i for i, _ in analyzer.partials):
        published = sum(m["type"] == "partial" and m["utterance_id"] == i for m in messages)
        in_time = sum(j == i and newest < i for j, newest in analyzer.partials)
        assert published <= in_time, (i, analyzer.partials)
