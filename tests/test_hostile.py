"""What a hostile probe broke (issue 13), each attack replayed against the real server on loopback."""
from __future__ import annotations

import asyncio
import json
import os
import socket
import struct

import numpy as np
import pytest
from websockets.asyncio.client import connect

from core.errors import UserError
from streamer import feed, ranges, recorder, replay
from streamer.access import check_exposure
from streamer.config import ServerConfig
from streamer.rooms import DEFAULT_ROOM, Rooms
from streamer.server import FeedServer

HELLO = {"schema": 1, "labels": ["angry", "happiness", "neutral", "sadness"], "models": {}, "language": "en",
         "source": "test", "started": "2026-01-01T00:00:00+00:00", "replay": False}
SESSION = "20260101-000000-abcd"


@pytest.fixture
def record_dir(tmp_path):
    root = tmp_path / "sessions"
    log = feed.SessionLog(SESSION)
    rec = recorder.Recorder(root, log, {"source": "test"})
    rec.write_audio(np.linspace(-0.5, 0.5, 3 * 16000, dtype=np.float32))
    log.publish("utterance", {"utterance_id": 1, "text": "안녕하세요"})
    rec.close({"utterances": 1, "duration": 3.0})
    return root


async def serving(tmp_path, record_dir=None, **settings):
    web = tmp_path / "web"
    web.mkdir(exist_ok=True)
    (web / "index.html").write_text("<!doctype html><title>monitor</title>")
    config = ServerConfig(port=0, **settings)
    log = feed.SessionLog("s-test")
    server = FeedServer(config, Rooms.single(log, lambda: HELLO), web_dir=web, record_dir=record_dir)
    await server.start()
    return server, log


async def request(port: int, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    writer.write(f"GET {path} HTTP/1.1\r\n{lines}\r\n".encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    status_line, *fields = head.decode("latin-1").strip().split("\r\n")
    status = int(status_line.split()[1])
    body = b"" if status == 101 else await asyncio.wait_for(reader.read(), 5)  # an upgraded socket stays open
    writer.close()
    return status, dict(f.split(": ", 1) for f in fields), body


UPGRADE = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
           "Sec-WebSocket-Version": "13"}


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["/ws", "/mic", "/api/sessions", "/"])
async def test_dns_rebinding_and_foreign_origins_are_refused(tmp_path, record_dir, path):
    server, _log = await serving(tmp_path, record_dir)
    port = server.port
    try:
        extra = UPGRADE if path in ("/ws", "/mic") else {}
        evil = {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}", **extra}
        assert (await request(port, path, evil))[0] == 421  # a page whose own name points at 127.0.0.1
        for origin in ("null", f"https://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}", "http://127.0.0.1"):
            status, _, body = await request(port, path, {"Host": f"127.0.0.1:{port}", "Origin": origin, **extra})
            assert status == 403 and b"refused" in body, origin
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"):
            status, _, _ = await request(port, path, {"Host": host, "Origin": f"http://{host}", **extra})
            assert status == (101 if extra else 200), host
    finally:
        await server.close()


@pytest.mark.asyncio
async def test_allowed_hosts_adds_a_name(tmp_path):
    server, _log = await serving(tmp_path, allowed_hosts=["monitor.clinic.internal", "Ward.Internal:8765",
                                                          "[fd00::7]", "fd00::8"])
    try:
        port = server.port
        ok = {"Host": f"monitor.clinic.internal:{port}", "Origin": f"http://monitor.clinic.internal:{port}"}
        assert (await request(port, "/", ok))[0] == 200
        for name in ("ward.internal", "[fd00::7]", "[fd00::8]"):  # an entry with a port or brackets, or neither
            assert (await request(port, "/", {"Host": f"{name}:{port}"}))[0] == 200, name
        assert (await request(port, "/", {"Host": f"other.internal:{port}"}))[0] == 421
    finally:
        await server.close()


