"""Replay a recorded session's feed (its own session id and seq numbers) at its pace or faster.

A replay re-publishes the recorded messages as they are, paced by their recorded `t` divided by
`--speed`, so a dashboard that reconnects with `?since=N`, even to a replay that was restarted,
continues exactly after message N. It does not analyse anything again: for that, run
`python -m streamer run --source session:DIR --fast`. A recording cut off by a crash ends with a
`session_end` whose reason is "recording cut off", numbered after the last message that survived.
"""
from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from core.audio import SAMPLE_RATE
from core.errors import UserError
from core.labels import LABELS
from streamer import feed, recorder
from streamer.config import Config, load_config, override
from streamer.rooms import DEFAULT_ROOM, Rooms
from streamer.server import FeedServer, stop_on_signals

FAST_BATCH = 200  # most messages published between yields to the event loop with --fast
FAST_WAIT_S = 2.0  # how long --fast waits for a client to take a batch before going on without it


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", metavar="DIR", help="a session folder written by `run --record` (RECORD_DIR/SESSION_ID)")
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=float, default=1.0, help="multiple of the recorded pace (default 1)")
    pace.add_argument("--fast", action="store_true", help="publish everything at once")
    parser.add_argument("--config", help="a config.toml (server settings)")
    parser.add_argument("--host", help="bind address (default: server.host)")
    parser.add_argument("--port", type=int, help="port (default: server.port; 0 = any free port)")
    parser.add_argument("--exit-at-end", action="store_true", help="stop serving when the replay ends")


def load_recording(folder: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """meta.json and the numbered messages, checked to be one session numbered 1, 2, 3, ..."""
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder; pass a session folder written by `run --record DIR` (DIR/SESSION_ID)")
    meta = recorder.read_meta(folder)
    messages = recorder.read_feed(folder)
    session_id = meta.get("id") or folder.name
    for expected, message in enumerate(messages, 1):
        if message.get("session") != session_id or message.get("seq") != expected:
            raise UserError(
                f"{folder}/feed.jsonl message {expected} is seq {message.get('seq')} of session "
                f"{message.get('session')!r}, expected seq {expected} of {session_id!r}: the recording is damaged"
            )
    return meta, messages


def hello_for(meta: dict[str, Any], started: datetime) -> dict[str, Any]:
    return feed.hello_body(LABELS, meta.get("models") or {}, meta.get("language") or "", meta.get("source") or "",
                           started, replay=True)


async def publish(log: feed.SessionLog, messages: list[dict[str, Any]], speed: float | None, duration: float,
                  backlog: Callable[[], int] = lambda: 0, client_queue: int = 2 * FAST_BATCH) -> None:
    """Append the recorded messages to `log` at `speed` times their pace (None = at once); a
    recording without its `session_end` gets one, `duration` being the audio that survived.

    At once means at the pace of the slowest reader: a replay has no clock to keep, so it publishes
    in batches of at most half of server.client_queue and, before each, waits until every client
    (`backlog`: the messages the furthest-behind one lacks) lacks at most another half, rather than
    have the server drop a dashboard that reads a little slower than a loop can publish. A client
    that takes nothing for FAST_WAIT_S is left behind and dropped as in a live session."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    batch = max(min(FAST_BATCH, client_queue // 2), 1)
    for i, message in enumerate(messages):
        if speed is None:
            if i % batch == 0:
                await asyncio.sleep(0)
                give_up = loop.time() + FAST_WAIT_S
                while backlog() > client_queue - batch and loop.time() < give_up:
                    await asyncio.sleep(0.005)
        else:
            delay = start + float(message.get("t", 0.0)) / speed - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        log.append(message)
    if not messages or messages[-1].get("type") != "session_end":
        utterances = sum(m.get("type") == "utterance" for m in messages)
        t = float(messages[-1].get("t", 0.0)) if messages else 0.0
        log.publish("session_end", feed.session_end_body("recording cut off", utterances, duration), t=t)


async def replay(folder: Path, config: Config, speed: float | None, exit_at_end: bool) -> int:
    meta, messages = load_recording(folder)
    try:
        started = datetime.fromisoformat(meta["started"])
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{folder}/meta.json has no valid 'started' time; the recording's metadata is damaged") from None
    log = feed.SessionLog(meta.get("id") or folder.name, started)
    hello = hello_for(meta, started)
    server = FeedServer(config.server, Rooms.single(log, lambda: hello))
    await server.start()
    pace = "as fast as possible" if speed is None else f"at {speed:g}x"
    print(f"streamer: replaying session {log.session_id} ({len(messages)} messages) {pace} on "
          f"http://{config.server.host}:{server.port}/ (feed ws://{config.server.host}:{server.port}/ws)",
          file=sys.stderr, flush=True)
    stop = stop_on_signals()
    audio = folder / "audio.wav"
    duration = len(recorder.pcm16(audio)) / SAMPLE_RATE if audio.is_file() else 0.0
    publishing = asyncio.create_task(publish(log, messages, speed, duration, lambda: server.backlog(DEFAULT_ROOM),
                                             config.server.client_queue))
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({publishing, stopping}, return_when=asyncio.FIRST_COMPLETED)
    publishing.cancel()
    if not stop.is_set():
        print(f"streamer: replay done ({log.head} messages)", file=sys.stderr, flush=True)
        if not exit_at_end:
            print("streamer: still serving the replayed session; Ctrl-C to stop", file=sys.stderr, flush=True)
            await stop.wait()
    stopping.cancel()
    await server.close()
    return 0


def run(args: argparse.Namespace) -> int:
    if not args.fast and not args.speed > 0:
        raise UserError(f"--speed {args.speed} must be above 0 (2 = twice as fast); or use --fast")
    config = override(load_config(args.config), {"server.host": args.host, "server.port": args.port})
    return asyncio.run(replay(Path(args.folder).expanduser(), config, None if args.fast else args.speed, args.exit_at_end))
