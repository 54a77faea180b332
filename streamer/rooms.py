"""Rooms: the sessions one daemon serves at once, by name.

A clinic runs one daemon for several counseling rooms: each room has its own source, session,
seq numbers and recording, and all of them share one copy of the models (streamer/analyzer.py
`share`). A client follows one room (`/ws?room=NAME`); a browser microphone feeds one
(`/mic?room=NAME`), and with `--source browser` such a connection opens its room on first use, up
to `server.max_rooms`. One unnamed source is the room DEFAULT_ROOM, and a request without `room`
goes to the only room there is, as before rooms existed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from core.errors import UserError
from streamer import feed

ROOM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")
DEFAULT_ROOM = "main"
NAME_RULE = "1-32 letters, digits, '-' or '_', starting with a letter or digit"


def check_name(name: str) -> str:
    if not ROOM_NAME.fullmatch(name):
        raise UserError(f"room name {name[:40]!r} is not one: use {NAME_RULE}")
    return name


def parse_sources(specs: list[str]) -> list[tuple[str, str]]:
    """`--source` values as (room, spec): NAME=SPEC names a room, a lone SPEC is DEFAULT_ROOM."""
    rooms = []
    for spec in specs:
        name, sep, rest = spec.partition("=")
        if sep and ":" not in name:  # NAME=SPEC (a path like file:/a=b.wav has its ':' first)
            rooms.append((check_name(name), rest))
        else:
            rooms.append((DEFAULT_ROOM, spec))
    names = [name for name, _ in rooms]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise UserError(f"two sources for room {duplicate!r}; give each --source NAME=SPEC a name of its own")
    return rooms


@dataclass
class Room:
    """What the server needs of a room: its log, its hello, and what /api/rooms says of it."""

    name: str
    log: feed.SessionLog
    hello: Callable[[], dict[str, Any]]
    source: str
    browser: Any = None  # the BrowserSource that /mic?room= feeds, if the room takes one
    enrolment: Any = None  # the BrowserEnrolment that /enroll?room= feeds, if the room tells voices apart
    state: Callable[[], str] = lambda: "listening"
    utterances: Callable[[], int] = lambda: 0

    def info(self) -> dict[str, Any]:
        return {"room": self.name, "session": self.log.session_id, "source": self.source, "state": self.state(),
                "started": self.log.started.isoformat(timespec="seconds"), "utterances": self.utterances()}


class RoomRefused(Exception):
    """A request for a room that cannot be had: WebSocket close code and reason."""

    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code, self.reason = code, reason


class Rooms:
    """The rooms of one daemon; `opener` (when given) opens a browser room on first use."""

    def __init__(self, max_rooms: int, opener: Callable[[str], Awaitable[Room]] | None = None):
        self.max_rooms = max_rooms
        self._rooms: dict[str, Room] = {}
        self._opener = opener
        self._watchers: list[Callable[[Room], None]] = []

    @classmethod
    def single(cls, log: feed.SessionLog, hello: Callable[[], dict[str, Any]], source: str = "") -> "Rooms":
        rooms = cls(1)
        rooms.add(Room(DEFAULT_ROOM, log, hello, source))
        return rooms

    def __iter__(self):
        return iter(list(self._rooms.values()))

    def __len__(self) -> int:
        return len(self._rooms)

    def watch(self, callback: Callable[[Room], None]) -> None:
        """Call `callback(room)` for every room, those there now and those added later."""
        self._watchers.append(callback)
        for room in self:
            callback(room)

    def add(self, room: Room) -> Room:
        if len(self._rooms) >= self.max_rooms:
            raise RoomRefused(1013, f"this daemon already serves {self.max_rooms} rooms (server.max_rooms); "
                                    "close one or raise the limit")
        self._rooms[room.name] = room
        for callback in self._watchers:
            callback(room)
        return room

    def find(self, name: str | None) -> Room:
        """The room a request names; without a name, the only room."""
        if name is None:
            if len(self._rooms) == 1:
                return next(iter(self._rooms.values()))
            listing = ", ".join(sorted(self._rooms)) or "none yet"
            raise RoomRefused(1008, f"this daemon serves several rooms ({listing}): add ?room=NAME; GET /api/rooms lists them")
        if not ROOM_NAME.fullmatch(name):
            raise RoomRefused(1008, f"room name {name[:40]!r} is not one: use {NAME_RULE}")
        room = self._rooms.get(name)
        if room is None:
            raise RoomRefused(1008, f"no room {name!r}; GET /api/rooms lists them")
        return room

    async def for_microphone(self, name: str | None) -> Room:
        """The room a /mic connection feeds, opening a browser room on first use where allowed."""
        try:
            return self.find(name)
        except RoomRefused:
            if self._opener is None or name is None or not ROOM_NAME.fullmatch(name):
                raise
        if len(self._rooms) >= self.max_rooms:
            raise RoomRefused(1013, f"this daemon already serves {self.max_rooms} rooms (server.max_rooms); "
                                    "close one or raise the limit")
        return await self._opener(name)
