"""The feed server on a real loopback socket, with real `websockets` clients and raw HTTP."""
import asyncio
import json
import os
import socket

import numpy as np
import pytest
import pytest_asyncio
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from core.errors import UserError
from streamer import feed, recorder, sources
from streamer.config import ServerConfig
from streamer.rooms import Rooms
from streamer.server import FeedServer

HELLO = {"schema": 1, "labels": ["angry", "happiness", "neutral", "sadness"], "models": {}, "language": "en",
         "source": "test", "started": "2026-01-01T00:00:00+00:00", "replay": False}
RECORDED_MODELS = {"asr": "whisper small int8", "text": "e5_head", "audio": None, "multimodal": None, "stacker": None}


@pytest.fixture
def web_dir(tmp_path):
    web = tmp_path / "web"
    (web / "js").mkdir(parents=True)
    (web / "index.html").write_text("<!doctype html><title>monitor</title>")
    (web / "js" / "app.js").write_text("console.log('app')")
    (web / "js" / "worklet.mjs").write_text("export {}")
    (web / "vad.wasm").write_bytes(b"\0asm\1\0\0\0")
    (web / ".env").write_text("SECRET=1")
    (tmp_path / "secret.txt").write_text("outside web/")
    os.symlink(tmp_path / "secret.txt", web / "link.txt")
    return web


@pytest.fixture
def record_dir(tmp_path):
    root = tmp_path / "sessions"
    log = feed.SessionLog("20260101-000000-abcd")
    rec = recorder.Recorder(root, log, {"source": "file:x.wav", "models": RECORDED_MODELS})
    rec.write_audio(np.full(16000, 0.25, dtype=np.float32))
    log.publish("utterance", {"utterance_id": 1, "text": "안녕하세요"})
    rec.close({"utterances": 1, "duration": 1.0})
    return root


async def start(web_dir, record_dir=None, **settings):
    config = ServerConfig(port=0, **{"ping_interval_s": 20.0, **settings})
    log = feed.SessionLog("s-test")
    server = FeedServer(config, Rooms.single(log, lambda: HELLO), web_dir=web_dir, record_dir=record_dir)
    await server.start()
    return server, log, f"ws://127.0.0.1:{server.port}"


@pytest_asyncio.fixture
async def served(web_dir, record_dir):
    server, log, url = await start(web_dir, record_dir, client_queue=20, max_message_bytes=4096)
    yield server, log, url
    await server.close()


