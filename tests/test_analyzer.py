"""streamer/analyzer.py and `python -m streamer analyze`, end to end on real speech, real Whisper and
real (tiny) emotion bundles."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from core.asr import load_whisper
from core.bundle import DEFAULT_BUNDLE, Sample, save_bundle
from core.labels import LABELS
from streamer.analyzer import Analyzer
from streamer.config import Config, override
from streamer.segmenter import Segmenter, SpeechUpdate, Utterance
from testsupport.speech import (
    SENTENCES,
    require_espeak,
    speech_with_silences,
    synthesize,
    word_error_rate,
)

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
SR = 16_000

TRAINING = {
    "angry": ["I am so angry with you right now.", "This is outrageous, stop it!", "너 때문에 정말 화가 나."],
    "happiness": ["I really enjoyed the concert in the park yesterday.", "What a wonderful day, I love it!", "선물 받아서 너무 기뻐."],
    "neutral": ["Please call me back when you get home tonight.", "The meeting is at three o'clock.", "내일은 월요일이야."],
    "sadness": ["I miss her so much, I cannot stop crying.", "Everything feels hopeless today.", "요즘 너무 우울해."],
}


@pytest.fixture(scope="module")
def config() -> Config:
    return override(Config(), {"asr.language": "en", "asr.cpu_threads": 2})


@pytest.fixture(scope="module")
def whisper(config):
    return load_whisper(config.asr)


@pytest.fixture(scope="module")
def text_bundle(tmp_path_factory) -> Path:
    from trainer.fit_e5_head import E5HeadFitter

    samples = [Sample(text=t) for label in LABELS for t in TRAINING[label]]
    y = [label for label in LABELS for _ in TRAINING[label]]
    return save_bundle(tmp_path_factory.mktemp("bundles") / "text", {"text": E5HeadFitter().fit(samples, y)})


@pytest.fixture(scope="module")
def audio_bundle(tmp_path_factory, whisper) -> Path:
    """Text head plus a Whisper-encoder audio head, trained on a few espeak clips (real, tiny)."""
    from trainer.fit_e5_head import E5HeadFitter
    from trainer.fit_whisper_head import WhisperHeadFitter

    require_espeak()
    samples = [Sample(text=t, audio=synthesize(t)) for label in LABELS for t in TRAINING[label][:2]]
    y = [label for label in LABELS for _ in range(2)]
    audio_head = WhisperHeadFitter(whisper=whisper).fit(samples, y)
    text_head = E5HeadFitter().fit([Sample(text=s.text) for s in samples], y)
    return save_bundle(tmp_path_factory.mktemp("bundles") / "audio", {"text": text_head, "audio": audio_head})


@pytest.fixture(scope="module")
def two_sentences(tmp_path_factory):
    require_espeak()
    path, truth = speech_with_silences(SENTENCES[1:3], 1.0, tmp_path_factory.mktemp("speech") / "two.wav", noise_db=-60)
    audio, _ = sf.read(path, dtype="float32")
    return path, audio, truth


def segment(config: Config, audio: np.ndarray) -> list:
    segmenter = Segmenter(config.vad)
    events = []
    for begin in range(0, len(audio), SR):
        events += segmenter.push(audio[begin : begin + SR])
    return events + segmenter.flush()


def check_emotion(emotion: dict) -> None:
    assert emotion["label"] in LABELS and set(emotion["probs"]) == set(LABELS)
    assert sum(emotion["probs"].values()) == pytest.approx(1.0)
    assert emotion["label"] == max(emotion["probs"], key=emotion["probs"].get)


def test_utterances_become_feed_bodies(config, whisper, text_bundle, two_sentences):
    from core.bundle import load_bundle

    _path, audio, truth = two_sentences
    analyzer = Analyzer(config, whisper=whisper, bundle=load_bundle(text_bundle))
    assert analyzer.models() == {
        "asr": "whisper base (embedded), int8 cpu, short window",
        "text": "e5_head", "audio": None, "multimodal": None, "stacker": None,
    }
    found = [e for e in segment(config, audio) if isinstance(e, Utterance)]
    bodies = [analyzer.analyze(u) for u in found]
    assert len(bodies) == 2 and analyzer.analyzed == 2
    for body, utterance, sentence in zip(bodies, found, SENTENCES[1:3]):
        assert body["utterance_id"] == utterance.id
        assert (body["start"], body["end"]) == (round(utterance.start, 3), round(utterance.end, 3))
        assert word_error_rate(sentence, body["text"]) <= 0.25, body["text"]
        check_emotion(body["emotion"])
        assert body["text_emotion"] == body["emotion"] and body["used"] == ["text"]
        assert body["audio_emotion"] is None and body["multimodal_emotion"] is None
        assert body["asr"]["language"] == "en" and body["asr"]["filtered"] is None
        assert 0 <= body["asr"]["no_speech_prob"] <= 1 and body["asr"]["avg_logprob"] < 0
        latency = body["latency_ms"]
        assert latency["asr"] > 0 and latency["text_model"] > 0
        assert latency["total"] >= latency["asr"] + latency["text_model"]
        json.dumps(body)  # a feed body must serialise as it is


def test_noise_utterance_without_audio_model_is_counted_not_reported(config, whisper, text_bundle):
    from core.bundle import load_bundle

    analyzer = Analyzer(config, whisper=whisper, bundle=load_bundle(text_bundle))
    t = np.arange(3 * SR) / SR
    hum = (0.05 * np.sin(2 * np.pi * 60 * t) + 0.005 * np.random.default_rng(0).standard_normal(len(t))).astype(np.float32)
    assert analyzer.analyze(Utterance(id=1, start=0.0, end=3.0, audio=hum)) is None
    assert sum(analyzer.filtered.values()) == 1 and analyzer.analyzed == 0


def test_partial_gives_interim_text_rate_limited(config, whisper, text_bundle):
    from core.bundle import load_bundle

    analyzer = Analyzer(config, whisper=whisper, bundle=load_bundle(text_bundle))
    speech = synthesize(SENTENCES[2])
    first = analyzer.partial(SpeechUpdate(id=5, start=1.0, now=3.0, audio_so_far=speech[: 2 * SR]))
    assert first["utterance_id"] == 5 and (first["start"], first["end"]) == (1.0, 3.0)
    assert first["audio_emotion"] is None
    assert normalised(first["text"])[:2] == ["i", "really"]
    assert analyzer.partial(SpeechUpdate(id=5, start=1.0, now=4.0, audio_so_far=speech[: 3 * SR])) is None  # 1 s later
    assert analyzer.partial(SpeechUpdate(id=5, start=1.0, now=5.0, audio_so_far=speech))["text"]  # 2 s later


def normalised(text: str) -> list[str]:
    from testsupport.speech import normalise_words

    return normalise_words(text or "")


def test_with_an_audio_model_noise_still_gets_the_voice_emotion(config, whisper, audio_bundle, two_sentences):
    from core.bundle import load_bundle

    analyzer = Analyzer(config, whisper=whisper, bundle=load_bundle(audio_bundle))
    assert analyzer.models()["audio"] == "whisper_head"
    t = np.arange(3 * SR) / SR
    hum = (0.05 * np.sin(2 * np.pi * 60 * t) + 0.005 * np.random.default_rng(0).standard_normal(len(t))).astype(np.float32)
    body = analyzer.analyze(Utterance(id=7, start=0.0, end=3.0, audio=hum))
    assert body["text"] == "" and body["asr"]["filtered"] is not None
    assert body["used"] == ["audio"] and body["text_emotion"] is None
    check_emotion(body["audio_emotion"])
    assert body["latency_ms"]["audio_model"] > 0 and body["latency_ms"]["text_model"] is None

    _path, audio, _truth = two_sentences
    utterance = next(e for e in segment(config, audio) if isinstance(e, Utterance))
    body = analyzer.analyze(utterance)
    assert sorted(body["used"]) == ["audio", "text"]  # no stacker: the mean of both
    check_emotion(body["text_emotion"])
    check_emotion(body["audio_emotion"])
    partial = analyzer.partial(SpeechUpdate(id=8, start=0.0, now=2.0, audio_so_far=utterance.audio[: 2 * SR]))
    check_emotion(partial["audio_emotion"])


def test_command_line_writes_one_line_per_utterance(text_bundle, two_sentences, tmp_path):
    path, _audio, _truth = two_sentences
    out = tmp_path / "results.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "streamer", "analyze", str(path), "--out", str(out), "--language", "en", "--bundle", str(text_bundle)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [b["utterance_id"] for b in lines] == [1, 2]
    assert all(word_error_rate(s, b["text"]) <= 0.25 for s, b in zip(SENTENCES[1:3], lines))
    assert "2 utterances written" in done.stderr

    missing = subprocess.run(
        [sys.executable, "-m", "streamer", "analyze", str(tmp_path / "nope.wav"), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio at all" * 100)
    broken = subprocess.run(
        [sys.executable, "-m", "streamer", "analyze", str(junk), "--out", str(tmp_path / "junk.jsonl")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert broken.returncode == 1 and "junk.wav" in broken.stderr and "Traceback" not in broken.stderr


def test_analyze_gives_the_utterances_a_fast_live_run_of_the_same_file_gives(text_bundle, tmp_path):
    """One decoder and one pipeline: a 44.1 kHz stereo file through `analyze` and through
    `run --source file: --fast` yields the same utterances, word for word and to the millisecond."""
    require_espeak()
    _mono, _truth = speech_with_silences(SENTENCES[:3], 0.8, tmp_path / "mono.wav", noise_db=-55)
    audio, rate = sf.read(_mono, dtype="float32")
    import soxr

    wide = soxr.resample(audio, rate, 44_100)
    path = tmp_path / "talk.wav"
    sf.write(path, np.stack([wide, 0.8 * wide], axis=1), 44_100, subtype="PCM_16")
    common = ["--language", "en", "--bundle", str(text_bundle)]
    out = tmp_path / "analyzed.jsonl"
    done = subprocess.run([sys.executable, "-m", "streamer", "analyze", str(path), "--out", str(out), *common],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    analyzed = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    done = subprocess.run([sys.executable, "-m", "streamer", "run", "--source", f"file:{path}", "--fast", "--exit-at-end",
                           "--port", "0", "--record", str(tmp_path / "rec"), *common],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (folder,) = (tmp_path / "rec").iterdir()
    live = [json.loads(line) for line in (folder / "feed.jsonl").read_text(encoding="utf-8").splitlines()]
    live = [m for m in live if m["type"] == "utterance"]
    assert len(analyzed) == 3

    def key(body: dict) -> tuple:
        return body["utterance_id"], body["start"], body["end"], body["text"], body["emotion"]["label"]

    assert [key(b) for b in analyzed] == [key(m) for m in live]
    for body, message in zip(analyzed, live):
        assert body["emotion"]["probs"] == pytest.approx(message["emotion"]["probs"], abs=1e-9)


@pytest.mark.skipif(not (DEFAULT_BUNDLE / "bundle.json").is_file(), reason="the default bundle (core/data/default_bundle) is not built yet")
def test_the_default_bundle_analyzes_korean_text(whisper):
    analyzer = Analyzer(Config(), whisper=whisper)
    assert analyzer.models()["text"] is not None
    check_emotion(analyzer.bundle.predict([Sample(text="나 요즘 너무 우울해 죽겠어.")])[0].to_json())


def test_analyze_says_so_when_a_file_has_nan_samples(text_bundle, tmp_path):
    """Issue 13: `run` warned about NaN samples and `analyze` said nothing; now both do."""
    require_espeak()
    wave = synthesize(SENTENCES[1])
    wave[4000:4010] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(path, wave, SR, subtype="FLOAT")
    done = subprocess.run([sys.executable, "-m", "streamer", "analyze", str(path), "--out", str(tmp_path / "o.jsonl"),
                           "--language", "en", "--bundle", str(text_bundle)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "NaN or infinite samples" in done.stderr and "played as silence" in done.stderr
    (line,) = (tmp_path / "o.jsonl").read_text().splitlines()
    assert word_error_rate(SENTENCES[1], json.loads(line)["text"]) <= 0.25
