"""One asyncio `websockets` server for everything the daemon serves on HOST:PORT.

- `/ws`: the feed. Each client is a `feed.Subscriber` (a cursor into the session log) and one
  sender task; publishing only moves cursors and wakes senders, so a client that stops reading
  blocks nobody but itself, and is dropped (close code 1008) once `server.client_queue` messages
  wait for it.
- `/mic`: the browser as microphone (binary PCM16 LE 16 kHz mono frames), handed to the
  session's `BrowserSource`.
- `/enroll?role=NAME`: the dashboard's "enroll my voice" (the same frames, then `{"type": "done"}`),
  handed to the room's `BrowserEnrolment` (streamer/enroll.py).
- Plain HTTP GETs, answered from `process_request` before any WebSocket handshake: the files of
  `web/` (nothing outside it: no `..`, no symlink out, no dot files) and `/api/sessions...` for
  recorded sessions.

Security (streamer/access.py): off loopback a token is required to start at all; every request's
Host must be a name the daemon answers to and a browser's Origin must be the daemon itself, so a
web page from elsewhere cannot read a live session through the user's browser; with a token set,
`/ws`, `/mic` and `/api/` need `?token=`. Recordings are served from their files a range at a time
(streamer/ranges.py).
"""
from __future__ import annotations

import asyncio
import email.utils
import fcntl
import http
import json
import logging
import re
import signal
import socket
import struct
import termios
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qs, unquote, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from core.errors import UserError
from streamer import feed, ranges, recorder
from streamer.access import check_exposure, reachable_hosts, refusal
from streamer.config import ServerConfig
from streamer.rooms import Room, RoomRefused, Rooms


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
DROP_GRACE_S = 10.0  # a dropped client has this long to read what was sent and the close frame
FEED_SNDBUF = 1 << 16  # a feed socket's kernel send buffer: bounds what waits there for a slow client
log = logging.getLogger("streamer.server")


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
        rooms: Rooms,
        web_dir: Path | None = None,
        record_dir: Path | None = None,
    ) -> None:
        check_exposure(config)
        self.config = config
        self.rooms = rooms
        self.web_dir = (web_dir or dashboard_dir()).resolve()
        self.record_dir = record_dir
        # room name -> its feed clients: a room's messages wake only its own clients
        self._clients: dict[str, dict[ServerConnection, tuple[feed.Subscriber, asyncio.Event]]] = {}
        self._server: Server | None = None
        self._hosts = reachable_hosts(config)
        self._downloads = asyncio.Semaphore(ranges.FULL_AT_ONCE)
        self.dropped_clients = 0
        rooms.watch(self._watch)

    def _watch(self, room: Room) -> None:
        self._clients.setdefault(room.name, {})
        room.log.listen(lambda entry: self._on_entry(room, entry))

    @property
    def clients(self) -> int:
        return sum(len(clients) for clients in self._clients.values())

    def clients_of(self, room: str) -> int:
        return len(self._clients.get(room, {}))

    def backlog(self, room: str) -> int:
        """Messages the furthest-behind feed client of `room` has not received (0 with no clients)."""
        head = self.rooms.find(room).log.head
        behind = [0]
        for ws, (sub, _wake) in self._clients.get(room, {}).items():
            if not sub.dropped:
                sub.acknowledged(_unacknowledged_bytes(ws))
                behind.append(sub.pending(head))
        return max(behind)

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

    def _on_entry(self, room: Room, entry: feed.Entry) -> None:
        for ws, (sub, wake) in list(self._clients[room.name].items()):
            if sub.dropped:
                continue
            sub.acknowledged(_unacknowledged_bytes(ws))
            if sub.overflowed(room.log.head):
                self._drop(ws, sub)
            else:
                wake.set()

    def _drop(self, ws: ServerConnection, sub: feed.Subscriber) -> None:
        self.dropped_clients += 1
        reason = f"too slow: over {sub.limit} messages behind (server.client_queue); reconnect with ?since={sub.sent}"
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

    async def _room(self, ws: ServerConnection, query: dict[str, list[str]], *,
                    microphone: bool = False) -> Room | None:
        """The room the connection asks for with ?room=, or None once it is closed with the reason."""
        asked = _room_asked(query)
        try:
            return await self.rooms.for_microphone(asked) if microphone else self.rooms.find(asked)
        except RoomRefused as exc:
            await ws.close(exc.code, exc.reason[:120])
            return None

    async def _feed_client(self, ws: ServerConnection) -> None:
        query = parse_qs(urlsplit(ws.request.path).query)
        room = await self._room(ws, query)
        if room is None:
            return
        log_ = room.log
        try:
            since, problem = feed.parse_since(query.get("since", [])), None
        except ValueError as exc:
            since, problem = None, str(exc)
        # Reading the head and registering happen in one loop step: no message can slip between.
        sub = feed.Subscriber.at(log_, since, self.config.client_queue)
        sub.replies.append(log_.reply("hello", room.hello()))
        if problem:
            sub.replies.append(log_.reply("error", feed.error_body("bad_since", problem)))
        wake = asyncio.Event()
        _limit_send_buffer(ws)
        clients = self._clients[room.name]
        clients[ws] = (sub, wake)
        sender = asyncio.create_task(self._send_loop(ws, log_, sub, wake))
        try:
            async for frame in ws:
                type_, body = feed.answer(frame)
                sub.replies.append(log_.reply(type_, body))
                if sub.overflowed(log_.head):
                    self._drop(ws, sub)
                    break
                wake.set()
        except ConnectionClosed:
            pass
        finally:
            del clients[ws]
            sender.cancel()

    async def _send_loop(self, ws: ServerConnection, log_: feed.SessionLog, sub: feed.Subscriber,
                         wake: asyncio.Event) -> None:
        try:
            while not sub.dropped:
                batch = sub.take(log_)
                if not batch:
                    wake.clear()
                    await wake.wait()
                    continue
                for seq, text in batch:
                    if sub.dropped:
                        return  # the close frame goes right after the last frame handed over
                    if seq is not None:
                        sub.sent = seq  # the frame is in the connection once send() starts waiting
                    await ws.send(text)
                    sub.wrote(seq, _frame_bytes(text))
        except ConnectionClosed:
            pass

    async def _mic_client(self, ws: ServerConnection) -> None:
        room = await self._room(ws, parse_qs(urlsplit(ws.request.path).query), microphone=True)
        if room is None:
            return
        browser = room.browser
        if browser is None:
            await ws.close(1008, "this room does not take a browser microphone; start it with --source browser")
            return
        refusal = browser.attach()
        if refusal:
            await ws.close(1013, refusal)
            return
        try:
            async for frame in ws:
                problem = browser.feed(frame)
                if problem:
                    await ws.send(room.log.reply("error", feed.error_body("bad_frame", problem)))
        except ConnectionClosed:
            pass
        finally:
            browser.detach()

    async def _enroll_client(self, ws: ServerConnection) -> None:
        """Collect one enrolment's audio, then answer `enrolled` or an `error`, and close."""
        query = parse_qs(urlsplit(ws.request.path).query)
        room = await self._room(ws, query)
        if room is None:
            return
        enrolment = room.enrolment
        if enrolment is None:
            await ws.close(1008, "this room does not tell voices apart (--speakers 0 or --channels split)")
            return
        role = query.get("role", [""])[-1]
        try:
            enrolment.check_role(role)
        except UserError as exc:
            await ws.send(room.log.reply("error", feed.error_body("enroll_failed", str(exc))))
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
                await ws.send(room.log.reply("enrolled", body))
                break
        except UserError as exc:
            await ws.send(room.log.reply("error", feed.error_body("enroll_failed", str(exc))))
        except ConnectionClosed:
            return
        await ws.close()

    # -- HTTP ---------------------------------------------------------------------------------

    async def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        path = url.path
        query = parse_qs(url.query)
        upgrade = "websocket" in request.headers.get("Upgrade", "").lower()
        guarded = path in ("/ws", "/mic", "/enroll") or path.startswith("/api/")
        refused = refusal(request.headers, query, self.config, self._hosts, self.port, needs_token=guarded)
        if refused:
            return _text(ws, *refused)
        if guarded:
            if path.startswith("/api/"):
                return await self._api(ws, path, request.headers.get("Range"))
            return None if upgrade else _text(ws, 426, f"{path} is a WebSocket endpoint; connect with ws://")
        if upgrade:
            return _text(ws, 404, f"no WebSocket endpoint at {path}; the feed is /ws, the browser microphone /mic")
        return await self._static(ws, path)

    async def _static(self, ws: ServerConnection, path: str) -> Response:
        file = _web_file(self.web_dir, path)
        if file is None:
            return _text(ws, 404, f"not found: {path}")
        body = await asyncio.to_thread(file.read_bytes)
        content_type = CONTENT_TYPES.get(file.suffix.lower(), "application/octet-stream")
        return _body(ws, body, content_type)

    async def _api(self, ws: ServerConnection, path: str, byte_range: str | None) -> Response:
        parts = [unquote(p) for p in path.split("/")[2:]]
        if parts == ["rooms"]:
            return _body(ws, json.dumps([room.info() for room in self.rooms], ensure_ascii=False).encode(), "application/json")
        if parts == ["sessions"]:
            sessions = await asyncio.to_thread(recorder.list_sessions, self.record_dir) if self.record_dir else []
            return _body(ws, json.dumps(sessions, ensure_ascii=False).encode(), "application/json")
        if len(parts) == 3 and parts[0] == "sessions" and parts[2] in ("feed.jsonl", "audio.wav"):
            folder = self._session_folder(parts[1])
            if folder is None:
                return _text(ws, 404, f"no recorded session {parts[1]!r}; GET /api/sessions lists them")
            file = folder / parts[2]
            if file.is_symlink() or not file.is_file():  # a link in a session folder may point anywhere
                return _text(ws, 404, f"recorded session {parts[1]!r} has no {parts[2]}")
            if parts[2] == "audio.wav":
                return await self._audio(ws, file, byte_range)
            body = await asyncio.to_thread(file.read_bytes)
            return _body(ws, body, "application/x-ndjson; charset=utf-8")
        return _text(ws, 404, "unknown API path; the API is /api/rooms, /api/sessions, /api/sessions/ID/feed.jsonl and "
                              "/api/sessions/ID/audio.wav")

    async def _audio(self, ws: ServerConnection, path: Path, byte_range: str | None) -> Response:
        """A recording, a range at a time from the file (streamer/ranges.py)."""
        wav = await asyncio.to_thread(ranges.WavFile.open, path)
        try:
            span = ranges.requested(byte_range, wav.size)
        except ranges.BadRange as exc:
            response = _text(ws, 416, str(exc))
            response.headers["Content-Range"] = f"bytes */{wav.size}"
            return response
        if span is None:
            if self._downloads.locked():
                response = _text(ws, 503, "other downloads of recordings are in progress; retry in a few seconds")
                response.headers["Retry-After"] = "5"
                return response
            async with self._downloads:
                body = await asyncio.to_thread(wav.read, 0, wav.size - 1)
            response = _body(ws, body, "audio/wav")
        else:
            first, last = span
            body = await asyncio.to_thread(wav.read, first, last)
            response = _body(ws, body, "audio/wav", status=(206, "Partial Content"))
            response.headers["Content-Range"] = f"bytes {first}-{last}/{wav.size}"
        response.headers["Accept-Ranges"] = "bytes"
        return response

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


