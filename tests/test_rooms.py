"""Several rooms on one daemon: their own sessions, words and recordings on one copy of the models;
a failing room beside a healthy one; browser rooms opened by /mic?room=; the room limit."""
from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from core.errors import UserError
from streamer.recorder import read_meta
from streamer.rooms import DEFAULT_ROOM, parse_sources
from testsupport.browser import free_port
from testsupport.speech import (
    SENTENCES,
    normalise_words,
    require_espeak,
    speech_with_silences,
)

ROOT = Path(__file__).resolve().parents[1]


def test_sources_name_rooms_and_bad_names_are_refused():
    assert parse_sources(["mic"]) == [(DEFAULT_ROOM, "mic")]
    assert parse_sources(["file:/calls/a=b.wav"]) == [(DEFAULT_ROOM, "file:/calls/a=b.wav")]
    assert parse_sources(["room-1=mic", "room_2=file:x.wav"]) == [("room-1", "mic"), ("room_2", "file:x.wav")]
    with pytest.raises(UserError, match="room name 'bad name!' is not one"):
        parse_sources(["bad name!=mic"])
    with pytest.raises(UserError, match="two sources for room 'a'"):
        parse_sources(["a=mic", "a=browser"])
    with pytest.raises(UserError, match="two sources for room 'main'"):
        parse_sources(["mic", "browser"])


