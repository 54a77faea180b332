"""Run the monitor: serve the dashboard and the live feed of one source, or of several rooms.

`serve` loads the models once, starts the server and runs one `Session` (streamer/session.py) per
room until every source has ended or a signal comes; after the sources end it keeps serving the
finished sessions unless told to exit. Several rooms share the models (ASR batched across them,
streamer/analyzer.py); each room has its own source, session, seq numbers and recording, and a
room whose source fails or stalls leaves the others as they are (streamer/rooms.py).
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
from streamer.rooms import DEFAULT_ROOM, Room, RoomRefused, Rooms, parse_sources
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
    parser.add_argument("--source", action="append", metavar="[NAME=]SPEC",
                        help="mic, file:PATH, session:DIR or browser (default: audio.source); NAME=SPEC, "
                             "given several times, serves each as a room of its own")
    parser.add_argument("--language", help="speech language for Whisper, e.g. ko, en (default: asr.language)")
    parser.add_argument("--host", help="bind address (default: server.host, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: server.port, 8765; 0 = any free port)")
    parser.add_argument("--record", metavar="DIR", help="record each room's session into a folder under DIR")
    parser.add_argument("--bundle", help="emotion model bundle folder, or 'default'")
    parser.add_argument("--device", help="microphone name or index (`python -m streamer devices`)")
    parser.add_argument("--fast", action="store_true", help="play files as fast as possible instead of at real time")
    parser.add_argument("--exit-at-end", action="store_true", help="stop serving when the sources end (scripts, benchmarks)")
    add_speaker_arguments(parser)


def add_speaker_arguments(parser: argparse.ArgumentParser) -> None:
    """The speaker flags `run` and `analyze` share."""
    parser.add_argument("--speakers", type=int, metavar="N", help="voices to tell apart (default: speakers.max_speakers, 2; 0 = off)")
    parser.add_argument("--voiceprints", metavar="DIR", help="folder of enrolled voiceprints (default: speakers.voiceprints)")
    parser.add_argument("--channels", choices=("mix", "split"), help="split: each channel of a stereo input is one speaker (default: audio.channels)")


def speaker_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {"speakers.max_speakers": args.speakers, "speakers.voiceprints": args.voiceprints, "audio.channels": args.channels}


def config_from_args(args: argparse.Namespace) -> Config:
    config = load_config(args.config)
    single = args.source and len(args.source) == 1 and parse_sources(args.source)[0][0] == DEFAULT_ROOM
    return override(config, {
        "audio.source": args.source[0] if single else None, "audio.rooms": args.source if args.source and not single else None,
        "asr.language": args.language, "server.host": args.host,
        "server.port": args.port, "record.dir": args.record, "emotion.bundle": args.bundle,
        "audio.device": args.device, "audio.realtime": False if args.fast else None, **speaker_overrides(args),
    })


def make_source(config: Config, spec: str | None = None) -> sources.Source:
    """The source a spec names (default: audio.source), checked now so a typo is an error before
    anything loads."""
    spec = config.audio.source if spec is None else spec
    block = int(config.audio.block_ms * SAMPLE_RATE / 1000)
    kind, _, rest = spec.partition(":")
    split = config.audio.channels == "split"
    if spec == "mic":
        return sources.MicSource(config.audio.device, block, channels=2 if split else 1)
    if split and kind != "file":
        raise UserError(f"--channels split needs a stereo microphone or file; {spec} gives one channel "
                        "(a recorded session keeps the mix): use --channels mix")
    if spec == "browser":
        return sources.BrowserSource()
    if kind == "file" and rest:
        if not Path(rest).expanduser().is_file():
            raise UserError(f"--source {spec}: {rest} is not a file; give the path of an audio file")
        if split:
            check_stereo(Path(rest).expanduser())
        return sources.file_source(rest, config.audio.realtime, block, mono=not split)
    if kind == "session" and rest:
        if not (Path(rest).expanduser() / "audio.wav").is_file():
            raise UserError(f"--source {spec}: {rest}/audio.wav does not exist; give a folder written by --record")
        return sources.session_source(rest, config.audio.realtime, block)
    raise UserError(f"unknown source {spec!r}; use mic, file:PATH, session:DIR or browser")


def check_stereo(path: Path) -> None:
    """Split channels need two: say so before anything loads, naming the file."""
    from core.audio import AudioError, stream

    try:
        first = next(stream(path, mono=False), None)
    except AudioError as exc:
        raise UserError(str(exc)) from None
    channels = 0 if first is None else first.shape[1]
    if channels < 2:
        raise UserError(f"--channels split: {path} has {channels} channel(s); give a stereo file with one "
                        "microphone per channel, or use --channels mix")


def make_segmenter(config: Config, encoder: Any = None) -> Any:
    """The VAD segmenter, with the speaker stage after it: voices told apart (streamer/speakers.py),
    or one segmenter per channel (streamer/channels.py), or none when speakers are off. Voiceprints
    are read first, so a damaged one stops the start before any model loads."""
    from streamer.segmenter import Segmenter

    if config.audio.channels == "split":
        from streamer.channels import ChannelSegmenter

        keep_s = config.vad.max_utterance_s + 2 * config.vad.speech_pad_ms / 1000 + 1.0
        return ChannelSegmenter([Segmenter(config.vad), Segmenter(config.vad)], config.speakers.channel_roles, keep_s)
    if config.speakers.max_speakers == 0:
        return Segmenter(config.vad)
    from core import voiceprints
    from core.attribution import SpeakerTracker
    from core.speakers import SpeakerEncoder
    from streamer.speakers import SpeakerStage

    enrolled = voiceprints.load_all(voiceprints.resolve_dir(config.speakers.voiceprints))
    tracker = SpeakerTracker(config.speakers.max_speakers, config.speakers.new_speaker_similarity,
                             {role: vp.embedding for role, vp in enrolled.items()})
    encoder = encoder or SpeakerEncoder(config.speakers.device)
    return SpeakerStage(Segmenter(config.vad), encoder, tracker, config.speakers.change_similarity)


def browser_enrolment(config: Config, segmenter: Any) -> Any:
    """The dashboard's "enroll my voice", when this session tells voices apart."""
    from core.voiceprints import resolve_dir
    from streamer.enroll import BrowserEnrolment
    from streamer.speakers import SpeakerStage

    if not isinstance(segmenter, SpeakerStage):
        return None
    return BrowserEnrolment(segmenter.encoder, segmenter.tracker, resolve_dir(config.speakers.voiceprints), config.vad)