async def recv_json(ws, timeout=5.0):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def http_get(port, path, headers=""):
    """A raw GET, so paths reach the server exactly as written (no client-side `..` cleanup)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{headers}\r\n".encode())
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    fields = dict(line.split(": ", 1) for line in lines[1:])
    return status, fields, body


@pytest.mark.asyncio
async def test_hello_then_live_messages(served):
    server, log, url = served
    log.publish("status", {"n": 0})
    async with connect(url + "/ws") as ws:
        hello = await recv_json(ws)
        assert hello["type"] == "hello" and hello["reply"] is True and hello["seq"] == 1
        assert hello["labels"] == HELLO["labels"]
        log.publish("status", {"n": 1})
        message = await recv_json(ws)
        assert (message["seq"], message["n"]) == (2, 1)  # without since: live only, not seq 1
        assert server.clients == 1


@pytest.mark.asyncio
async def test_reconnect_and_resume_loses_and_repeats_nothing(served):
    _, log, url = served
    stop = asyncio.Event()

    async def publish_steadily():
        while not stop.is_set():
            log.publish("status", {})
            await asyncio.sleep(0.001)

    publisher = asyncio.create_task(publish_steadily())
    seen = []
    async with connect(url + "/ws?since=0") as ws:
        await recv_json(ws)
        while len(seen) < 30:
            seen.append((await recv_json(ws))["seq"])
    for _ in range(5):  # drop and reconnect while messages keep coming
        await asyncio.sleep(0.02)
        async with connect(f"{url}/ws?since={seen[-1]}") as ws:
            assert (await recv_json(ws))["type"] == "hello"
            target = len(seen) + 25
            while len(seen) < target:
                seen.append((await recv_json(ws))["seq"])
    stop.set()
    await publisher
    assert seen == list(range(1, len(seen) + 1))


@pytest.mark.asyncio
async def test_a_slow_client_is_dropped_and_never_delays_a_fast_one(served):
    server, log, url = served
    port = server.port
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a client that never reads
    slow.connect(("127.0.0.1", port))
    slow.sendall(
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    async with connect(url + "/ws", max_size=None, compression=None) as fast:
        await recv_json(fast)
        while server.clients < 2:
            await asyncio.sleep(0.01)
        padding = "x" * 4_000
        received = []

        async def read_all():
            while len(received) < 300:
                received.append((await recv_json(fast))["seq"])

        reader = asyncio.create_task(read_all())
        for i in range(300):
            log.publish("status", {"pad": padding})
            await asyncio.sleep(0.002)  # 2 MB/s: a fast client keeps up, a client that never reads does not
        await asyncio.wait_for(reader, 10)
        assert received == list(range(1, 301))
        assert server.dropped_clients == 1
        for _ in range(100):
            if server.clients == 1:
                break
            await asyncio.sleep(0.05)
        assert server.clients == 1
    slow.close()


@pytest.mark.asyncio
async def test_malformed_frames_get_an_error_and_the_connection_stays(served):
    _, log, url = served
    async with connect(url + "/ws") as ws:
        await recv_json(ws)
        await ws.send("{not json")
        error = await recv_json(ws)
        assert error["type"] == "error" and error["code"] == "bad_frame" and error["reply"] is True
        await ws.send(b"\x01\x02")
        assert "binary" in (await recv_json(ws))["message"]
        await ws.send(json.dumps({"type": "ping"}))
        assert (await recv_json(ws))["type"] == "pong"
        log.publish("status", {})
        assert (await recv_json(ws))["type"] == "status"


@pytest.mark.asyncio
async def test_an_oversized_frame_closes_that_client_only(served):
    _, log, url = served
    async with connect(url + "/ws") as other:
        await recv_json(other)
        async with connect(url + "/ws", max_size=None) as big:
            await recv_json(big)
            await big.send("x" * 5000)  # max_message_bytes is 4096
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(big.recv(), 5)
            assert closed.value.rcvd.code == 1009  # message too big
        log.publish("status", {"still": "serving"})
        assert (await recv_json(other))["still"] == "serving"
    async with connect(url + "/ws?since=0") as again:
        await recv_json(again)
        assert (await recv_json(again))["still"] == "serving"


@pytest.mark.asyncio
async def test_a_bad_since_is_explained_and_the_client_gets_live_messages(served):
    _, log, url = served
    async with connect(url + "/ws?since=last") as ws:
        assert (await recv_json(ws))["type"] == "hello"
        error = await recv_json(ws)
        assert error["code"] == "bad_since" and "since=N" in error["message"]
        log.publish("status", {})
        assert (await recv_json(ws))["type"] == "status"


@pytest.mark.asyncio
@pytest.mark.slow
async def test_keepalive_drops_a_client_that_stops_answering(web_dir):
    server, _, _ = await start(web_dir, ping_interval_s=0.2, ping_timeout_s=0.2)
    try:
        dead = socket.create_connection(("127.0.0.1", server.port))
        dead.sendall(
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        for _ in range(50):
            await asyncio.sleep(0.05)
            if server.clients == 1:
                break
        assert server.clients == 1
        for _ in range(60):
            await asyncio.sleep(0.05)
            if server.clients == 0:
                break
        assert server.clients == 0  # the unanswered ping closed it
        dead.close()
    finally:
        await server.close()


def test_off_loopback_without_a_token_refuses_to_start(web_dir):
    with pytest.raises(UserError, match="server.token"):
        FeedServer(ServerConfig(host="0.0.0.0", token=""), Rooms.single(feed.SessionLog("s"), lambda: HELLO), web_dir=web_dir)
    FeedServer(ServerConfig(host="::1", token=""), Rooms.single(feed.SessionLog("s"), lambda: HELLO), web_dir=web_dir)


@pytest.mark.asyncio
async def test_a_token_guards_the_feed_the_microphone_and_the_api(web_dir, record_dir):
    server, _, url = await start(web_dir, record_dir, token="s3cret")
    try:
        for path in ("/ws", "/ws?token=wrong", "/mic"):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(url + path):
                    pass
            assert refused.value.response.status_code == 401
            assert b"token" in refused.value.response.body
        async with connect(url + "/ws?token=s3cret") as ws:
            assert (await recv_json(ws))["type"] == "hello"
        assert (await http_get(server.port, "/api/sessions"))[0] == 401
        assert (await http_get(server.port, "/api/sessions?token=s3cret"))[0] == 200
        assert (await http_get(server.port, "/"))[0] == 200  # the page itself is public
    finally:
        await server.close()


@pytest.mark.asyncio
async def test_a_page_from_another_origin_cannot_open_the_feed(served):
    server, _, url = served
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url + "/ws", origin="http://evil.example"):
            pass
    assert refused.value.response.status_code == 403
    async with connect(url + "/ws", origin=f"http://127.0.0.1:{server.port}") as ws:
        assert (await recv_json(ws))["type"] == "hello"


@pytest.mark.asyncio
async def test_static_files_with_their_content_types(served):
    server, _, _ = served
    status, headers, body = await http_get(server.port, "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html") and b"monitor" in body
    expected = {"/js/app.js": "text/javascript", "/js/worklet.mjs": "text/javascript", "/vad.wasm": "application/wasm"}
    for path, content_type in expected.items():
        status, headers, body = await http_get(server.port, path)
        assert status == 200 and headers["Content-Type"].split(";")[0] == content_type, path
        assert int(headers["Content-Length"]) == len(body)


@pytest.mark.parametrize(
    "path",
    ["/../secret.txt", "/js/../../secret.txt", "/%2e%2e/secret.txt", "/..%2fsecret.txt", "/link.txt", "/.env",
     "/js", "/missing.js", "/js/app.js%00.html", "/..\\secret.txt"],
)
@pytest.mark.asyncio
async def test_nothing_outside_web_is_served(served, path):
    server, _, _ = served
    status, _, body = await http_get(server.port, path)
    assert status == 404 and b"outside" not in body and b"SECRET" not in body


@pytest.mark.asyncio
async def test_recorded_sessions_api(served):
    server, _, _ = served
    status, headers, body = await http_get(server.port, "/api/sessions")
    sessions = json.loads(body)
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert sessions == [{"id": "20260101-000000-abcd", "started": sessions[0]["started"], "duration": 1.0, "utterances": 1,
                         "models": RECORDED_MODELS, "room": None}]
    status, _, body = await http_get(server.port, "/api/sessions/20260101-000000-abcd/feed.jsonl")
    assert status == 200 and json.loads(body.decode().splitlines()[0])["text"] == "안녕하세요"
    status, headers, body = await http_get(server.port, "/api/sessions/20260101-000000-abcd/audio.wav")
    assert status == 200 and headers["Content-Type"] == "audio/wav" and len(body) == 44 + 32000
    for bad in ("/api/sessions/nope/feed.jsonl", "/api/sessions/..%2f..%2fsecret.txt/feed.jsonl",
                "/api/sessions/../feed.jsonl", "/api/sessions/20260101-000000-abcd/meta.json", "/api/other"):
        assert (await http_get(server.port, bad))[0] == 404, bad


@pytest.mark.asyncio
async def test_browser_microphone_frames_reach_the_source(served):
    server, _, url = served
    async with connect(url + "/mic") as ws:  # no browser source: refused with the reason
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert "--source browser" in closed.value.rcvd.reason
    browser = sources.BrowserSource()
    frames = sources.FrameQueue(10.0)
    runner = asyncio.create_task(browser.run(frames, lambda code, message: None))
    next(iter(server.rooms)).browser = browser
    try:
        async with connect(url + "/mic") as mic:
            await asyncio.sleep(0.05)
            async with connect(url + "/mic") as second:
                with pytest.raises(ConnectionClosed) as busy:
                    await asyncio.wait_for(second.recv(), 5)
                assert busy.value.rcvd.code == 1013
            samples = (np.arange(512) - 256).astype("<i2")
            await mic.send(samples.tobytes())
            await mic.send(b"\x01\x02\x03")
            error = await recv_json(mic)
            assert error["code"] == "bad_frame" and "3 bytes" in error["message"]
            await mic.send("hello")
            assert "binary" in (await recv_json(mic))["message"]
            block = await asyncio.wait_for(frames.get(16000), 5)
            np.testing.assert_array_equal(block, samples.astype(np.float32) / 32768.0)
            assert browser.connected
        for _ in range(50):
            if not browser.connected:
                break
            await asyncio.sleep(0.02)
        assert not browser.connected
    finally:
        runner.cancel()


@pytest.mark.asyncio
async def test_recorded_audio_can_be_fetched_in_ranges_for_seeking(served):
    server, _, _ = served
    url = "/api/sessions/20260101-000000-abcd/audio.wav"
    _, headers, whole = await http_get(server.port, url)
    assert headers["Accept-Ranges"] == "bytes"
    status, headers, part = await http_get(server.port, url, "Range: bytes=44-143\r\n")
    assert status == 206 and part == whole[44:144] and headers["Content-Range"] == f"bytes 44-143/{len(whole)}"
    status, _, tail = await http_get(server.port, url, "Range: bytes=-10\r\n")
    assert status == 206 and tail == whole[-10:]
    status, headers, _ = await http_get(server.port, url, f"Range: bytes={len(whole)}-\r\n")
    assert status == 416 and headers["Content-Range"] == f"bytes */{len(whole)}"