def test_a_short_token_off_loopback_is_refused_at_start():
    with pytest.raises(UserError, match="needs at least 16"):
        check_exposure(ServerConfig(host="0.0.0.0", token="x"))
    check_exposure(ServerConfig(host="0.0.0.0", token="y" * 16))


@pytest.mark.asyncio
async def test_ranges_are_read_from_the_file_and_absurd_ones_get_416(tmp_path, record_dir):
    server, _log = await serving(tmp_path, record_dir)
    port = server.port
    path = f"/api/sessions/{SESSION}/audio.wav"
    host = {"Host": f"127.0.0.1:{port}"}
    served = ranges.WavFile.open(record_dir / SESSION / "audio.wav")
    everything = served.read(0, served.size - 1)
    try:
        status, fields, body = await request(port, path, {**host, "Range": "bytes=0-1"})
        assert (status, body, fields["Content-Range"]) == (206, everything[:2], f"bytes 0-1/{served.size}")
        status, _, body = await request(port, path, {**host, "Range": "bytes=40-100"})
        assert status == 206 and body == everything[40:101]  # across the rewritten header and the data
        status, _, body = await request(port, path, {**host, "Range": "bytes=-10"})
        assert status == 206 and body == everything[-10:]
        for bad in ("bytes=" + "9" * 5000 + "-", "bytes=0-1,5-9", "lines=0-1", f"bytes={served.size}-"):
            status, fields, _ = await request(port, path, {**host, "Range": bad})
            assert status == 416 and fields["Content-Range"] == f"bytes */{served.size}", bad
        status, _, body = await request(port, path, host)
        assert status == 200 and body == everything
    finally:
        await server.close()


def test_an_open_ended_range_is_served_a_chunk_at_a_time():
    assert ranges.requested("bytes=0-", 10 * ranges.RANGE_CHUNK) == (0, ranges.RANGE_CHUNK - 1)
    assert ranges.requested("bytes=5-", 100) == (5, 99)
    assert ranges.requested(None, 100) is None


@pytest.mark.asyncio
async def test_a_symlinked_file_inside_a_session_folder_is_not_served(tmp_path, record_dir):
    secret = tmp_path / "passwd"
    secret.write_text("root:x:0:0")
    feed_file = record_dir / SESSION / "feed.jsonl"
    feed_file.unlink()
    os.symlink(secret, feed_file)
    server, _log = await serving(tmp_path, record_dir)
    try:
        status, _, body = await request(server.port, f"/api/sessions/{SESSION}/feed.jsonl", {"Host": f"127.0.0.1:{server.port}"})
        assert status == 404 and b"root" not in body
    finally:
        await server.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("frame", ["[" * 100_000, "1" + "0" * 5000, '{"type": "ping", "x": ' + "1" * 5000 + "}"])
async def test_frames_that_break_the_json_parser_get_an_error_reply(tmp_path, frame):
    server, _log = await serving(tmp_path, max_message_bytes=262_144)
    try:
        async with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
            await ws.recv()  # hello
            await ws.send(frame)
            reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert reply["type"] == "error" and reply["code"] == "bad_frame"
            await ws.send('{"type": "ping"}')
            assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "pong"  # still connected
    finally:
        await server.close()


@pytest.mark.asyncio
async def test_full_width_digits_are_not_a_since(tmp_path):
    server, log = await serving(tmp_path)
    for _ in range(20):
        log.publish("status", {})
    try:
        async with connect(f"ws://127.0.0.1:{server.port}/ws?since=%EF%BC%91%EF%BC%92") as ws:  # "１２"
            assert json.loads(await ws.recv())["type"] == "hello"
            reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert reply["code"] == "bad_since" and "１２" in reply["message"]
    finally:
        await server.close()


def frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of each complete unmasked server frame in `data`."""
    out, pos = [], 0
    while pos + 2 <= len(data):
        opcode, size = data[pos] & 0x0F, data[pos + 1] & 0x7F
        head = 2
        if size == 126:
            size, head = struct.unpack(">H", data[pos + 2 : pos + 4])[0], 4
        elif size == 127:
            size, head = struct.unpack(">Q", data[pos + 2 : pos + 10])[0], 10
        if pos + head + size > len(data):
            break
        out.append((opcode, data[pos + head : pos + head + size]))
        pos += head + size
    return out


def unread_feed_client(port: int) -> socket.socket:
    """A feed client that upgrades to /ws and then reads nothing, with a tiny receive buffer."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(("GET /ws HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in
                  {"Host": f"127.0.0.1:{port}", **UPGRADE}.items()) + "\r\n").encode())
    return sock


@pytest.mark.asyncio
async def test_a_fast_replay_waits_for_a_slow_reader_and_leaves_one_that_reads_nothing(tmp_path, monkeypatch):
    """`replay --fast` publishes no faster than its slowest client reads: a dashboard that reads a
    little slower than a loop can publish gets every message (it used to be dropped at
    server.client_queue), while a client that reads nothing is dropped and the replay finishes."""
    limit = 64
    monkeypatch.setattr(replay, "FAST_WAIT_S", 0.5)
    server, log = await serving(tmp_path, client_queue=limit)
    port = server.port
    recorded = [{"type": "status", "session": "s-test", "seq": i + 1, "t": round(i * 0.01, 2), "pad": "x" * 200}
                for i in range(3000)]
    received: list[int] = []

    async def slow_dashboard() -> None:
        async with connect(f"ws://127.0.0.1:{port}/ws?since=0", max_size=None) as ws:
            async for frame in ws:
                message = json.loads(frame)
                if message["type"] != "hello":
                    received.append(message["seq"])
                if len(received) % 20 == 0:
                    await asyncio.sleep(0.002)  # a browser rendering as it reads
                if message["type"] == "session_end":
                    return

    try:
        deaf = unread_feed_client(port)
        reader = asyncio.create_task(slow_dashboard())
        while server.clients < 2:
            await asyncio.sleep(0.01)
        await asyncio.wait_for(replay.publish(log, recorded, None, 30.0, lambda: server.backlog(DEFAULT_ROOM), limit), 60)
        await asyncio.wait_for(reader, 30)
        assert received == list(range(1, len(recorded) + 2))  # every message and the session_end, in order
        assert server.dropped_clients == 1  # the deaf one
        deaf.close()
    finally:
        await server.close()


@pytest.mark.asyncio
async def test_a_client_that_never_reads_is_dropped_at_its_queue_with_1008_and_a_since_it_can_trust(tmp_path):
    limit = 64
    server, log = await serving(tmp_path, client_queue=limit)
    port = server.port
    try:
        slow = unread_feed_client(port)
        while server.clients < 1:
            await asyncio.sleep(0.01)
        published = 0
        while server.dropped_clients == 0 and published < 20_000:
            log.publish("status", {"pad": "x" * 200})
            published += 1
            await asyncio.sleep(0)
        assert server.dropped_clients == 1
        # Dropped after `limit` messages waited here, plus what fitted in the client's own (tiny,
        # never read) socket buffer: hundreds of messages, not the tens of thousands before the fix.
        assert published < limit + 200, published
        slow.setblocking(False)
        data = b""
        loop = asyncio.get_running_loop()
        while True:  # read on, as a client that was only slow would
            try:
                chunk = await asyncio.wait_for(loop.sock_recv(slow, 1 << 16), 5)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            data += chunk
        slow.close()
        body = data.partition(b"\r\n\r\n")[2]
        got = frames(body)
        numbered = [json.loads(p)["seq"] for op, p in got if op == 1 and json.loads(p).get("reply") is not True]
        closes = [p for op, p in got if op == 8]
        assert closes, "the close frame reaches a client that reads on"
        code, reason = struct.unpack(">H", closes[0][:2])[0], closes[0][2:].decode()
        since = int(reason.rsplit("since=", 1)[1])
        assert code == 1008 and "too slow" in reason
        assert numbered == list(range(1, since + 1))  # nothing missing before the since, nothing after it
    finally:
        await server.close()