def _room_asked(query: dict[str, list[str]]) -> str | None:
    values = query.get("room", [])
    return values[-1] if values else None


def _frame_bytes(text: str) -> int:
    """Bytes of the unmasked server-to-client frame that carries `text` (RFC 6455 5.2)."""
    size = len(text.encode("utf-8"))
    return size + (2 if size < 126 else 4 if size < 1 << 16 else 10)


def _unacknowledged_bytes(ws: ServerConnection) -> int:
    """What this side still holds for the client: the connection's write buffer and the kernel's
    unacknowledged send queue (Linux SIOCOUTQ; elsewhere only the write buffer is known)."""
    transport = ws.transport
    held = transport.get_write_buffer_size() if transport is not None else 0
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is not None and hasattr(termios, "TIOCOUTQ"):
        try:
            held += struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
        except OSError:
            pass  # the socket is closing
    return held


def _limit_send_buffer(ws: ServerConnection) -> None:
    """A small fixed kernel send buffer for a feed client: the kernel otherwise grows it to megabytes
    for a client that does not read, and all of that would wait before anyone noticed."""
    sock = ws.transport.get_extra_info("socket") if ws.transport is not None else None
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, FEED_SNDBUF)


async def _close_or_abort(ws: ServerConnection, code: int, reason: str) -> None:
    """Close politely: a client that reads on gets every frame sent and then the close frame (with
    the `since` to resume from); one that still reads nothing after DROP_GRACE_S is cut off."""
    try:
        async with asyncio.timeout(DROP_GRACE_S):
            await ws.close(code, reason[:120])
    except (TimeoutError, ConnectionClosed):
        pass
    ws.transport.abort()