def load_pipeline(config: Config) -> tuple[Any, Any]:
    """The segmenter (with its speaker stage) and the analyzer (Whisper and the emotion bundle:
    seconds to load)."""
    from streamer.analyzer import Analyzer

    segmenter = make_segmenter(config)
    return segmenter, Analyzer(config)


class Daemon:
    """The rooms of one `run`: their sessions on shared models, behind one server."""

    def __init__(self, config: Config, segmenter: Any, analyzer: Any, record_dir: Path | None, shared: bool,
                 browser_rooms: bool = False) -> None:
        self.config = config
        self.analyzer = analyzer.share() if shared else analyzer
        self.shared = shared
        self.record_dir = record_dir
        self._segmenter = segmenter  # the first room's; later rooms get their own on the same speaker encoder
        self._encoder = getattr(segmenter, "encoder", None)
        self.sessions: dict[str, Session] = {}
        self.tasks: dict[str, asyncio.Task] = {}
        self.rooms = Rooms(config.server.max_rooms, opener=self.open_browser_room if browser_rooms else None)
        self.server = FeedServer(config.server, self.rooms, record_dir=record_dir)

    def _new_segmenter(self) -> Any:
        """A room's segmenter and speaker tracker: who spoke is a room's own history."""
        segmenter, self._segmenter = self._segmenter, None
        return segmenter or make_segmenter(self.config, self._encoder)

    def open(self, name: str, source: sources.Source, problem: str | None = None) -> Room:
        """A room for `source`: its session log, recording and session, running from now."""
        log = feed.SessionLog(feed.new_session_id())
        session: Session

        def hello() -> dict[str, Any]:
            return {**session.hello(), "room": name}

        segmenter = self._new_segmenter()
        room = self.rooms.add(Room(name, log, hello, source.name, state=lambda: session.state_name(),
                                   utterances=lambda: session.counters.utterances,
                                   enrolment=browser_enrolment(self.config, segmenter)))
        recorder = None
        if self.record_dir is not None:
            recorder = Recorder(self.record_dir, log, {"room": name, "source": source.name, "language": self.config.asr.language,
                                                       "models": self.analyzer.models(), "config": _redacted(self.config)},
                                on_failure=lambda reason: session.recording_failed(reason))
        analyzer = self.analyzer.sibling() if self.shared else self.analyzer
        session = Session(self.config, source, segmenter, analyzer, log, server=self.server,
                          recorder=recorder, room=room)
        self.sessions[name] = session
        self.tasks[name] = task = asyncio.get_running_loop().create_task(session.run())
        task.add_done_callback(lambda _task: self._ended(name))
        print(f"streamer: room {name}: session {log.session_id}, source {source.name}", file=sys.stderr, flush=True)
        if problem:
            session.report("no_microphone", f"{problem}. Serving on: the dashboard's microphone button is the input")
        return room

    def _ended(self, name: str) -> None:
        task, session = self.tasks[name], self.sessions[name]
        reason = session.end_reason or "shutdown"
        if not task.cancelled() and task.exception() is not None:
            traceback.print_exception(task.exception(), file=sys.stderr)
            reason = session.end_reason = "failed"
        print(f"streamer: room {name}: session ended ({reason}), {session.counters.utterances} utterances",
              file=sys.stderr, flush=True)

    async def open_browser_room(self, name: str) -> Room:
        """A /mic?room=NAME for a room that does not exist yet, with --source browser: open it."""
        try:
            return self.open(name, sources.BrowserSource())
        except UserError as exc:  # e.g. a voiceprint damaged since the start
            raise RoomRefused(1011, str(exc)) from None

    async def wait(self, stop: asyncio.Event, exit_at_end: bool) -> dict[str, str]:
        """Until every source ended (and, unless exit_at_end, a signal) or a signal: each room's end reason."""
        stopping = asyncio.create_task(stop.wait())
        while not stop.is_set() and not all(task.done() for task in self.tasks.values()):
            await asyncio.wait({stopping, *self.tasks.values()}, return_when=asyncio.FIRST_COMPLETED)
        if not exit_at_end and not stop.is_set():
            print("streamer: still serving the finished sessions; Ctrl-C to stop", file=sys.stderr, flush=True)
            await stopping
        for task in self.tasks.values():
            task.cancel()
        stopping.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        return {name: session.end_reason or "shutdown" for name, session in self.sessions.items()}


