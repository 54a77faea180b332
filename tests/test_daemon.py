"""`python -m streamer` as a user runs it: real subprocesses on loopback, real clients, real files.

The Whisper tests use espeak-ng English (language `en`), which Whisper transcribes well enough to
check words; they are marked slow (they load Whisper base, ~1 minute on 2 cores).
"""
from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from websockets.asyncio.client import connect

from streamer import feed, recorder

ROOT = Path(__file__).resolve().parents[1]
SERVING = re.compile(r" on http://127\.0\.0\.1:(\d+)/|serving http://127\.0\.0\.1:(\d+)/")


class Daemon:
    """A `python -m streamer ...` subprocess; `port` is known once it printed its address."""

    def __init__(self, *args: str, timeout: float = 180.0) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
        self.process = subprocess.Popen([sys.executable, "-m", "streamer", *args], cwd=ROOT, env=env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        match = self.wait_for(SERVING, timeout)
        self.port = int(match.group(1) or match.group(2))
        self.url = f"ws://127.0.0.1:{self.port}/ws"

    def _read(self) -> None:
        for line in self.process.stderr:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def wait_for(self, pattern: re.Pattern | str, timeout: float = 60.0) -> re.Match:
        pattern = re.compile(pattern)
        for line in self.lines:
            if match := pattern.search(line):
                return match
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"daemon exited ({self.process.wait()}) before {pattern.pattern!r}:\n" + "\n".join(self.lines))
            self.lines.append(line)
            if match := pattern.search(line):
                return match
        raise AssertionError(f"no {pattern.pattern!r} within {timeout} s:\n" + "\n".join(self.lines))

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=60)


async def collect(url: str, since: int | None = 0, until: str = "session_end", timeout: float = 120.0,
                  stop_after: int | None = None) -> list[dict]:
    """The messages of a session after `since` (hello first), until one of type `until`."""
    messages: list[dict] = []
    async with connect(url if since is None else f"{url}?since={since}", max_size=None) as ws:
        async with asyncio.timeout(timeout):
            async for frame in ws:
                messages.append(json.loads(frame))
                if messages[-1]["type"] == until or (stop_after and messages[-1].get("seq", 0) >= stop_after
                                                     and not messages[-1].get("reply")):
                    break
    return messages


def numbered(messages: list[dict]) -> list[dict]:
    return [m for m in messages if not m.get("reply")]


