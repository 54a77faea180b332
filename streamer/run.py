"""Run the monitor: serve the dashboard and the live feed of one source (mic, file, session, browser).

`serve` loads the models, starts the server and runs one `Session` (streamer/session.py) until
the source ends or a signal comes; after a source ends it keeps serving the finished session
unless told to exit.
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import traceback
from pathlib import Path
from typing import Any

from core.audio import SAMPLE_RATE
from core.errors import UserError
from streamer import feed, sources
from streamer.access import check_exposure
from streamer.config import Config, load_config, override
from streamer.devices import MicUnavailable
from streamer.recorder import Recorder
from streamer.server import FeedServer, stop_on_signals
from streamer.session import Session


def _redacted(config: Config) -> dict[str, Any]:
    """The config as recorded in meta.json, without the token."""
    data = dataclasses.asdict(config)
    if data["server"]["token"]:
        data["server"]["token"] = "(set)"
    return data


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="a config.toml (default: built-in defaults)")
    parser.add_argument("--source", help="mic, file:PATH, session:DIR or browser (default: audio.source)")
    parser.add_argument("--language", help="speech language for Whisper, e.g. ko, en (default: asr.language)")
    parser.add_argument("--host", help="bind address (default: server.host, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: server.port, 8765; 0 = any free port)")
    parser.add_argument("--record", metavar="DIR", help="record the session into a folder under DIR")
    parser.add_argument("--bundle", help="emotion model bundle folder, or 'default'")
    parser.add_argument("--device", help="microphone name or index (`python -m streamer devices`)")
    parser.add_argument("--fast", action="store_true", help="play files as fast as possible instead of at real time")
    parser.add_argument("--exit-at-end", action="store_true", help="stop serving when the source ends (scripts, benchmarks)")


def config_from_args(args: argparse.Namespace) -> Config:
    config = load_config(args.config)
    return override(config, {
        "audio.source": args.source, "asr.language": args.language, "server.host": args.host,
        "server.port": args.port, "record.dir": args.record, "emotion.bundle": args.bundle,
        "audio.device": args.device, "audio.realtime": False if args.fast else None,
    })


def make_source(config: Config) -> sources.Source:
    """The source a spec names, checked now so a typo is an error before anything loads."""
    spec = config.audio.source
    block = int(config.audio.block_ms * SAMPLE_RATE / 1000)
    kind, _, rest = spec.partition(":")
    if spec == "mic":
        return sources.MicSource(config.audio.device, block)
    if spec == "browser":
        return sources.BrowserSource()
    if kind == "file" and rest:
        if not Path(rest).expanduser().is_file():
            raise UserError(f"--source {spec}: {rest} is not a file; give the path of an audio file")
        return sources.file_source(rest, config.audio.realtime, block)
    if kind == "session" and rest:
        if not (Path(rest).expanduser() / "audio.wav").is_file():
            raise UserError(f"--source {spec}: {rest}/audio.wav does not exist; give a folder written by --record")
        return sources.session_source(rest, config.audio.realtime, block)
    raise UserError(f"unknown source {spec!r}; use mic, file:PATH, session:DIR or browser")


def load_pipeline(config: Config) -> tuple[Any, Any]:
    """The segmenter and the analyzer (Whisper and the emotion bundle: seconds to load)."""
    from streamer.analyzer import Analyzer
    from streamer.segmenter import Segmenter

    return Segmenter(config.vad), Analyzer(config)


async def serve(config: Config, *, exit_at_end: bool = False) -> int:
    """Load, serve, analyse; after the source ends keep serving until a signal unless `exit_at_end`."""
    check_exposure(config.server)
    source = make_source(config)
    mic_problem = None
    if isinstance(source, sources.MicSource):
        try:
            source.open()
        except MicUnavailable as exc:
            mic_problem = str(exc)
            source = sources.BrowserSource()
    record_dir = Path(config.record.dir).expanduser() if config.record.dir else None
    if record_dir is not None:
        try:
            record_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create the record folder {record_dir} ({exc.strerror}); pick a writable --record DIR") from None
    print("streamer: loading models ...", file=sys.stderr, flush=True)
    segmenter, analyzer = await asyncio.to_thread(load_pipeline, config)
    log = feed.SessionLog(feed.new_session_id())
    server = FeedServer(config.server, log, lambda: session.hello(), record_dir=record_dir)
    recorder = None
    if record_dir is not None:
        recorder = Recorder(record_dir, log, {"source": source.name, "language": config.asr.language,
                                              "models": analyzer.models(), "config": _redacted(config)},
                            on_failure=lambda reason: session.recording_failed(reason))
    session = Session(config, source, segmenter, analyzer, log, server=server, recorder=recorder)
    await server.start()
    token = "?token=..." if config.server.token else ""
    print(f"streamer: session {log.session_id}, serving http://{config.server.host}:{server.port}/{token} "
          f"(feed ws://{config.server.host}:{server.port}/ws)", file=sys.stderr, flush=True)
    if mic_problem:
        session.report("no_microphone", f"{mic_problem}. Serving on: the dashboard's microphone button is the input")
    stop = stop_on_signals()
    running = asyncio.create_task(session.run())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not running.done():
        running.cancel()
    reason = (await asyncio.gather(running, return_exceptions=True))[0]
    if isinstance(reason, BaseException) and not isinstance(reason, asyncio.CancelledError):
        traceback.print_exception(reason, file=sys.stderr)
        reason = "failed"
    elif not isinstance(reason, str):
        reason = "shutdown"
    print(f"streamer: session ended ({reason}), {session.counters.utterances} utterances", file=sys.stderr, flush=True)
    if not exit_at_end and not stop.is_set():
        print("streamer: still serving the finished session; Ctrl-C to stop", file=sys.stderr, flush=True)
        await stop.wait()
    stopping.cancel()
    await server.close()
    return 1 if reason in ("source failed", "failed") else 0


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    return asyncio.run(serve(config, exit_at_end=args.exit_at_end))