class Daemon:
    def __init__(self, args: list[str], log: Path):
        self.port = free_port()
        self.log = log
        self.proc = subprocess.Popen([sys.executable, "-m", "streamer", "run", *args, "--port", str(self.port),
                                      "--language", "en"], cwd=ROOT, stdout=open(log, "wb"), stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, text: str, count: int = 1, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while self.output().count(text) < count:
            assert self.proc.poll() is None, self.output()
            assert time.monotonic() < deadline, self.output()
            time.sleep(0.1)

    def get(self, path: str):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as response:
            return json.loads(response.read())

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


async def session(port: int, room: str | None) -> list[dict]:
    url = f"ws://127.0.0.1:{port}/ws?since=0" + (f"&room={room}" if room else "")
    out = []
    async with connect(url, max_size=None) as ws:
        async for frame in ws:
            message = json.loads(frame)
            out.append(message)
            if message["type"] == "session_end":
                return out
    return out


def dashboard_rooms(port: int) -> dict:
    """What the dashboard shows of a two-room daemon: its room list, the words of the room it
    opens on, and those of the room picked from the list."""
    playwright_api = pytest.importorskip("playwright.sync_api")
    from testsupport.browser import launch

    ended = "document.getElementById('speaking').textContent.includes('Ended')"
    words = "#transcript .text"
    with playwright_api.sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_function(ended, timeout=60_000)
            seen = {"options": page.eval_on_selector_all("#room-select option", "els => els.map(e => e.value)"),
                    "left": page.locator(words).all_inner_texts()}
            page.select_option("#room-select", "right")
            page.wait_for_url("**room=right")
            page.wait_for_function(ended, timeout=60_000)
            return {**seen, "right": page.locator(words).all_inner_texts(), "address": page.url}
        finally:
            browser.close()


@pytest.fixture(scope="module")
def talks(tmp_path_factory):
    require_espeak()
    folder = tmp_path_factory.mktemp("rooms")
    a, _ = speech_with_silences(SENTENCES[:2], 0.8, folder / "a.wav", noise_db=-60)
    b, _ = speech_with_silences(SENTENCES[3:5], 0.8, folder / "b.wav", noise_db=-60)
    return a, b


@pytest.mark.slow
def test_two_rooms_at_once_have_their_own_words_sessions_and_recordings(talks, tmp_path):
    a, b = talks
    daemon = Daemon(["--source", f"left=file:{a}", "--source", f"right=file:{b}", "--record", str(tmp_path / "rec")],
                    tmp_path / "daemon.log")
    try:
        daemon.wait_for("session ended", count=2)
        left, right = asyncio.run(session(daemon.port, "left")), asyncio.run(session(daemon.port, "right"))
        rooms = {r["room"]: r for r in daemon.get("/api/rooms")}

        async def without_room():
            async with connect(f"ws://127.0.0.1:{daemon.port}/ws") as ws:
                with pytest.raises(ConnectionClosed) as closed:
                    await asyncio.wait_for(ws.recv(), 5)
            return closed.value.rcvd

        refused = asyncio.run(without_room())
        pages = dashboard_rooms(daemon.port)
    finally:
        code = daemon.stop()
    assert code == 0, daemon.output()
    assert pages["options"] == ["left", "right"]
    assert pages["left"] == [m["text"] for m in left if m["type"] == "utterance"]  # no ?room=: the first room
    assert pages["right"] == [m["text"] for m in right if m["type"] == "utterance"]  # picked in the room list
    assert pages["address"].endswith("room=right")
    assert left[0]["type"] == "hello" and left[0]["room"] == "left" and right[0]["room"] == "right"
    assert left[1]["session"] != right[1]["session"]
    for messages, sentences in ((left, SENTENCES[:2]), (right, SENTENCES[3:5])):
        said = [m["text"] for m in messages if m["type"] == "utterance"]
        assert len(said) == 2
        for heard, sentence in zip(said, sentences):
            assert len(set(normalise_words(heard)) & set(normalise_words(sentence))) >= len(normalise_words(sentence)) - 2
        assert [m["seq"] for m in messages[1:]] == list(range(1, len(messages)))  # each room numbers its own
    assert set(rooms) == {"left", "right"} and rooms["left"]["state"] == "ended" and rooms["right"]["utterances"] == 2
    assert rooms["left"]["session"] == left[1]["session"] and rooms["right"]["source"] == f"file:{b}"
    assert refused.code == 1008 and "?room=NAME" in refused.reason
    recorded = {read_meta(folder)["room"]: folder for folder in (tmp_path / "rec").iterdir()}
    assert set(recorded) == {"left", "right"}
    assert recorded["left"].name == left[1]["session"]


@pytest.mark.slow
def test_a_failing_room_leaves_a_healthy_one_as_it_was(talks, tmp_path):
    a, _b = talks
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF" + b"\x00" * 500)
    daemon = Daemon(["--source", f"bad=file:{broken}", "--source", f"good=file:{a}"], tmp_path / "daemon.log")
    try:
        daemon.wait_for("session ended", count=2)
        bad, good = asyncio.run(session(daemon.port, "bad")), asyncio.run(session(daemon.port, "good"))
    finally:
        code = daemon.stop()
    assert code == 1  # a source failed
    assert bad[-1]["reason"] == "source failed" and [m["code"] for m in bad if m["type"] == "error"] == ["source_failed"]
    assert good[-1]["reason"] == "source ended" and not [m for m in good if m["type"] == "error"]
    assert len([m for m in good if m["type"] == "utterance"]) == 2


@pytest.mark.slow
def test_browser_rooms_open_on_first_use_up_to_the_limit(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("[server]\nmax_rooms = 2\n")
    daemon = Daemon(["--source", "browser", "--config", str(config)], tmp_path / "daemon.log")
    try:
        daemon.wait_for("serving http")

        async def microphones():
            base = f"ws://127.0.0.1:{daemon.port}/mic"
            async with connect(f"{base}?room=counsel-2") as second:
                await second.send(b"\x00\x00" * 640)
                await asyncio.sleep(0.3)
                rooms = sorted(r["room"] for r in daemon.get("/api/rooms"))
                async with connect(f"{base}?room=third") as third:
                    with pytest.raises(ConnectionClosed) as full:
                        await asyncio.wait_for(third.recv(), 5)
                async with connect(f"{base}?room=no%20spaces") as odd:
                    with pytest.raises(ConnectionClosed) as bad_name:
                        await asyncio.wait_for(odd.recv(), 5)
                async with connect(f"ws://127.0.0.1:{daemon.port}/ws?room=counsel-2") as feed:
                    hello = json.loads(await feed.recv())
            return rooms, full.value.rcvd, bad_name.value.rcvd, hello

        rooms, full, bad_name, hello = asyncio.run(microphones())
    finally:
        daemon.stop()
    assert rooms == sorted([DEFAULT_ROOM, "counsel-2"])
    assert full.code == 1013 and "server.max_rooms" in full.reason
    assert bad_name.code == 1008 and "is not one" in bad_name.reason
    assert hello["room"] == "counsel-2" and hello["source"] == "browser"
