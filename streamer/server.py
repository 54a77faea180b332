"""One asyncio `websockets` server for everything the daemon serves on HOST:PORT.

- `/ws`: the feed. Each client is a `feed.Subscriber` (a cursor into the session log) and one
  sender task; publishing only moves cursors and wakes senders, so a client that stops reading
  blocks nobody but itself, and is dropped (close code 1008) once `server.client_queue` messages
  wait for it.
- `/mic`: the browser as microphone (binary PCM16 LE 16 kHz mono frames), handed to the
  session's `BrowserSource`.
- `/enroll?role=NAME`: the dashboard's "enroll my voice" (the same frames, then `{"type": "done"}`),
  handed to the session's `BrowserEnrolment` (streamer/enroll.py).
- Plain HTTP GETs, answered from `process_request` before any WebSocket handshake: the files of
  `web/` (nothing outside it: no `..`, no symlink out, no dot files) and `/api/sessions...` for
  recorded sessions.

Security: off loopback a token is required to start at all; when a token is set, `/ws`, `/mic`
and `/api/` need `?token=`. The dashboard's static files stay public so the page can load and
carry its own `?token=` into its requests. A browser's Origin must match the Host it talks to,
so a web page from elsewhere cannot read a live session through the user's browser.
"""
from __future__ import annotations

import asyncio
import email.utils
import hmac
import http
import ipaddress
import json
import logging
import re
import signal
from pathlib import Path, PurePosixPath
from typing import Any, Callable
from urllib.parse import parse_qs, unquote, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from core.errors import UserError
from streamer import feed, recorder
from streamer.config import ServerConfig


def dashboard_dir() -> Path:
    """The dashboard's files: `streamer/web` inside an installed wheel (pyproject.toml maps the
    repository's web/ there), else web/ beside the package in a checkout or editable install."""
    packaged = Path(__file__).resolve().parent / "web"
    if (packaged / "index.html").is_file():
        return packaged
    return Path(__file__).resolve().parents[1] / "web"


CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".wasm": "application/wasm",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".txt": "text/plain; charset=utf-8",
    ".onnx": "application/octet-stream",
}
SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
TOO_SLOW = 1008  # policy violation: the client fell server.client_queue messages behind
log = logging.getLogger("streamer.server")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve to anything


def check_exposure(config: ServerConfig) -> None:
    """Refuse to serve a session to the network without a token."""
    if not is_loopback(config.host) and not config.token:
        raise UserError(
            f"server.host is {config.host!r}, which other machines can reach, and server.token is empty; "
            "set server.token in the config file (clients then add ?token=...), or use --host 127.0.0.1"
        )


