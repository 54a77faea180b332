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


def test_replay_of_something_that_is_not_a_recording_is_one_clear_line(tmp_path):
    result = run_cli("replay", str(tmp_path / "nothing"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "written by `run --record DIR`" in result.stderr
    result = run_cli("replay", str(tmp_path), "--speed", "0")
    assert result.returncode == 2 and "--speed" in result.stderr
