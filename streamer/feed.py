"""The feed without I/O: the session log that numbers messages, the message bodies, and each
client's place in the log (docs/feed.md, schema version 1).

Like the `websockets` library's sans-I/O core, nothing here awaits or touches a socket, so the
rules that the dashboard relies on (numbering without gaps, resume with `?since=N`, when a slow
client is dropped) are plain code that tests can drive message by message. `server.py` is the
asyncio adapter that moves these strings onto connections.

Resume without a race: a client is a cursor into the log, not a copy of it. On connect the
server creates a `Subscriber` at `since` (or at the log's head) in the same event-loop step that
reads the head, and the client's sender only ever takes "everything after my cursor". Backlog
and live messages therefore come from one sequence, so nothing can be sent twice or skipped,
and a cursor beyond the head (a dashboard reconnecting to a replay that restarted) simply
waits until the log reaches it.
"""
from __future__ import annotations

import json
import math
import re
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

SCHEMA = 1
NUMBERED = ("utterance", "partial", "status", "error", "session_end")
END_REASONS = ("source ended", "source failed", "shutdown", "recording cut off", "failed")
SINCE = re.compile(r"[0-9]{1,15}")


def new_session_id(now: datetime | None = None) -> str:
    """Sortable, folder-safe and unique enough: `20260509-225909-3f2a`."""
    now = now or datetime.now(timezone.utc).astimezone()
    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def encode(message: dict[str, Any]) -> str:
    """One JSON text frame; non-ASCII kept (Korean transcripts stay readable in feed.jsonl)."""
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


@dataclass(frozen=True)
class Entry:
    """A numbered message, kept with its encoded text so fan-out encodes it once, not per client."""

    seq: int
    message: dict[str, Any]
    text: str