def run_cli(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streamer", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


# -- replay ------------------------------------------------------------------------------------


def record_synthetic(root: Path, count: int, *, step_s: float = 0.05, end: bool = True) -> Path:
    log = feed.SessionLog("20260301-090000-beef")
    rec = recorder.Recorder(root, log, {"source": "file:talk.wav", "language": "ko", "models": {"asr": "whisper-base"}})
    rec.write_audio(np.zeros(16000, np.float32))
    for i in range(count):
        kind = "utterance" if i % 4 == 3 else "status"
        log.publish(kind, {"utterance_id": i // 4 + 1, "text": f"문장 {i}"} if kind == "utterance" else {"state": "listening"},
                    t=round(i * step_s, 3))
    if end:
        log.publish("session_end", feed.session_end_body("source ended", count // 4, 1.0), t=count * step_s)
        rec.close({"utterances": count // 4})
    return rec.folder


@pytest.mark.slow
def test_a_restarted_replay_resumes_the_dashboard_with_no_gap_or_repeat(tmp_path):
    folder = record_synthetic(tmp_path, 60)
    first = Daemon("replay", str(folder), "--speed", "1", "--port", "0")
    try:
        before = asyncio.run(collect(first.url, since=0, stop_after=20))
    finally:
        first.stop(signal.SIGKILL)  # the replay dies mid-session
    hello = before[0]
    assert hello["type"] == "hello" and hello["replay"] is True and hello["session"] == "20260301-090000-beef"
    assert hello["models"] == {"asr": "whisper-base"} and hello["language"] == "ko"
    last = numbered(before)[-1]["seq"]
    second = Daemon("replay", str(folder), "--speed", "4", "--port", str(first.port))
    try:
        after = asyncio.run(collect(second.url, since=last))
    finally:
        second.stop()
    seqs = [m["seq"] for m in numbered(before) + numbered(after)]
    assert seqs == list(range(1, 62))
    recorded = recorder.read_feed(folder)
    assert numbered(before) + numbered(after) == recorded  # the very messages, times included


@pytest.mark.slow
def test_replay_of_a_cut_off_recording_ends_it_explicitly(tmp_path):
    folder = record_synthetic(tmp_path, 9, end=False)
    with open(folder / "feed.jsonl", "a", encoding="utf-8") as f:
        f.write('{"type":"status","session":"20260301-090000-beef","seq":10,"t"')  # the interrupted write
    daemon = Daemon("replay", str(folder), "--fast", "--port", "0")
    try:
        messages = numbered(asyncio.run(collect(daemon.url, since=0)))
    finally:
        daemon.stop()
    assert [m["seq"] for m in messages] == list(range(1, 11))
    assert messages[-1]["type"] == "session_end" and messages[-1]["reason"] == "recording cut off"
    assert messages[-1]["utterances"] == 2 and messages[-1]["duration"] == 1.0


@pytest.mark.slow
def test_replay_of_something_that_is_not_a_recording_is_one_clear_line(tmp_path):
    result = run_cli("replay", str(tmp_path / "nothing"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "written by `run --record DIR`" in result.stderr
    result = run_cli("replay", str(tmp_path), "--speed", "0")
    assert result.returncode == 2 and "--speed" in result.stderr


# -- the live daemon on real speech -------------------------------------------------------------


@pytest.fixture(scope="module")
def spoken(tmp_path_factory):
    from testsupport.speech import SENTENCES, require_espeak, speech_with_silences

    require_espeak()
    folder = tmp_path_factory.mktemp("speech")
    sentences = list(SENTENCES[:3])
    path, truth = speech_with_silences(sentences, 1.2, folder / "three.wav")
    return sentences, path, truth


def words_heard(sentence: str, text: str) -> float:
    from testsupport.speech import word_error_rate

    return 1.0 - word_error_rate(sentence, text)


@pytest.mark.slow
def test_one_utterance_per_sentence_with_its_words(spoken, tmp_path):
    sentences, path, truth = spoken
    daemon = Daemon("run", "--source", f"file:{path}", "--language", "en", "--fast", "--port", "0",
                    "--record", str(tmp_path / "rec"))
    try:
        messages = asyncio.run(collect(daemon.url, since=0))
        second = asyncio.run(collect(daemon.url, since=0))  # the finished session stays served
    finally:
        assert daemon.stop() == 0
    assert numbered(messages) == numbered(second)
    hello, rest = messages[0], numbered(messages)
    assert hello["type"] == "hello" and hello["schema"] == 1 and hello["language"] == "en"
    assert [m["seq"] for m in rest] == list(range(1, len(rest) + 1))
    utterances = [m for m in rest if m["type"] == "utterance"]
    assert len(utterances) == len(sentences), [u["text"] for u in utterances]
    for sentence, (start, end), u in zip(sentences, truth, utterances):
        assert words_heard(sentence, u["text"]) >= 0.7, (sentence, u["text"])
        assert abs(u["start"] - start) < 0.5 and abs(u["end"] - end) < 0.5, (u["start"], u["end"], start, end)
        assert sum(u["emotion"]["probs"].values()) == pytest.approx(1.0, abs=1e-3)
        assert u["latency_ms"]["end_to_message"] >= 0
    assert rest[-1]["type"] == "session_end" and rest[-1]["reason"] == "source ended"
    assert rest[-1]["utterances"] == len(sentences) and rest[-1]["dropped_frames"] == 0
    (folder,) = (tmp_path / "rec").iterdir()
    assert recorder.read_feed(folder) == rest
    assert len(recorder.read_audio(folder / "audio.wav")) == pytest.approx(truth[-1][1] * 16000 + 1.2 * 16000, abs=400)
    meta = recorder.read_meta(folder)
    assert meta["end"]["utterances"] == len(sentences) and meta["config"]["server"]["token"] == ""


@pytest.mark.slow
def test_kill_9_mid_recording_leaves_a_session_that_replays(spoken, tmp_path):
    sentences, path, truth = spoken
    daemon = Daemon("run", "--source", f"file:{path}", "--language", "en", "--port", "0", "--record", str(tmp_path / "rec"))
    try:
        before = asyncio.run(collect(daemon.url, since=0, until="utterance"))  # real time: the first sentence is out
    finally:
        daemon.stop(signal.SIGKILL)
    partials = [m for m in numbered(before) if m["type"] == "partial"]
    assert partials and {p["utterance_id"] for p in partials} == {1}  # played live: previews came first
    assert all(p["start"] == pytest.approx(before[-1]["start"], abs=0.05) for p in partials)
    (folder,) = (tmp_path / "rec").iterdir()
    assert "end" not in recorder.read_meta(folder)  # it really died mid-session
    recorded = recorder.read_feed(folder)
    assert numbered(before) == recorded[: len(numbered(before))]  # nothing sent was lost from disk
    audio = recorder.read_audio(folder / "audio.wav")
    last_end = max(m["end"] for m in recorded if m["type"] == "utterance")
    assert last_end <= len(audio) / 16000 < truth[-1][1] + 1.2  # the audio reaches past what was analysed

    replayed = Daemon("replay", str(folder), "--fast", "--port", "0")
    try:
        messages = numbered(asyncio.run(collect(replayed.url, since=0)))
    finally:
        replayed.stop()
    assert messages[:-1] == recorded
    assert messages[-1]["type"] == "session_end" and messages[-1]["reason"] == "recording cut off"

    again = Daemon("run", "--source", f"session:{folder}", "--language", "en", "--fast", "--port", "0")
    try:
        reanalysed = numbered(asyncio.run(collect(again.url, since=0)))
    finally:
        again.stop()
    texts = [m["text"] for m in reanalysed if m["type"] == "utterance"]
    assert texts and words_heard(sentences[0], texts[0]) >= 0.7, texts


# -- bad input: a clear error, and the daemon keeps serving ---------------------------------------


@pytest.mark.slow
def test_off_loopback_without_a_token_refuses_to_start():
    result = run_cli("run", "--source", "browser", "--host", "0.0.0.0", "--port", "0")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "server.token" in result.stderr and "loading models" not in result.stderr


@pytest.mark.slow
def test_a_missing_file_or_an_unknown_source_is_refused_before_anything_loads(tmp_path):
    result = run_cli("run", "--source", f"file:{tmp_path / 'nope.wav'}")
    assert result.returncode == 2 and "is not a file" in result.stderr and "loading models" not in result.stderr
    result = run_cli("run", "--source", "speaker")
    assert result.returncode == 2 and "mic, file:PATH, session:DIR or browser" in result.stderr


@pytest.mark.slow
def test_an_unreadable_file_and_bad_client_frames_leave_the_daemon_serving(tmp_path):
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(256)) * 8)
    daemon = Daemon("run", "--source", f"file:{bad}", "--language", "en", "--port", "0")
    try:
        messages = numbered(asyncio.run(collect(daemon.url, since=0)))
        (error,) = [m for m in messages if m["type"] == "error"]
        assert error["code"] == "source_failed" and str(bad) in error["message"] and "FFmpeg" in error["message"]
        assert messages[-1]["type"] == "session_end" and messages[-1]["reason"] == "source failed"

        async def abuse_then_watch() -> list[dict]:
            async with connect(daemon.url, max_size=None) as rude:
                await rude.recv()  # hello
                await rude.send("{not json")
                assert json.loads(await rude.recv())["code"] == "bad_frame"
                await rude.send("x" * 300_000)  # beyond server.max_message_bytes
                with pytest.raises(Exception):
                    while True:
                        await asyncio.wait_for(rude.recv(), 10)
                assert rude.close_code == 1009
            async with connect(daemon.url + "?since=0") as polite:
                got = [json.loads(await polite.recv()) for _ in range(len(messages) + 1)]
                await polite.send('{"type": "ping"}')
                got.append(json.loads(await polite.recv()))
                return got

        got = asyncio.run(abuse_then_watch())
        assert numbered(got[1:-1]) == messages and got[-1]["type"] == "pong"
        assert daemon.process.poll() is None
    finally:
        assert daemon.stop() == 1  # its source failed: a script must be able to tell


@pytest.mark.slow
def test_8_khz_stereo_float_with_nan_samples_is_reported_and_still_transcribed(tmp_path):
    import soundfile as sf
    import soxr

    from testsupport.speech import SENTENCES, require_espeak, speech_with_silences

    require_espeak()
    path, truth = speech_with_silences([SENTENCES[1]], 1.0, tmp_path / "mono.wav")
    mono = soxr.resample(sf.read(path, dtype="float32")[0], 16000, 8000)
    mono[:2000] = np.nan  # a damaged stretch in the leading silence
    sf.write(tmp_path / "odd.wav", np.stack([mono, mono], axis=1), 8000, subtype="FLOAT")
    daemon = Daemon("run", "--source", f"file:{tmp_path / 'odd.wav'}", "--language", "en", "--fast", "--port", "0")
    try:
        messages = numbered(asyncio.run(collect(daemon.url, since=0)))
    finally:
        daemon.stop()
    errors = [m for m in messages if m["type"] == "error"]
    assert [e["code"] for e in errors] == ["bad_audio"] and "NaN" in errors[0]["message"]
    (utterance,) = [m for m in messages if m["type"] == "utterance"]
    from testsupport.speech import normalise_words

    said, heard = set(normalise_words(SENTENCES[1])), set(normalise_words(utterance["text"]))
    assert len(said & heard) >= len(said) / 2, utterance["text"]  # telephone bandwidth costs Whisper some words
    assert messages[-1]["reason"] == "source ended"


@pytest.mark.slow
def test_an_hour_of_silence_passes_quietly(tmp_path):
    import soundfile as sf

    path = tmp_path / "hour.flac"
    with sf.SoundFile(path, "w", 16000, 1, subtype="PCM_16") as f:
        minute = np.zeros(16000 * 60, np.int16)
        for _ in range(60):
            f.write(minute)
    daemon = Daemon("run", "--source", f"file:{path}", "--language", "en", "--fast", "--port", "0")
    try:
        messages = numbered(asyncio.run(collect(daemon.url, since=0, timeout=600)))
    finally:
        daemon.stop()
    assert [m["type"] for m in messages if m["type"] not in ("status",)] == ["session_end"]
    assert messages[-1]["duration"] == pytest.approx(3600.0) and messages[-1]["utterances"] == 0


@pytest.mark.slow
def test_without_a_microphone_the_daemon_serves_and_takes_the_browser_microphone(tmp_path):
    from testsupport.speech import SENTENCES, require_espeak, speech_with_silences

    require_espeak()
    if run_cli("devices").returncode == 0:
        pytest.skip("this machine has a microphone")
    path, _ = speech_with_silences([SENTENCES[3]], 1.0, tmp_path / "said.wav")
    daemon = Daemon("run", "--source", "mic", "--language", "en", "--port", "0")
    try:
        async def speak_into_mic() -> list[dict]:
            import soundfile as sf

            audio, _ = sf.read(path, dtype="int16")
            async with connect(daemon.url + "?since=0") as ws:
                hello = json.loads(await ws.recv())
                async with connect(f"ws://127.0.0.1:{daemon.port}/mic") as mic:
                    for start in range(0, len(audio), 640):  # 40 ms frames, as the dashboard sends them
                        await mic.send(audio[start : start + 640].astype("<i2").tobytes())
                        await asyncio.sleep(0.01)
                    got = [hello]
                    async with asyncio.timeout(120):
                        while got[-1]["type"] != "utterance":
                            got.append(json.loads(await ws.recv()))
                    return got

        got = asyncio.run(speak_into_mic())
    finally:
        assert daemon.stop() == 0
    hello = got[0]
    assert hello["source"] == "browser"
    error = next(m for m in got if m["type"] == "error")
    assert error["code"] == "no_microphone" and "microphone button" in error["message"]
    assert any(m["type"] == "status" and m["state"] == "listening" and m["source"] == "browser" for m in got)
    assert words_heard(SENTENCES[3], got[-1]["text"]) >= 0.7, got[-1]["text"]