def stop_on_signals() -> asyncio.Event:
    """An event set by Ctrl-C or SIGTERM, so the daemon closes its session cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


class FeedServer:
    """The HTTP + WebSocket front of one session log."""

    def __init__(
        self,
        config: ServerConfig,
        log_: feed.SessionLog,
        hello: Callable[[], dict[str, Any]],
        web_dir: Path | None = None,
        record_dir: Path | None = None,
    ) -> None:
        check_exposure(config)
        self.config = config
        self.log = log_
        self.hello = hello
        self.web_dir = (web_dir or dashboard_dir()).resolve()
        self.record_dir = record_dir
        self.browser: Any = None  # the session's BrowserSource while it accepts /mic
        self.enrolment: Any = None  # the session's BrowserEnrolment when it tells voices apart
        self._clients: dict[ServerConnection, tuple[feed.Subscriber, asyncio.Event]] = {}
        self._server: Server | None = None
        self.dropped_clients = 0
        log_.listen(self._on_entry)

    @property
    def clients(self) -> int:
        return len(self._clients)

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return self._server.sockets[0].getsockname()[1]

    async def start(self) -> None:
        try:
            self._server = await serve(
                self._handle,
                self.config.host,
                self.config.port,
                process_request=self._process_request,
                max_size=self.config.max_message_bytes,
                ping_interval=self.config.ping_interval_s,
                ping_timeout=self.config.ping_timeout_s,
                close_timeout=2,
            )
        except OSError as exc:
            raise UserError(
                f"cannot listen on {self.config.host}:{self.config.port} ({exc.strerror or exc}); "
                "pick another --port, or stop the program using it"
            ) from None

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    # -- fan-out ------------------------------------------------------------------------------

    def _on_entry(self, entry: feed.Entry) -> None:
        for ws, (sub, wake) in list(self._clients.items()):
            if sub.dropped:
                continue
            if sub.overflowed(self.log.head):
                self._drop(ws, sub)
            else:
                wake.set()

    def _drop(self, ws: ServerConnection, sub: feed.Subscriber) -> None:
        self.dropped_clients += 1
        reason = f"too slow: over {sub.limit} messages behind (server.client_queue); reconnect with ?since={sub.cursor}"
        log.warning("dropping %s: %s", ws.remote_address, reason)
        asyncio.get_running_loop().create_task(_close_or_abort(ws, TOO_SLOW, reason))

    # -- WebSocket connections --------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        path = urlsplit(ws.request.path).path
        if path == "/ws":
            await self._feed_client(ws)
        elif path == "/mic":
            await self._mic_client(ws)
        elif path == "/enroll":
            await self._enroll_client(ws)

    async def _feed_client(self, ws: ServerConnection) -> None:
        query = parse_qs(urlsplit(ws.request.path).query)
        try:
            since, problem = feed.parse_since(query.get("since", [])), None
        except ValueError as exc:
            since, problem = None, str(exc)
        # Reading the head and registering happen in one loop step: no message can slip between.
        sub = feed.Subscriber.at(self.log, since, self.config.client_queue)
        sub.replies.append(self.log.reply("hello", self.hello()))
        if problem:
            sub.replies.append(self.log.reply("error", feed.error_body("bad_since", problem)))
        wake = asyncio.Event()
        self._clients[ws] = (sub, wake)
        sender = asyncio.create_task(self._send_loop(ws, sub, wake))
        try:
            async for frame in ws:
                type_, body = feed.answer(frame)
                sub.replies.append(self.log.reply(type_, body))
                if sub.overflowed(self.log.head):
                    self._drop(ws, sub)
                    break
                wake.set()
        except ConnectionClosed:
            pass
        finally:
            del self._clients[ws]
            sender.cancel()

    async def _send_loop(self, ws: ServerConnection, sub: feed.Subscriber, wake: asyncio.Event) -> None:
        try:
            while not sub.dropped:
                batch = sub.take(self.log)
                if not batch:
                    wake.clear()
                    await wake.wait()
                    continue
                for text in batch:
                    await ws.send(text)
        except ConnectionClosed:
            pass

    async def _mic_client(self, ws: ServerConnection) -> None:
        browser = self.browser
        if browser is None:
            await ws.close(1008, "this daemon does not take a browser microphone; start it with --source browser")
            return
        refusal = browser.attach()
        if refusal:
            await ws.close(1013, refusal)
            return
        try:
            async for frame in ws:
                problem = browser.feed(frame)
                if problem:
                    await ws.send(self.log.reply("error", feed.error_body("bad_frame", problem)))
        except ConnectionClosed:
            pass
        finally:
            browser.detach()

    async def _enroll_client(self, ws: ServerConnection) -> None:
        """Collect one enrolment's audio, then answer `enrolled` or an `error`, and close."""
        enrolment = self.enrolment
        if enrolment is None:
            await ws.close(1008, "this daemon does not tell voices apart (--speakers 0 or --channels split)")
            return
        role = parse_qs(urlsplit(ws.request.path).query).get("role", [""])[-1]
        try:
            enrolment.check_role(role)
        except UserError as exc:
            await ws.send(self.log.reply("error", feed.error_body("enroll_failed", str(exc))))
            await ws.close()
            return
        pcm = bytearray()
        try:
            async for frame in ws:
                if isinstance(frame, bytes):
                    pcm += frame
                    if enrolment.too_long(len(pcm) // 2):
                        raise UserError(f"enrolment audio is longer than {enrolment.MAX_S:g} s; 10-20 s of speech is enough")
                    continue
                if not _is_done(frame):
                    continue
                body = await asyncio.to_thread(enrolment.finish, role, bytes(pcm))
                await ws.send(self.log.reply("enrolled", body))
                break
        except UserError as exc:
            await ws.send(self.log.reply("error", feed.error_body("enroll_failed", str(exc))))
        except ConnectionClosed:
            return
        await ws.close()

    # -- HTTP ---------------------------------------------------------------------------------

    async def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        path = url.path
        query = parse_qs(url.query)
        upgrade = "websocket" in request.headers.get("Upgrade", "").lower()
        if path in ("/ws", "/mic", "/enroll") or path.startswith("/api/"):
            refusal = self._refuse(request, query)
            if refusal:
                return _text(ws, *refusal)
            if path.startswith("/api/"):
                return await self._api(ws, path, request.headers.get("Range"))
            return None if upgrade else _text(ws, 426, f"{path} is a WebSocket endpoint; connect with ws://")
        if upgrade:
            return _text(ws, 404, f"no WebSocket endpoint at {path}; the feed is /ws, the browser microphone /mic")
        return await self._static(ws, path)

    def _refuse(self, request: Request, query: dict[str, list[str]]) -> tuple[int, str] | None:
        origin = request.headers.get("Origin")
        if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("Host", ""):
            return 403, f"requests from the page at {origin} are refused: open the dashboard from this server"
        if self.config.token:
            given = query.get("token", [""])[-1]
            if not hmac.compare_digest(given.encode(), self.config.token.encode()):
                return 401, "missing or wrong token: add ?token=... (the server's server.token)"
        return None

    async def _static(self, ws: ServerConnection, path: str) -> Response:
        file = _web_file(self.web_dir, path)
        if file is None:
            return _text(ws, 404, f"not found: {path}")
        body = await asyncio.to_thread(file.read_bytes)
        content_type = CONTENT_TYPES.get(file.suffix.lower(), "application/octet-stream")
        return _body(ws, body, content_type)

    async def _api(self, ws: ServerConnection, path: str, byte_range: str | None) -> Response:
        parts = [unquote(p) for p in path.split("/")[2:]]
        if parts == ["sessions"]:
            sessions = await asyncio.to_thread(recorder.list_sessions, self.record_dir) if self.record_dir else []
            return _body(ws, json.dumps(sessions, ensure_ascii=False).encode(), "application/json")
        if len(parts) == 3 and parts[0] == "sessions" and parts[2] in ("feed.jsonl", "audio.wav"):
            folder = self._session_folder(parts[1])
            if folder is None:
                return _text(ws, 404, f"no recorded session {parts[1]!r}; GET /api/sessions lists them")
            if parts[2] == "audio.wav":
                body = await asyncio.to_thread(recorder.wav_bytes, folder / "audio.wav")
                return _ranged(ws, body, "audio/wav", byte_range)
            body = await asyncio.to_thread((folder / "feed.jsonl").read_bytes)
            return _body(ws, body, "application/x-ndjson; charset=utf-8")
        return _text(ws, 404, "unknown API path; the API is /api/sessions, /api/sessions/ID/feed.jsonl and /api/sessions/ID/audio.wav")

    def _session_folder(self, session_id: str) -> Path | None:
        """Only the name of a session folder that exists right under the record dir."""
        if self.record_dir is None or not SESSION_ID.fullmatch(session_id):
            return None
        folder = self.record_dir / session_id
        if folder.is_symlink() or not (folder / "meta.json").is_file():
            return None
        return folder


def _is_done(frame: str) -> bool:
    """Is this text frame `{"type": "done"}` (the end of an enrolment's audio)?"""
    try:
        message = json.loads(frame)
    except json.JSONDecodeError:
        return False
    return isinstance(message, dict) and message.get("type") == "done"


def _web_file(root: Path, path: str) -> Path | None:
    """The file of `web/` that a URL path names, or None: never a file outside `root`."""
    rel = unquote(path)
    if "\x00" in rel or "\\" in rel:
        return None
    parts = PurePosixPath(rel).parts[1:] or ("index.html",)
    if any(part in ("..", ".") or part.startswith(".") for part in parts):
        return None
    try:
        file = root.joinpath(*parts).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not file.is_relative_to(root) or not file.is_file():
        return None
    return file


def _text(ws: ServerConnection, status: int, text: str) -> Response:
    return ws.respond(http.HTTPStatus(status), text + "\n")


def _ranged(ws: ServerConnection, body: bytes, content_type: str, byte_range: str | None) -> Response:
    """Honour one `Range: bytes=...` (an <audio> element seeks with them); anything else gets it all."""
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", (byte_range or "").strip())
    if not match or match.groups() == ("", ""):
        response = _body(ws, body, content_type)
        response.headers["Accept-Ranges"] = "bytes"
        return response
    first, last = match.groups()
    size = len(body)
    start = int(first) if first else max(size - int(last), 0)
    end = min(int(last), size - 1) if first and last else size - 1
    if start >= size or start > end:
        response = _text(ws, 416, f"range {byte_range} is outside the {size} bytes")
        response.headers["Content-Range"] = f"bytes */{size}"
        return response
    response = _body(ws, body[start : end + 1], content_type, status=(206, "Partial Content"))
    response.headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    return response


def _body(ws: ServerConnection, body: bytes, content_type: str, status: tuple[int, str] = (200, "OK")) -> Response:
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-cache"),
            ("X-Content-Type-Options", "nosniff"),
        ]
    )
    return Response(*status, headers, body)


async def _close_or_abort(ws: ServerConnection, code: int, reason: str) -> None:
    """Close politely if the client still reads; a client that does not gets its TCP connection cut."""
    try:
        async with asyncio.timeout(1.0):
            await ws.close(code, reason[:120])
    except (TimeoutError, ConnectionClosed):
        pass
    ws.transport.abort()