class SessionLog:
    """Every numbered message of one session, in order; the single source of `seq`.

    The whole session is kept in memory because `since=0` must be able to replay it from the
    start; at about one status message a second an hour is a few thousand small entries.
    """

    def __init__(
        self,
        session_id: str,
        started: datetime | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.session_id = session_id
        self.started = started or datetime.now(timezone.utc).astimezone()
        self._clock = clock
        self._t0 = clock()
        self._entries: list[Entry] = []
        self._listeners: list[Callable[[Entry], None]] = []

    @property
    def head(self) -> int:
        """The seq of the latest numbered message (0 before the first)."""
        return len(self._entries)

    def now(self) -> float:
        """Seconds since the session started, as every message's `t`."""
        return round(self._clock() - self._t0, 3)

    def listen(self, callback: Callable[[Entry], None]) -> None:
        """Call `callback(entry)` for each new numbered message (the recorder, the fan-out)."""
        self._listeners.append(callback)

    def publish(self, type_: str, body: dict[str, Any], t: float | None = None) -> Entry:
        """Number a message for everyone and keep it."""
        if type_ not in NUMBERED:
            raise ValueError(f"{type_!r} is not a numbered message type; numbered types are {NUMBERED}")
        message = {"type": type_, "session": self.session_id, "seq": self.head + 1,
                   "t": self.now() if t is None else t, **body}
        return self._keep(message)

    def append(self, message: dict[str, Any]) -> Entry:
        """Keep an already-numbered message as it is (replay keeps the recorded seq and t)."""
        if message.get("session") != self.session_id:
            raise ValueError(f"message of session {message.get('session')!r} in log of {self.session_id!r}")
        if message.get("seq") != self.head + 1:
            raise ValueError(f"message seq {message.get('seq')!r} does not follow {self.head}")
        if message.get("type") not in NUMBERED:
            raise ValueError(f"message type {message.get('type')!r} is not a numbered type")
        return self._keep(message)

    def _keep(self, message: dict[str, Any]) -> Entry:
        entry = Entry(message["seq"], message, encode(message))
        self._entries.append(entry)
        for callback in self._listeners:
            callback(entry)
        return entry

    def after(self, seq: int, limit: int | None = None) -> list[Entry]:
        """The numbered messages with seq > `seq`, oldest first (at most `limit`)."""
        start = max(seq, 0)
        stop = None if limit is None else start + limit
        return self._entries[start:stop]

    def reply(self, type_: str, body: dict[str, Any]) -> str:
        """An unnumbered message for one client: it carries the latest seq and `reply: true`."""
        return encode({"type": type_, "session": self.session_id, "seq": self.head, "t": self.now(),
                       "reply": True, **body})


def hello_body(
    labels: list[str] | tuple[str, ...],
    models: dict[str, Any],
    language: str,
    source: str,
    started: datetime,
    replay: bool = False,
    speakers: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {"schema": SCHEMA, "labels": list(labels), "models": models, "language": language,
            "source": source, "started": started.isoformat(timespec="seconds"), "replay": replay,
            "speakers": speakers}


def status_body(
    level_db: float | None, speaking: bool, lag_s: float, dropped_frames: int, clients: int, source: str, state: str
) -> dict[str, Any]:
    level = None if level_db is None or not math.isfinite(level_db) else round(max(level_db, -120.0), 1)
    return {"level_db": level, "speaking": speaking, "lag_s": round(lag_s, 2), "dropped_frames": dropped_frames,
            "clients": clients, "source": source, "state": state}


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"code": code, "message": message, **extra}


def session_end_body(reason: str, utterances: int, duration: float, dropped_frames: int = 0,
                     eager: dict[str, Any] | None = None) -> dict[str, Any]:
    if reason not in END_REASONS:
        raise ValueError(f"unknown end reason {reason!r}; reasons are {END_REASONS}")
    body = {"reason": reason, "utterances": utterances, "duration": round(duration, 3), "dropped_frames": dropped_frames}
    if eager is not None:
        body["eager"] = eager
    return body


def parse_since(values: list[str]) -> int | None:
    """The `since` query value: None when absent, else a whole number >= 0 (ValueError otherwise)."""
    if not values:
        return None
    raw = values[-1]
    if not SINCE.fullmatch(raw):  # ASCII digits only: str.isdigit() takes "１２" and "²" too
        raise ValueError(f"since={raw!r} is not a whole number; reconnect with since=N, N the last seq you received (0 = from the start)")
    return int(raw)


def answer(text: str | bytes) -> tuple[str, dict[str, Any]]:
    """The (type, body) of the reply to one client frame on /ws: `pong`, or an `error` that says why."""
    if isinstance(text, bytes):
        return "error", error_body("bad_frame", "binary frames are not accepted on /ws; send JSON text such as {\"type\": \"ping\"} (audio goes to /mic)")
    try:
        message = json.loads(text)
    except json.JSONDecodeError as exc:
        return "error", error_body("bad_frame", f"frame is not valid JSON ({exc.msg} at character {exc.pos}); send a JSON object such as {{\"type\": \"ping\"}}")
    except (RecursionError, ValueError):  # nesting deeper than the parser goes; a number of thousands of digits
        return "error", error_body("bad_frame", "frame is JSON too deeply nested or with a number too long to read; send a small JSON object such as {\"type\": \"ping\"}")
    if not isinstance(message, dict):
        return "error", error_body("bad_frame", f"frame is JSON {type(message).__name__}, not an object; send {{\"type\": \"ping\"}}")
    if message.get("type") == "ping":
        return "pong", {}
    return "error", error_body("bad_frame", f"unknown message type {message.get('type')!r}; the only client message on /ws is {{\"type\": \"ping\"}}")


@dataclass
class Subscriber:
    """One client's position in the log and the policy that drops it when it falls behind.

    A message is *delivered* once the client's machine has it: its bytes have left this process's
    buffers and the kernel's send queue (the client's TCP acknowledged them). `limit`
    (server.client_queue) bounds how many messages published after the client connected may wait
    undelivered, plus its pending replies: whatever sits in the log, in the connection's write buffer
    or in the socket, all of it counts, so a client that stops reading is dropped after `limit` more
    messages, not after the megabytes the socket buffers would hold. The backlog it asked for with
    `since` does not count, so a dashboard can resume a long session from the start.

    `sent` is the last numbered message handed to the connection: frames leave in order, so a close
    frame sent after it follows every message up to `sent` and none after, and "reconnect with
    ?since=`sent`" loses nothing.
    """

    cursor: int
    joined: int
    limit: int
    replies: deque[str] = field(default_factory=deque)
    dropped: bool = False
    sent: int = 0
    delivered: int = 0
    written_bytes: int = 0
    in_flight: deque[tuple[int, int]] = field(default_factory=deque)  # (seq, bytes written once its frame was)

    @classmethod
    def at(cls, log: SessionLog, since: int | None, limit: int) -> "Subscriber":
        head = log.head
        start = head if since is None else since
        return cls(cursor=start, joined=head, limit=limit, sent=start, delivered=start)

    def pending(self, head: int) -> int:
        return max(head - max(self.delivered, self.joined), 0) + len(self.replies)

    def overflowed(self, head: int) -> bool:
        """True once the client is too far behind; it is then dropped for good."""
        if not self.dropped and self.pending(head) > self.limit:
            self.dropped = True
        return self.dropped

    def take(self, log: SessionLog, limit: int = 64) -> list[tuple[int | None, str]]:
        """The next frames to send as (seq, text), replies (seq None) first; advances the cursor."""
        out: list[tuple[int | None, str]] = []
        while self.replies and len(out) < limit:
            out.append((None, self.replies.popleft()))
        if len(out) < limit:
            entries = log.after(self.cursor, limit - len(out))
            if entries:
                self.cursor = entries[-1].seq
            out.extend((entry.seq, entry.text) for entry in entries)
        return out

    def wrote(self, seq: int | None, size: int) -> None:
        """A frame of `size` bytes (a numbered message, or a reply) was written to the connection."""
        self.written_bytes += size
        if seq is not None:
            self.in_flight.append((seq, self.written_bytes))

    def acknowledged(self, unacknowledged_bytes: int) -> None:
        """Everything written but the last `unacknowledged_bytes` has reached the client's machine."""
        acked = self.written_bytes - unacknowledged_bytes
        while self.in_flight and self.in_flight[0][1] <= acked:
            self.delivered = self.in_flight.popleft()[0]