def _opened(config: Config, spec: str) -> tuple[sources.Source, str | None]:
    """The source of `spec`, a microphone tried now: without one, the browser's (and why)."""
    source = make_source(config, spec)
    if isinstance(source, sources.MicSource):
        try:
            source.open()
        except MicUnavailable as exc:
            if config.audio.channels == "split":  # the browser's microphone has one channel
                raise UserError(f"{exc}; --channels split needs a stereo microphone or file") from None
            return sources.BrowserSource(), str(exc)
    return source, None


async def serve(config: Config, *, exit_at_end: bool = False) -> int:
    """Load, serve, analyse; after the sources end keep serving until a signal unless `exit_at_end`."""
    check_exposure(config.server)
    specs = parse_sources(config.audio.rooms or [config.audio.source])
    if len(specs) > config.server.max_rooms:
        raise UserError(f"{len(specs)} rooms, but server.max_rooms is {config.server.max_rooms}; raise it or give fewer sources")
    opened = {name: _opened(config, spec) for name, spec in specs}
    record_dir = Path(config.record.dir).expanduser() if config.record.dir else None
    if record_dir is not None:
        try:
            record_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create the record folder {record_dir} ({exc.strerror}); pick a writable --record DIR") from None
    print("streamer: loading models ...", file=sys.stderr, flush=True)
    segmenter, analyzer = await asyncio.to_thread(load_pipeline, config)
    browser_rooms = any(isinstance(source, sources.BrowserSource) for source, _ in opened.values())
    daemon = Daemon(config, segmenter, analyzer, record_dir, shared=len(opened) > 1 or browser_rooms,
                    browser_rooms=browser_rooms)
    try:
        for name, (source, problem) in opened.items():
            daemon.open(name, source, problem)
    except RoomRefused as exc:
        raise UserError(exc.reason) from None
    await daemon.server.start()
    token = "?token=..." if config.server.token else ""
    host, port = config.server.host, daemon.server.port
    print(f"streamer: serving http://{host}:{port}/{token} (feed ws://{host}:{port}/ws"
          f"{'?room=NAME' if len(opened) > 1 else ''})", file=sys.stderr, flush=True)
    reasons = await daemon.wait(stop_on_signals(), exit_at_end)
    await daemon.server.close()
    analyzer.close()
    return 1 if any(reason in ("source failed", "failed") for reason in reasons.values()) else 0


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    return asyncio.run(serve(config, exit_at_end=args.exit_at_end))
