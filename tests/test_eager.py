"""Eager end of utterance: the result as soon as the speech ends, with nothing published that the
plain path would not publish. Live playback at real time of espeak-ng turns with breaths inside them."""
from __future__ import annotations

import asyncio
import json

import pytest

from core.audio import SAMPLE_RATE
from streamer import feed, sources
from streamer.config import Config, override
from streamer.run import make_segmenter
from streamer.segmenter import Segmenter
from streamer.session import Session
from testsupport.pipeline import ControlledAnalyzer
from testsupport.speech import SENTENCES, conversation, require_espeak, write_wav

pytestmark = pytest.mark.slow
TURNS = [[SENTENCES[0]], [SENTENCES[1], SENTENCES[2]], [SENTENCES[3]]]  # the middle turn has a breath in it


@pytest.fixture(scope="module")
def talk(tmp_path_factory):
    require_espeak()
    audio, truth = conversation(TURNS, pause_in_turn_s=0.35, gap_s=1.0)
    return write_wav(audio, tmp_path_factory.mktemp("eager") / "talk.wav"), truth


def live_session(path, analyzer, eager_ms: int, speakers: bool = True) -> tuple[Session, feed.SessionLog]:
    """A session at real time; with `speakers`, behind the speaker stage (the default pipeline)."""
    config = override(Config(), {"vad.eager_silence_ms": eager_ms})
    log = feed.SessionLog(f"eager-{eager_ms}")
    source = sources.file_source(str(path), realtime=True, block=512)
    segmenter = make_segmenter(config) if speakers else Segmenter(config.vad)
    return Session(config, source, segmenter, analyzer, log), log


def messages(log: feed.SessionLog, type_: str) -> list[dict]:
    return [e.message for e in log.after(0) if e.message["type"] == type_]


@pytest.mark.parametrize("speakers", [True, False], ids=["speaker stage", "segmenter alone"])
def test_a_lasting_pause_publishes_the_eager_analysis_with_no_second_one(talk, speakers):
    path, truth = talk
    analyzer = ControlledAnalyzer(delay_s=0.05)
    session, log = live_session(path, analyzer, 150, speakers)
    assert asyncio.run(session.run()) == "source ended"
    utterances = messages(log, "utterance")
    assert [u["utterance_id"] for u in utterances] == [1, 2, 3]  # a breath inside a turn never cut it
    assert len(analyzer.analyzed) == len(utterances) + session.counters.eager_dropped  # one analysis each, plus the dropped
    assert session.counters.eager_used == 3 and session.counters.eager_dropped >= 1  # the breath's
    end = messages(log, "session_end")[-1]
    assert end["eager"]["used"] == 3 and end["eager"]["dropped"] == session.counters.eager_dropped
    eager_partials = [m for m in messages(log, "partial") if m.get("eager")]
    for utterance in utterances:  # its eager partial came first, with the full text, the same as the utterance
        shown = [p for p in eager_partials if p["utterance_id"] == utterance["utterance_id"] and p["end"] == utterance["end"]]
        # The speaker stage's work runs on the VAD thread (about 0.1-0.3 s per utterance on 2 shared
        # cores); when it makes the cut follow the eager end at once, the utterance itself is first.
        assert len(shown) == 1 or (speakers and not shown)
        for partial in shown:
            assert partial["seq"] < utterance["seq"] and partial["text"] == utterance["text"]
            assert partial["speaker"] == utterance["speaker"]
    assert [u["speaker"]["id"] if speakers else u["speaker"] for u in utterances] == (["S1"] * 3 if speakers else [None] * 3)
    # Each utterance is the eager analysis (eager_used == 3, no second one), so no analysis time follows
    # min_silence; how much sooner that is, is measured by bench/eager_bench.py, not asserted here.
    for utterance, (start, stop) in zip(utterances, truth):
        assert utterance["start"] <= start + 0.05 and utterance["end"] >= stop - 0.05


def test_the_eager_path_publishes_exactly_what_the_plain_path_publishes(talk):
    """Real Whisper and the default bundle on the same audio, once with the eager end and once without."""
    from streamer.run import load_pipeline

    path, _truth = talk
    config = override(Config(), {"asr.language": "en"})
    _segmenter, analyzer = load_pipeline(config)
    runs = {}
    for eager_ms in (150, 0):
        session, log = live_session(path, analyzer.sibling(), eager_ms)
        session.config = override(session.config, {"asr.language": "en"})
        asyncio.run(session.run())
        runs[eager_ms] = [{k: v for k, v in m.items() if k not in ("seq", "t", "session", "latency_ms")}
                          for m in messages(log, "utterance")]
    assert len(runs[0]) == 3 and runs[150] == runs[0], json.dumps(runs, indent=1)[:3000]
    assert all(u["text"] for u in runs[0])


def test_a_silence_shorter_than_the_padding_cannot_be_the_eager_end():
    from core.errors import UserError
    from streamer.config import load_config

    with pytest.raises(UserError, match="eager_silence_ms = 100 must be 0 .off. or at least speech_pad_ms"):
        override(Config(), {"vad.eager_silence_ms": 100})
    assert load_config().vad.eager_silence_ms * SAMPLE_RATE // 1000 >= load_config().vad.speech_pad_ms * SAMPLE_RATE // 1000
