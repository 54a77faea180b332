"""streamer/vad.py and streamer/segmenter.py on real espeak-ng speech, noise and silence."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from streamer.config import VadConfig
from streamer.segmenter import BadAudio, Segmenter, SpeechUpdate, Utterance
from streamer.vad import CHUNK, SileroVad
from testsupport.speech import (
    SENTENCES,
    require_espeak,
    speech_with_silences,
    synthesize,
    trim,
)

SR = 16_000


def run(segmenter: Segmenter, audio: np.ndarray, block: int) -> list:
    events = []
    for begin in range(0, len(audio), block):
        events += segmenter.push(audio[begin : begin + block])
    return events + segmenter.flush()


def utterances(events: list) -> list[Utterance]:
    return [e for e in events if isinstance(e, Utterance)]


@pytest.fixture(scope="module")
def vad() -> SileroVad:
    return SileroVad()


@pytest.fixture(scope="module")
def four_sentences(tmp_path_factory):
    require_espeak()
    path, truth = speech_with_silences(SENTENCES[:4], 1.0, tmp_path_factory.mktemp("speech") / "four.wav", noise_db=-60)
    audio, rate = sf.read(path, dtype="float32")
    assert rate == SR
    return audio, truth


def test_streaming_vad_matches_faster_whispers_offline_run(four_sentences):
    from faster_whisper.vad import get_vad_model

    audio = four_sentences[0][: 200 * CHUNK]
    offline = get_vad_model()(audio).ravel()
    vad = SileroVad()
    streamed = np.concatenate([vad(part) for part in np.array_split(audio.reshape(-1, CHUNK), 7)])
    np.testing.assert_allclose(streamed, offline, atol=1e-6)
    assert streamed.max() > 0.9 and streamed.min() < 0.1  # it did see speech and silence


def test_one_utterance_per_sentence_close_to_the_truth(four_sentences, vad):
    audio, truth = four_sentences
    cfg = VadConfig()
    pad = cfg.speech_pad_ms / 1000
    found = utterances(run(Segmenter(cfg, vad), audio, 512 + 37))
    assert [u.id for u in found] == [1, 2, 3, 4]
    for u, (start, end) in zip(found, truth):
        assert abs(u.start - (start - pad)) <= 0.25, (u.start, start)
        assert abs(u.end - (end + pad)) <= 0.3, (u.end, end)
        assert len(u.audio) == round((u.end - u.start) * SR)
        np.testing.assert_array_equal(u.audio, audio[round(u.start * SR) : round(u.end * SR)])


def test_block_size_does_not_change_the_result(four_sentences, vad):
    audio, _ = four_sentences
    spans = []
    for block in (160, 512, 16000, len(audio)):
        spans.append([(u.start, u.end) for u in utterances(run(Segmenter(VadConfig(), vad), audio, block))])
    assert spans[0] == spans[1] == spans[2] == spans[3]


def test_speech_updates_come_about_once_a_second_with_the_upcoming_id(four_sentences, vad):
    audio, _ = four_sentences
    events = run(Segmenter(VadConfig(), vad), audio, 1600)
    finished: set[int] = set()
    last_now: dict[int, float] = {}
    for event in events:
        if isinstance(event, Utterance):
            finished.add(event.id)
            continue
        if not isinstance(event, SpeechUpdate):  # the eager ends have their own tests
            continue
        assert event.id not in finished  # never after its utterance
        assert len(event.audio_so_far) == round((event.now - event.start) * SR)
        if event.id in last_now:
            assert 0.95 <= event.now - last_now[event.id] <= 1.1
        last_now[event.id] = event.now
    assert set(last_now) == {1, 2, 3, 4}  # every 2.4-2.9 s sentence had at least one update


@pytest.mark.parametrize("kind", ["white_noise", "loud_white_noise", "hum", "silence"])
def test_noise_hum_and_silence_make_no_utterance(kind, vad):
    rng = np.random.default_rng(3)
    t = np.arange(30 * SR) / SR
    audio = {
        "white_noise": 0.05 * rng.standard_normal(len(t)),
        "loud_white_noise": 0.5 * rng.standard_normal(len(t)),
        "hum": 0.3 * np.sin(2 * np.pi * 50 * t) + 0.1 * np.sin(2 * np.pi * 150 * t),
        "silence": np.zeros(len(t)),
    }[kind].astype(np.float32)
    segmenter = Segmenter(VadConfig(), vad)
    assert run(segmenter, audio, SR) == []
    assert not segmenter.speaking
    expected_db = 20 * np.log10(np.sqrt(np.mean(audio[-SR:].astype(np.float64) ** 2))) if kind != "silence" else -120.0
    assert abs(segmenter.level_db - expected_db) < 1.0


def test_the_peak_level_keeps_a_short_sound_until_it_is_taken(vad):
    """A status sent once a second shows the loudest moment since the previous one, not the last 0.3 s."""
    segmenter = Segmenter(VadConfig(), vad)
    assert segmenter.take_peak_level_db() == -120.0  # no audio yet
    click = (0.5 * np.sin(2 * np.pi * 1000 * np.arange(3 * CHUNK) / SR)).astype(np.float32)  # 96 ms
    window = round(0.3 * SR / CHUNK)  # chunks in the short-term window
    expected_db = 10 * np.log10(0.5**2 / 2 * 3 / window)  # the click's power spread over the window
    segmenter.push(np.zeros(10 * CHUNK, np.float32))
    segmenter.push(np.concatenate([click, np.zeros(SR - 3 * CHUNK, np.float32)]))  # then ~0.9 s of silence
    assert segmenter.level_db == -120.0  # the last 0.3 s alone: silent
    assert segmenter.take_peak_level_db() == pytest.approx(expected_db, abs=0.1)
    assert segmenter.take_peak_level_db() == -120.0  # taken: the next interval starts afresh
    segmenter.push(np.zeros(SR, np.float32))
    assert segmenter.take_peak_level_db() == -120.0


def test_an_hour_of_zeros_in_one_second_blocks_makes_no_event():
    segmenter = Segmenter(VadConfig())
    block = np.zeros(SR, np.float32)
    for _ in range(3600):
        assert segmenter.push(block) == []
    assert segmenter.flush() == []
    assert segmenter.position == 3600.0


def test_long_speech_is_split_at_max_utterance_s(vad, tmp_path):
    require_espeak()
    path, truth = speech_with_silences(SENTENCES, 0.15, tmp_path / "long.wav")
    audio, _ = sf.read(path, dtype="float32")
    found = utterances(run(Segmenter(VadConfig(max_utterance_s=5.0), vad), audio, 4000))
    assert len(found) >= 3
    assert all(u.end - u.start <= 5.0 + 1e-9 for u in found)
    for before, after in zip(found, found[1:]):
        assert after.start == before.end  # pieces of one speech run touch, nothing lost or repeated
    assert found[0].start <= truth[0][0] and found[-1].end >= truth[-1][1]
    joined = np.concatenate([u.audio for u in found])
    np.testing.assert_array_equal(joined, audio[round(found[0].start * SR) : round(found[-1].end * SR)])


def test_short_bursts_are_dropped_by_min_speech(vad):
    require_espeak()
    word = np.concatenate([np.zeros(SR, np.float32), trim(synthesize("Hi.")), np.zeros(SR, np.float32)])
    assert len(utterances(run(Segmenter(VadConfig(), vad), word, SR))) == 1
    assert utterances(run(Segmenter(VadConfig(min_speech_ms=2000), vad), word, SR)) == []


def test_flush_closes_speech_in_progress(vad):
    require_espeak()
    speech = trim(synthesize(SENTENCES[1]))
    audio = np.concatenate([np.zeros(SR // 2, np.float32), speech[: len(speech) // 2]])
    segmenter = Segmenter(VadConfig(), vad)
    assert utterances(segmenter.push(audio)) == []
    assert segmenter.speaking
    (utterance,) = segmenter.flush()
    assert utterance.end == pytest.approx(len(audio) / SR)
    assert not segmenter.speaking


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.array([0.1, np.nan, 0.2], np.float32), "NaN or infinite"),
        (np.array([np.inf] * 600, np.float32), "NaN or infinite"),
        (np.zeros((600, 2), np.float32), "mono"),
        (np.zeros(600, np.int16), "32768"),
    ],
)
def test_bad_frames_raise_bad_audio_and_consume_nothing(bad, message, vad):
    segmenter = Segmenter(VadConfig(), vad)
    segmenter.push(np.zeros(1000, np.float32))
    with pytest.raises(BadAudio, match=message):
        segmenter.push(bad)
    assert segmenter.position == 1000 / SR
    assert segmenter.push(np.zeros(1000, np.float32)) == []  # and it goes on
    assert segmenter.position == 2000 / SR


def test_invalid_settings_are_refused():
    with pytest.raises(ValueError, match="threshold"):
        Segmenter(VadConfig(threshold=1.5))
    with pytest.raises(ValueError, match="max_utterance_s"):
        Segmenter(VadConfig(max_utterance_s=1.0))


def test_an_eager_end_is_exactly_the_utterance_when_the_pause_lasts(vad):
    """After eager_silence_ms the segmenter previews the utterance it will emit; if the silence
    reaches min_silence_ms, the utterance is that preview, sample for sample."""
    from streamer.segmenter import EagerEnd
    from testsupport.speech import conversation

    require_espeak()
    audio, truth = conversation([[SENTENCES[0]], [SENTENCES[1]]], 0.3, 1.0)
    events = run(Segmenter(VadConfig(eager_silence_ms=200), vad), audio, 1024)
    eager = [e.utterance for e in events if isinstance(e, EagerEnd)]
    final = utterances(events)
    assert len(final) == 2 and len(eager) >= 2
    for utterance in final:
        (preview,) = [e for e in eager if e.id == utterance.id and e.end == utterance.end]
        assert preview.same_as(utterance) and utterance.speech_end < utterance.end
    for event in events:  # each eager end comes before its utterance, 300 ms of audio earlier
        if isinstance(event, EagerEnd):
            assert any(u.id == event.utterance.id for u in final)


def test_a_pause_inside_a_turn_gives_an_eager_end_but_never_an_early_utterance(vad):
    from streamer.segmenter import EagerEnd
    from testsupport.speech import conversation

    require_espeak()
    audio, truth = conversation([[SENTENCES[0], SENTENCES[1]]], 0.35, 1.0)  # a 350 ms breath mid-turn
    events = run(Segmenter(VadConfig(eager_silence_ms=200), vad), audio, 1024)
    (utterance,) = utterances(events)  # one turn, one utterance, cut only after the turn
    assert utterance.start < truth[0][0] and utterance.end > truth[0][1]
    eager = [e.utterance for e in events if isinstance(e, EagerEnd)]
    assert len(eager) == 2  # the breath, and the real end
    assert eager[0].end < truth[0][1] - 1.0 and not eager[0].same_as(utterance)  # the breath's preview was wrong
    assert eager[1].same_as(utterance)
    with pytest.raises(ValueError, match="eager_silence_ms"):
        VadConfig(eager_silence_ms=100)  # shorter than speech_pad_ms: the padded end would not be heard yet
